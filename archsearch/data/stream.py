"""Image sets too large to keep in memory: an index of files, decoded while training.

A `StreamingDataset` holds no pixels, only an index (`Records`) of its images: for a
folder, each file's path under the root; for an uncompressed `.tar`, each member's byte
offset and size (read with `os.pread`, no extraction). `StreamLoader` decodes batches in
parallel worker processes (torch's `DataLoader`) with the paper's ImageNet augmentation
(`imagenet/*/main.py` of the Rethinking code, torchvision's recipe):
- train: `RandomResizedCrop(size)` (scale 0.08-1, aspect 3/4-4/3, ten tries, then a centre
  crop) and a horizontal flip;
- test: the shorter side resized to `size * 256 / 224` (256 for 224), the centre
  `size x size` crop.
Pixels are then normalised on the training device, as `DeviceLoader` does.

JPEGs are decoded at reduced scale where the crop allows it (Pillow's `draft`: libjpeg's
DCT scaling by 1/2, 1/4 or 1/8, never below the crop's output size), which is what makes
224-px ImageNet training feed a GPU from a few cores; the pixels differ slightly from a full
decode followed by a resize (both are bilinear-family downsamplings).

Randomness is a function of (seed, epoch, batch, position): each epoch draws one seed from
the loader's `torch.Generator` (its state is what checkpoints save, as for `DeviceLoader`),
the order is a permutation under that seed, and the crop and flip of the j-th image of batch
b come from `numpy.random.default_rng((epoch seed, b, j))`, whatever worker decodes it and
whichever process of a distributed run keeps it (`dist`: each keeps its slice of every
global batch). A resumed run therefore sees the batches an uninterrupted one would.

Decoding on the training device (`decode="device"`, `$ARCHSEARCH_DECODE=device`; the
default `auto` picks it on CUDA): the workers only read each file and its header and draw
its crop, and the training process decodes the batch's JPEGs with torchvision's
`decode_jpeg(..., device=...)` (nvJPEG on a GPU), crops, resizes (bilinear, antialiased) and
flips them there. The crops are the same draws as on the CPU path; the pixels differ by the
resampling. (torchvision 0.29 deprecates its image decoders in favour of TorchCodec's; when
they go, this path moves to `torchcodec`.) Other formats (PNG, ...) are decoded on the CPU in the workers as before. On
this project's CPU machines the device path runs (tested) with `device="cpu"`; its CUDA use
is unmeasured.

Each image is read with the limits of `reading.py`: a regular file or tar member of at most
MAX_IMAGE_BYTES (checked by its size before reading), at most MAX_IMAGE_PIXELS by its header
(checked before decoding). `$ARCHSEARCH_DATA_WORKERS` decoding processes, at most one per
CPU this process may run on (a larger value is capped, with a warning).

An image that cannot be decoded, or is refused, stops training with one line naming the
file (a silently skipped image would bias the comparison; `archsearch data add` decodes a
sample when it registers a set, and the in-memory path decodes all of them). A dead worker
(killed, out of memory) is one line too; the run resumes from its last checkpoint.
"""

from __future__ import annotations

import math
import os
import sys
import tarfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .._io import open_regular, read_bytes, too_large
from ..distributed import SINGLE, Dist
from ..errors import ArchsearchError, EnvironmentFailure, clip
from . import reading
from .loader import Batches
from .reading import open_image, open_tar

# torchvision's ImageNet normalisation, as the paper's ImageNet code
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DRAFT = True  # decode JPEGs at reduced scale where the crop allows (benchmarks/train_throughput.py --stream measures it)
EVAL_PIXELS = 1 << 25  # an evaluation batch holds at most this many input values (1000 at 32 px, 222 at 224)


