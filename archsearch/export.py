"""Export any archsearch network for use without archsearch.

`archsearch export RUN_DIR --out DIR` (or `--spec FILE [--weights FILE]`) writes, into DIR:
- `model.pt2`: a `torch.export` program (`torch.export.load(path).module()(x)`), batch size
  dynamic;
- `model.ts`: TorchScript (`torch.jit.load(path)(x)`), traced;
- `model.onnx`: ONNX through PyTorch's exporter, batch size dynamic (needs the `onnx` extra:
  `pip install 'archsearch[onnx]'`: onnx, onnxscript, and onnxruntime for the check);
- `spec.json` and `model.pt` (the state dict, loadable with `weights_only=True`): the network as
  archsearch builds it, to train or fine-tune further;
- `export.json`: what each file is, how it was checked, what the network reads (input size,
  mean and std, class names, when the run recorded them), and how it was produced.

Every exported file is loaded back and run on two random batches of different sizes; its
outputs must equal the original module's (eval mode) within `atol` + `rtol` x |output|, or
the export fails in one line and DIR is left as it was. A sparse network's masks are folded
into its weights (the zeros stay zeros), so the exported modules need nothing of archsearch.
DIR is written whole or not at all: files go into a fresh folder beside it that replaces it
at the end (an existing DIR is replaced only if it is an earlier export).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import __version__
from ._io import _UMASK, torch_save, write_json
from .archs import build_with
from .errors import ArchsearchError
from .spec import ArchSpec

FORMATS = ("export", "torchscript", "onnx")
FILES = {"export": "model.pt2", "torchscript": "model.ts", "onnx": "model.onnx"}
MANIFEST = "export.json"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def default_formats() -> list[str]:
    return ["export", "torchscript"] + (["onnx"] if onnx_available() else [])


def parse_formats(text: str | None) -> list[str]:
    if not text:
        return default_formats()
    out = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ArchsearchError(f"unknown export format {(bad or [text])[0]!r}; known: {', '.join(FORMATS)}")
    if "onnx" in out and not onnx_available():
        raise ArchsearchError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'archsearch[onnx]'")
    return list(dict.fromkeys(out))


def deployable(spec: ArchSpec, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """The network in eval mode with `state` loaded and any masks folded into the weights
    (the `weight_mask` buffers removed): a plain PyTorch module."""
    model = build_with(spec, state)
    with torch.no_grad():
        for m in model.modules():
            if "weight_mask" in getattr(m, "_buffers", {}):
                m.weight.mul_(m._buffers.pop("weight_mask").to(m.weight.dtype))
    return model.eval()


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=1 << 16)


def _save_export(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(ep, str(path))


def _run_export(path: Path, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    mod = torch.export.load(str(path)).module()
    return [mod(x) for x in xs]


def _save_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice: the format is still what many runtimes read
        torch.jit.save(torch.jit.trace(model, x, check_trace=False), str(path))


def _run_torchscript(path: Path, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = torch.jit.load(str(path), map_location="cpu")
    return [mod(x) for x in xs]


def _save_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    import contextlib
    import io
    import logging

    quiet = io.StringIO()
    level = logging.getLogger("torch.onnx").level
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: _batch_dim()},), external_data=False)
    finally:
        logging.getLogger("torch.onnx").setLevel(level)


def _run_onnx(path: Path, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [torch.from_numpy(sess.run(None, {name: x.numpy()})[0]) for x in xs]


_EXPORTERS: dict[str, tuple[Callable, Callable]] = {
    "export": (_save_export, _run_export),
    "torchscript": (_save_torchscript, _run_torchscript),
    "onnx": (_save_onnx, _run_onnx),
}

_HOW = {
    "export": "torch.export program: torch.export.load(path).module()(x)",
    "torchscript": "TorchScript (traced): torch.jit.load(path)(x)",
    "onnx": "ONNX: onnxruntime.InferenceSession(path).run(None, {'input': x})",
}


def _target(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (out / MANIFEST).is_file()):
        raise ArchsearchError(f"{out} exists and is not an archsearch export; choose another --out")


def export(spec: ArchSpec, state: dict[str, torch.Tensor] | None, out: str | Path, formats: list[str] | None = None,
           *, atol: float = 1e-4, rtol: float = 1e-4, batch: int = 2, seed: int = 0,
           about: dict | None = None) -> dict:
    """Write DIR (module docstring) and return its manifest. `about`: what the network reads and
    how it was produced (`preprocess`, `source`, `command`, ...), copied into the manifest."""
    out = Path(out)
    formats = default_formats() if formats is None else formats
    _target(out)
    model = deployable(spec, state)
    g = torch.Generator().manual_seed(seed)
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    xs = [torch.randn(batch, *shape, generator=g), torch.randn(batch + 1, *shape, generator=g)]
    with torch.no_grad():
        refs = [model(x) for x in xs]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp's folder is private; the export is an ordinary folder
    try:
        manifest: dict = {
            "archsearch_export": 1, "arch": spec.name, "family": spec.family, "num_classes": spec.num_classes,
            "input": {"shape": ["batch", *shape], "dtype": "float32"},
            "formats": {}, "spec": "spec.json", "weights": "model.pt" if state is not None else None,
            "trained": state is not None,
            "check": {"batches": [int(x.shape[0]) for x in xs], "atol": atol, "rtol": rtol, "seed": seed,
                      "inputs": "standard normal"},
            "torch_version": torch.__version__, "archsearch_version": __version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(about or {}),
        }
        for f in formats:
            save, run = _EXPORTERS[f]
            path = tmp / FILES[f]
            try:
                save(model, xs[0], path)
                with torch.no_grad():
                    got = run(path, xs)
            except ArchsearchError:
                raise
            except Exception as e:  # noqa: BLE001  an exporter's failure is one line naming the format
                msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:240]
                raise ArchsearchError(f"{f} export of {spec.name} failed: {type(e).__name__}: {msg}") from None
            shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in zip(refs, got) if a.shape != b.shape]
            if shapes or len(got) != len(refs):  # broadcasting would let a wrong shape pass the comparison
                raise ArchsearchError(f"{f} export of {spec.name}: its outputs have other shapes than the original "
                                      f"module's ({shapes[0][1] if shapes else len(got)} for "
                                      f"{shapes[0][0] if shapes else len(refs)}); nothing was written")
            diff = max(float((a - b.to(a.dtype)).abs().max()) for a, b in zip(refs, got))
            ok = all(torch.allclose(a, b.to(a.dtype), atol=atol, rtol=rtol) for a, b in zip(refs, got))
            if not ok:
                raise ArchsearchError(f"{f} export of {spec.name}: its outputs differ from the original module's by "
                                      f"up to {diff:.3g} (atol {atol:g}, rtol {rtol:g}); nothing was written")
            manifest["formats"][f] = {"file": FILES[f], "how": _HOW[f], "max_abs_diff": diff, "ok": True,
                                      "bytes": path.stat().st_size}
        spec.save(tmp / "spec.json")
        if state is not None:
            torch_save(state, tmp / "model.pt")
        write_json(tmp / MANIFEST, manifest)
        _target(out)  # still ours to replace
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["export", "deployable", "FORMATS", "FILES", "MANIFEST", "parse_formats", "default_formats",
           "onnx_available"]
