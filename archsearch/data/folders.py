"""Your own image folders, by a name that targets use: `archsearch data add mydata PATH --size 64`,
then `vgg11-mydata`, `slimming-resnet20-mydata`, a sweep's `target = "vgg16-mydata"`.

A folder is an ImageFolder tree, `train/<class>/*` and `val/<class>/*` (or `test/<class>/*`),
or a `.tar` (optionally compressed) of one. Registration reads the tree once to check it
(classes, the same classes in both splits) and records the name, the absolute path, the
image size and the classes in the registry, a JSON file at `$ARCHSEARCH_REGISTRY`
(default `$XDG_CONFIG_HOME/archsearch/datasets.json`, i.e. `~/.config/...`), written
atomically and validated whenever it is read (it is data, never code). Changes are a
read-modify-write under a lock (`datasets.json.lock` beside it), so `data add`s run at
the same time keep every entry.

Files are read with the limits of `reading.py` (regular files only; an image file or tar
member of at most MAX_IMAGE_BYTES, refused by its size before it is read, already when the
set is registered; at most MAX_IMAGE_PIXELS pixels, refused before decoding).

Loading decodes every image once, resizes its shorter side to the registered size and
crops the centre square (antialiased, Pillow), and caches the uint8 arrays like CIFAR's;
training then keeps the set on the device and augments there (pad-and-crop, flip), as for
CIFAR. The normalisation is the training set's own per-channel mean and std. An image
that cannot be decoded is one clear error naming the file (not skipped: a silently
smaller class would bias every comparison).

A set whose decoded arrays would pass `MAX_BYTES` at its size (or one registered with
`--stream`) is **streamed** instead (`stream.py`): only an index of its files is kept
(cached beside the arrays), and images are decoded by parallel workers while training, with
the paper's ImageNet augmentation at `size` (random resized crop; resize to size*256/224 and
centre crop to test). A streamed `.tar` must be uncompressed (random access). Its mean and
std come from a sample of 256 training images decoded at registration (which also finds an
undecodable file early, though only the sample is checked).

`nets` says which networks its arch names mean (`DatasetInfo.nets`): the paper's CIFAR
networks (3x3 stem, one linear layer) or its ImageNet ones (torchvision's ResNets, the
ImageNet VGGs); by default ImageNet's from 128 px up.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import re
import stat
import tarfile
from pathlib import Path
from typing import Annotated, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from .._io import atomic_path, file_lock, is_regular_file, make_dirs, read_bytes, read_json, too_large, write_json
from ..errors import ArchsearchError
from .. import __version__
from ..schemas import Closed, check
from . import reading
from .base import DATASETS, Dataset
from .cache import cache_dir, cached_arrays, source_key
from .cifar import IMAGE_SUFFIXES, split_class
from .reading import open_image, open_tar, read_member
from .stream import Records, StreamingDataset, StreamLoader, check_random_access, records

TEST_SPLITS = ("val", "test")
REGISTRY_ENV = "ARCHSEARCH_REGISTRY"
MAX_BYTES = 8 << 30  # decoded uint8 arrays above this are streamed from disk instead
STATS_SAMPLE = 256   # training images decoded at registration for a streamed set's mean and std
MAX_INDEX_BYTES = 4 << 30  # a cached streaming index (ImageNet's: about 0.4 GB)
LOCK_TIMEOUT = 60.0  # seconds a registry change waits for another one (which holds the lock for milliseconds)
NETS = ("cifar", "imagenet")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED = ("in",)  # ImageNet's name, kept for it


def registry_path() -> Path:
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "archsearch" / "datasets.json"


def _schema():
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
        stream: bool = False
        nets: Annotated[str, Field(pattern="^(cifar|imagenet)$")] = "cifar"
        mean: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=3, max_length=3)] | None = None
        std: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=3, max_length=3)] | None = None

    class Registry(Closed):
        version: Annotated[int, Field(ge=1, le=1)] = 1
        datasets: dict[str, FolderEntry] = Field(default_factory=dict)

    return FolderEntry, Registry


_REGISTRY_CACHE: dict[str, tuple[tuple[int, int, int], dict[str, dict]]] = {}


def read_registry() -> dict[str, dict]:
    """The registered folders by name ({} when there is no registry yet). Parsed and checked
    once per version of the file (its modification time, size and inode), as names are looked up
    often; callers get their own copy."""
    path = registry_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    key, stamp = str(path), (st.st_mtime_ns, st.st_size, st.st_ino)  # written by atomic rename: a new inode
    hit = _REGISTRY_CACHE.get(key)
    if hit is None or hit[0] != stamp:
        raw = read_json(path, "dataset registry")
        reg = check(_schema()[1], raw, f"dataset registry {path}")
        hit = (stamp, {k: v.model_dump() for k, v in reg.datasets.items()})
        _REGISTRY_CACHE[key] = hit
    return copy.deepcopy(hit[1])


def _write_registry(entries: dict[str, dict]) -> None:
    write_json(registry_path(), {"version": 1, "datasets": dict(sorted(entries.items()))})


def _registry_lock():
    """One registry change at a time (a lock on `datasets.json.lock` beside it): two `data add`s
    that each read the registry and write it back whole would otherwise drop each other's entry.
    A lock file of its own, not the folder's `.lock`: $ARCHSEARCH_REGISTRY may sit in a run
    folder that a training holds for hours."""
    path = registry_path()
    lock = path.with_name(path.name + ".lock")
    return file_lock(lock, wait=LOCK_TIMEOUT, busy=lambda: ArchsearchError(
        f"the dataset registry {path} stayed locked by another process for {LOCK_TIMEOUT:.0f} s (lock file {lock}); "
        "try again"))


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
                    if f.suffix.lower() not in IMAGE_SUFFIXES or f.name.startswith("."):
                        continue
                    try:
                        st = f.stat()
                    except OSError:  # a dangling link
                        continue
                    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device named like an image: never read
                        continue
                    if st.st_size > reading.MAX_IMAGE_BYTES:  # refused by its size, at registration already
                        raise too_large("image", str(f), st.st_size, reading.MAX_IMAGE_BYTES)
                    yield split, cls.name, str(f.relative_to(root)), \
                        (read_bytes(f, "image", reading.MAX_IMAGE_BYTES) if read else None)
        return
    try:
        # one streaming pass (seeking back into a gzip re-reads it)
        with open_tar(path, "image archive", "r|*") as tf:
            for m in tf:
                if m.isfile() and (sc := _split_of(Path(m.name).parts)):
                    if m.size > reading.MAX_IMAGE_BYTES:  # by its header, before a byte of it is inflated
                        raise too_large("image", f"{m.name} in {path}", m.size, reading.MAX_IMAGE_BYTES)
                    blob = read_member(tf, m, "image", path, reading.MAX_IMAGE_BYTES) if read else None
                    yield sc[0], sc[1], m.name, blob
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchsearchError(f"cannot read {path}: {e}") from None


def _walk_index(path: Path) -> dict[str, list[tuple[str, str, int, int]]]:
    """{split: [(class, key, offset, size)]} of every image, for streaming: keys are paths under
    the tree's root (offset -1), or an uncompressed tar's member names with their data offsets."""
    out: dict[str, list[tuple[str, str, int, int]]] = {}
    if path.is_dir():
        for split, cls, key, _ in _records(path, read=False):
            out.setdefault(split, []).append((cls, key, -1, 0))
        return out
    check_random_access(path)
    try:
        with open_tar(path, "image archive", "r:") as tf:
            for m in tf:
                if m.isfile() and (sc := _split_of(Path(m.name).parts)):
                    if m.size > reading.MAX_IMAGE_BYTES:  # found at registration, not in the middle of training
                        raise too_large("image", f"{m.name} in {path}", m.size, reading.MAX_IMAGE_BYTES)
                    out.setdefault(sc[0], []).append((sc[1], m.name, m.offset_data, m.size))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchsearchError(f"cannot read {path}: {e}") from None
    return out


def index(path: Path, classes: list[str], test_split: str) -> tuple[Records, Records]:
    """The (train, test) records of a folder or uncompressed tar, cached under the array cache
    by the source's path and mtimes (an ImageNet-sized tree takes a while to walk)."""
    root = str(_find_root(path)) if path.is_dir() else str(path)
    f = cache_dir() / f"{source_key('index', path)}.npz"
    want = {"train": "train", "test": test_split}
    try:
        if not is_regular_file(f, MAX_INDEX_BYTES):  # a FIFO would block np.load; absent: index it
            raise FileNotFoundError(f)
        with np.load(f, allow_pickle=False) as z:
            recs = tuple(Records(root, z[f"{k}_keys"], z[f"{k}_offsets"], z[f"{k}_sizes"], z[f"{k}_labels"])
                         for k in want)
        if all(len(r.keys) == len(r.offsets) == len(r.sizes) == len(r.labels) for r in recs) and \
                all(int(r.labels.max(initial=-1)) < len(classes) and int(r.labels.min(initial=0)) >= 0 for r in recs):
            return recs  # type: ignore[return-value]
    except Exception:  # noqa: BLE001  absent, truncated or foreign: index again
        pass
    walked = _walk_index(path)
    at = {c: i for i, c in enumerate(classes)}
    recs = []
    for k, split in want.items():
        items = walked.get(split, [])
        unknown = sorted({c for c, *_ in items} - set(at))
        if unknown:
            raise ArchsearchError(f"{path}: class folder {unknown[0]!r} in {split}/ is not one of the set's classes")
        recs.append(records(root, [(key, off, size, at[c]) for c, key, off, size in items]))
    make_dirs(f.parent)
    with atomic_path(f) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"{k}_{a}": v for k, r in zip(want, recs) for a, v in r.arrays().items()})
    return recs[0], recs[1]


