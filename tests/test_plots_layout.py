"""The figures' layout (issue 25): titles wrapped to fit the plot, never running off its right edge,
and rows of bar panels far enough apart that a panel's title does not crowd the axis above it.
tests/browser/test_layout_widths.py measures the same on the page."""
from __future__ import annotations

import re

import numpy as np
import pytest

from explorer.app import plots


def title_lines(fig) -> list[tuple[str, bool]]:
    """(text, is a sub-line) of each line of a figure's title."""
    lines = []
    for line in fig.layout.title.text.split("<br>"):
        sub = line.startswith("<sub>")
        lines.append((re.sub(r"</?sub>", "", line), sub))
    return lines


def assert_fits(fig, share: float = 1.0):
    for text, sub in title_lines(fig):
        limit = (plots.SUBTITLE_CHARS if sub else plots.TITLE_CHARS) * share
        assert len(text) <= limit, (text, len(text), limit)
    assert fig.layout.title.yanchor == "top" and fig.layout.margin.t >= plots.TITLE_LINE_PX


@pytest.mark.parametrize("rule", ["softmax", "sigmoid"])
@pytest.mark.parametrize("view", ["cosine", "probability"])
def test_heatmap_titles_fit(view, rule):
    z = np.linspace(0, 1, 6).reshape(2, 3)
    fig = plots.similarity_heatmap(["a.png", "b.png"], ["x", "y", "z"], z, z, view, rule=rule)
    assert_fits(fig)
    if view == "probability":  # the rule is still said, in full
        words = plots.PROBABILITY_RULES[rule].format("text").split()
        flat = " ".join(text for text, _ in title_lines(fig))
        assert " ".join(words) in flat
    # the old one-line sigmoid title was 111 characters: it must have become several lines
    long = plots.similarity_heatmap(["a"], ["x"], z[:1, :1], z[:1, :1], "probability", column="label",
                                    title="Probability per image and label",
                                    subtitle="sigmoid per image and label, the model's own bias: each judged "
                                             "on its own, and a good deal more words than fit on one line")
    assert_fits(long)
    assert len(title_lines(long)) >= 3


@pytest.mark.parametrize("top_k", [1, 5])
def test_bar_titles_fit_and_rows_leave_room_for_the_axis_above(top_k):
    ranked = [[(f"label {k}", 0.5 / (k + 1), 0.3) for k in range(top_k)] for _ in range(7)]
    names = [f"image_{i}_with_a_long_name.png" for i in range(7)]
    fig = plots.probability_bars(names, ranked, rule="sigmoid")
    assert_fits(fig)
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    domains = sorted({tuple(fig.layout[name].domain) for name in fig.layout if name.startswith("yaxis")})
    assert len(domains) == 4  # 7 panels in 2 columns
    for lower, upper in zip(domains, domains[1:]):
        gap = (upper[0] - lower[1]) * plot_height
        assert gap >= 56, gap  # tick labels of the upper row (~20 px) and the lower row's title (~20 px)
    one = plots.probability_bars(["one.png"], ranked[:1], rule="softmax")
    assert_fits(one)
    titles = [a.text for a in one.layout.annotations]
    assert titles == ["one.png"] and one.layout.margin.t >= plots.SUBPLOT_TITLE_PX + plots.TITLE_LINE_PX


def test_narrow_plots_wrap_sooner():
    fig = plots.confusion_heatmap(["a", "b"], np.array([[3, 1], [0, 4]]))
    assert_fits(fig, share=2 / 3)
    assert "rows: true class" in fig.layout.title.text
