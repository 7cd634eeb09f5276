"""Your own image folders, by a name that targets use: `archsearch data add mydata PATH --size 64`,
then `vgg11-mydata`, `slimming-resnet20-mydata`, a sweep's `target = "vgg16-mydata"`.

A folder is an ImageFolder tree, `train/<class>/*` and `val/<class>/*` (or `test/<class>/*`),
or a `.tar` (optionally compressed) of one. Registration reads the tree once to check it
(classes, the same classes in both splits) and records the name, the absolute path, the
image size and the classes in the registry, a JSON file at `$ARCHSEARCH_REGISTRY`
(default `$XDG_CONFIG_HOME/archsearch/datasets.json`, i.e. `~/.config/...`), written
atomically and validated whenever it is read (it is data, never code).

Loading decodes every image once, resizes its shorter side to the registered size and
crops the centre square (antialiased, Pillow), and caches the uint8 arrays like CIFAR's;
training then keeps the set on the device and augments there (pad-and-crop, flip), as for
CIFAR. The normalisation is the training set's own per-channel mean and std. An image
that cannot be decoded is one clear error naming the file (not skipped: a silently
smaller class would bias every comparison). A set whose arrays would not fit in memory
at its size is refused at registration, with its size in the message; a streaming input
pipeline for such sets is not built yet.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import tarfile
from pathlib import Path
from typing import Annotated, Iterator

import numpy as np
from pydantic import Field

from .._io import read_json, write_json
from ..errors import ArchsearchError
from . import DATASETS, Dataset
from .cache import cached_arrays, source_key
from .cifar import IMAGE_SUFFIXES, split_class

TEST_SPLITS = ("val", "test")
REGISTRY_ENV = "ARCHSEARCH_REGISTRY"
MAX_BYTES = 8 << 30  # decoded uint8 arrays above this are refused (no streaming pipeline yet)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED = ("in",)  # ImageNet's name, kept for it


def registry_path() -> Path:
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "archsearch" / "datasets.json"


def _schema():
    from ..schemas import Closed

    class FolderEntry(Closed):
        name: Annotated[str, Field(pattern=_NAME.pattern)]
        path: Annotated[str, Field(min_length=1, max_length=4096)]
        size: Annotated[int, Field(ge=8, le=1024)]
        classes: Annotated[list[Annotated[str, Field(min_length=1, max_length=255)]], Field(min_length=2,
                                                                                           max_length=100_000)]
        test_split: Annotated[str, Field(pattern="^(val|test)$")]
        train_images: Annotated[int, Field(ge=1)]
        test_images: Annotated[int, Field(ge=1)]
        added: str
        archsearch_version: str

    class Registry(Closed):
        version: Annotated[int, Field(ge=1, le=1)] = 1
        datasets: dict[str, FolderEntry] = Field(default_factory=dict)

    return FolderEntry, Registry


def read_registry() -> dict[str, dict]:
    """The registered folders by name ({} when there is no registry yet)."""
    from ..schemas import check

    path = registry_path()
    if not path.exists():
        return {}
    raw = read_json(path, "dataset registry")
    reg = check(_schema()[1], raw, f"dataset registry {path}")
    return {k: v.model_dump() for k, v in reg.datasets.items()}


def _write_registry(entries: dict[str, dict]) -> None:
    write_json(registry_path(), {"version": 1, "datasets": dict(sorted(entries.items()))})


# -- reading a tree or a tar ------------------------------------------------------------------
def _split_of(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(..., 'train', 'cat', 'x.jpg') -> ('train', 'cat'); hidden files (macOS's ._x.jpg) are not images."""
    return None if parts[-1].startswith(".") else split_class(parts, ("train",) + TEST_SPLITS)


def _find_root(path: Path) -> Path:
    """The folder holding train/ and val/ (or test/): PATH itself or its one subfolder."""
    for cand in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
        if (cand / "train").is_dir() and any((cand / s).is_dir() for s in TEST_SPLITS):
            return cand
    raise ArchsearchError(f"{path} is not an image folder: it needs train/<class>/ and val/<class>/ (or "
                          "test/<class>/) folders of images, itself or in one subfolder")


def _records(path: Path, read: bool) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(split, class, file name or member path, bytes if `read`) of every image under `path`."""
    if path.is_dir():
        root = _find_root(path)
        for split in ("train",) + TEST_SPLITS:
            d = root / split
            if not d.is_dir():
                continue
            for cls in sorted(p for p in d.iterdir() if p.is_dir()):
                for f in sorted(cls.iterdir()):
                    if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                        yield split, cls.name, str(f.relative_to(root)), (f.read_bytes() if read else None)
        return
    try:
        with tarfile.open(path, "r|*") as tf:  # one streaming pass (seeking back into a gzip re-reads it)
            for m in tf:
                if m.isfile() and (sc := _split_of(Path(m.name).parts)):
                    yield sc[0], sc[1], m.name, (tf.extractfile(m).read() if read else None)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchsearchError(f"cannot read {path}: {e}") from None


def scan(path: str | os.PathLike) -> dict:
    """Check a folder (or .tar) without decoding: its splits, classes and image counts."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ArchsearchError(f"no such folder or file: {p}")
    counts: dict[str, dict[str, int]] = {}
    for split, cls, _, _ in _records(p, read=False):
        counts.setdefault(split, {}).setdefault(cls, 0)
        counts[split][cls] += 1
    if "train" not in counts:
        raise ArchsearchError(f"{p} has no images under train/<class>/ (image files: {', '.join(IMAGE_SUFFIXES)})")
    tests = [s for s in TEST_SPLITS if s in counts]
    if not tests:
        raise ArchsearchError(f"{p} has no images under val/<class>/ or test/<class>/")
    if len(tests) > 1:
        raise ArchsearchError(f"{p} has both val/ and test/ images: keep one held-out split")
    test = tests[0]
    train_cls, test_cls = sorted(counts["train"]), sorted(counts[test])
    if len(train_cls) < 2:
        raise ArchsearchError(f"{p} has {len(train_cls)} class folder(s) with images under train/: at least 2 needed")
    if train_cls != test_cls:
        only_train = sorted(set(train_cls) - set(test_cls))
        only_test = sorted(set(test_cls) - set(train_cls))
        raise ArchsearchError(f"{p}: train/ and {test}/ have different classes (only in train/: "
                              f"{', '.join(only_train[:5]) or '-'}; only in {test}/: {', '.join(only_test[:5]) or '-'})")
    return {"path": str(p.resolve()), "classes": train_cls, "test_split": test,
            "train_images": sum(counts["train"].values()), "test_images": sum(counts[test].values())}


