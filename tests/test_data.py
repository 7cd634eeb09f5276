"""Loaders for every on-disk CIFAR format (generated here in the real formats), the cache,
and the device-resident augmenting loader."""

import pickle
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from archsearch.data import CIFAR_MEAN, CIFAR_STD, DeviceLoader, load_dataset
from archsearch.errors import ArchsearchError


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10_pickles(root, per_batch=12):
    """torchvision's cifar-10-batches-py: 5 train batches + test_batch + batches.meta."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = _images(per_batch, i)
        y = [(j + i) % 10 for j in range(per_batch)]
        _pickle(d / name, {b"batch_label": name.encode(), b"labels": y,
                           b"data": x.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                           b"filenames": [f"{name}_{j}.png".encode() for j in range(per_batch)]})
        xs.append(x)
        ys.append(y)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(d / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch,
                                 b"num_vis": 3072})
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], np.array(ys[5])


def write_cifar100_pickles(root, n_train=200, n_test=100):
    """torchvision's cifar-100-python: train, test and meta, with fine and coarse labels."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    out = []
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x = _images(n, seed)
        fine = [(7 * j + seed) % 100 for j in range(n)]
        _pickle(d / split, {b"filenames": [b"f.png"] * n, b"batch_label": split.encode(),
                            b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
                            b"data": x.transpose(0, 3, 1, 2).reshape(n, -1)})
        out += [x, np.array(fine)]
    _pickle(d / "meta", {b"fine_label_names": [f"class{i:03d}".encode() for i in range(100)],
                         b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]})
    return out


def write_tree(root, n_classes=10, per_class=(3, 2), fmt="PNG"):
    """ImageFolder layout: root/{train,test}/<class>/<file>."""
    names = [f"c{i:02d}" for i in range(n_classes)]
    expect = {}
    for split, n in zip(("train", "test"), per_class):
        xs, ys = [], []
        for ci, c in enumerate(names):
            (root / split / c).mkdir(parents=True)
            imgs = _images(n, 100 * ci + len(split))
            for j, img in enumerate(imgs):
                Image.fromarray(img).save(root / split / c / f"{j:04d}.{fmt.lower()}", format=fmt)
            xs.append(imgs)
            ys += [ci] * n
        expect[split] = (np.concatenate(xs), np.array(ys))
    return expect


def _tar(src_dir, arcname, dest):
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src_dir, arcname=arcname)


def test_cifar10_torchvision_pickles(tmp_path):
    xtr, ytr, xte, yte = write_cifar10_pickles(tmp_path)
    ds = load_dataset("c10", tmp_path, download=False)
    assert ds.x_train.shape == (60, 32, 32, 3) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, xtr)
    np.testing.assert_array_equal(ds.y_train, ytr)
    np.testing.assert_array_equal(ds.x_test, xte)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    assert (ds.mean, ds.std, ds.flip) == (CIFAR_MEAN, CIFAR_STD, True)


def test_cifar100_torchvision_pickles(tmp_path):
    xtr, ytr, xte, yte = write_cifar100_pickles(tmp_path)
    ds = load_dataset("c100", tmp_path, download=False)
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.x_train, xtr)
    np.testing.assert_array_equal(ds.y_train, ytr)  # fine labels, not coarse
    np.testing.assert_array_equal(ds.x_test, xte)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert ds.classes[:2] == ["class000", "class001"]


def test_cifar100_torchvision_archive(tmp_path):
    src = tmp_path / "src"
    xtr, ytr, _, _ = write_cifar100_pickles(src)
    data = tmp_path / "data"
    data.mkdir()
    _tar(src / "cifar-100-python", "cifar-100-python", data / "cifar-100-python.tar.gz")
    ds = load_dataset("c100", data, download=False)
    np.testing.assert_array_equal(ds.x_train, xtr)
    np.testing.assert_array_equal(ds.y_train, ytr)


