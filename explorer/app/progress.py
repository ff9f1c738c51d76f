"""Progress text for long work: count, rate and time left, the same in the app and the CLI."""
from __future__ import annotations

import time


class RateText:
    """Turn progress(done, total) calls into '120/500 images · 11.3/s · about 34 s left'."""

    def __init__(self, unit: str = "images", clock=time.monotonic):
        self.unit, self._clock = unit, clock
        self._start: float | None = None
        self._start_done = 0

    def __call__(self, done: int, total: int) -> str:
        now = self._clock()
        if self._start is None:
            self._start, self._start_done = now, done
        text = f"{done:,}/{total:,} {self.unit}"
        elapsed, progressed = now - self._start, done - self._start_done
        if elapsed > 0 and progressed > 0:
            rate = progressed / elapsed
            text += f" · {rate:.1f}/s · about {_duration((total - done) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
