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
at the end. An existing DIR is replaced only if it is an earlier export (its manifest names
every file in it, and nothing else is there); DIR as a link to a folder is kept, and the
folder it points at is replaced under the same rule. Every check of DIR comes before any work.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import __version__
from ._io import _UMASK, MiB, os_error, read_json, torch_save, write_json
from .archs import build_with
from .errors import ArchsearchError, clip
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
    import onnxruntime as ort  # optional dependency: the `onnx` extra

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


def _not_ours(folder: Path) -> str | None:
    """Why `folder` is not an export that archsearch wrote (None: it is one). One file name is
    not enough: the folder must hold our manifest, and only the files that manifest names, so
    replacing it loses nothing of anyone else's."""
    if not (folder / MANIFEST).exists():
        return f"no {MANIFEST}"
    try:
        man = read_json(folder / MANIFEST, "export manifest", limit=MiB)
    except ArchsearchError as e:
        return str(e)
    named = {MANIFEST}
    fmts = man.get("formats") if isinstance(man, dict) else None
    v = man.get("archsearch_export") if isinstance(man, dict) else None
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1 and isinstance(fmts, dict)
            and man.get("spec") == "spec.json" and man.get("weights") in ("model.pt", None)
            and all(f in FILES and isinstance(r, dict) and r.get("file") == FILES[f] for f, r in fmts.items())):
        return f"its {MANIFEST} is not a manifest archsearch wrote"
    named |= {"spec.json", "model.pt"} | {FILES[f] for f in fmts}
    try:
        with os.scandir(folder) as it:
            extra = sorted(e.name for e in it if e.name not in named or not e.is_file(follow_symlinks=False))
    except OSError as e:
        return f"cannot list it: {e.strerror or e}"
    if extra:
        return f"it holds {extra[0]!r}, which {MANIFEST} does not name" + (f", and {len(extra) - 1} more"
                                                                             if len(extra) > 1 else "")
    return None


def destination(out: str | Path, run_dir: str | Path | None = None) -> Path:
    """The folder that `export` will replace with `out`'s new contents, or one ArchsearchError
    line naming `--out`. A link is followed (the link stays; the folder it names is replaced),
    and `out` must be nothing of the user's: not the current folder or one holding it, not the
    run folder, not a file, not a folder that is not an earlier export; its parent writable."""
    out = Path(out)
    where = f"--out {out}"
    if os.path.islink(out) and not os.path.exists(out):
        raise ArchsearchError(f"{where} is a link to {os.readlink(out)}, which does not exist; "
                              "remove the link or choose another --out")
    real = Path(os.path.realpath(out))
    if real.parent == real:
        raise ArchsearchError(f"{where} is the root folder; choose a new folder for the export")
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder was removed: nothing to protect there
        cwd = None
    if cwd is not None and (real == cwd or real in cwd.parents):
        raise ArchsearchError(f"{where} is the current folder or holds it; choose a new folder for the export")
    if run_dir is not None:
        rd = Path(os.path.realpath(run_dir))
        if real == rd or real in rd.parents:
            raise ArchsearchError(f"{where} is the run folder {run_dir} or holds it; choose another --out "
                                  "(the default is RUN_DIR/export)")
    if os.path.exists(real):  # (os.path's tests never raise: a folder we may not search is "not there")
        if not os.path.isdir(real):
            raise ArchsearchError(f"{where} exists and is not a folder; choose another --out")
        why = _not_ours(real)
        if why:
            raise ArchsearchError(f"{where} exists and is not an archsearch export ({why}); nothing in it was "
                                  "changed: choose another --out")
    up = real.parent
    while not os.path.lexists(up) and up.parent != up:
        up = up.parent
    if not os.path.isdir(up):
        raise ArchsearchError(f"{where}: {up} is not a folder")
    if not os.access(up, os.W_OK | os.X_OK):
        raise ArchsearchError(f"{where}: cannot write in {up} (permission denied)")
    return real