def eval_batch_size(size: int) -> int:
    return max(1, min(1000, EVAL_PIXELS // (3 * size * size)))


DECODE_ENV = "ARCHSEARCH_DECODE"
DECODE_MODES = ("auto", "cpu", "device")


def decode_mode(mode: str | None, device: torch.device) -> str:
    """Where JPEGs are decoded: "cpu" (the workers, Pillow) or "device" (the training process,
    torchvision's decode_jpeg on the training device). `auto` (the default, or
    $ARCHSEARCH_DECODE): the device on CUDA, else the CPU."""
    mode = mode or os.environ.get(DECODE_ENV, "auto") or "auto"
    if mode not in DECODE_MODES:
        raise ArchsearchError(f"{DECODE_ENV}={mode!r}: expected one of {', '.join(DECODE_MODES)}")
    if mode == "auto":
        return "device" if device.type == "cuda" else "cpu"
    return mode


DATA_WORKERS_ENV = "ARCHSEARCH_DATA_WORKERS"  # decoding processes per loader


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def data_workers(env: str | None, cpus: int) -> tuple[int, str]:
    """(decoding processes, a warning or ''): `env` ($ARCHSEARCH_DATA_WORKERS; unset or empty:
    one per CPU beyond the first, which the training process keeps, at most 8), capped at
    `cpus` (more processes than CPUs only compete, and a typo like 1000 would start 1000)."""
    if not env:
        return max(1, min(8, cpus - 1)), ""
    try:
        n = int(env)
    except ValueError:
        raise ArchsearchError(f"{DATA_WORKERS_ENV} must be a whole number, got {env!r}") from None
    if n < 0:
        raise ArchsearchError(f"{DATA_WORKERS_ENV} must be 0 or more, got {n}")
    if n > cpus:
        return cpus, f"warning: {DATA_WORKERS_ENV}={n} is more than the {cpus} CPUs this process may use; using {cpus}"
    return n, ""


_warned: set[str] = set()


def default_workers() -> int:
    """Decoding processes per loader (`data_workers` of this process's environment and CPUs);
    a capped value is said once per process."""
    n, warning = data_workers(os.environ.get(DATA_WORKERS_ENV), usable_cpus())
    if warning and warning not in _warned:
        _warned.add(warning)
        print(warning, file=sys.stderr, flush=True)
    return n


@dataclass(frozen=True)
class Records:
    """The images of one split: where each one's bytes are, and its label."""

    root: str               # a folder, or an uncompressed .tar
    keys: np.ndarray        # str: the path under the folder, or the tar member's name (for messages)
    offsets: np.ndarray     # int64: the member's data offset in the tar; -1 for files
    sizes: np.ndarray       # int64: bytes
    labels: np.ndarray      # int64

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_tar(self) -> bool:
        return bool(len(self.offsets)) and int(self.offsets[0]) >= 0

    def take(self, idx: np.ndarray) -> "Records":
        return Records(self.root, self.keys[idx], self.offsets[idx], self.sizes[idx], self.labels[idx])

    def where(self, i: int) -> str:
        return f"{self.keys[i]} in {self.root}" if self.in_tar else str(Path(self.root) / str(self.keys[i]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "offsets": self.offsets, "sizes": self.sizes, "labels": self.labels}


def records(root: str, items: list[tuple[str, int, int, int]]) -> Records:
    """Records from (key, offset, size, label) tuples."""
    return Records(root=root, keys=np.array([k for k, *_ in items], dtype=str),
                   offsets=np.array([o for _, o, _, _ in items], dtype=np.int64),
                   sizes=np.array([s for _, _, s, _ in items], dtype=np.int64),
                   labels=np.array([lab for *_, lab in items], dtype=np.int64))


def check_random_access(path: Path) -> None:
    """A .tar must be uncompressed to be streamed (a compressed one can only be read front to back)."""
    try:
        with open_tar(path, "image archive", "r:"):
            pass
    except reading.TarHeaderRefused as e:  # a ReadError too, but not for being compressed
        raise ArchsearchError(f"cannot read {path}: {e}") from None
    except tarfile.ReadError:
        raise ArchsearchError(f"{path} is compressed: streaming reads images at random from an uncompressed .tar; "
                              f"unpack it (tar -xf) and register the folder, or repack it with `tar -cf`") from None
    except OSError as e:
        raise ArchsearchError(f"cannot read {path}: {e}") from None


# -- decoding (in the workers) ---------------------------------------------------------------------
class _Source:
    """Reads one image's bytes; opens the tar once per process."""

    def __init__(self, rec: Records):
        self.rec = rec
        self.fd: int | None = None
        self.pid = -1

    def read(self, i: int) -> bytes:
        """The file's bytes; an ArchsearchError when it is not a regular file or is larger than
        MAX_IMAGE_BYTES (checked before reading: a sparse 3 GB file costs nothing)."""
        off = int(self.rec.offsets[i])
        if off < 0:
            return read_bytes(Path(self.rec.root) / str(self.rec.keys[i]), "image", reading.MAX_IMAGE_BYTES)
        n = int(self.rec.sizes[i])
        if n > reading.MAX_IMAGE_BYTES:  # an index cached before the limit, or edited
            raise too_large("image", self.rec.where(i), n, reading.MAX_IMAGE_BYTES)
        if self.fd is None or self.pid != os.getpid():  # a forked worker opens its own
            with open_regular(self.rec.root, "image archive") as f:  # never a FIFO: it would block
                self.fd, self.pid = os.dup(f.fileno()), os.getpid()
        data = os.pread(self.fd, n, off)
        if len(data) != n:
            raise OSError(f"short read ({len(data)} of {n} bytes): the .tar changed since it was indexed")
        return data


def random_resized_crop(w: int, h: int, rng: np.random.Generator, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, width, height) as torchvision's `RandomResizedCrop.get_params`."""
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_r[0], log_r[1]))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    in_ratio = w / h  # fallback: the whole image's centre at the nearest allowed aspect
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def plan_crop(w: int, h: int, size: int, resize: int, train: bool, flip: bool,
              rng: np.random.Generator | None) -> tuple[float, float, float, float, bool]:
    """(left, top, width, height, flipped) in source pixels: a random resized crop and a
    coin flip (train), or the centre crop after resizing the shorter side to `resize` (test).
    The draws are the same whichever path decodes the image."""
    if train:
        left, top, cw, ch = random_resized_crop(w, h, rng)
        return left, top, cw, ch, bool(flip and rng.random() < 0.5)
    cw = ch = min(w, h) * size / resize  # the centre crop in source pixels
    return (w - cw) / 2, (h - ch) / 2, cw, ch, False


def decode_one(blob: bytes, size: int, resize: int, train: bool, flip: bool,
               rng: np.random.Generator | None) -> np.ndarray:
    """One image as uint8 (size, size, 3): a random resized crop (train) or the centre crop
    after resizing the shorter side to `resize` (test)."""
    im = open_image(blob)  # the header only: more than MAX_IMAGE_PIXELS is refused here
    w, h = im.size
    left, top, cw, ch, flipped = plan_crop(w, h, size, resize, train, flip, rng)
    want = (max(1, math.ceil(w * size / cw)), max(1, math.ceil(h * size / ch)))
    if im.format == "JPEG" and DRAFT:
        im.draft("RGB", want)  # DCT-domain downscaling, never below `want`
    im = im.convert("RGB")
    fx, fy = im.size[0] / w, im.size[1] / h  # the draft's reduction
    box = (left * fx, top * fy, (left + cw) * fx, (top + ch) * fy)
    out = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
    if flipped:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def decode_on(device: torch.device, blobs: list[torch.Tensor], crops: list[tuple], size: int) -> torch.Tensor:
    """JPEGs (uint8 byte tensors) decoded on `device` by torchvision (nvJPEG on CUDA), each
    cropped to its (left, top, width, height, flipped) and resized to size x size (bilinear,
    antialiased): uint8 (N, 3, size, size) on `device`."""
    # start-up cost: torchvision takes 2.4 s (measured), needed only for decoding on a device
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        images = decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
    out = torch.empty((len(blobs), 3, size, size), dtype=torch.uint8, device=device)
    for j, (img, (left, top, cw, ch, flipped)) in enumerate(zip(images, crops)):
        x0, y0 = int(math.floor(left)), int(math.floor(top))
        x1, y1 = max(x0 + 1, int(math.ceil(left + cw))), max(y0 + 1, int(math.ceil(top + ch)))
        patch = img[:, y0:y1, x0:x1].unsqueeze(0).float()
        patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if flipped:
            patch = patch.flip(-1)
        out[j] = patch[0].round_().clamp_(0, 255).to(torch.uint8)
    return out


class _Batches(torch.utils.data.Dataset):
    """Batch b of one epoch: its images decoded and stacked. Never raises for a bad image: it
    returns the message, and the loader raises it as one line in the training process."""

    def __init__(self, rec: Records, batches: list[np.ndarray], size: int, resize: int, train: bool, flip: bool,
                 epoch_seed: int, dist: Dist = SINGLE, on_device: bool = False):
        self.src, self.dist = _Source(rec), dist
        self.batches, self.size, self.resize = batches, size, resize
        self.train, self.flip, self.epoch_seed = train, flip, epoch_seed
        self.on_device = on_device  # JPEGs: read and planned here, decoded by the training process

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int):
        part = self.dist.shard(len(self.batches[b]))
        idx = self.batches[b][part]
        out = np.empty((len(idx), self.size, self.size, 3), dtype=np.uint8)
        jpegs: dict[int, tuple[torch.Tensor, tuple]] = {}  # position -> (file bytes, crop): decoded on the device
        for j, i in enumerate(idx):
            rng = np.random.default_rng((self.epoch_seed, b, part.start + j)) if self.train else None
            try:
                blob = self.src.read(int(i))
                if self.on_device:
                    im = open_image(blob)  # the header only (and the pixel limit)
                    if im.format == "JPEG":
                        crop = plan_crop(*im.size, self.size, self.resize, self.train, self.flip, rng)
                        jpegs[j] = (torch.frombuffer(bytearray(blob), dtype=torch.uint8), crop)
                        continue
                out[j] = decode_one(blob, self.size, self.resize, self.train, self.flip, rng)
            except ArchsearchError as e:  # refused before reading: not a regular file, or too large
                return None, None, f"{e}; remove or replace it", {}, {}
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                return None, None, f"cannot decode image {self.src.rec.where(int(i))}: {why}; remove or replace it", {}, {}
        names = {j: self.src.rec.where(int(idx[j])) for j in jpegs}
        return torch.from_numpy(out), torch.from_numpy(self.src.rec.labels[idx]), "", jpegs, names


