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


class _Line:
    """One progress line: redrawn in place on a terminal, one printed line each in a log."""

    def __init__(self, label: str = "", stream: TextIO | None = None, width: int = 20):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def bar(self, done: int, total: int) -> str:
        filled = int(self.width * done / max(1, total))
        return f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (self.width - filled)}]"

    def show(self, line: str, last: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if last else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class EpochProgress(_Line):
    """Callable for `train(progress=...)`; `label` names the run (e.g. 'vgg16-c10 seed 0')."""

    def __call__(self, st) -> None:
        self.show(f"{self.bar(st.epoch, st.epochs)} epoch {st.epoch}/{st.epochs} "
                  f"loss {st.train_loss:.3f} train {100 * st.train_acc:.1f}% test {100 * st.test_acc:.1f}% "
                  f"(best {100 * st.best_acc:.1f}%) lr {st.lr:.3g} {st.seconds:.1f}s/epoch eta {fmt_seconds(st.eta)}",
                  st.epoch == st.epochs)


class StepProgress(_Line):
    """A progress line over `total` steps of similar cost (e.g. the points of a sensitivity
    analysis): bar, count, the step's note and the time left from this run's mean step time.
    `done` steps were finished before this run (reused): they count, but not in the rate."""

    def __init__(self, label: str, total: int, done: int = 0, stream: TextIO | None = None, width: int = 20):
        super().__init__(label, stream, width)
        self.total, self.done = total, done
        self.first, self.t0 = done, time.perf_counter()

    def __call__(self, note: str = "") -> None:
        """One more step finished; `note` says which (and what it measured)."""
        self.done += 1
        eta = (time.perf_counter() - self.t0) / (self.done - self.first) * (self.total - self.done)
        self.show(f"{self.bar(self.done, self.total)} {self.done}/{self.total} {note + ' ' if note else ''}"
                  f"eta {fmt_seconds(eta)}", self.done >= self.total)
