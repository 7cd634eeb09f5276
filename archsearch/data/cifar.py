"""CIFAR-10 and CIFAR-100 from whatever copy is at hand, decoded once into uint8 arrays.

Looked for under `data_dir`, in this order:
1. torchvision's own files: `cifar-10-batches-py/` or `cifar-100-python/` (the pickles),
2. an ImageFolder tree: `cifar10/{train,test}/<class>/*.{png,jpg}` (or `train/`, `test/`
   directly in `data_dir`),
3. a `.tar.gz` of either of those: `cifar10.tar.gz`, `cifar-10-python.tar.gz`, ...
4. torchvision's download into `data_dir`, where there is a network.
Class indices follow sorted class-folder names, which equals torchvision's order.

Every file is read with a size limit (`reading.py`: MAX_CIFAR_IMAGE_BYTES, 1 MiB, per image,
MAX_PICKLE_BYTES per pickle, checked before reading, by `stat` or the tar header; an archive's
own headers under MAX_TAR_HEADER_BYTES), and an image whose header is not 32x32 is refused,
naming it, as it is read, before anything is decoded. Of an archive's `cifar-10-batches-py/`
(`cifar-100-python/`), only the pickles the format names are read; other members are passed over.
"""

from __future__ import annotations

import io
import pickle
import socket
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from .._io import is_regular_file, read_bytes
from ..errors import ArchsearchError
from . import reading
from .base import CIFAR_MEAN, CIFAR_STD, Dataset, register_dataset
from .cache import cached_arrays
from .reading import image_pixels, open_image, open_tar, read_member

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # also the suffixes of folders.py


@dataclass(frozen=True)
class CifarFormat:
    name: str             # c10 | c100
    title: str
    num_classes: int
    pickle_dir: str       # torchvision's folder of pickles
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes      # b"labels" or b"fine_labels"
    names_key: bytes      # key of the class names in the meta pickle
    tree_names: tuple[str, ...]
    archive_names: tuple[str, ...]
    tv_class: str         # torchvision.datasets class for download


C10 = CifarFormat(
    "c10", "CIFAR-10", 10, "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
    b"labels", b"label_names", ("cifar10", "cifar-10", "CIFAR10", "CIFAR-10"),
    ("cifar10.tar.gz", "cifar10.tgz", "cifar-10.tar.gz", "cifar-10-python.tar.gz"), "CIFAR10",
)
C100 = CifarFormat(
    "c100", "CIFAR-100", 100, "cifar-100-python", ("train",), ("test",), "meta",
    b"fine_labels", b"fine_label_names", ("cifar100", "cifar-100", "CIFAR100", "CIFAR-100"),
    ("cifar100.tar.gz", "cifar100.tgz", "cifar-100.tar.gz", "cifar-100-python.tar.gz"), "CIFAR100",
)


# -- 1. torchvision's pickles -----------------------------------------------------------
# What the CIFAR "python version" files hold: dicts, lists, bytes, ints and numpy arrays.
# A pickle can name any callable; this reader allows only the ones needed to rebuild a
# numpy array, so a crafted file in a data folder is refused instead of run.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: CIFAR files hold only arrays and lists")


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        d = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001  any unpickling failure means a damaged (or hostile) file
        raise ArchsearchError(f"cannot read CIFAR pickle {where}: {e}") from None
    if not isinstance(d, dict):
        raise ArchsearchError(f"CIFAR pickle {where} does not hold a dict")
    return d


def _pickle_arrays(fmt: CifarFormat, read) -> dict[str, np.ndarray]:
    """`read(name)` returns the bytes of the pickle `name` and where it is (for messages)."""
    out: dict[str, np.ndarray] = {}
    for split, files in (("train", fmt.train_files), ("test", fmt.test_files)):
        xs, ys = [], []
        for name in files:
            blob, where = read(name)
            d = _unpickle(blob, where)
            del blob
            try:
                xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                ys.append(np.asarray(d[fmt.label_key], dtype=np.int64).reshape(-1))
            except (KeyError, ValueError, TypeError, OverflowError) as e:
                raise ArchsearchError(f"CIFAR pickle {where} is not in {fmt.title} format: {e}") from None
            if len(xs[-1]) != len(ys[-1]):
                raise ArchsearchError(f"CIFAR pickle {where} has {len(xs[-1])} images but {len(ys[-1])} labels")
        out[f"x_{split}"] = np.ascontiguousarray(np.concatenate(xs))
        out[f"y_{split}"] = np.concatenate(ys)
    return out


