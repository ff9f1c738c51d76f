// The Map tab's plot in the page (explorer/app/ui/map_tab.py). gr.Plot sends no plotly events to Python,
// so this listener writes into the tab's hidden text boxes, whose change events the tab answers:
//   - hovering a point: "<seq>:<point>" into #map-hover-id (the tab sends back that one image's thumbnail);
//   - a box or lasso selection: "<seq>|<how many>|<point>,<point>,..." into #map-selection-ids (at most
//     MAX_SENT points; the tab lists them, names their best words and keeps them for the selection's
//     actions); double-click (deselect) sends "<seq>|0|";
//   - a click on an item of the tab's lists ([data-map-point]) hovers it the same way;
//   - clicking a point (or a list item): "<seq>:<point>" into #map-explain-id (the tab shows that image in
//     words, SpLiCE: about a second each, so never on mere hover; explorer/app/ui/map_words.py), and
//     window.explorerMap.explain() the hovered one (the tab's "Explain in words" button).
// <seq> numbers the map drawn (its layout.meta.seq, plots.map_figure): an answer about another map is
// ignored by the tab. <point> is the point's row (pointIndex in the points trace, meta "map-points").
// window.explorerMap.recolour(patch) redraws the points' colours and the legend in place (Plotly.react on
// the plot on screen; gr.Plot would re-mount the plot for a new figure): the tab's colour-by controls write
// a patch {"seq", "marker": {color, colorscale, cmin, cmax, showscale}, "legend": [{name, color}]}
// into #map-colour-patch. A patch for a map not drawn yet is kept and applied when it is, and the last one
// again when gradio re-mounts the same map.
(() => {
  const PLOT = "#map-plot .js-plotly-plot";
  const MAX_SENT = 20000;
  let lastHover = "", hoverTimer = null, lastPatch = null, patches = 0;  // patches: how many arrived

  function send(id, value) {
    const box = document.querySelector(`#${id} textarea, #${id} input`);
    if (!box) return;
    box.value = value;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  const seqOf = (plot) => plot?.layout?.meta?.seq ?? plot?._fullLayout?.meta?.seq ?? -1;
  const isPoints = (point) => point && (point.data?.meta === "map-points" || point.fullData?.meta === "map-points");

  function hover(plot, event) {
    const point = (event?.points || []).find(isPoints);
    if (!point) return;
    const value = `${seqOf(plot)}:${point.pointIndex ?? point.pointNumber}`;
    if (value === lastHover) return;
    lastHover = value;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => send("map-hover-id", value), 60);   // only where the pointer rests
  }

  function selected(plot, event) {
    const rows = [];
    for (const point of event?.points || []) {
      if (isPoints(point)) rows.push(point.pointIndex ?? point.pointNumber);
    }
    send("map-selection-ids", `${seqOf(plot)}|${rows.length}|${rows.slice(0, MAX_SENT).join(",")}`);
  }

  function recolour(patch) {
    if (typeof patch === "string") {
      if (!patch) return [];
      try { patch = JSON.parse(patch); } catch (e) { return []; }
    }
    lastPatch = patch;
    patch.n = patch.n ?? ++patches;
    const plot = document.querySelector(PLOT);
    if (!plot || !window.Plotly || !plot.data || seqOf(plot) !== patch.seq) return [];  // applied when drawn
    const data = plot.data.filter((t) => t.meta !== "map-legend").map((t) => (
      t.meta === "map-points" ? { ...t, marker: { ...t.marker, ...patch.marker } } : t));
    for (const entry of patch.legend || []) {
      data.push({ type: "scattergl", x: [null], y: [null], mode: "markers", name: entry.name, meta: "map-legend",
                  marker: { color: entry.color, size: 9 }, hoverinfo: "skip" });
    }
    plot.dataset.explorerColours = String(patch.n);
    window.Plotly.react(plot, data, plot.layout);
    return [];
  }

  function attach() {
    document.querySelectorAll(PLOT).forEach((plot) => {
      if (lastPatch && plot.data && seqOf(plot) === lastPatch.seq
          && plot.dataset.explorerColours !== String(lastPatch.n)) recolour(lastPatch);
      if (plot.dataset.explorerMap === "on" || typeof plot.on !== "function") return;
      plot.dataset.explorerMap = "on";
      plot.on("plotly_hover", (event) => hover(plot, event));
      plot.on("plotly_selected", (event) => selected(plot, event));
      plot.on("plotly_deselect", () => send("map-selection-ids", `${seqOf(plot)}|0|`));
      plot.on("plotly_click", (event) => {
        const point = (event?.points || []).find(isPoints);
        if (point) send("map-explain-id", `${seqOf(plot)}:${point.pointIndex ?? point.pointNumber}`);
      });
    });
  }

  document.addEventListener("click", (event) => {
    const item = event.target.closest?.("[data-map-point]");
    const plot = document.querySelector(PLOT);
    if (!item || !plot) return;
    lastHover = `${seqOf(plot)}:${item.dataset.mapPoint}`;
    send("map-hover-id", lastHover);
    const value = lastHover;
    setTimeout(() => send("map-explain-id", value), 150);   // after the hover's quick answer
  });

  // the "Explain in words" button (explorer/app/ui/map_words.py): the hovered point, through the same box
  const explain = () => { if (lastHover) send("map-explain-id", lastHover); };

  window.explorerMap = { recolour, explain };
  setInterval(attach, 500);  // the plot is (re)created whenever a map arrives
})();