def _decode_resized(blob: bytes, size: int, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
            left, top = (nw - size) // 2, (nh - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ArchsearchError(f"cannot decode image {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                              "remove or replace it") from None


def _decode_all(path: Path, entry: dict) -> tuple[dict[str, np.ndarray], list[str]]:
    index = {c: i for i, c in enumerate(entry["classes"])}
    size, test = entry["size"], entry["test_split"]
    xs: dict[str, list] = {"train": [], test: []}
    ys: dict[str, list] = {"train": [], test: []}
    for split, cls, where, blob in _records(path, read=True):
        if split not in xs:
            continue
        if cls not in index:
            raise ArchsearchError(f"{path}: class folder {cls!r} appeared since the set was registered; "
                                  f"register it again: archsearch data add {entry['name']} {path} --size {size}")
        xs[split].append(_decode_resized(blob, size, f"{path}/{where}" if path.is_dir() else f"{where} in {path}"))
        ys[split].append(index[cls])
    arrays = {"x_train": np.stack(xs["train"]), "y_train": np.asarray(ys["train"], dtype=np.int64),
              "x_test": np.stack(xs[test]), "y_test": np.asarray(ys[test], dtype=np.int64)}
    return arrays, list(entry["classes"])


def load_folder(entry: dict) -> Dataset:
    path = Path(entry["path"])
    if not path.exists():
        raise ArchsearchError(f"dataset {entry['name']} was registered at {path}, which is gone; register it again "
                              f"(archsearch data add {entry['name']} NEW_PATH --size {entry['size']}) or remove it")
    key = source_key(f"folder{entry['size']}", path)
    arrays, classes = cached_arrays(key, lambda: _decode_all(path, entry), len(entry["classes"]))
    x = arrays["x_train"]
    sample = x[:: max(1, len(x) // 4096)].reshape(-1, 3).astype(np.float64) / 255.0
    mean = tuple(float(v) for v in sample.mean(0))
    std = tuple(float(max(v, 1e-3)) for v in sample.std(0))
    return Dataset(name=entry["name"], x_train=x, y_train=np.asarray(arrays["y_train"]), x_test=arrays["x_test"],
                   y_test=np.asarray(arrays["y_test"]), num_classes=len(classes), mean=mean, std=std, flip=True,
                   source=f"{path} at {entry['size']}x{entry['size']}", classes=list(classes))


# -- the registry's commands ----------------------------------------------------------------------
def check_new_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ArchsearchError(f"dataset name {name!r}: use 1-32 lowercase letters, digits and '_', starting with a "
                              "letter (no '-' or '.': it becomes the DATA part of names like vgg16-NAME)")
    if name in DATASETS or name in RESERVED:
        raise ArchsearchError(f"dataset name {name!r} is built in; choose another")


def add(name: str, path: str | os.PathLike, size: int, *, replace: bool = False) -> dict:
    from .. import __version__

    check_new_name(name)
    if not 8 <= int(size) <= 1024:
        raise ArchsearchError(f"--size must be in [8, 1024] pixels, got {size}")
    entries = read_registry()
    if name in entries and not replace:
        raise ArchsearchError(f"dataset {name!r} is registered already (at {entries[name]['path']}); pass --replace "
                              "to point it elsewhere, or `archsearch data remove` it")
    info = scan(path)
    need = (info["train_images"] + info["test_images"]) * size * size * 3
    if need > MAX_BYTES:
        raise ArchsearchError(f"{info['path']}: {info['train_images'] + info['test_images']} images at {size}x{size} "
                              f"need {need / 2**30:.1f} GiB in memory (limit {MAX_BYTES / 2**30:.0f} GiB); use a "
                              "smaller --size (a streaming input pipeline for large sets is not built yet)")
    entry = {"name": name, "size": int(size), **info,
             "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "archsearch_version": __version__}
    _schema()[0].model_validate(entry)
    entries[name] = entry
    _write_registry(entries)
    return entry


def remove(name: str) -> dict:
    entries = read_registry()
    if name not in entries:
        raise ArchsearchError(f"no registered dataset {name!r} (registered: {', '.join(entries) or 'none'})")
    entry = entries.pop(name)
    _write_registry(entries)
    return entry


__all__ = ["add", "remove", "read_registry", "registry_path", "scan", "load_folder", "REGISTRY_ENV"]