class StreamLoader(Batches):
    """Batches of a `Records` split, decoded by `workers` processes, normalised on `device`.

    The same interface as `DeviceLoader`: iterate for (images, labels) on the device,
    `len()` batches, `n` images, `generator` and `state_dict()` for checkpoints."""

    def __init__(self, rec: Records, batch_size: int, mean, std, *, train: bool, size: int, resize: int,
                 device: torch.device | str = "cpu", flip: bool = True, seed: int = 0, workers: int | None = None,
                 channels_last: bool = False, drop_last: bool = False, dist: Dist = SINGLE, decode: str | None = None):
        self.rec, self.batch_size, self.train, self.dist = rec, int(batch_size), train, dist
        self.size, self.resize, self.flip, self.drop_last = size, resize, flip, drop_last
        self.device = torch.device(device)
        self.decode = decode_mode(decode, self.device)
        self.workers = default_workers() if workers is None else int(workers)
        self.channels_last = channels_last
        self.n = len(rec)
        self._init_common(mean, std, 3, seed, "cpu")  # the plan is drawn on the CPU, for the decoding workers

    def _plan(self) -> tuple[list[np.ndarray], int]:
        if self.train:
            epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))
            order = np.random.default_rng(epoch_seed).permutation(self.n)
        else:
            epoch_seed, order = 0, np.arange(self.n)
        stop = (self.n // self.batch_size) * self.batch_size if self.drop_last else self.n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)], epoch_seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches, epoch_seed = self._plan()
        ds = _Batches(self.rec, batches, self.size, self.resize, self.train, self.flip, epoch_seed, self.dist,
                      on_device=self.decode == "device")
        cuda = self.device.type == "cuda"
        dl = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.workers,
                                         pin_memory=cuda, prefetch_factor=4 if self.workers else None,
                                         persistent_workers=False)
        it = iter(dl)
        while True:
            try:
                got = next(it)
            except StopIteration:
                return
            except RuntimeError as e:  # a worker killed (signal, out of memory) or gone: the machine's failure
                raise EnvironmentFailure(f"an input pipeline worker failed: {clip(e, 200)}; "
                                      "run the same command again to resume from the last checkpoint") from None
            xb, yb, err, jpegs, names = got
            if err:  # an undecodable file: every trial would fail on it, so a sweep stops and retries it later
                raise EnvironmentFailure(err)
            if not len(yb):  # a test batch smaller than the number of processes
                continue
            xb = xb.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2)
            if jpegs:
                pos = sorted(jpegs)
                try:
                    dec = decode_on(self.device, [jpegs[j][0] for j in pos], [jpegs[j][1] for j in pos], self.size)
                except RuntimeError as e:
                    raise ArchsearchError(f"cannot decode a JPEG on {self.device} (one of {names[pos[0]]}, ...): "
                                          f"{clip(e, 160)}; remove or replace it, or set "
                                          "ARCHSEARCH_DECODE=cpu") from None
                xb[torch.as_tensor(pos, device=self.device)] = dec
            xb = self._normalise(xb)
            yield xb, yb.to(self.device, non_blocking=cuda)


