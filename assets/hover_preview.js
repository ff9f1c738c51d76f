// Hover previews for plots: when a point's customdata is a data:image URI (the Modality gap tab's
// image points carry a thumbnail there), show it beside the pointer. Plotly's own hover labels cannot
// show pictures, so this small listener does.
(() => {
  const PLOTS = "#gap-projection .js-plotly-plot";
  let preview = null;

  function previewElement() {
    if (preview === null) {
      preview = document.createElement("img");
      preview.id = "explorer-hover-preview";
      preview.alt = "preview of the hovered image";
      document.body.appendChild(preview);
    }
    return preview;
  }

  function attach() {
    document.querySelectorAll(PLOTS).forEach((plot) => {
      if (plot.dataset.explorerPreview === "on" || typeof plot.on !== "function") return;
      plot.dataset.explorerPreview = "on";
      plot.on("plotly_hover", (event) => {
        const point = event && event.points && event.points[0];
        const uri = point && point.customdata;
        const img = previewElement();
        if (typeof uri !== "string" || !uri.startsWith("data:image/")) {
          img.style.display = "none";
          return;
        }
        const pointer = event.event || {};
        img.src = uri;
        img.style.left = `${(pointer.clientX || 0) + 18}px`;
        img.style.top = `${(pointer.clientY || 0) + 18}px`;
        img.style.display = "block";
      });
      plot.on("plotly_unhover", () => { previewElement().style.display = "none"; });
    });
  }

  setInterval(attach, 700);  // plots are (re)created whenever results arrive
})();
