"""Progress lines for long work: bar, epoch, loss, accuracy and the time left (`EpochProgress`),
or bar, count and the time left over steps of similar cost (`StepProgress`).

On a terminal each redraws one line; in a log (not a TTY) each prints one line per epoch or step.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class EpochProgress:
    """Callable for `train(progress=...)`; `label` names the run (e.g. 'vgg16-c10 seed 0')."""

    def __init__(self, label: str = "", stream: TextIO | None = None, width: int = 20):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, st) -> None:
        filled = int(self.width * st.epoch / st.epochs)
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"{self.label + ' ' if self.label else ''}[{bar}] epoch {st.epoch}/{st.epochs} "
                f"loss {st.train_loss:.3f} train {100 * st.train_acc:.1f}% test {100 * st.test_acc:.1f}% "
                f"(best {100 * st.best_acc:.1f}%) lr {st.lr:.3g} {st.seconds:.1f}s/epoch eta {fmt_seconds(st.eta)}")
        if self.tty:
            end = "\n" if st.epoch == st.epochs else ""
            self.stream.write("\r\033[K" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class StepProgress:
    """A progress line over `total` steps of similar cost (e.g. the points of a sensitivity
    analysis): bar, count, the step's note and the time left from this run's mean step time.
    `done` steps were finished before this run (reused): they count, but not in the rate."""

    def __init__(self, label: str, total: int, done: int = 0, stream: TextIO | None = None, width: int = 20):
        self.label, self.total, self.done, self.stream, self.width = label, total, done, stream or sys.stderr, width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.first, self.t0 = done, time.perf_counter()

    def __call__(self, note: str = "") -> None:
        """One more step finished; `note` says which (and what it measured)."""
        self.done += 1
        ran = self.done - self.first
        eta = (time.perf_counter() - self.t0) / ran * (self.total - self.done)
        filled = int(self.width * self.done / max(1, self.total))
        line = (f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (self.width - filled)}] "
                f"{self.done}/{self.total} {note + ' ' if note else ''}eta {fmt_seconds(eta)}")
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