def test_image_folder_tree_and_targz_agree(tmp_path):
    tree = tmp_path / "a" / "cifar10"
    expect = write_tree(tree)
    ds = load_dataset("c10", tmp_path / "a", download=False)
    np.testing.assert_array_equal(ds.x_train, expect["train"][0])  # PNG is lossless
    np.testing.assert_array_equal(ds.y_train, expect["train"][1])
    np.testing.assert_array_equal(ds.y_test, expect["test"][1])
    assert ds.classes == [f"c{i:02d}" for i in range(10)]
    (tmp_path / "b").mkdir()
    _tar(tree, "cifar10", tmp_path / "b" / "cifar10.tar.gz")
    ds2 = load_dataset("c10", tmp_path / "b", download=False)
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)
    np.testing.assert_array_equal(ds2.y_test, ds.y_test)
    # the archive's path itself works too
    ds3 = load_dataset("c10", tmp_path / "b" / "cifar10.tar.gz", download=False)
    np.testing.assert_array_equal(ds3.x_test, ds.x_test)


def test_a_fifo_or_device_in_a_tree_is_skipped_not_read(tmp_path):
    """Reading a FIFO named like an image would wait forever; a link to a device would never end."""
    import os

    tree = tmp_path / "a" / "cifar10"
    expect = write_tree(tree)
    os.mkfifo(tree / "train" / "c00" / "9999.png")
    (tree / "train" / "c01" / "9998.png").symlink_to("/dev/zero")
    ds = load_dataset("c10", tmp_path / "a", download=False)
    np.testing.assert_array_equal(ds.y_train, expect["train"][1])


def test_cifar100_tree(tmp_path):
    expect = write_tree(tmp_path / "cifar100", n_classes=100, per_class=(1, 1))
    ds = load_dataset("c100", tmp_path, download=False)
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.y_train, expect["train"][1])


def test_jpeg_tree_decodes_like_pillow(tmp_path):
    write_tree(tmp_path / "cifar10", per_class=(2, 1), fmt="JPEG")
    ds = load_dataset("c10", tmp_path, download=False)
    f = sorted((tmp_path / "cifar10" / "train" / "c00").iterdir())[0]
    np.testing.assert_array_equal(ds.x_train[0], np.asarray(Image.open(f).convert("RGB")))


def test_cache_second_load_is_fast_and_equal(tmp_path):
    write_tree(tmp_path / "cifar10", per_class=(20, 5))
    t = time.perf_counter()
    a = load_dataset("c10", tmp_path, download=False)
    first = time.perf_counter() - t
    t = time.perf_counter()
    b = load_dataset("c10", tmp_path, download=False)
    second = time.perf_counter() - t
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert second < first
    # a changed source is decoded again, not served stale
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "cifar10" / "train" / "c00" / "9999.png")
    c = load_dataset("c10", tmp_path, download=False)
    assert len(c.x_train) == len(a.x_train) + 1


def test_a_changed_source_replaces_its_old_cache_entry(tmp_path, monkeypatch):
    """A refreshed copy of the same data (a new mtime) decoded again must not leave the old
    177 MB entry behind for good; entries of other sources, other hosts and older versions stay."""
    import json
    import shutil

    from archsearch.data import cifar

    cache = tmp_path / "cache"
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(cache))
    write_tree(tmp_path / "a" / "cifar10", per_class=(2, 1))
    write_tree(tmp_path / "b" / "cifar10", per_class=(2, 1))

    def entries():
        return {e.name for e in cache.iterdir() if e.is_dir()}

    load_dataset("c10", tmp_path / "a", download=False)
    (a_old,) = entries()
    load_dataset("c10", tmp_path / "b", download=False)
    (b_entry,) = entries() - {a_old}
    legacy = cache / "c10-tree-0000000000000000"  # written before entries recorded their source
    shutil.copytree(cache / a_old, legacy)
    (legacy / "source.json").unlink()
    other_host = cache / "c10-tree-1111111111111111"  # a's path on another machine sharing this cache
    shutil.copytree(cache / a_old, other_host)
    ident = json.loads((other_host / "source.json").read_text())
    (other_host / "source.json").write_text(json.dumps({**ident, "host": "elsewhere"}))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a" / "cifar10" / "train" / "c00" / "9999.png")
    load_dataset("c10", tmp_path / "a", download=False)
    (a_new,) = entries() - {a_old, b_entry, legacy.name, other_host.name}
    assert entries() == {a_new, b_entry, legacy.name, other_host.name}  # only a's old entry went
    monkeypatch.setattr(cifar, "_read_tree", lambda *a: pytest.fail("b was decoded again"))
    assert len(load_dataset("c10", tmp_path / "b", download=False).x_train) == 20  # from its kept entry


