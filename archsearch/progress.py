"""A progress line for long work: bar, epoch, loss, accuracy and the time left.

On a terminal it redraws one line; in a log (not a TTY) it prints one line per epoch.
"""

from __future__ import annotations

import sys
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
