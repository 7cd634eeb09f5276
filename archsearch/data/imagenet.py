"""ImageNet (ILSVRC2012) as `in`: 1000 classes, streamed from disk at 224 px.

Read from the folder layout torchvision documents (and prepares from the official archives
with `torchvision.datasets.ImageNet(root, split=...)`), which is also what the paper's
ImageNet code reads with `ImageFolder`:

    ROOT/train/n01440764/*.JPEG ...   (1000 class folders)
    ROOT/val/n01440764/*.JPEG ...     (the same 1000, 50 images each)

ROOT is looked for under the data directory as `imagenet/`, `ILSVRC2012/`, or the data
directory itself; an uncompressed `imagenet.tar` of that tree also works (read in place).
ImageNet cannot be downloaded (its licence needs a login), so a missing copy is one clear
error that says where to put it. Training images are streamed (`stream.py`) with the paper's
augmentation; the mean and std are torchvision's.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ArchsearchError
from .base import register_dataset
from .folders import index, scan
from .stream import IMAGENET_MEAN, IMAGENET_STD, StreamingDataset

NUM_CLASSES = 1000
SIZE = 224
FOLDERS = ("imagenet", "ILSVRC2012", ".")
ARCHIVES = ("imagenet.tar", "ILSVRC2012.tar")


def _missing(root: Path, why: str) -> ArchsearchError:
    return ArchsearchError(
        f"ImageNet not found in {root}: pass --data-dir DIR where DIR holds imagenet/train/<wnid>/*.JPEG and "
        f"imagenet/val/<wnid>/*.JPEG (torchvision's layout: torchvision.datasets.ImageNet(DIR/imagenet, split='train') "
        f"and split='val' build it from the official ILSVRC2012 archives), or an uncompressed imagenet.tar of that "
        f"tree; ImageNet cannot be downloaded here (its licence needs a login); {why}")


def locate(root: Path) -> Path | None:
    for name in FOLDERS:
        cand = (root / name).resolve()
        if (cand / "train").is_dir() and (cand / "val").is_dir():
            return cand
    for name in ARCHIVES:
        if (root / name).is_file():
            return root / name
    return None


@register_dataset("in", "ImageNet (ILSVRC2012), 1000 classes, streamed at 224px", NUM_CLASSES, input_size=SIZE,
                  nets="imagenet")
def load_in(data_dir: Path, download: bool = True) -> StreamingDataset:
    root = Path(data_dir)
    found = locate(root) if root.exists() else None
    if found is None:
        raise _missing(root, "no such folder" if not root.exists() else "neither imagenet/ nor imagenet.tar is there")
    if found.is_dir():  # the class folders alone (the files are walked once, by the cached index)
        classes = sorted(p.name for p in (found / "train").iterdir() if p.is_dir())
        val = sorted(p.name for p in (found / "val").iterdir() if p.is_dir())
        if val != classes:
            raise ArchsearchError(f"{found}: train/ and val/ have different class folders ({len(classes)} and "
                                  f"{len(val)}; val/ must be in class folders, as torchvision.datasets.ImageNet "
                                  "leaves it)")
    else:
        info = scan(found)
        if info["test_split"] != "val":
            raise _missing(root, f"{found} has test/, not val/")
        classes = info["classes"]
    if len(classes) != NUM_CLASSES:
        raise ArchsearchError(f"{found} has {len(classes)} class folders under train/, not ImageNet's "
                              f"{NUM_CLASSES} (register a subset of your own with: archsearch data add NAME {found} "
                              "--size 224 --stream)")
    train, test = index(found, classes, "val")
    for split, rec in (("train", train), ("val", test)):
        empty = NUM_CLASSES - len(set(rec.labels.tolist()))
        if empty:
            raise ArchsearchError(f"{found}: {empty} class folders under {split}/ hold no images")
    return StreamingDataset(name="in", train=train, test=test, num_classes=NUM_CLASSES, size=SIZE,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD, source=str(found), classes=classes)