def test_the_cache_sees_pickles_overwritten_in_place(tmp_path):
    import os

    write_cifar10_pickles(tmp_path / "a")
    a = load_dataset("c10", tmp_path / "a", download=False)
    d = tmp_path / "a" / "cifar-10-batches-py"
    batch = pickle.loads((d / "data_batch_1").read_bytes())
    batch[b"labels"] = [(y + 1) % 10 for y in batch[b"labels"]]
    stamp = os.stat(d).st_mtime_ns
    (d / "data_batch_1").write_bytes(pickle.dumps(batch))  # in place: the folder's mtime and count stay
    os.utime(d, ns=(stamp, stamp))
    b = load_dataset("c10", tmp_path / "a", download=False)
    assert (b.y_train[:12] == (a.y_train[:12] + 1) % 10).all()


def test_missing_data_says_what_to_pass(tmp_path):
    with pytest.raises(ArchsearchError) as e:
        load_dataset("c100", tmp_path, download=False)
    msg = str(e.value)
    assert "--data-dir" in msg and "cifar-100-python/" in msg and "cifar100.tar.gz" in msg
    assert "\n" not in msg


def test_damaged_archive_is_a_clear_error(tmp_path):
    (tmp_path / "cifar10.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ArchsearchError, match="cannot read"):
        load_dataset("c10", tmp_path, download=False)


def test_wrong_class_count_is_a_clear_error(tmp_path):
    write_tree(tmp_path / "x", n_classes=3, per_class=(1, 1))
    _tar(tmp_path / "x", "cifar10", tmp_path / "cifar10.tar.gz")
    with pytest.raises(ArchsearchError, match="3 class folders, expected 10"):
        load_dataset("c10", tmp_path, download=False)


def test_digits_fixed_split(digits):
    assert digits.x_train.shape == (1437, 32, 32, 3) and digits.x_test.shape == (360, 32, 32, 3)
    assert digits.x_train.dtype == np.uint8 and not digits.flip
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    assert np.bincount(digits.y_test).min() >= 35  # stratified


# -- DeviceLoader ---------------------------------------------------------------------------
def _loader(x, y, **kw):
    args = dict(batch_size=16, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, train=True, flip=True, seed=0)
    args.update(kw)
    return DeviceLoader(x, y, **args)


def test_loader_crops_are_windows_of_the_padded_image():
    x = _images(40, 3)
    y = np.arange(40)
    ld = _loader(x, y)  # mean 0, std 1/255: outputs are raw pixel values
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0))).transpose(0, 3, 1, 2)
    seen, flipped = [], 0
    for xb, yb in ld:
        for img, i in zip(xb.numpy(), yb.numpy()):
            seen.append(int(i))
            ok = False
            for cand, flip in ((img, False), (img[:, :, ::-1], True)):
                for dy in range(9):
                    for dx in range(9):
                        if np.array_equal(cand, padded[i, :, dy:dy + 32, dx:dx + 32]):
                            ok, flipped = True, flipped + flip
                            break
                    if ok:
                        break
                if ok:
                    break
            assert ok, f"image {i} is not a (flipped) 32x32 window of its padded original"
    assert sorted(seen) == list(range(40))  # one epoch = every image once
    assert 0 < flipped < 40


