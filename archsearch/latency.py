"""Latency, measured: how long one forward pass of a network takes on this machine.

The measure (`LatencyMeasure`) is recorded with every spec and result that uses it. The
default is what a deployment on a small CPU sees: torch eager, eval mode, no autograd,
batch 1, 1 thread, the dataset's input size, the median of 30 timed runs after 5 warm-up
runs. Other back ends: ONNX Runtime on the CPU (the net exported by torch's ONNX exporter,
one session thread per `threads`) and CUDA (CUDA events around each run).

The budget solver never times a candidate. It sums a per-layer table (`LatencyTable`,
NetAdapt's lookup table, Yang et al. 2018): each layer the counters see (`Family.ops`) is
timed alone at its widths, bucketed, and cached on disk keyed by the machine, back end,
threads, batch and library versions, so a table is measured once per machine and measure.
Conv and linear layers are bilinear in (in, out) width between bucket points, BN, ReLU and
pooling linear in their width: exact for a cost a + b·in + c·out + d·in·out, the shape of
a conv's work. What the table leaves out (the containers' calls, residual adds,
concatenation, flatten) and what it gets wrong (a strided conv is timed at stride 1 with its
output's size; a grouped conv that is not depthwise as a dense one) is why written specs are then measured end to
end and the table's error is reported (`archsearch.budget.verify_latency`).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ._io import read_json, write_json
from .archs import build, get_family
from .errors import ArchsearchError
from .measures import BACKENDS, LatencyMeasure
from .spec import ArchSpec

TABLE_VERSION = 1
GRID = 16  # bucket points per layer width: widths between them are interpolated


# -- timing ---------------------------------------------------------------------------------------
@contextmanager
def _threads(n: int):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _median_seconds(run: Callable[[], None], measure: LatencyMeasure, sync: Callable[[], None] = lambda: None) -> float:
    for _ in range(measure.warmup):
        run()
    sync()
    times = []
    for _ in range(measure.repeats):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _onnx_session(module, x, threads: int):
    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter: fast for one layer, and deprecated
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["input"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def time_module(module, shape: tuple[int, ...], measure: LatencyMeasure) -> float:
    """Median seconds of one forward pass of `module` (eval mode) on a random input of `shape`."""
    import torch

    module = module.eval()
    x = torch.randn(*shape)
    with _threads(measure.threads), torch.no_grad():
        if measure.backend == "onnxruntime":
            sess = _onnx_session(module, x, measure.threads)
            feed = {sess.get_inputs()[0].name: x.numpy()}
            return _median_seconds(lambda: sess.run(None, feed), measure)
        if measure.backend == "cuda":
            module, x = module.cuda(), x.cuda()
            return _median_seconds(lambda: module(x), measure, torch.cuda.synchronize)
        return _median_seconds(lambda: module(x), measure)


def input_shape(spec: ArchSpec, batch: int) -> tuple[int, int, int, int]:
    return (batch, spec.in_channels, spec.input_size, spec.input_size)


def measure_spec(spec: ArchSpec, measure: LatencyMeasure) -> float:
    """The latency of `spec` end to end under `measure`, in seconds. A masked (sparse) net runs
    at its dense net's speed on these back ends: zeros are multiplied like any weight."""
    return time_module(build(spec), input_shape(spec, measure.batch), measure)


