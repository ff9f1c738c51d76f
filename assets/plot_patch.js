// Redraws plots in place from a "plot patch" the server wrote into a hidden textbox (the Modality gap
// tab's shift slider; explorer/app/ui/gap_tab.py `plot_patch`). gr.Plot re-mounts its plot on every new
// value (a {#key} block): plotly then draws it twice, the second time from scratch into a new element
// (a new WebGL context for the map). Plotly.react on the element already on screen redraws only what
// changed. The patch is {"seq": n, "keep": [attributes], "figures": {elem_id: figure JSON}}; a
// trace without one of the `keep` attributes (the map's hover previews, not sent again) takes it from
// the drawn trace it replaces when both hold the same points (ids). A plot not on screen is left as it
// is; a fixed axis frame already drawn that holds the new one is kept (plotly's scaleanchor
// would settle it otherwise than on the first draw). gradio's own touches on a figure (PlotlyPlot.svelte; the patched plots show their labels) are
// repeated so it looks the same.
(patch) => {
  if (!patch || !window.Plotly) return [];
  const { keep = [], figures = {} } = JSON.parse(patch);
  const sameIds = (a, b) => !!a && !!b && a.length === b.length && Array.from(a).every((v, i) => v === b[i]);
  for (const [id, figure] of Object.entries(figures)) {
    const plot = document.querySelector(`#${id} .js-plotly-plot`);
    if (!figure || !plot || !plot._fullLayout) continue;
    const drawn = plot.data || [];
    (figure.data || []).forEach((trace, i) => {
      for (const name of keep) {
        if (trace[name] === undefined && drawn[i] && drawn[i][name] !== undefined
            && sameIds(trace.ids, drawn[i].ids)) trace[name] = drawn[i][name];
      }
    });
    const layout = figure.layout || {};
    // a fixed frame (the map's, scaleanchor-constrained as drawn) is kept while it holds the new one
    for (const axis of ["xaxis", "yaxis"]) {
      const asked = layout[axis]?.range, drawn = plot._fullLayout[axis]?.range;
      if (asked && drawn && layout[axis].autorange === false && Math.min(...drawn) <= Math.min(...asked)
          && Math.max(...drawn) >= Math.max(...asked)) layout[axis].range = Array.from(drawn);
    }
    layout.autosize = true;
    layout.margin = layout.margin || {};
    if (layout.title) layout.margin.t = Math.max(100, layout.margin.t || 0);  // as under a shown label
    layout.margin.autoexpand = true;
    window.Plotly.react(plot, figure.data || [], layout);
  }
  return [];
}