def test_loader_eval_mode_is_exact_and_normalised():
    x = _images(10, 4)
    ld = DeviceLoader(x, np.zeros(10), 4, CIFAR_MEAN, CIFAR_STD, train=False)
    xb = torch.cat([b for b, _ in ld])
    expect = (x.transpose(0, 3, 1, 2) / 255.0 - np.array(CIFAR_MEAN)[:, None, None]) / np.array(CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(xb.numpy(), expect, atol=1e-5)
    assert len(ld) == 3


def test_loader_is_seeded_and_resumable():
    x, y = _images(50, 5), np.arange(50)
    a = [xb.clone() for xb, _ in _loader(x, y, seed=7)]
    b = [xb.clone() for xb, _ in _loader(x, y, seed=7)]
    c = [xb.clone() for xb, _ in _loader(x, y, seed=8)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    ld = _loader(x, y, seed=1)
    list(ld)
    state = ld.state_dict()
    nxt = [xb.clone() for xb, _ in ld]
    ld2 = _loader(x, y, seed=99)
    ld2.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(nxt, [xb for xb, _ in ld2]))


@pytest.mark.realdata
def test_real_cifar10_archive():
    """The shared real CIFAR-10 (../shared/data), where present: counts, labels, speed of the cached load."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (root / "cifar10.tar.gz").exists():
        pytest.skip("../shared/data/cifar10.tar.gz not present")
    ds = load_dataset("c10", root, download=False)
    assert ds.x_train.shape == (50000, 32, 32, 3) and ds.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [5000] * 10
    np.testing.assert_allclose(ds.x_train.reshape(-1, 3).mean(0) / 255, [0.49125, 0.48209, 0.44652], atol=1e-4)
    t = time.perf_counter()
    load_dataset("c10", root, download=False)
    assert time.perf_counter() - t < 1.0


def test_pillow_fallback_decodes_the_same(tmp_path):
    from archsearch.data.cifar import _decode_pillow, _decode_torchvision

    write_tree(tmp_path / "t", per_class=(1, 1), fmt="JPEG")
    blobs = [f.read_bytes() for f in sorted((tmp_path / "t").rglob("*.jpeg"))]
    np.testing.assert_array_equal(_decode_pillow(blobs), _decode_torchvision(blobs))
    with pytest.raises(ArchsearchError, match="cannot decode"):
        _decode_pillow([b"junk"])


def test_digits_come_from_the_array_cache_without_scikit_learn(tmp_path):
    """A sweep's workers each load digits: after the first decode they read the cached arrays,
    the same ones, without importing scikit-learn (a second of every worker's start)."""
    import os
    import subprocess
    import sys

    from archsearch.data.digits import _decode

    env = {**os.environ, "ARCHSEARCH_CACHE": str(tmp_path / "cache")}
    probe = ("import sys, numpy as np; from archsearch.data import load_dataset; d = load_dataset('digits'); "
             "np.save(sys.argv[1], d.x_test); print('sklearn' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "a.npy")], env=env, capture_output=True,
                           text=True)
    second = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "b.npy")], env=env, capture_output=True,
                            text=True)
    assert (first.stdout.strip(), second.stdout.strip()) == ("True", "False"), (first.stderr, second.stderr)
    arrays, _ = _decode()
    assert np.array_equal(np.load(tmp_path / "b.npy"), arrays["x_test"])


# -- hostile data: FIFOs, huge files, gzip bombs (issue 27) --------------------------------------------
# The bound on a refusing process's peak memory: what starting costs (measured: 0.65 GiB when
# the refusal comes at load, 0.85 GiB once a streamed training has started its workers) with
# room to spare, and below what the files alone would cost read whole (2 and 3 GiB).
PEAK_BOUND = 3 << 29  # 1.5 GiB
_PEAK = ("import resource, subprocess, sys\n"
         "r = subprocess.run(sys.argv[1:])\n"
         "print('peak-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(r.returncode)\n")


def run_peak(*args, env=None, timeout=180):
    """`archsearch ARGS` in a child process: (its result, the child's peak resident memory in
    bytes). A wrapper process runs it, so earlier children of pytest do not count."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "archsearch", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    lines = r.stderr.splitlines()
    assert lines and lines[-1].startswith("peak-kib "), r.stderr
    r.stderr = "\n".join(lines[:-1]) + "\n"
    return r, int(lines[-1].split()[1]) * 1024


def one_line(r, needle):
    """A clean refusal: exit 2, one `error:` line holding `needle`, last (after a training's
    progress lines, where it had started), no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:] and needle in lines[-1], r.stderr
    return lines[-1]


