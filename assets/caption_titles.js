// Gallery captions are cut with "…" where a file name is longer than its cell (assets/style.css): the
// whole caption is then the cell's tooltip. Gradio draws the captions and may rewrite them at any time,
// so this only sets the title attribute, never the text.
(() => {
  function titleCaptions() {
    document.querySelectorAll(".thumbnail-lg .caption-label").forEach((label) => {
      const text = label.textContent.trim();
      if (label.title !== text) label.title = text;
    });
  }

  new MutationObserver(titleCaptions).observe(document.documentElement,
                                                {childList: true, subtree: true, characterData: true});
})();