# -- the per-layer table -----------------------------------------------------------------------
def machine() -> dict:
    """What a latency depends on besides the measure: the processor, the cores and the libraries."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "torch": torch.__version__}
    return out


def _backend_versions(measure: LatencyMeasure) -> dict:
    if measure.backend == "onnxruntime":
        import onnxruntime
        return {"onnxruntime": onnxruntime.__version__}
    if measure.backend == "cuda":
        import torch
        return {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    return {}


def cache_root() -> Path:
    return Path(os.environ.get("ARCHSEARCH_LATENCY_CACHE") or Path.home() / ".cache" / "archsearch" / "latency")


def _bracket(w: int, top: int) -> tuple[int, int]:
    """The bucket points around width `w` for a layer whose widths reach `top`: multiples of
    a step of about top/GRID (a power of two), and 1 below the first."""
    step = 1
    while step * 2 <= max(1, top) / GRID:
        step *= 2
    lo = (w // step) * step
    if lo == w:
        return w, w
    return max(1, lo), lo + step


def _lerp(f: Callable[[int], float], x: int, bracket: tuple[int, int]) -> float:
    """f at x, linear between the bracket's two points (f is called only at the points needed:
    each may be a layer timed for the first time)."""
    x0, x1 = bracket
    if x1 == x0:
        return f(x0)
    t = (x - x0) / (x1 - x0)
    return (1 - t) * f(x0) + t * f(x1)


class LatencyTable:
    """Per-layer latencies for one (machine, measure), cached in one JSON file: `estimate(spec)`
    sums them, measuring (once) any bucket point the file does not hold yet."""

    def __init__(self, measure: LatencyMeasure, root: Path | None = None):
        self.measure = measure.check()
        self.key = {**machine(), **_backend_versions(measure), "backend": measure.backend,
                    "threads": measure.threads, "batch": measure.batch}
        digest = hashlib.sha256(repr(sorted(self.key.items())).encode()).hexdigest()[:16]
        self.path = (root or cache_root()) / f"{measure.backend}-t{measure.threads}-b{measure.batch}-{digest}.json"
        self.entries: dict[str, float] = self._read()
        self.measured = 0  # bucket points this process timed

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        try:
            obj = read_json(self.path, "latency table")
        except ArchsearchError:
            return {}  # a damaged cache is re-measured, not trusted
        if not (isinstance(obj, dict) and obj.get("version") == TABLE_VERSION and obj.get("key") == self.key
                and isinstance(obj.get("entries"), dict)):
            return {}
        return {k: float(v) for k, v in obj["entries"].items()
                if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)}

    def save(self) -> None:
        """Merge with what another process wrote meanwhile, and write atomically."""
        merged = {**self._read(), **self.entries}
        write_json(self.path, {"version": TABLE_VERSION, "key": self.key, "measure": self.measure.to_dict(),
                               "entries": dict(sorted(merged.items()))})
        self.entries = merged

    def clear(self) -> None:
        self.entries = {}
        if self.path.exists():
            self.path.unlink()

    # one layer at exact widths: timed once, then read from the table (`auto_round` reads it too)
    def _point(self, kind: str, cin: int, cout: int, hw: int, k: int, bias: bool) -> float:
        key = f"{kind} k{k} hw{hw} in{cin} out{cout}{' bias' if bias else ''}"  # kind: conv, dwconv, linear ...
        if key not in self.entries:
            self.entries[key] = time_module(*_layer(kind, cin, cout, hw, k, bias, self.measure.batch), self.measure)
            self.measured += 1
        return self.entries[key]

    def op_seconds(self, op, top_in: int, top_out: int) -> float:
        """One layer's latency at its widths: bilinear (conv, linear) or linear (BN, ReLU,
        pooling: one width) between the bucket points around them."""
        out = _bracket(op.cout, top_out)
        if op.kind == "conv" and op.depthwise:  # one width: its channels, each its own group
            return _lerp(lambda c: self._point("dwconv", 1, c, op.hw, op.k, op.bias), op.cout, out)
        if op.kind in ("conv", "linear"):
            return _lerp(lambda a: _lerp(lambda b: self._point(op.kind, a, b, op.hw, op.k, op.bias), op.cout, out),
                         op.cin, _bracket(op.cin, top_in))
        return _lerp(lambda c: self._point(op.kind, c, c, op.hw, op.k, False), op.cout, out)

    def layers(self, spec: ArchSpec, full: ArchSpec | None = None) -> list[tuple[object, float]]:
        """(op, seconds) for every layer of `spec`; the buckets follow `full`'s widths (the
        unpruned net the solver narrows; `spec`'s own base net by default)."""
        fam = get_family(spec.family)
        full = full or spec.replace(widths=list(spec.base_widths or spec.widths), masks=None)
        ops, tops = list(fam.ops(spec)), list(fam.ops(full))
        if len(ops) != len(tops):  # a depth-pruned net: its own widths are the buckets' tops
            tops = ops
        return [(op, self.op_seconds(op, max(op.cin, t.cin), max(op.cout, t.cout))) for op, t in zip(ops, tops)]

    def layer_sum(self, spec: ArchSpec, full: ArchSpec | None = None) -> float:
        return float(sum(s for _, s in self.layers(spec, full)))

    def calibration(self, full: ArchSpec) -> tuple[float, float]:
        """(a, b) with latency ~ a + b x the layers' sum, for nets narrowed from `full`: fitted
        once per target on two nets measured end to end, `full` and every width at a quarter
        of it. It holds what the layers alone miss (the containers' calls, residual adds,
        concatenation: about 12-30% of a CIFAR VGG-19's or ResNet-56's latency at batch 1)."""
        key = "calibration " + _target_key(full)
        if key + " a" not in self.entries:
            small = full.replace(widths=[max(1, w // 4) for w in full.widths], base_widths=full.widths, masks=None)
            full = full.replace(masks=None)
            (x0, y0), (x1, y1) = [(self.layer_sum(n, full), measure_spec(n, self.measure)) for n in (small, full)]
            b = (y1 - y0) / (x1 - x0) if x1 > x0 else 1.0
            b = min(2.0, max(0.5, b))  # timing noise on near-equal sums must not tilt the line
            self.entries[key + " a"], self.entries[key + " b"] = y1 - b * x1, b
        return self.entries[key + " a"], self.entries[key + " b"]

    def estimate(self, spec: ArchSpec, full: ArchSpec | None = None) -> float:
        """The table's latency of `spec` in seconds: its layers' sum through the target's
        calibration line."""
        full = full or spec.replace(widths=list(spec.base_widths or spec.widths), masks=None)
        a, b = self.calibration(full)
        return max(1e-9, a + b * self.layer_sum(spec, full))


@dataclass
class Profile:
    """`archsearch profile`: a target's layers in the table, and the table checked end to end."""

    rows: list[dict]         # one per layer: kind, widths, map side, kernel, ms, share of the layers' sum
    layer_sum: float         # seconds
    calibration: tuple[float, float]
    checks: list[dict]       # nets measured end to end beside the table's estimate
    measured_now: int        # bucket points timed by this call
    path: Path


def profile(full: ArchSpec, table: LatencyTable, fractions: tuple[float, ...] = (1.0, 0.5, 0.25)) -> Profile:
    """Fill (or read) the table for `full`'s layers and check its estimate against nets measured
    end to end: `full` and uniform nets at `fractions` of its widths."""
    layers = table.layers(full, full)
    total = sum(s for _, s in layers) or 1.0
    rows = [{"layer": i, "kind": op.kind, "in": op.cin, "out": op.cout, "hw": op.hw, "k": op.k,
             "ms": round(1e3 * s, 4), "share_pct": round(100 * s / total, 1)} for i, (op, s) in enumerate(layers)]
    checks = []
    for f in fractions:
        net = full.replace(widths=[max(1, int(round(w * f))) for w in full.widths], base_widths=full.widths, masks=None)
        est, got = table.estimate(net, full), measure_spec(net, table.measure)
        checks.append({"widths": f"x{f:g}", "estimate_ms": round(1e3 * est, 4), "measured_ms": round(1e3 * got, 4),
                       "error_pct": round(100 * (est / got - 1), 1)})
    table.save()
    return Profile(rows, total, table.calibration(full), checks, table.measured, table.path)


ROUND_CHOICES = (2, 4, 8, 16)  # the multiples `--round auto` tries, finest first


@dataclass
class AutoRound:
    multiple: int   # 1: no multiple is faster here
    probes: dict    # multiple -> [(width, seconds at the multiple, seconds one channel below)]
    why: str


def auto_round(full: ArchSpec, table: LatencyTable, share: float = 2 / 3) -> AutoRound:
    """`--round auto`: the finest multiple m whose widths the table shows to be free: a conv
    of the target's kinds (kernel, map side) with m·j channels in and out (j odd) runs at least
    as fast as one with m·j - 1, in at least `share` of the probes (m·j near 1/4, 1/2 and 3/4 of
    the target's widest such conv). Vectorised kernels (oneDNN's 8- and 16-wide blocks, tensor
    cores) make this so where it is; on a back end where time grows smoothly with width no
    multiple passes, and widths are not rounded (1). The finest, because every multiple of a
    passing m passes too, and a coarser one only makes the budget harder to match."""
    convs: dict[tuple[int, int], int] = {}  # (kernel, map side) -> the widest such conv
    for op in get_family(full.family).ops(full):
        if op.kind == "conv":
            convs[(op.k, op.hw)] = max(convs.get((op.k, op.hw), 0), op.cout)
    probes: dict[int, list] = {}
    for m in ROUND_CHOICES:
        rows = []
        for (k, hw), top in sorted(convs.items()):
            for frac in (0.25, 0.5, 0.75):
                # an odd multiple of m: a multiple of 2m (or 4m) would let a coarser block pass for m
                w = m * (2 * int(round((frac * top / m - 1) / 2)) + 1)
                if w - 1 < 1:
                    continue
                at = table._point("conv", w, w, hw, k, False)
                below = table._point("conv", w - 1, w - 1, hw, k, False)
                rows.append((w, at, below))
        probes[m] = rows
        wins = sum(at <= below for _, at, below in rows)
        if rows and wins >= share * len(rows):
            return AutoRound(m, probes, f"widths at multiples of {m} ran at least as fast as one channel fewer in "
                                        f"{wins} of {len(rows)} probes")
    return AutoRound(1, probes, "no multiple of 2-16 ran faster than one channel fewer here: widths not rounded")


def _target_key(full: ArchSpec) -> str:
    return (f"{full.family}{full.depth} in{full.in_channels}x{full.input_size} classes{full.num_classes} "
            f"widths{'-'.join(map(str, full.widths))} blocks{'' if full.blocks is None else ''.join('1' if b else '0' for b in full.blocks)}")


def _layer(kind: str, cin: int, cout: int, hw: int, k: int, bias: bool, batch: int):
    """One layer alone, and its input's shape: a conv at stride 1 with 'same' padding and the
    output's size, a pool over a k-times larger map."""
    from torch import nn

    if kind == "conv":
        return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), (batch, cin, hw, hw)
    if kind == "dwconv":
        return nn.Conv2d(cout, cout, k, padding=k // 2, groups=cout, bias=bias), (batch, cout, hw, hw)
    if kind == "linear":
        return nn.Linear(cin, cout), (batch, cin)
    if kind == "bn":
        return nn.BatchNorm2d(cout), (batch, cout, hw, hw)
    if kind == "relu":
        return nn.ReLU(), (batch, cout, hw, hw)
    if kind in ("maxpool", "avgpool"):
        pool = nn.MaxPool2d(k) if kind == "maxpool" else nn.AvgPool2d(k)
        return pool, (batch, cout, hw * k, hw * k)
    raise ValueError(f"unknown op kind {kind}")


__all__ = ["AutoRound", "BACKENDS", "LatencyMeasure", "LatencyTable", "Profile", "auto_round", "cache_root", "input_shape", "machine",
           "measure_spec", "profile", "time_module"]