def gzip_bomb(dest, member, size=2 << 30, extra=()):
    """A .tar.gz whose `member` holds `size` zero bytes (2 GiB packs into about 2 MB), then the
    small `extra` (name, bytes) members. Built in about a second: one MiB of zeros is deflated
    once and its output repeated, each copy after a full flush (so none refers back to another)."""
    import io
    import zlib

    mib = 1 << 20
    assert size % mib == 0
    zeros = bytes(mib)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc, n = 0, 0
    with open(dest, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03")  # gzip header: deflate, no name, mtime 0
        head = tarfile.TarInfo(member)
        head.size = size
        head = head.tobuf(format=tarfile.GNU_FORMAT)
        out.write(comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH))
        crc, n = zlib.crc32(head, crc), n + len(head)
        chunk = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
        for _ in range(size // mib):
            out.write(chunk)
            crc = zlib.crc32(zeros, crc)
        n += size
        tail = io.BytesIO()
        with tarfile.open(fileobj=tail, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name, data in extra:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        out.write(comp.compress(tail.getvalue()) + comp.flush())
        crc, n = zlib.crc32(tail.getvalue(), crc), n + len(tail.getvalue())
        out.write(crc.to_bytes(4, "little") + (n % (1 << 32)).to_bytes(4, "little"))
    return dest


def tar_pieces(entries):
    """The pieces of a tar of `entries`, (TarInfo or name, chunk, times) each: a member of
    `chunk` repeated `times` times (a TarInfo's own type: an extended header is a member too)."""
    pieces = []
    for info, chunk, times in entries:
        info = tarfile.TarInfo(info) if isinstance(info, str) else info
        info.size = len(chunk) * times
        pieces += [(info.tobuf(format=tarfile.GNU_FORMAT), 1), (chunk, times), (bytes(-info.size % 512), 1)]
    return pieces + [(bytes(1024), 1)]


def write_pieces(dest, pieces, gz=True):
    """`pieces`, (bytes, times) each, written out (`gz`: as a .gz, each piece deflated once after
    a full flush and its output repeated, so a GiB of repeats takes about a second)."""
    import zlib

    with open(dest, "wb") as out:
        if not gz:
            for chunk, times in pieces:
                for _ in range(times):
                    out.write(chunk)
            return dest
        comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        crc, n = 0, 0
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03")  # gzip header: deflate, no name, mtime 0
        for chunk, times in pieces:
            z = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
            for _ in range(times):
                out.write(z)
                crc = zlib.crc32(chunk, crc)
            n += len(chunk) * times
        out.write(comp.flush())
        out.write(crc.to_bytes(4, "little") + (n % (1 << 32)).to_bytes(4, "little"))
    return dest


def extended_header(kind, size):
    """An extended tar header (GNU long name b"L" or link b"K", pax b"x", pax global b"g",
    Solaris b"X") holding `size` bytes of b"a" (at most a MiB, or whole MiBs), as a `tar_pieces` entry."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = kind
    chunk = min(size, 1 << 20)
    assert size % chunk == 0
    if kind in b"xgX" and size == chunk:  # one valid pax record of `size` bytes, where one chunk holds it
        head = f"{size} comment=".encode()
        return info, head + b"a" * (size - len(head) - 1) + b"\n", 1
    return info, b"a" * chunk, size // chunk


@pytest.fixture(scope="module")
def pickle_bomb(tmp_path_factory):
    """torchvision's CIFAR-10 archive whose first pickle inflates to 2 GiB (a 2 MB file)."""
    d = tmp_path_factory.mktemp("pickle-bomb")
    gzip_bomb(d / "cifar-10-python.tar.gz", "cifar-10-batches-py/data_batch_1")
    return d


def test_a_gzip_bomb_pickle_is_refused_by_its_header_in_bounded_memory(pickle_bomb, tmp_path):
    r, peak = run_peak("train", "vgg11-c10", "--data-dir", pickle_bomb, "--no-download", "--preset", "tiny",
                       "--out", tmp_path / "r")
    one_line(r, "CIFAR pickle cifar-10-batches-py/data_batch_1 in ")
    assert "2,147,483,648 bytes, more than the 536,870,912 allowed" in r.stderr
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_a_member_longer_than_its_header_or_the_limit_is_refused(tmp_path, monkeypatch):
    """Both bounds of a tar member: its header's size (checked before reading) and the bytes
    actually read (a header that lies about the size cannot pass more)."""
    import io

    from archsearch.data import reading

    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        info = tarfile.TarInfo("m")
        info.size = 1000
        tf.addfile(info, io.BytesIO(bytes(1000)))
    with tarfile.open(tmp_path / "a.tar") as tf:
        m = tf.getmember("m")
        assert reading.read_member(tf, m, "image", "a.tar", 1000) == bytes(1000)
        with pytest.raises(ArchsearchError, match="image m in a.tar: 1,000 bytes, more than the 999 allowed"):
            reading.read_member(tf, m, "image", "a.tar", 999)
        m.size = 10  # the header lies: the data runs on
        monkeypatch.setattr(tf, "extractfile", lambda m: io.BytesIO(bytes(1000)))
        with pytest.raises(ArchsearchError, match="more bytes than its header's 10"):
            reading.read_member(tf, m, "image", "a.tar", 999)


def test_a_refused_cifar_pickle_in_an_archive_names_its_file(tmp_path):
    write_cifar10_pickles(tmp_path / "src")
    d = tmp_path / "src" / "cifar-10-batches-py"
    (d / "data_batch_3").write_bytes(b"\x80\x02cposix\nsystem\nq\x00.")  # names a callable: refused
    _tar(d, "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(ArchsearchError) as e:
        load_dataset("c10", tmp_path, download=False)
    assert str(e.value).startswith(f"cannot read CIFAR pickle cifar-10-batches-py/data_batch_3 in {tmp_path}")
    assert "refused to load posix.system" in str(e.value)


def test_an_image_declaring_more_pixels_is_refused_before_decoding(tmp_path):
    """A CIFAR image whose header declares 60,000 x 60,000 pixels (10 GB as RGB) is named and
    refused by its header; nothing is decoded."""
    import struct
    import zlib

    write_tree(tmp_path / "cifar10", per_class=(1, 1))
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb = tmp_path / "cifar10" / "train" / "c03" / "0000.png"
    bomb.write_bytes(png)
    with pytest.raises(ArchsearchError, match=f"CIFAR-10 images must be 32x32, {bomb} is 60000x60000"):
        load_dataset("c10", tmp_path, download=False)


_HEADERS = {b"L": "GNU long-name", b"K": "GNU long-link", b"x": "pax", b"g": "pax global", b"X": "Solaris extended"}


@pytest.mark.parametrize("kind", list(_HEADERS))
def test_an_extended_tar_header_past_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, kind):
    """Python's tarfile reads a long-name, long-link or pax header whole, whatever size it
    declares: every tar is opened by reading.open_tar, which refuses one past the limit first,
    in a streaming pass (any compression) and in an uncompressed tar read at random."""
    from archsearch.data import reading
    from archsearch.data.stream import check_random_access

    monkeypatch.setattr(reading, "MAX_TAR_HEADER_BYTES", 4096)
    for size in (3072, 8192):  # with its 512-byte block and the member's: 4,096 bytes, and past them
        pieces = tar_pieces([extended_header(kind, size), ("set/train/a/0.png", b"x" * 10, 1)])
        for gz, mode in ((True, "r|*"), (False, "r:")):
            path = write_pieces(tmp_path / f"{size}.tar{'.gz' if gz else ''}", pieces, gz)
            if size == 3072:
                with reading.open_tar(path, mode=mode) as tf:
                    assert [m.size for m in tf] == [10] and len(tf.members) <= 1  # no member list kept
                continue
            with pytest.raises(reading.TarHeaderRefused, match=f"^a {_HEADERS[kind]} header of 8,192 bytes at "
                                                                "byte 0: more than the 4,096 bytes allowed"):
                with reading.open_tar(path, mode=mode) as tf:
                    list(tf)
    with pytest.raises(ArchsearchError, match=f"^cannot read {path}: a {_HEADERS[kind]} header of 8,192"):
        check_random_access(path)  # the uncompressed one: not "is compressed"


def test_tar_headers_together_past_the_limits_are_refused(tmp_path, monkeypatch):
    """The limit holds for all the headers in front of one member together (a chain of them,
    a GNU sparse map), for the pax global headers of an archive together, and for the number
    of extended headers in a row (each level of which Python's tarfile reads recursively)."""
    from archsearch.data import reading

    def refused(entries, match):
        path = write_pieces(tmp_path / "a.tar.gz", tar_pieces(entries))
        with pytest.raises(reading.TarHeaderRefused, match=match):
            with reading.open_tar(path) as tf:
                list(tf)

    member = ("m", b"x", 1)
    refused([extended_header(b"L", 100)] * 17 + [member], "^more than 16 extended headers in a row at byte 0$")
    monkeypatch.setattr(reading, "MAX_TAR_HEADER_BYTES", 4096)
    refused([extended_header(b"x", 1536), extended_header(b"L", 1024), extended_header(b"K", 1024), member],
            "more than the 4,096 bytes allowed for the headers of one member")
    refused([extended_header(b"g", 2048), member] * 3, "^pax global headers of more than 4,096 bytes in all")
    # an old GNU sparse member whose map runs on in extension blocks, 512 bytes each
    info = tarfile.TarInfo("s")
    info.type = tarfile.GNUTYPE_SPARSE
    head = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    head[482] = 1  # isextended
    head[148:156] = b"        "
    head[148:156] = b"%06o\0 " % sum(head)
    block = bytearray(b"00000000001\0" * 42 + bytes(8))  # 21 (offset, length) pairs, then the flag: more
    block[504] = 1
    path = write_pieces(tmp_path / "s.tar.gz", [(bytes(head), 1), (bytes(block), 100), (bytes(1024), 1)])
    with pytest.raises(reading.TarHeaderRefused, match="^the headers of the member at byte 0: more than the 4,096"):
        with reading.open_tar(path) as tf:
            list(tf)


def test_a_huge_tar_header_in_a_cifar_archive_is_refused_in_bounded_memory(tmp_path):
    """A 1 MB cifar10.tar.gz opening with a 1 GiB pax header: refused by its declared size,
    before a byte of it is read (tarfile alone would hold it twice over)."""
    bomb = write_pieces(tmp_path / "cifar10.tar.gz", tar_pieces([extended_header(tarfile.XHDTYPE, 1 << 30)]))
    r, peak = run_peak("train", "vgg11-c10", "--data-dir", tmp_path, "--no-download", "--preset", "tiny",
                       "--out", tmp_path / "r")
    one_line(r, f"cannot read {bomb}: a pax header of 1,073,741,824 bytes at byte 0: more than the 1,048,576 bytes "
                "allowed for the headers of one member")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_other_members_beside_the_cifar_pickles_are_passed_over_unread(tmp_path):
    """Only the pickles torchvision's format names are read from cifar-10-batches-py/: its
    readme.html or anything else there is passed over (four 400 MiB members, 1.6 GiB, in a
    2 MB archive: kept whole, they were)."""
    xtr, ytr, _, _ = write_cifar10_pickles(tmp_path / "src")
    d = tmp_path / "src" / "cifar-10-batches-py"
    pickles = [(f"cifar-10-batches-py/{f.name}", f.read_bytes(), 1) for f in sorted(d.iterdir())]
    small = tmp_path / "small"
    small.mkdir()
    write_pieces(small / "cifar-10-python.tar.gz", tar_pieces(
        [("cifar-10-batches-py/readme.html", b"<html>", 1), ("cifar-10-batches-py/data_batch_9", b"junk", 1)]
        + pickles))
    ds = load_dataset("c10", small, download=False)
    np.testing.assert_array_equal(ds.x_train, xtr)
    np.testing.assert_array_equal(ds.y_train, ytr)
    # the junk first, then the pickles, one of them refused at the end (so nothing trains)
    (d / "data_batch_3").write_bytes(b"\x80\x02cposix\nsystem\nq\x00.")
    junk = [(f"cifar-10-batches-py/junk{i}", bytes(1 << 20), 400) for i in range(4)]
    pickles = [(f"cifar-10-batches-py/{f.name}", f.read_bytes(), 1) for f in sorted(d.iterdir())]
    big = tmp_path / "big"
    big.mkdir()
    write_pieces(big / "cifar-10-python.tar.gz", tar_pieces(junk + pickles))
    r, peak = run_peak("train", "vgg11-c10", "--data-dir", big, "--no-download", "--preset", "tiny",
                       "--out", tmp_path / "r")
    one_line(r, f"cannot read CIFAR pickle cifar-10-batches-py/data_batch_3 in {big}")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"


def test_a_cifar_image_past_its_small_limit_is_refused_before_it_is_read(tmp_path):
    """A CIFAR image is 32x32 (1 to 4 KB): one of more than MAX_CIFAR_IMAGE_BYTES (1 MiB) is
    named and refused by its size, before it or the next is read (24 sparse 63 MiB files,
    1.5 GB, under the general 64 MiB limit: read whole, they were)."""
    import os

    from archsearch.data import reading

    write_tree(tmp_path / "cifar10", per_class=(1, 1))
    bigs = [tmp_path / "cifar10" / "train" / "c00" / f"big{i:02d}.png" for i in range(24)]
    for f in bigs:
        with open(f, "wb") as fh:
            fh.truncate(63 << 20)  # all holes: no disk
    r, peak = run_peak("train", "vgg11-c10", "--data-dir", tmp_path, "--no-download", "--preset", "tiny",
                       "--out", tmp_path / "r")
    one_line(r, f"cannot read CIFAR image {bigs[0]}: 66,060,288 bytes, more than the 1,048,576 allowed")
    print(f"peak {peak / 2**20:.0f} MiB")  # for the record: pytest -s
    assert peak < PEAK_BOUND, f"peak {peak / 2**30:.2f} GiB"
    # in an archive: refused by the member's header
    for f in bigs:
        os.unlink(f)
    (tmp_path / "arch").mkdir()
    _tar(tmp_path / "cifar10", "cifar10", tmp_path / "arch" / "cifar10.tar.gz")
    with tarfile.open(tmp_path / "arch" / "cifar10.tar.gz", "r:gz") as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else b"") for m in tf]
    entries = [(m, data, 1) for m, data in members if m.isfile()]
    entries.insert(0, ("cifar10/train/c00/big.png", bytes(1 << 20), 2))
    path = write_pieces(tmp_path / "arch" / "cifar10.tar.gz", tar_pieces(entries))
    with pytest.raises(ArchsearchError, match=f"^cannot read CIFAR image cifar10/train/c00/big.png in {path}: "
                                              "2,097,152 bytes, more than the 1,048,576 allowed$"):
        load_dataset("c10", tmp_path / "arch", download=False)
    assert reading.MAX_CIFAR_IMAGE_BYTES == 1 << 20