def scan(path: str | os.PathLike) -> dict:
    """Check a folder (or .tar) without decoding: its splits, classes and image counts."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ArchsearchError(f"no such folder or file: {p}")
    if not p.is_dir() and not is_regular_file(p):  # a FIFO or a device: reading it would block or never end
        raise ArchsearchError(f"{p} is neither a folder nor a regular file (a .tar of an image folder)")
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
    try:
        with open_image(blob) as im:  # refuses more than reading.MAX_IMAGE_PIXELS before decoding
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
            left, top = (nw - size) // 2, (nh - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:  # ValueError: ImageRefused
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


def load_folder(entry: dict) -> Dataset | StreamingDataset:
    path = Path(entry["path"])
    if not path.exists():
        raise ArchsearchError(f"dataset {entry['name']} was registered at {path}, which is gone; register it again "
                              f"(archsearch data add {entry['name']} NEW_PATH --size {entry['size']}) or remove it")
    if entry.get("stream"):
        train, test = index(path, entry["classes"], entry["test_split"])
        return StreamingDataset(name=entry["name"], train=train, test=test, num_classes=len(entry["classes"]),
                                size=entry["size"], mean=tuple(entry["mean"]), std=tuple(entry["std"]),
                                source=str(path), classes=list(entry["classes"]))
    arrays, classes = cached_arrays(f"folder{entry['size']}", path, lambda: _decode_all(path, entry),
                                    len(entry["classes"]))
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


def sample_stats(train: Records, size: int, n: int = STATS_SAMPLE) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of `n` training images (a fixed sample), decoded as tests are."""
    idx = np.sort(np.random.default_rng(0).permutation(len(train))[:n])
    sub = train.take(idx)
    loader = StreamLoader(sub, 64, (0, 0, 0), (1 / 255,) * 3, train=False, size=size,
                          resize=int(round(size * 256 / 224)), workers=0)
    xs = np.concatenate([xb.permute(0, 2, 3, 1).reshape(-1, 3).numpy() for xb, _ in loader]) / 255.0
    return [float(v) for v in xs.mean(0)], [float(max(v, 1e-3)) for v in xs.std(0)]


