"""Large image sets streamed from disk: registered folders with --stream, .tar files read in
place, and ImageNet (`in`) in torchvision's folder layout."""

import io
import json
import os
import signal
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from archsearch.cli import cli
from archsearch.data import load_dataset, subset_train
from archsearch.data import stream as stream_mod
from archsearch.data.stream import StreamingDataset, StreamLoader, decode_one, random_resized_crop
from archsearch.errors import ArchsearchError

from test_folders import CLASSES, make_folder


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="archsearch")


@pytest.fixture
def shapes(tmp_path):
    folder = make_folder(tmp_path / "shapes", per_class=(100, 4))  # 300 small JPEGs and PNGs to train on
    r = run("data", "add", "shapes", folder, "--size", 16, "--stream")
    assert r.exit_code == 0 and "streamed from disk" in r.output, r.output
    return folder


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_streamed_folder_loads_and_batches(shapes):
    ds = load_dataset("shapes")
    assert isinstance(ds, StreamingDataset) and (ds.n_train, ds.n_test, ds.num_classes) == (300, 12, 3)
    assert ds.classes == list(CLASSES) and sorted(np.bincount(ds.y_train)) == [100, 100, 100]
    entry = json.loads(open(os.environ["ARCHSEARCH_REGISTRY"]).read())["datasets"]["shapes"]
    assert entry["stream"] and entry["nets"] == "cifar" and len(entry["mean"]) == 3
    # each class's colour channel dominates its images (checked on the normalised batches' raw pixels)
    test = ds.loader("test", 5, train=False)
    got = batches(test)
    assert [len(y) for _, y in got] == [5, 5, 2] and got[0][0].shape == (5, 3, 16, 16)
    # the layout asked for, though the decoded images are NHWC
    assert all(b.is_contiguous() for b, _ in test)
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b, _ in ds.loader("test", 5, train=False,
                                                                                           channels_last=True))
    x = torch.cat([b[0] for b in got]) * torch.tensor(ds.std).view(1, 3, 1, 1) + torch.tensor(ds.mean).view(1, 3, 1, 1)
    y = torch.cat([b[1] for b in got])
    for c in range(3):
        assert x[y == c][:, c].mean() > 0.6 and x[y == c][:, c].mean() > x[y == c][:, (c + 1) % 3].mean() + 0.3
    sub = subset_train(ds, 6)
    assert sub.n_train == 6 and sorted(np.bincount(sub.y_train)) == [2, 2, 2] and sub.n_test == 12


def test_randomness_depends_on_seed_and_epoch_not_on_workers(shapes):
    ds = load_dataset("shapes")

    def loader(workers, seed=1):
        return StreamLoader(ds.train.take(np.arange(40)), 8, ds.mean, ds.std, train=True, size=16, resize=18,
                            seed=seed, workers=workers)

    a, b = loader(0), loader(2)
    e1 = batches(a)
    assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in zip(e1, batches(b)))
    state = a.state_dict()
    e2 = batches(a)
    assert not torch.equal(e1[0][0], e2[0][0])  # a new order and new crops each epoch
    c = loader(0)
    c.load_state_dict(state)  # a resumed run sees the epoch an uninterrupted one would
    assert all(torch.equal(x, x2) for (x, _), (x2, _) in zip(e2, batches(c)))
    assert not torch.equal(batches(loader(0, seed=2))[0][0], e1[0][0])
    assert sorted(torch.cat([y for _, y in e1]).tolist()) == sorted(ds.y_train[:40].tolist())  # every image once


def test_random_resized_crop_follows_torchvision():
    rng = np.random.default_rng(0)
    for w, h in [(500, 375), (64, 64), (30, 200)]:
        for _ in range(200):
            left, top, cw, ch = random_resized_crop(w, h, rng)
            assert 0 <= left and left + cw <= w and 0 <= top and top + ch <= h and cw > 0 and ch > 0
    fracs = [np.prod(random_resized_crop(500, 375, rng)[2:]) / (500 * 375) for _ in range(500)]
    assert 0.07 < min(fracs) and max(fracs) <= 1.0 and 0.4 < np.mean(fracs) < 0.65  # uniform in (0.08, 1) mostly