def _pickle_classes(fmt: CifarFormat, read) -> list[str]:
    try:
        return [c.decode() for c in _unpickle(*read(fmt.meta_file))[fmt.names_key]]
    except (OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return []  # the class names are a nicety; indices are what training needs


# -- 2./3. image trees, on disk or in a tar.gz -------------------------------------------
def _decode(blobs: list[bytes]) -> np.ndarray:
    """Encoded images -> uint8 (N, H, W, 3). torchvision's libjpeg-turbo batch decode is
    about 4x faster than Pillow here (60,000 CIFAR JPEGs: ~2 s against ~8 s); torchvision
    0.29 deprecates it in favour of TorchCodec, so Pillow stays as the fallback."""
    try:
        return _decode_torchvision(blobs)
    except ImportError:
        return _decode_pillow(blobs)


def _decode_torchvision(blobs: list[bytes]) -> np.ndarray:
    # torchvision 0.29 warns on every call that torchvision.io decoding is deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_torchvision_quiet(blobs)


def _decode_torchvision_quiet(blobs: list[bytes]) -> np.ndarray:
    # start-up cost: torchvision takes 2.4 s (measured), needed only for decoding
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    ts = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    jpeg = [i for i, b in enumerate(blobs) if b[:2] == b"\xff\xd8"]
    out: list = [None] * len(ts)
    try:
        if jpeg:
            for i, img in zip(jpeg, decode_jpeg([ts[i] for i in jpeg], mode=ImageReadMode.RGB)):
                out[i] = img
        for i, t in enumerate(ts):
            if out[i] is None:
                out[i] = decode_image(t, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise ArchsearchError(f"cannot decode an image: {str(e).splitlines()[0]}") from None
    if len({tuple(o.shape) for o in out}) != 1:
        raise ArchsearchError(f"images differ in size: {sorted({tuple(o.shape[1:]) for o in out})}")
    return torch.stack(out).permute(0, 2, 3, 1).contiguous().numpy()


def _decode_pillow(blobs: list[bytes]) -> np.ndarray:
    out = []
    for b in blobs:
        try:
            with open_image(b) as im:
                out.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError) as e:  # ValueError: reading.ImageRefused
            raise ArchsearchError(f"cannot decode an image: {e}") from None
    if len({o.shape for o in out}) != 1:
        raise ArchsearchError(f"images differ in size: {sorted({o.shape[:2] for o in out})}")
    return np.stack(out)


def _check_size(fmt: CifarFormat, blob: bytes, where: str) -> bytes:
    """An image 32x32 by its header, checked as it is read (before the next is read, and any
    decoded): a file declaring more pixels (a decompression bomb among them) is named and
    refused without allocating them."""
    try:
        w, h = image_pixels(blob)
    except (OSError, ValueError, SyntaxError) as e:  # not an image, or more pixels than reading.MAX_IMAGE_PIXELS
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArchsearchError(f"cannot decode image {where}: {why}") from None
    if (w, h) != (32, 32):
        raise ArchsearchError(f"{fmt.title} images must be 32x32, {where} is {w}x{h}")
    return blob


def _tree_arrays(fmt: CifarFormat, records: list[tuple[str, str, str, bytes]]
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    """records: (split, class, file name, bytes), each image's checked by `_check_size`."""
    classes = sorted({c for _, c, *_ in records})
    if len(classes) != fmt.num_classes:
        raise ArchsearchError(f"{fmt.title} image tree has {len(classes)} class folders, expected {fmt.num_classes}")
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        recs = sorted((r for r in records if r[0] == split), key=lambda r: (r[1], r[2]))
        if not recs:
            raise ArchsearchError(f"{fmt.title} image tree has no {split}/ images")
        x = _decode([r[3] for r in recs])
        if x.shape[1:] != (32, 32, 3):
            raise ArchsearchError(f"{fmt.title} images must be 32x32 RGB, found {x.shape[1:]}")
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.array([index[r[1]] for r in recs], dtype=np.int64)
    return out, classes


def split_class(parts: tuple[str, ...], splits: tuple[str, ...] = ("train", "test")) -> tuple[str, str] | None:
    """('cifar10','train','cat','0001.jpg') -> ('train','cat'): an image file under SPLIT/CLASS/
    (a member path of a tar); None for anything else. Also the reader of folders.py."""
    if len(parts) >= 3 and parts[-3] in splits and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2]
    return None


def _find_tree(fmt: CifarFormat, root: Path) -> Path | None:
    for cand in [root / n for n in fmt.tree_names] + [root]:
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            n = sum(1 for p in (cand / "train").iterdir() if p.is_dir())
            if n == fmt.num_classes:
                return cand
    return None


def _read_tree(fmt: CifarFormat, tree: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    records = []
    for split in ("train", "test"):
        for cls_dir in sorted(p for p in (tree / split).iterdir() if p.is_dir()):
            for f in sorted(cls_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES and is_regular_file(f):  # never a FIFO or a device
                    blob = read_bytes(f, "CIFAR image", reading.MAX_CIFAR_IMAGE_BYTES)
                    records.append((split, cls_dir.name, f.name, _check_size(fmt, blob, str(f))))
    return _tree_arrays(fmt, records)


def _read_tar(fmt: CifarFormat, path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    # one streaming pass: seeking back into a gzip stream would decompress it again
    pickles: dict[str, tuple[bytes, str]] = {}
    wanted = set(fmt.train_files + fmt.test_files + (fmt.meta_file,))  # torchvision's; its readme.html is not
    records = []
    try:
        with open_tar(path, "archive", "r|*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                p = Path(m.name)
                if p.parent.name == fmt.pickle_dir:  # each checked by its header's size before it is read
                    if p.name in wanted:  # any other member there is passed over unread
                        blob = read_member(tf, m, "CIFAR pickle", path, reading.MAX_PICKLE_BYTES)
                        pickles[p.name] = blob, f"{m.name} in {path}"
                elif sc := split_class(p.parts):
                    blob = read_member(tf, m, "CIFAR image", path, reading.MAX_CIFAR_IMAGE_BYTES)
                    records.append((sc[0], sc[1], p.name, _check_size(fmt, blob, f"{m.name} in {path}")))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchsearchError(f"cannot read {path}: {e}") from None
    if all(n in pickles for n in fmt.train_files + fmt.test_files):  # torchvision's own archive
        def read(n):
            return pickles.pop(n)  # each pickle's bytes are dropped once its arrays are out
        return _pickle_arrays(fmt, read), (_pickle_classes(fmt, read) if fmt.meta_file in pickles else [])
    if not records:
        raise ArchsearchError(f"{path} holds neither {fmt.pickle_dir}/ nor a train/<class>/ test/<class>/ image tree")
    return _tree_arrays(fmt, records)


# -- the loader ---------------------------------------------------------------------------
def _missing(fmt: CifarFormat, root: Path, why: str) -> ArchsearchError:
    n = fmt.name[1:]
    return ArchsearchError(
        f"{fmt.title} not found in {root}: pass --data-dir DIR where DIR holds {fmt.pickle_dir}/ "
        f"(torchvision's files), or cifar{n}/train/<class>/ and cifar{n}/test/<class>/ "
        f"(an ImageFolder tree), or cifar{n}.tar.gz (a .tar.gz of that tree); {why}"
    )


def _download(fmt: CifarFormat, root: Path) -> str:
    """torchvision's download; returns '' on success or why it failed."""
    try:
        import torchvision.datasets as tvd  # start-up cost: torchvision takes 2.4 s (measured)
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        return f"torchvision is not importable for the download ({e})"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(tvd, fmt.tv_class)(root=str(root), train=True, download=True)
        return ""
    except Exception as e:  # noqa: BLE001  no network, a proxy, a read-only dir: all mean "not here"
        return f"the download into it failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    finally:
        socket.setdefaulttimeout(old)


def _locate(fmt: CifarFormat, root: Path):
    """The first readable copy under `root`: (cache kind, its path, decoder) or None."""
    pickles = root / fmt.pickle_dir if (root / fmt.pickle_dir).is_dir() else (root if root.name == fmt.pickle_dir else None)
    if pickles is not None and all((pickles / n).exists() for n in fmt.train_files + fmt.test_files):
        def read(n):
            # never a FIFO; at most MAX_PICKLE_BYTES
            return read_bytes(pickles / n, "CIFAR pickle", reading.MAX_PICKLE_BYTES), str(pickles / n)
        return fmt.name + "-pickles", pickles, lambda: (
            _pickle_arrays(fmt, read), _pickle_classes(fmt, read) if (pickles / fmt.meta_file).exists() else [])
    tree = _find_tree(fmt, root) if root.is_dir() else None
    if tree is not None:
        return fmt.name + "-tree", tree, lambda: _read_tree(fmt, tree)
    archives = [root] if root.is_file() else [root / n for n in fmt.archive_names if (root / n).is_file()]
    if archives:
        return fmt.name + "-tar", archives[0], lambda: _read_tar(fmt, archives[0])
    return None


def load_cifar(fmt: CifarFormat, root: Path, download: bool = True) -> Dataset:
    root = Path(root)
    found = _locate(fmt, root)
    if found is None:
        if not download:
            raise _missing(fmt, root, "no download was tried (--no-download)")
        why = _download(fmt, root)
        if why:
            raise _missing(fmt, root, why)
        found = _locate(fmt, root)
        if found is None:
            raise _missing(fmt, root, "the download finished but left no readable files")
    kind, source, decode = found
    arrays, classes = cached_arrays(kind, source, decode, fmt.num_classes)
    return Dataset(
        name=fmt.name, x_train=arrays["x_train"], y_train=np.asarray(arrays["y_train"]),
        x_test=arrays["x_test"], y_test=np.asarray(arrays["y_test"]), num_classes=fmt.num_classes,
        mean=CIFAR_MEAN, std=CIFAR_STD, flip=True, source=str(source), classes=list(classes),
    )


@register_dataset("c10", "CIFAR-10", 10)
def load_c10(data_dir: Path, download: bool = True) -> Dataset:
    return load_cifar(C10, data_dir, download)


@register_dataset("c100", "CIFAR-100", 100)
def load_c100(data_dir: Path, download: bool = True) -> Dataset:
    return load_cifar(C100, data_dir, download)
