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