def test_draft_decode_is_close_to_a_full_decode():
    from PIL import Image
    from torchvision.transforms import v2 as T

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    img = np.stack([(xx * 255 // 400), (yy * 255 // 300), ((xx + yy) % 256)], -1).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    ours = decode_one(buf.getvalue(), 32, 37, train=False, flip=False, rng=None).astype(float)
    full = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    side = 300 * 32 / 37  # the same centre crop, from a full decode: only the draft differs
    box = ((400 - side) / 2, (300 - side) / 2, (400 + side) / 2, (300 + side) / 2)
    exact = np.asarray(full.resize((32, 32), Image.Resampling.BILINEAR, box=box, reducing_gap=None)).astype(float)
    assert ours.shape == exact.shape == (32, 32, 3) and np.abs(ours - exact).mean() < 3  # (a sawtooth channel: the worst case)
    # torchvision's Resize(37) + CenterCrop(32) rounds the resized width (49) and the crop's corner to whole
    # pixels: a shift of up to ~5 source pixels on this steep gradient, nothing more
    ref = np.asarray(T.Compose([T.Resize(37), T.CenterCrop(32)])(full)).astype(float)
    smooth = (ours[..., :2].ravel(), ref[..., :2].ravel())  # the two gradient channels (the third is a sawtooth)
    assert np.abs(smooth[0] - smooth[1]).mean() < 6 and np.corrcoef(*smooth)[0, 1] > 0.99


def test_trains_end_to_end_from_a_folder_and_an_uncompressed_tar(shapes, tmp_path):
    r = run("train", "vgg11-shapes", "--preset", "tiny", "--epochs", 1, "--width", 0.25, "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "a" / "result.json").read_text())
    assert len(res["history"]) == 1 and res["data"] == "shapes"
    tar = tmp_path / "shapes.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(shapes, arcname="shapes")
    r = run("data", "add", "shapestar", tar, "--size", 16, "--stream")
    assert r.exit_code == 0, r.output
    ds = load_dataset("shapestar")
    assert ds.train.in_tar and ds.n_train == 300
    folder_ds = load_dataset("shapes")
    x1 = torch.cat([x for x, _ in folder_ds.loader("test", 12, train=False)])
    x2 = torch.cat([x for x, _ in ds.loader("test", 12, train=False)])
    assert torch.equal(x1, x2) or (x1 - x2).abs().max() < 1e-5  # the same bytes, read in place
    r = run("train", "vgg11-shapestar", "--preset", "tiny", "--epochs", 1, "--width", 0.25, "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output


def test_a_compressed_tar_cannot_be_streamed(tmp_path):
    folder = make_folder(tmp_path / "shapes", per_class=(3, 2))
    tar = tmp_path / "shapes.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(folder, arcname="shapes")
    r = run("data", "add", "gz", tar, "--size", 16, "--stream")
    assert r.exit_code == 2 and "is compressed" in r.output and "tar -xf" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = run("data", "add", "gz", tar, "--size", 16)  # in memory it is fine
    assert r.exit_code == 0, r.output


def test_an_undecodable_image_stops_training_with_its_name(shapes, tmp_path):
    bad = shapes / "train" / "cross" / "3.jpg"
    bad.write_bytes(b"not a jpeg at all")
    r = run("train", "vgg11-shapes", "--preset", "tiny", "--epochs", 1, "--width", 0.25, "--out", tmp_path / "a")
    assert r.exit_code != 0 and "cannot decode image" in r.output and "3.jpg" in r.output, r.output
    assert "Traceback" not in r.output


def test_a_killed_worker_is_one_line(shapes, monkeypatch):
    ds = load_dataset("shapes")

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(stream_mod, "decode_one", die)  # forked workers inherit the patch
    with pytest.raises(ArchsearchError, match="input pipeline worker failed"):
        batches(StreamLoader(ds.train, 8, ds.mean, ds.std, train=True, size=16, resize=18, workers=1))


def test_workers_setting(monkeypatch, capsys):
    workers = stream_mod.data_workers
    assert workers("3", cpus=8) == (3, "") and workers("0", cpus=8) == (0, "")
    assert workers(None, cpus=4) == workers("", cpus=4) == (3, "")  # empty means the default
    assert workers(None, cpus=64) == (8, "") and workers(None, cpus=1) == (1, "")
    n, warning = workers("100000", cpus=4)  # it started 100,000 processes
    assert n == 4 and "ARCHSEARCH_DATA_WORKERS=100000 is more than the 4 CPUs" in warning
    for bad, match in (("x", "whole number"), ("-1", "0 or more")):
        with pytest.raises(ArchsearchError, match=match):
            workers(bad, cpus=4)
    # this process's CPUs (its affinity), the warning said once
    monkeypatch.setattr(stream_mod, "_warned", set())
    monkeypatch.setenv("ARCHSEARCH_DATA_WORKERS", "100000")
    assert stream_mod.default_workers() == stream_mod.default_workers() == len(os.sched_getaffinity(0))
    assert capsys.readouterr().err.count("warning: ARCHSEARCH_DATA_WORKERS=100000 is more than") == 1


# -- ImageNet ---------------------------------------------------------------------------------------
def make_imagenet(root, classes=1000, per_class=(1, 1)):
    """torchvision's ImageNet layout: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, tiny JPEGs."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((12, 10, 3), 128, np.uint8)).save(buf, "JPEG")
    blob = buf.getvalue()
    for split, n in zip(("train", "val"), per_class):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"n{c:08d}_{i}.JPEG").write_bytes(blob)
    return root


def test_imagenet_from_torchvisions_layout(tmp_path):
    make_imagenet(tmp_path / "imagenet")
    ds = load_dataset("in", tmp_path)
    assert isinstance(ds, StreamingDataset) and (ds.n_train, ds.n_test, ds.num_classes, ds.size) == (1000, 1000, 1000, 224)
    assert ds.classes[:2] == ["n00000000", "n00000001"] and ds.mean == (0.485, 0.456, 0.406)
    x, y = next(iter(ds.loader("test", 4, train=False)))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 1, 2, 3]
    from archsearch.names import parse_target

    assert parse_target("vgg16-in").input_size == 224


def test_imagenet_missing_or_wrong(tmp_path):
    with pytest.raises(ArchsearchError, match="ImageNet not found .*cannot be downloaded"):
        load_dataset("in", tmp_path)
    make_imagenet(tmp_path / "imagenet", classes=3)
    with pytest.raises(ArchsearchError, match="3 class folders under train/, not ImageNet's 1000"):
        load_dataset("in", tmp_path)
    r = run("train", "vgg16-in", "--data-dir", tmp_path, "--preset", "tiny")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output


def test_device_decoding_takes_the_same_crops_as_the_cpu_path():
    """decode="device" (torchvision's decode_jpeg on the training device; here the CPU): the
    crop and flip drawn for an image are the CPU path's, and the pixels agree up to the
    resampling."""
    from PIL import Image

    from archsearch.data.stream import decode_on, plan_crop

    yy, xx = np.mgrid[0:300, 0:400]
    img = np.stack([(xx * 255 // 400), (yy * 255 // 300), ((xx // 2 + yy // 3) % 200)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    blob = buf.getvalue()
    for train, seed in ((True, 3), (True, 4), (False, 0)):
        ours = decode_one(blob, 32, 37, train, True, np.random.default_rng(seed) if train else None)
        crop = plan_crop(400, 300, 32, 37, train, True, np.random.default_rng(seed) if train else None)
        dev = decode_on(torch.device("cpu"), [torch.frombuffer(bytearray(blob), dtype=torch.uint8)], [crop], 32)
        got = dev[0].permute(1, 2, 0).numpy().astype(float)
        assert got.shape == ours.shape and np.abs(got[..., :2] - ours[..., :2].astype(float)).mean() < 4, (train, seed)


def test_device_decoding_in_the_loader(shapes, monkeypatch):
    ds = load_dataset("shapes")
    rec = ds.train.take(np.arange(24))

    def epoch(decode, workers):
        return batches(StreamLoader(rec, 8, ds.mean, ds.std, train=True, size=16, resize=18, seed=1,
                                    workers=workers, decode=decode))

    cpu, dev, dev2 = epoch("cpu", 0), epoch("device", 0), epoch("device", 2)
    same = close = 0
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    for (xc, yc), (xd, yd), (xd2, _) in zip(cpu, dev, dev2):
        assert torch.equal(yc, yd) and torch.equal(xd, xd2)
        for a, b in zip(xc * std, xd * std):  # in pixels / 255
            if torch.equal(a, b):
                same += 1  # a PNG: decoded by the workers on both paths
            else:
                assert (a.mean((1, 2)) - b.mean((1, 2))).abs().max() < 0.05  # a JPEG: the same crop, resampled
                close += 1
    assert same > 0 and close > 0
    monkeypatch.setenv("ARCHSEARCH_DECODE", "gpu")
    with pytest.raises(ArchsearchError, match="ARCHSEARCH_DECODE='gpu'"):
        StreamLoader(rec, 8, ds.mean, ds.std, train=True, size=16, resize=18)
    monkeypatch.setenv("ARCHSEARCH_DECODE", "auto")
    assert StreamLoader(rec, 8, ds.mean, ds.std, train=True, size=16, resize=18).decode == "cpu"  # auto: CUDA only


def test_a_sparse_huge_image_in_a_streamed_set_is_refused_in_bounded_memory(shapes, tmp_path):
    """A registered image replaced by a 3 GiB file (all holes, no disk): refused by its size
    when a worker reads it, in one line naming it, without reading it."""
    from test_data import PEAK_BOUND, one_line, run_peak

    big = shapes / "train" / "cross" / "3.jpg"
    with open(big, "wb") as f:
        f.truncate(3 << 30)
    r, peak = run_peak("train", "vgg11-shapes", "--preset", "tiny", "--epochs", 1, "--width", 0.25,
                       "--out", tmp_path / "a")
    one_line(r, f"cannot read image {big}: 3,221,225,472 bytes, more than the 67,108,864 allowed; remove or replace")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"
