// Box and lasso selection on the Modality gap tab's joint map. gr.Plot sends no plotly events to
// Python, so this listener writes the selected points' ids ("i3", "t0": see plots.gap_projection)
// into the tab's hidden textbox and fires its input event; the tab lists those images and texts.
(() => {
  const PLOTS = "#gap-projection .js-plotly-plot";
  const TARGET = "#gap-selection-ids textarea, #gap-selection-ids input";

  function send(ids) {
    const box = document.querySelector(TARGET);
    if (!box) return;
    box.value = ids.join(",");
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function idsOf(event) {
    const ids = [];
    for (const point of (event && event.points) || []) {
      const all = point.fullData && point.fullData.ids;
      const id = point.id !== undefined ? point.id : all && all[point.pointIndex ?? point.pointNumber];
      if (typeof id === "string") ids.push(id);  // centroids and pair lines carry no ids
    }
    return ids;
  }

  function attach() {
    document.querySelectorAll(PLOTS).forEach((plot) => {
      if (plot.dataset.explorerSelect === "on" || typeof plot.on !== "function") return;
      plot.dataset.explorerSelect = "on";
      plot.on("plotly_selected", (event) => send(idsOf(event)));
      plot.on("plotly_deselect", () => send([]));
    });
  }

  setInterval(attach, 700);  // plots are (re)created whenever results arrive
})();