def add(name: str, path: str | os.PathLike, size: int, *, replace: bool = False, stream: bool | None = None,
        nets: str | None = None) -> dict:
    """Register a folder. `stream` None: in memory if its arrays fit under MAX_BYTES, else
    streamed. `nets` None: ImageNet's networks from 128 px up, else CIFAR's."""
    check_new_name(name)
    if not 8 <= int(size) <= 1024:
        raise ArchsearchError(f"--size must be in [8, 1024] pixels, got {size}")
    if nets is not None and nets not in NETS:
        raise ArchsearchError(f"--nets must be one of {', '.join(NETS)}, got {nets!r}")
    entries = read_registry()
    if name in entries and not replace:
        raise ArchsearchError(f"dataset {name!r} is registered already (at {entries[name]['path']}); pass --replace "
                              "to point it elsewhere, or `archsearch data remove` it")
    info = scan(path)
    need = (info["train_images"] + info["test_images"]) * size * size * 3
    if stream is None:
        stream = need > MAX_BYTES
    elif not stream and need > MAX_BYTES:
        raise ArchsearchError(f"{info['path']}: {info['train_images'] + info['test_images']} images at {size}x{size} "
                              f"need {need / 2**30:.1f} GiB in memory (limit {MAX_BYTES / 2**30:.0f} GiB); stream it "
                              "(leave out --no-stream) or use a smaller --size")
    entry = {"name": name, "size": int(size), **info,
             "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "archsearch_version": __version__, "stream": bool(stream),
             "nets": nets or ("imagenet" if size >= 128 else "cifar")}
    if stream:
        p = Path(info["path"])
        train, _ = index(p, info["classes"], info["test_split"])
        entry["mean"], entry["std"] = sample_stats(train, int(size))
    _schema()[0].model_validate(entry)
    with _registry_lock():  # read again under the lock: another add may have written since the check above
        entries = read_registry()
        if name in entries and not replace:
            raise ArchsearchError(f"dataset {name!r} was registered by another process meanwhile (at "
                                  f"{entries[name]['path']}); pass --replace to point it here")
        entries[name] = entry
        _write_registry(entries)
    return entry


def remove(name: str) -> dict:
    def unknown(entries):
        return ArchsearchError(f"no registered dataset {name!r} (registered: {', '.join(entries) or 'none'})")

    if name not in (entries := read_registry()):  # before the lock: an unknown name creates no lock file
        raise unknown(entries)
    with _registry_lock():
        entries = read_registry()
        if name not in entries:
            raise unknown(entries)
        entry = entries.pop(name)
        _write_registry(entries)
    return entry


__all__ = ["add", "remove", "read_registry", "registry_path", "scan", "index", "load_folder", "REGISTRY_ENV"]
