"""What the tabs share: message boxes, accepted file types, template choices, progress reporting.

Tabs import these from here, never from each other.
"""
from __future__ import annotations

import html

from ..images import IMAGE_EXTENSIONS
from ..progress import RateText

IMAGE_TYPES = sorted(IMAGE_EXTENSIONS)
ZIP_TYPES = IMAGE_TYPES + [".zip"]
# The built-in template sets a page offers, by the name prompts.load_template_set knows them by.
TEMPLATE_CHOICES = {
    "Single: a photo of a {}.": "single",
    "7 templates (OpenAI subset)": "simple",
    "80 templates (OpenAI ImageNet)": "openai",
}
CUSTOM = "Custom (edit below)"


def session_of(ctx, request):
    """The context as the session making `request` sees it (hosted: its own workspace)."""
    return ctx.scoped(getattr(request, "session_hash", None))


def message(text: str, kind: str = "note") -> str:
    """A short HTML box: kind is note, error or muted (styled in assets/style.css)."""
    return f'<div class="explorer-{kind}">{html.escape(text)}</div>'


def failures_html(failures, limit: int = 20) -> str:
    """'Skipped NAME: reason' lines for unreadable files, at most `limit`, then how many more."""
    lines = [f'<p class="explorer-error">Skipped {html.escape(f.path)}: {html.escape(f.reason)}</p>'
             for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f'<p class="explorer-error">… and {len(failures) - limit} more unreadable file(s).</p>')
    return "".join(lines)


def notes_html(notes, prefix: str = "Note: ") -> str:
    return "".join(f'<p class="explorer-muted">{html.escape(prefix + n)}.</p>' for n in notes)


def progress_reporter(progress, unit: str = "images"):
    """A core-style progress(done, total) callback that drives a gr.Progress (or nothing, in tests)
    with count, rate and time left."""
    if progress is None:
        return None
    rate = RateText(unit)
    return lambda done, total: progress(done / total if total else 1.0, desc=rate(done, total))
