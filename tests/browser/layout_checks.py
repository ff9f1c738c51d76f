"""Measurements of what the page draws, for the layout tests (tests/browser/test_layout_widths.py): images
shown whole in their gallery cells, captions readable, and no text spilling out of its box."""
from __future__ import annotations

# The drawn picture of a gallery image (object-fit: contain inside the img element's box), its cell, the
# gallery's visible area and the caption, for every image of the gallery `selector`.
GALLERY_JS = """(selector) => {
  const gallery = document.querySelector(selector);
  const wrap = gallery.querySelector('.grid-wrap');
  return [...gallery.querySelectorAll('.thumbnail-item')].map((cell) => {
    cell.scrollIntoView({block: 'nearest'});  // measured where it is in the window (elementFromPoint)
    const seen = wrap.getBoundingClientRect();
    const img = cell.querySelector('img');
    const box = img.getBoundingClientRect();
    const [nw, nh] = [img.naturalWidth, img.naturalHeight];
    const fit = getComputedStyle(img).objectFit;
    const scale = fit === 'contain' ? Math.min(box.width / nw, box.height / nh) : null;
    const drawn = scale === null ? box.toJSON() : {
      left: box.left + (box.width - nw * scale) / 2, top: box.top + (box.height - nh * scale) / 2,
      width: nw * scale, height: nh * scale};
    drawn.right = drawn.left + drawn.width; drawn.bottom = drawn.top + drawn.height;
    const inset = 3;
    const corners = [[drawn.left + inset, drawn.top + inset], [drawn.right - inset, drawn.top + inset],
                     [drawn.left + inset, drawn.bottom - inset], [drawn.right - inset, drawn.bottom - inset]];
    const covered = corners.map(([x, y]) => document.elementFromPoint(x, y)).filter((hit) => hit !== img)
      .map((hit) => hit ? hit.outerHTML.slice(0, 120) : 'nothing');
    const caption = cell.querySelector('.caption-label');
    return {covered, natural: [nw, nh], fit, box: box.toJSON(), drawn,
            cell: cell.getBoundingClientRect().toJSON(),
            visible: {left: seen.left, top: seen.top, right: seen.left + wrap.clientWidth,
                      bottom: seen.top + wrap.clientHeight},
            caption: caption && {rect: caption.getBoundingClientRect().toJSON(), text: caption.textContent,
                                 title: caption.title, scrollWidth: caption.scrollWidth,
                                 clientWidth: caption.clientWidth, scrollHeight: caption.scrollHeight,
                                 clientHeight: caption.clientHeight,
                                 ellipsis: getComputedStyle(caption).textOverflow === 'ellipsis'}};
  });
}"""

# Every visible element under `root` with text of its own whose text is cut (scrollWidth > clientWidth
# in a box that clips) or spills out of its box (a line of text past its nearest block's edges, where
# no box around it scrolls by design). A caption cut with "…" whose title holds the whole text is fine.
OVERFLOW_JS = """(root) => {
  const problems = [];
  const scrolls = (el) => {
    const s = getComputedStyle(el);
    return ['auto', 'scroll'].includes(s.overflowX) && el.scrollWidth > el.clientWidth;
  };
  const scrolledByDesign = (el) => {
    for (let e = el; e && e !== document.body; e = e.parentElement) if (scrolls(e)) return true;
    return false;
  };
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
      && parseFloat(s.opacity) > 0;
  };
  const block = (el) => {
    let e = el;
    while (e && getComputedStyle(e).display.startsWith('inline')) e = e.parentElement;
    return e;
  };
  const describe = (el) => {
    let path = el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ?
      '.' + el.className.trim().split(/\\s+/).join('.') : '');
    const owner = el.closest('[id]');
    return (owner ? '#' + owner.id + ' ' : '') + path;
  };
  for (const el of (typeof root === 'string' ? document.querySelector(root) : root).querySelectorAll('*')) {
    if (el.closest('svg, textarea, input, select, script, style, [aria-hidden=true]') || !shown(el)) continue;
    const texts = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim());
    if (!texts.length) continue;
    const s = getComputedStyle(el);
    const cutOnPurpose = s.textOverflow === 'ellipsis' && el.title.trim() === el.textContent.trim();
    const clips = s.overflowX !== 'visible' && !['auto', 'scroll'].includes(s.overflowX);
    if (!s.display.startsWith('inline') && clips
        && el.scrollWidth > el.clientWidth + 1 && !cutOnPurpose && !scrolledByDesign(el)) {
      problems.push({what: 'cut', element: describe(el), text: el.textContent.trim().slice(0, 80),
                     scrollWidth: el.scrollWidth, clientWidth: el.clientWidth});
      continue;
    }
    const container = block(el);
    if (!container || scrolledByDesign(el) || cutOnPurpose) continue;
    const edge = container.getBoundingClientRect();
    for (const node of texts) {
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) {
        if (r.width === 0) continue;
        if (r.right > edge.right + 1.5 || r.left < edge.left - 1.5) {
          problems.push({what: 'spills', element: describe(el), text: node.textContent.trim().slice(0, 80),
                         line: [r.left, r.right], box: [edge.left, edge.right]});
          break;
        }
      }
    }
  }
  return problems;
}"""