@dataclass
class StreamingDataset:
    """A dataset read from disk while training (see the module docstring). The same
    interface as the in-memory `Dataset` where training uses it: `loader`, `n_train`,
    `n_test`, `subset`, `describe`."""

    name: str
    train: Records
    test: Records
    num_classes: int
    size: int               # the side of the crops the network sees
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    flip: bool = True
    source: str = ""
    classes: list[str] = field(default_factory=list)
    workers: int | None = None  # decoding processes (None: default_workers())

    streaming = True

    @property
    def resize(self) -> int:
        return int(round(self.size * 256 / 224))

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)

    @property
    def y_train(self) -> np.ndarray:
        return self.train.labels

    def loader(self, split: str, batch_size: int, *, train: bool, device="cpu", seed: int = 0, pad: int = 4,
               channels_last: bool = False, indices: np.ndarray | None = None, dist: Dist = SINGLE,
               drop_last: bool = False) -> StreamLoader:
        """`pad` (the CIFAR translation) has no meaning here: the train crops are random resized crops."""
        rec = self.train if split == "train" else self.test
        if indices is not None:
            rec = rec.take(np.asarray(indices))
        return StreamLoader(rec, batch_size, self.mean, self.std, train=train, size=self.size, resize=self.resize,
                            device=device, flip=self.flip, seed=seed, workers=self.workers,
                            channels_last=channels_last, dist=dist, drop_last=drop_last)

    def subset(self, idx: np.ndarray, note: str) -> "StreamingDataset":
        return replace(self, train=self.train.take(idx), source=f"{self.source} ({note})")

    def describe(self) -> str:
        return (f"{self.name}: {self.n_train} train / {self.n_test} test, {self.num_classes} classes, "
                f"streamed at {self.size}px from {self.source}")

    def problem(self) -> str | None:
        for split, rec in (("train", self.train), ("test", self.test)):
            if len(rec) == 0:
                return f"no {split} images"
            lo, hi = int(rec.labels.min()), int(rec.labels.max())
            if lo < 0 or hi >= self.num_classes:
                return f"{split} labels run from {lo} to {hi}, outside the {self.num_classes} classes"
        return None


__all__ = ["Records", "StreamLoader", "StreamingDataset", "records", "decode_one", "random_resized_crop",
           "eval_batch_size", "default_workers", "data_workers", "usable_cpus", "check_random_access", "IMAGENET_MEAN",
           "IMAGENET_STD"]
