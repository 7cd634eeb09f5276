"""What the commands share: the number and list types every option value passes through,
with their finite ranges (bounds: limits.py), and help texts that come from the registries.

A registry's help is computed only when that command's help is shown: the proposer and
generator registries import torch, which `archsearch --help` must not wait for.
"""

from __future__ import annotations

import math
import tomllib
from typing import Callable

import click

from .. import limits as L
from ..config import PRESETS
from ..measures import BACKENDS, LatencyMeasure

PRESET_NAMES = " | ".join(PRESETS)  # for --help (archsearch.config imports no torch)


class Number(click.FloatRange):
    """A finite number in a range: click's FloatRange lets NaN through every bound."""

    name = "number"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


class CommaList(click.ParamType):
    """A comma-separated list: of numbers in a range (`item` a Number), or of plain names."""

    name = "list"

    def __init__(self, item: click.ParamType | None = None):
        self.item = item

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(parts):
            self.fail(f"{value!r} has an empty entry; give a comma-separated list", param, ctx)
        return [self.item.convert(p, param, ctx) for p in parts] if self.item is not None else parts


class NameValue(click.ParamType):
    """NAME=VALUE, the value read as a TOML value (a number, true / false, a list like [1, 2],
    a quoted string) or else taken as a word: a method's own option (`extract --option`)."""

    name = "NAME=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, eq, text = str(value).partition("=")
        if not eq or not name.strip() or not text.strip():
            self.fail(f"{value!r} is not NAME=VALUE (e.g. batches=2)", param, ctx)
        try:
            parsed = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = text.strip()
        return name.strip().replace("-", "_"), parsed


# every number that enters on the command line, with its finite range (bounds: limits.py)
WIDTH = Number(0, L.MAX_WIDTH_MULT, min_open=True)
FRACTION = Number(0, 1, max_open=True)            # --floor: [0, 1)
RATIO = Number(0, 1, min_open=True, max_open=True)  # prune ratio: (0, 1)
SEED = click.IntRange(0, L.MAX_SEED)
SEEDS = click.IntRange(1, L.MAX_SEEDS)
EPOCHS = click.IntRange(1, L.MAX_EPOCHS)


class RoundTo(click.ParamType):
    """--round: a multiple in 1..MAX_ROUND, or `auto` (the multiple the latency table shows to
    be faster: `latency.auto_round`)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        return click.IntRange(1, L.MAX_ROUND).convert(value, param, ctx)


class RegistryOption(click.Option):
    """An option whose help is `help_from()`, called when the help is first shown."""

    def __init__(self, *args, help_from: Callable[[], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx):
        if self.help_from is not None:
            self.help, self.help_from = self.help_from(), None
        return super().get_help_record(ctx)


class RegistryCommand(click.Command):
    """A command whose help ends with `epilog_from()`, called when the help is first shown."""

    def __init__(self, *args, epilog_from: Callable[[], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_from = epilog_from

    def format_epilog(self, ctx, formatter):
        if self.epilog_from is not None:
            self.epilog, self.epilog_from = self.epilog_from(), None
        super().format_epilog(ctx, formatter)


def latency_options(f: Callable) -> Callable:
    """The latency measure's options (`measures.LatencyMeasure`): the command gets `latency`,
    the measure, or None with --no-latency."""
    def wrap(*args, latency_backend, latency_threads, latency_batch, latency_repeats, no_latency, **kw):
        m = None if no_latency else LatencyMeasure(latency_backend, latency_threads, latency_batch,
                                                   repeats=latency_repeats).check()
        return f(*args, latency=m, **kw)

    for opt in reversed([
        click.option("--latency-backend", type=click.Choice(BACKENDS), default="eager", show_default=True,
                     help="Where latency is measured: torch eager on the CPU, ONNX Runtime (CPU), or CUDA."),
        click.option("--latency-threads", type=click.IntRange(1, L.MAX_THREADS), default=1, show_default=True,
                     help="Threads the latency is measured with."),
        click.option("--latency-batch", type=click.IntRange(1, L.MAX_LATENCY_BATCH), default=1, show_default=True,
                     help="Batch size the latency is measured at."),
        click.option("--latency-repeats", type=click.IntRange(1, L.MAX_REPEATS), default=30, show_default=True,
                     help="Timed runs per latency (their median), after 5 warm-up runs."),
        click.option("--no-latency", is_flag=True, help="Measure no latency (and accept no latency budget)."),
    ]):
        wrap = opt(wrap)
    wrap.__name__, wrap.__doc__ = f.__name__, f.__doc__
    return wrap