# Plotly figures under `root`: each title line and subplot title must lie inside its figure, and no
# subplot title may overlap a tick label of another panel.
PLOTS_JS = """(root) => {
  const problems = [];
  const within = (r, o) => r.left >= o.left - 1 && r.right <= o.right + 1 && r.top >= o.top - 1
    && r.bottom <= o.bottom + 1;
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  for (const plot of document.querySelector(root).querySelectorAll('.js-plotly-plot')) {
    if (plot.getBoundingClientRect().width === 0) continue;
    const frame = plot.querySelector('.main-svg').getBoundingClientRect();
    const block = plot.closest('.block');
    const badge = block && block.querySelector('label[data-testid=block-label]');
    const label = badge && badge.getBoundingClientRect();
    for (const title of plot.querySelectorAll('.gtitle, .g-gtitle text, .annotation-text')) {
      const r = title.getBoundingClientRect();
      if (label && label.width && r.width && overlap(r, label))
        problems.push({what: "title under the plot's label", text: title.textContent.slice(0, 80)});
      if (r.width && !within(r, frame))
        problems.push({what: 'title outside its figure', text: title.textContent.slice(0, 80),
                       rect: [r.left, r.top, r.right, r.bottom], frame: [frame.left, frame.top, frame.right,
                       frame.bottom]});
    }
    const ticks = [...plot.querySelectorAll('.xtick text, .ytick text')]
      .map((t) => t.getBoundingClientRect());
    for (const note of plot.querySelectorAll('.annotation-text')) {
      const r = note.getBoundingClientRect();
      if (ticks.some((t) => t.width && overlap(r, t)))
        problems.push({what: 'subplot title on an axis', text: note.textContent.slice(0, 80)});
    }
  }
  return problems;
}"""


def gallery_geometry(page, selector: str) -> list[dict]:
    return page.evaluate(GALLERY_JS, selector)


def overflowing_text(page, root: str) -> list[dict]:
    return page.evaluate(OVERFLOW_JS, root)


def plot_problems(page, root: str) -> list[dict]:
    return page.evaluate(PLOTS_JS, root)


def assert_shown_whole(item: dict, min_side: float = 48.0) -> None:
    """The drawn picture keeps the image's aspect ratio, lies inside its cell and inside the gallery's
    visible area, is not a sliver; its caption is inside the cell, visible, and not drawn over the picture."""
    drawn, cell, seen = item["drawn"], item["cell"], item["visible"]
    nw, nh = item["natural"]
    assert nw and nh, item
    assert abs(drawn["width"] / drawn["height"] - nw / nh) < 0.03 * (nw / nh), item
    for outer in (cell, seen):
        assert drawn["left"] >= outer["left"] - 1 and drawn["right"] <= outer["right"] + 1, item
        assert drawn["top"] >= outer["top"] - 1 and drawn["bottom"] <= outer["bottom"] + 1, item
    assert min(drawn["width"], drawn["height"]) >= min_side * min(nw, nh) / max(nw, nh), item
    assert item["covered"] == [], item  # nothing drawn over its corners (a label, a button)
    caption = item["caption"]
    assert caption is not None and caption["text"].strip(), item
    rect = caption["rect"]
    for outer in (cell, seen):
        assert rect["left"] >= outer["left"] - 1 and rect["right"] <= outer["right"] + 1, item
        assert rect["top"] >= outer["top"] - 1 and rect["bottom"] <= outer["bottom"] + 1, item
    assert rect["top"] >= drawn["bottom"] - 1 or rect["bottom"] <= drawn["top"] + 1, item  # not over it
    readable = caption["scrollWidth"] <= caption["clientWidth"] + 1 and \
        caption["scrollHeight"] <= caption["clientHeight"] + 1
    assert readable or (caption["ellipsis"] and caption["title"].strip() == caption["text"].strip()), item