def _first_missing(folder: Path) -> Path | None:
    """The topmost folder on the way to `folder` that does not exist yet (None: all exist)."""
    top = None
    while not os.path.lexists(folder):
        top, folder = folder, folder.parent
    return top


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to `top`, the ones an export created, while empty
    (whatever another process put there meanwhile stays)."""
    for d in (folder, *folder.parents):
        try:
            d.rmdir()
        except OSError:
            return
        if d == top:
            return


def _replace(tmp: Path, real: Path, out: Path) -> None:
    """Put the finished export `tmp` at `real`, moving an earlier export out of the way first
    (into a fresh folder, so no file of the user's that happens to be called .NAME.old is hit)."""
    trash = None
    try:
        if os.path.exists(real):
            trash = Path(tempfile.mkdtemp(prefix=f".{real.name}.old.", dir=real.parent))
            os.rename(real, trash / real.name)
        os.rename(tmp, real)
    except OSError as e:
        if trash is not None and os.path.exists(trash / real.name) and not os.path.exists(real):
            os.rename(trash / real.name, real)  # put the earlier export back
        raise os_error(e, out, "cannot write --out") from None
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def export(spec: ArchSpec, state: dict[str, torch.Tensor] | None, out: str | Path, formats: list[str] | None = None,
           *, atol: float = 1e-4, rtol: float = 1e-4, batch: int = 2, seed: int = 0,
           about: dict | None = None, run_dir: str | Path | None = None) -> dict:
    """Write DIR (module docstring) and return its manifest. `about`: what the network reads and
    how it was produced (`preprocess`, `source`, `command`, ...), copied into the manifest;
    `run_dir`: the run exported, which DIR must not be or hold."""
    out = Path(out)
    formats = default_formats() if formats is None else formats
    real = destination(out, run_dir)
    model = deployable(spec, state)
    g = torch.Generator().manual_seed(seed)
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    xs = [torch.randn(batch, *shape, generator=g), torch.randn(batch + 1, *shape, generator=g)]
    with torch.no_grad():
        refs = [model(x) for x in xs]
    made = _first_missing(real.parent)  # removed again if the export fails
    tmp = None
    try:
        tmp = _fresh_folder(real, out)
        manifest = _manifest(spec, state is not None, shape, xs, atol=atol, rtol=rtol, seed=seed, about=about)
        for f in formats:
            manifest["formats"][f] = _export_one(f, spec.name, model, xs, refs, tmp / FILES[f], atol=atol, rtol=rtol)
        spec.save(tmp / "spec.json")
        if state is not None:
            torch_save(state, tmp / "model.pt")
        write_json(tmp / MANIFEST, manifest)
        if destination(out, run_dir) != real:  # still ours to replace, and still the same folder
            raise ArchsearchError(f"--out {out} changed while the export ran; nothing was written")
        _replace(tmp, real, out)
        made = None
        return manifest
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            _remove_empty(real.parent, made)


def _fresh_folder(real: Path, out: Path) -> Path:
    """A new folder beside DIR to write the export into (it replaces DIR at the end)."""
    tmp = None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", dir=real.parent))
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp's folder is private; the export is an ordinary folder
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(e, out, "cannot write --out") from None
    return tmp


def _manifest(spec: ArchSpec, trained: bool, shape: tuple[int, ...], xs: list[torch.Tensor], *, atol: float,
              rtol: float, seed: int, about: dict | None) -> dict:
    """export.json before its formats are filled in: the network, its input and the check."""
    return {
        "archsearch_export": 1, "arch": spec.name, "family": spec.family, "num_classes": spec.num_classes,
        "input": {"shape": ["batch", *shape], "dtype": "float32"},
        "formats": {}, "spec": "spec.json", "weights": "model.pt" if trained else None,
        "trained": trained,
        "check": {"batches": [int(x.shape[0]) for x in xs], "atol": atol, "rtol": rtol, "seed": seed,
                  "inputs": "standard normal"},
        "torch_version": torch.__version__, "archsearch_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(about or {}),
    }


def _export_one(f: str, name: str, model: nn.Module, xs: list[torch.Tensor], refs: list[torch.Tensor], path: Path,
                *, atol: float, rtol: float) -> dict:
    """Write `model` in format `f` to `path`, load it back and check its outputs on `xs`
    against `refs` (the original module's); its manifest entry, or one line saying what failed."""
    save, run = _EXPORTERS[f]
    try:
        save(model, xs[0], path)
        with torch.no_grad():
            got = run(path, xs)
    except ArchsearchError:
        raise
    except Exception as e:  # noqa: BLE001  an exporter's failure is one line naming the format
        msg = clip(e, 240) or type(e).__name__
        raise ArchsearchError(f"{f} export of {name} failed: {type(e).__name__}: {msg}") from None
    shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in zip(refs, got) if a.shape != b.shape]
    if shapes or len(got) != len(refs):  # broadcasting would let a wrong shape pass the comparison
        raise ArchsearchError(f"{f} export of {name}: its outputs have other shapes than the original "
                              f"module's ({shapes[0][1] if shapes else len(got)} for "
                              f"{shapes[0][0] if shapes else len(refs)}); nothing was written")
    diff = max(float((a - b.to(a.dtype)).abs().max()) for a, b in zip(refs, got))
    ok = all(torch.allclose(a, b.to(a.dtype), atol=atol, rtol=rtol) for a, b in zip(refs, got))
    if not ok:
        raise ArchsearchError(f"{f} export of {name}: its outputs differ from the original module's by "
                              f"up to {diff:.3g} (atol {atol:g}, rtol {rtol:g}); nothing was written")
    return {"file": FILES[f], "how": _HOW[f], "max_abs_diff": diff, "ok": True, "bytes": path.stat().st_size}


__all__ = ["export", "destination", "deployable", "FORMATS", "FILES", "MANIFEST", "parse_formats", "default_formats",
           "onnx_available"]