@pytest.mark.timeout(60)  # the FIFOs would block forever: the timeout makes that a failure
def test_fifos_in_a_cache_entry_are_a_damaged_entry_not_a_hang(tmp_path, monkeypatch):
    import os

    from archsearch.data.cache import cache_dir

    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))  # this test's entry only
    x_tr, *_ = write_cifar10_pickles(tmp_path / "d")
    load_dataset("c10", tmp_path / "d", download=False)
    entry = next(e for e in cache_dir().iterdir() if e.name.startswith("c10-pickles"))
    for name in ("classes.json", "x_test.npy"):
        (entry / name).unlink()
        os.mkfifo(entry / name)
        t = time.perf_counter()
        ds = load_dataset("c10", tmp_path / "d", download=False)  # decoded again, the entry rewritten
        assert time.perf_counter() - t < 20
        np.testing.assert_array_equal(ds.x_train, x_tr)
        assert (entry / name).is_file()
    # an entry's source.json is read when a changed source replaces its old entries
    (entry / "source.json").unlink()
    os.mkfifo(entry / "source.json")
    (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_1").touch()
    load_dataset("c10", tmp_path / "d", download=False)


@pytest.mark.timeout(60)
def test_a_fifo_for_a_cifar_pickle_is_one_line(tmp_path):
    import os

    write_cifar10_pickles(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.unlink()
    os.mkfifo(batch)
    with pytest.raises(ArchsearchError, match=f"cannot read CIFAR pickle {batch}: not a regular file"):
        load_dataset("c10", tmp_path, download=False)


def test_an_empty_cache_or_data_variable_means_the_default(tmp_path, monkeypatch):
    from archsearch.data import default_data_dir
    from archsearch.data.cache import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARCHSEARCH_CACHE", "")
    monkeypatch.setenv("ARCHSEARCH_DATA", "")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cache_dir() == tmp_path / "home" / ".cache" / "archsearch" / "arrays"
    assert default_data_dir() == tmp_path / "home" / ".cache" / "archsearch" / "data"
    write_tree(tmp_path / "src" / "cifar10", per_class=(1, 1))
    load_dataset("c10", tmp_path / "src", download=False)
    assert list(work.iterdir()) == []  # nothing cached into the current folder
    assert len(list(cache_dir().iterdir())) == 1
