"""Training throughput: archsearch's trainer against the original code's loop, side by side.

The reference loop trains the way the Rethinking / Network Slimming code does: a
torchvision DataLoader over PIL images with per-image transforms (pad-4 RandomCrop,
RandomHorizontalFlip, ToTensor, Normalize), 1 worker, batch 64, fp32, and the accuracy
count moved to the host every step (`pred.eq(target).sum()` + `.item()`-style sync).
Ours is `archsearch.train.Engine.run_epoch`, the exact loop `archsearch train` runs.
Both train the same model (same spec, same init seed) on the same device for the same
number of images; warm-up steps are excluded from both.

    python benchmarks/train_throughput.py --quick            # CPU, < 2 minutes
    python benchmarks/train_throughput.py --arch vgg19 --width 1 --device cuda --images 50000

Also times a "bare" step on one resident batch, the ceiling that no data path can beat.

`--stream [DIR]` measures the streaming path instead (large image folders, ImageNet): the
input pipeline alone (`StreamLoader`: decode, random resized crop, flip, normalise) at
several worker counts, with and without JPEG draft decoding, against the model step alone
on a resident batch at the same size, and the two together (`Engine.run_epoch` on the
streamed set), so that a user sees which one limits. Without DIR it generates an
ImageNet-like folder (JPEGs of 500x375, quality 90) in a temporary directory.

    python benchmarks/train_throughput.py --stream --arch resnet18 --size 224 --images 512
Each loop runs --repeats times, alternating, and medians are reported.
Prints the throughputs and the ratio (ours / reference), and appends one JSON line to
benchmarks/results/train_throughput.jsonl (machine, torch version, date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__
from archsearch.archs import base_spec, build
from archsearch.data import load_dataset
from archsearch.train import Engine, device_name, make_schedule, resolve_device


class _PILDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's __getitem__: uint8 array -> PIL image -> transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = np.asarray(x), np.asarray(y), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference(spec, data, dev, n_images: int, warmup: int, batch_size: int = 64) -> float:
    """images/s of the original code's training loop."""
    import torchvision.transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(data.mean, data.std)])
    loader = torch.utils.data.DataLoader(_PILDataset(data.x_train, data.y_train, tf), batch_size=batch_size,
                                         shuffle=True, num_workers=1, pin_memory=dev.type == "cuda")
    torch.manual_seed(0)
    model = build(spec).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    seen, correct, t0 = 0, 0, None
    steps_needed = warmup + -(-n_images // batch_size)
    step = 0
    while step < steps_needed:
        for x, y in loader:
            if step == warmup:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0, seen = time.perf_counter(), 0
            x, y = x.to(dev), y.to(dev)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += out.argmax(1).eq(y).sum().item()  # host sync every step, as the original
            seen += len(y)
            step += 1
            if step >= steps_needed:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def ours(spec, data, dev, n_images: int, warmup: int, batch_size: int, compile: bool) -> float:
    eng = Engine(spec, data, make_schedule("paper", batch_size=batch_size), seed=0, device=dev, compile=compile)
    eng.run_epoch(max_steps=warmup)
    steps = -(-n_images // batch_size)
    done, seen = 0, 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    while done < steps:
        loss, correct, n = eng.run_epoch(max_steps=steps - done)
        done += -(-n // batch_size)
        seen += n
    correct.item()  # the sync that ends the timed region
    return seen / (time.perf_counter() - t0)


def bare(spec, data, dev, n_images: int, warmup: int, batch_size: int) -> float:
    """Ceiling: the same optimiser step on one fixed, resident batch (no data work at all)."""
    eng = Engine(spec, data, make_schedule("paper", batch_size=batch_size), seed=0, device=dev)
    xb, yb = next(iter(eng.train_loader))
    steps = -(-n_images // batch_size)
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with eng.autocast:
            loss = F.cross_entropy(eng.forward(xb), yb)
        eng.opt.zero_grad(set_to_none=True)
        loss.backward()
        eng.opt.step()
    loss.item()
    return steps * batch_size / (time.perf_counter() - t0)


def make_jpegs(root: Path, n: int, classes: int = 4, seed: int = 0) -> Path:
    """An ImageNet-like ImageFolder: n JPEGs of 500x375 (smooth structure plus texture, quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(classes, n // 8))):
        for i in range(count):
            d = root / split / f"c{i % classes}"
            d.mkdir(parents=True, exist_ok=True)
            low = rng.random((12, 16, 3)) * 255
            img = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((500, 375), Image.Resampling.BICUBIC), float)
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.JPEG", quality=90)
    return root


def stream_main(args) -> None:
    import tempfile

    from archsearch.archs import parse_arch
    from archsearch.data import stream
    from archsearch.data.folders import index, scan
    from archsearch.data.stream import StreamingDataset, StreamLoader

    dev = resolve_device(args.device)
    tmp = None
    if args.stream == "generate":
        tmp = tempfile.TemporaryDirectory()
        folder = make_jpegs(Path(tmp.name) / "set", args.images)
    else:
        folder = Path(args.stream)
    info = scan(folder)
    train, test = index(folder, info["classes"], info["test_split"])
    ds = StreamingDataset(name="bench", train=train, test=test, num_classes=len(info["classes"]), size=args.size,
                          source=str(folder))
    mean_kb = float(np.mean([(Path(train.root) / str(k)).stat().st_size for k in train.keys[:200]])) / 1024 \
        if not train.in_tar else float(np.mean(train.sizes)) / 1024
    n = min(args.images, len(train))

    def pipeline(workers: int, draft: bool, decode: str = "cpu") -> float:
        stream.DRAFT = draft  # forked workers inherit it
        loader = StreamLoader(train, args.batch_size, ds.mean, ds.std, train=True, size=args.size, resize=ds.resize,
                              device=dev, workers=workers, decode=decode)
        it, seen = iter(loader), 0
        next(it)  # warm-up: workers started, first batch decoded
        t0 = time.perf_counter()
        for xb, _ in it:
            seen += len(xb)
            if seen >= n:
                break
        return seen / (time.perf_counter() - t0)

    fam, depth = parse_arch(args.arch, nets="imagenet")
    spec = fam.base(depth, ds.num_classes, args.width, input_size=args.size)
    steps = max(2, n // args.batch_size)

    def model_step() -> float:
        eng = Engine(spec, ds, make_schedule("imagenet", batch_size=args.batch_size), seed=0, device=dev)
        xb = torch.randn(args.batch_size, 3, args.size, args.size, device=dev)
        yb = torch.randint(0, ds.num_classes, (args.batch_size,), device=dev)
        for i in range(1 + steps):
            if i == 1:
                t0 = time.perf_counter()
            with eng.autocast:
                loss = F.cross_entropy(eng.forward(xb), yb)
            eng.opt.zero_grad(set_to_none=True)
            loss.backward()
            eng.opt.step()
        loss.item()
        return steps * args.batch_size / (time.perf_counter() - t0)

    def together(workers: int) -> float:
        stream.DRAFT = True
        ds.workers = workers
        eng = Engine(spec, ds, make_schedule("imagenet", batch_size=args.batch_size), seed=0, device=dev)
        eng.run_epoch(max_steps=1)
        t0 = time.perf_counter()
        _, correct, seen = eng.run_epoch(max_steps=steps)
        correct.item()
        return seen / (time.perf_counter() - t0)

    worker_counts = sorted({0, 1, stream.default_workers()})
    runs: dict[str, list[float]] = {f"pipeline_w{w}": [] for w in worker_counts}
    # decoding on the training device (torchvision's decode_jpeg; here whatever `dev` is: the CPU
    # without a GPU, where it runs in the training process while the workers only read files)
    runs.update({f"pipeline_w{worker_counts[-1]}_nodraft": [], f"pipeline_w{worker_counts[-1]}_decode_on_{dev.type}": [],
                 "model_step": [], "together": []})
    for _ in range(args.repeats):
        for w in worker_counts:
            runs[f"pipeline_w{w}"].append(pipeline(w, True))
        runs[f"pipeline_w{worker_counts[-1]}_nodraft"].append(pipeline(worker_counts[-1], False))
        runs[f"pipeline_w{worker_counts[-1]}_decode_on_{dev.type}"].append(pipeline(worker_counts[-1], True, "device"))
        runs["model_step"].append(model_step())
        runs["together"].append(together(worker_counts[-1]))
    stream.DRAFT = True
    med = {k: float(np.median(v)) for k, v in runs.items()}
    rec = {
        "benchmark": "stream_throughput", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": args.arch, "width": args.width, "size": args.size, "batch": args.batch_size, "images": n,
        "data": "generated 500x375 JPEGs, quality 90" if tmp else str(folder), "mean_file_kb": round(mean_kb, 1),
        "device": str(dev), "device_name": device_name(dev), "machine": platform.node(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "archsearch": __version__, "repeats": args.repeats,
        **{f"{k}_img_s": round(v, 1) for k, v in med.items()},
        "limit": "input pipeline" if med[f"pipeline_w{worker_counts[-1]}"] < med["model_step"] else "model step",
        "runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
    }
    for k, v in med.items():
        print(f"{k:<24}{v:9.1f} img/s")
    print(f"limit: {rec['limit']} ({args.arch} width {args.width} at {args.size}px, batch {args.batch_size}, "
          f"{rec['device_name']}, {mean_kb:.0f} KB per JPEG)")
    if not args.no_save:
        append_jsonl("stream_throughput", rec)
    if tmp:
        tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--data", default="c10", help="c10 (needs --data-dir) or digits")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=6400, help="timed images per loop")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per loop")
    ap.add_argument("--batch-size", type=int, default=64, help="our loop's batch (the reference always uses 64)")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of each loop; medians are reported")
    ap.add_argument("--quick", action="store_true", help="CPU-sized run: 3,200 images per loop, 2 repeats")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--stream", nargs="?", const="generate", default=None, metavar="DIR",
                    help="measure the streaming path on the image folder DIR (default: a generated one)")
    ap.add_argument("--size", type=int, default=224, help="--stream: the crop side")
    args = ap.parse_args()
    if args.stream is not None:
        if args.arch == "vgg16" and args.width == 0.25:  # the CIFAR defaults: use ImageNet's ResNet-18
            args.arch, args.width = "resnet18", 1.0
        return stream_main(args)
    if args.quick:
        args.images, args.repeats = 3200, 2
    dev = resolve_device(args.device)
    data = load_dataset(args.data, args.data_dir, download=False)
    spec = base_spec(args.arch, data.num_classes, width=args.width)
    runs: dict[str, list[float]] = {"reference": [], "ours": [], "bare": []}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
        runs["reference"].append(reference(spec, data, dev, args.images, args.warmup))
        runs["ours"].append(ours(spec, data, dev, args.images, args.warmup, args.batch_size, args.compile))
        runs["bare"].append(bare(spec, data, dev, args.images, args.warmup, args.batch_size))
    ref, our, ceil = (float(np.median(runs[k])) for k in ("reference", "ours", "bare"))
    rec = {
        "benchmark": "train_throughput", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "arch": args.arch, "width": args.width, "data": args.data, "images": args.images,
        "device": str(dev), "device_name": device_name(dev), "machine": platform.node(),
        "cpu_count": torch.get_num_threads(), "torch": torch.__version__, "archsearch": __version__,
        "reference_batch": 64, "ours_batch": args.batch_size, "compile": args.compile,
        "ours_precision": "bf16 autocast, channels_last" if dev.type == "cuda" else "fp32",
        "repeats": args.repeats, "reference_img_s": round(ref, 1), "ours_img_s": round(our, 1),
        "bare_step_img_s": round(ceil, 1), "ratio": round(our / ref, 3), "ours_of_bare": round(our / ceil, 3),
        "runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
    }
    print(f"reference (DataLoader+PIL, batch 64, fp32, sync/step): {ref:9.1f} img/s")
    print(f"archsearch (device loader, batch {args.batch_size}):{'':>14}{our:9.1f} img/s")
    print(f"bare step on one resident batch (ceiling):{'':>6}{ceil:9.1f} img/s  (ours = {100 * our / ceil:.0f}% of it)")
    print(f"ratio: {our / ref:.2f}x  ({args.arch} width {args.width}, {args.data}, {rec['device_name']}, torch {torch.__version__})")
    if not args.no_save:
        append_jsonl("train_throughput", rec)


if __name__ == "__main__":
    main()
