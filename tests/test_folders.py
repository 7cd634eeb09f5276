"""Image folders of your own, by name: `archsearch data add NAME PATH --size N`."""

import json
import re
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from archsearch.cli import cli
from archsearch.errors import ArchsearchError

CLASSES = ("circle", "cross", "square")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="archsearch")


def make_folder(root, *, per_class=(12, 4), test="val", classes=CLASSES, seed=0):
    """A generated ImageFolder: JPEGs and PNGs of differing sizes, one colour per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class[0]), (test, per_class[1])):
        for ci, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
                img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                img[..., ci % 3] += 180
                Image.fromarray(img).save(d / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_register_list_load_train_and_remove(tmp_path):
    folder = make_folder(tmp_path / "shapes")
    r = run("data", "add", "shapes", folder, "--size", 24)
    assert r.exit_code == 0 and "3 classes, 36 train / 12 val images, at 24x24" in r.output, r.output
    r = run("data", "list")
    assert "shapes" in r.output and "registered" in r.output and "c10" in r.output
    from archsearch.data import load_dataset
    from archsearch.names import parse_target

    ds = load_dataset("shapes")
    assert ds.x_train.shape == (36, 24, 24, 3) and ds.x_test.shape == (12, 24, 24, 3) and ds.classes == list(CLASSES)
    assert sorted(np.bincount(ds.y_train)) == [12, 12, 12]
    # the colour of each class survives the resize: its channel dominates
    for c in range(3):
        assert ds.x_train[ds.y_train == c][..., c].mean() > 150
    t = parse_target("vgg11-shapes")
    assert (t.num_classes, t.input_size) == (3, 24)
    out = tmp_path / "run"
    r = run("train", "vgg11-shapes", "--preset", "tiny", "--epochs", 2, "--width", 0.25, "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    spec = json.loads((out / "spec.json").read_text())
    assert spec["input_size"] == 24 and spec["num_classes"] == 3 and len(res["history"]) == 2
    r = run("data", "remove", "shapes")
    assert r.exit_code == 0 and "untouched" in r.output and folder.exists()
    r = run("train", "vgg11-shapes", "--preset", "tiny")
    assert r.exit_code == 2 and "unknown dataset 'shapes'" in r.output and "data add" in r.output


def test_a_tar_of_the_folder_loads_the_same(tmp_path):
    folder = make_folder(tmp_path / "shapes", test="test")
    tar = tmp_path / "shapes.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(folder, arcname="shapes")
    from archsearch.data import load_dataset
    from archsearch.data.folders import add

    add("a", folder, 16)
    add("b", tar, 16)
    a, b = load_dataset("a"), load_dataset("b")
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test) and a.classes == b.classes


def test_a_proposal_runs_on_a_registered_folder(tmp_path):
    from archsearch.data import load_dataset
    from archsearch.data.folders import add
    from archsearch.propose import propose

    add("shapes", make_folder(tmp_path / "shapes"), 16)
    p = propose("slimming-vgg11-shapes", load_dataset("shapes"), workdir=tmp_path / "p", device="cpu",
                preset="tiny", epochs=1, width=0.25)
    assert p.spec.input_size == 16 and p.spec.num_classes == 3


@pytest.mark.parametrize("setup,args,match", [
    (lambda r: [(r / s / "a").mkdir(parents=True) for s in ("train", "val")], ["x", "--size", 16],
     "no images under train"),
    (lambda r: make_folder(r, classes=("one",)), ["x", "--size", 16], "at least 2 needed"),
    (lambda r: (make_folder(r), (r / "val" / "cross").rename(r / "val" / "plus")), ["x", "--size", 16],
     r"different classes \(only in train/: cross; only in val/: plus\)"),
    (lambda r: (make_folder(r), make_folder(r, test="test")), ["x", "--size", 16], "both val/ and test/"),
    (lambda r: make_folder(r), ["c10", "--size", 16], "built in"),
    (lambda r: make_folder(r), ["my-data", "--size", 16], "no '-'"),
    (lambda r: make_folder(r), ["x", "--size", 4], "--size"),
    (lambda r: r.mkdir(), ["x", "--size", 16], "not an image folder"),
])
def test_bad_folders_are_one_line_errors(tmp_path, setup, args, match):
    root = tmp_path / "d"
    setup(root)
    r = run("data", "add", args[0], root, *args[1:])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert re.search(match, r.output), r.output


def test_an_unreadable_image_is_named(tmp_path):
    from archsearch.data import load_dataset
    from archsearch.data.folders import add

    folder = make_folder(tmp_path / "shapes")
    (folder / "train" / "cross" / "broken.jpg").write_bytes(b"not a jpeg")
    add("shapes", folder, 16)
    with pytest.raises(ArchsearchError, match=r"cannot decode image .*train/cross/broken.jpg"):
        load_dataset("shapes")


def test_registry_is_data_and_a_bad_one_is_one_line(tmp_path):
    from archsearch.data.folders import add, read_registry, registry_path

    add("shapes", make_folder(tmp_path / "shapes"), 16)
    with pytest.raises(ArchsearchError, match="registered already"):
        add("shapes", tmp_path / "shapes", 16)
    assert add("shapes", tmp_path / "shapes", 20, replace=True)["size"] == 20
    registry_path().write_text('{"version": 1, "datasets": {"x": {"name": "x", "path": "/", "size": 99999}}}')
    with pytest.raises(ArchsearchError, match="dataset registry .*size"):
        read_registry()
    r = run("data", "list")
    assert r.exit_code == 2 and "dataset registry" in r.output


def test_a_folder_wrapped_in_one_more_folder_is_decoded_again_when_it_changes(tmp_path):
    import shutil

    from archsearch.data import load_dataset

    folder = make_folder(tmp_path / "outer" / "shapes")
    r = run("data", "add", "wrapped", tmp_path / "outer", "--size", 24)
    assert r.exit_code == 0, r.output
    n = len(load_dataset("wrapped").x_train)
    shutil.copy(folder / "train" / "circle" / "0.png", folder / "train" / "circle" / "99.png")
    assert len(load_dataset("wrapped").x_train) == n + 1


# -- hostile folders: FIFOs, huge files, gzip bombs, adds at once (issue 27) -----------------------------
def _png(side=24, colour=(200, 0, 0)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="PNG")
    return buf.getvalue()


def _sparse(path, size=3 << 30):
    """A file of `size` bytes that uses no disk (all holes)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_six_adds_at_once_keep_all_six(tmp_path, monkeypatch):
    """Each `data add` reads the registry and writes it back; six at once, each scanning a
    folder slowly (a large one), kept one or five of the six entries before the lock."""
    import multiprocessing
    import time

    from archsearch.data import folders

    folder = make_folder(tmp_path / "shapes", per_class=(2, 1))
    scan = folders.scan
    monkeypatch.setattr(folders, "scan", lambda p: (time.sleep(1.0), scan(p))[1])  # forked children inherit it
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)

    def add(i):
        barrier.wait(30)
        folders.add(f"s{i}", folder, 16)

    procs = [ctx.Process(target=add, args=(i,)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert sorted(folders.read_registry()) == [f"s{i}" for i in range(6)]


def test_data_add_of_a_fifo_is_one_line_not_a_hang(tmp_path):
    import os
    import subprocess
    import sys

    from test_data import one_line

    os.mkfifo(tmp_path / "fifo")
    r = subprocess.run([sys.executable, "-m", "archsearch", "data", "add", "x", str(tmp_path / "fifo"), "--size", "16"],
                       capture_output=True, text=True, timeout=60)  # the hang it was: a timeout fails the test
    one_line(r, f"{tmp_path / 'fifo'} is neither a folder nor a regular file")


def test_a_sparse_huge_image_is_refused_by_its_size_in_bounded_memory(tmp_path):
    from archsearch.data.folders import add
    from test_data import PEAK_BOUND, one_line, run_peak

    folder = make_folder(tmp_path / "shapes", per_class=(2, 1))
    big = _sparse(folder / "train" / "cross" / "big.jpg")
    r = run("data", "add", "big", folder, "--size", 16)  # at registration already
    assert r.exit_code == 2 and f"cannot read image {big}: 3,221,225,472 bytes, more than the 67,108,864 allowed" \
        in r.output, r.output
    big.unlink()
    add("big", folder, 16)
    _sparse(big)  # after registration: refused when the set is decoded, without reading it
    r, peak = run_peak("train", "vgg11-big", "--preset", "tiny", "--out", tmp_path / "r")
    one_line(r, f"cannot read image {big}: 3,221,225,472 bytes, more than the 67,108,864 allowed")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_a_gzip_bomb_image_in_an_archive_is_refused_in_bounded_memory(tmp_path):
    """A 2 MB .tar.gz whose first image inflates to 2 GiB: refused by its header's size, at
    registration and when a registered archive was replaced by it."""
    import os

    from archsearch.data.folders import add
    from test_data import PEAK_BOUND, gzip_bomb, one_line, run_peak

    extra = [(f"set/{s}/{c}/0.png", _png()) for s in ("train", "val") for c in ("a", "b")]
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", "set/train/a/big.jpg", extra=extra)
    r = run("data", "add", "bomb", bomb, "--size", 16)
    assert r.exit_code == 2 and "set/train/a/big.jpg in " in r.output and \
        "2,147,483,648 bytes, more than the 67,108,864 allowed" in r.output, r.output
    good = tmp_path / "set.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        for name, data in extra:
            import io

            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    add("bomb", good, 16)
    os.replace(bomb, good)
    r, peak = run_peak("train", "vgg11-bomb", "--preset", "tiny", "--out", tmp_path / "r")
    one_line(r, f"cannot read image set/train/a/big.jpg in {good}: 2,147,483,648 bytes, more than the 67,108,864")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_a_huge_tar_header_is_refused_before_it_is_read_in_bounded_memory(tmp_path):
    """A 1 MB .tar.gz opening with a GNU long-name header of 1 GiB (Python's tarfile reads such
    a header whole, before any size of a member can be checked): refused by its declared size
    when the archive is registered."""
    from test_data import PEAK_BOUND, extended_header, one_line, run_peak, tar_pieces, write_pieces

    extra = [(f"set/{s}/{c}/0.png", _png(), 1) for s in ("train", "val") for c in ("a", "b")]
    bomb = write_pieces(tmp_path / "bomb.tar.gz", tar_pieces([extended_header(tarfile.GNUTYPE_LONGNAME, 1 << 30)]
                                                             + extra))
    r, peak = run_peak("data", "add", "bomb", bomb, "--size", 16)
    one_line(r, f"cannot read {bomb}: a GNU long-name header of 1,073,741,824 bytes at byte 0: more than the "
                "1,048,576 bytes allowed for the headers of one member")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_pillows_bomb_limit_is_ours_and_its_warning_a_refusal(tmp_path, monkeypatch):
    from archsearch.data import load_dataset, reading
    from archsearch.data.folders import add

    blob = _png(40)  # 1,600 pixels
    for limit in (1000, 500):  # Pillow warns above its limit and raises above twice it: both refuse
        monkeypatch.setattr(reading, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(reading.ImageRefused, match=f"more than the {limit:,} pixels allowed"):
            reading.open_image(blob)
    monkeypatch.setattr(reading, "MAX_IMAGE_PIXELS", 1600)
    assert reading.open_image(blob).size == (40, 40)
    folder = make_folder(tmp_path / "shapes", per_class=(2, 1))
    add("shapes", folder, 16)
    monkeypatch.setattr(reading, "MAX_IMAGE_PIXELS", 300)  # below every image of the folder (20 to 48 px a side)
    with pytest.raises(ArchsearchError, match=r"cannot decode image .*shapes/train/circle/0.png: more than the 300 "):
        load_dataset("shapes")
