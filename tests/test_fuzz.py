"""Property-based fuzzing of the whole command line (issue 9, "make it stay fixed").

Every command of `archsearch` is driven through click's test runner with generated bad
arguments and environment variables, and with generated malformed files of every format
archsearch reads (patterns, ArchSpec JSON, results tables, sweep TOML, checkpoints,
journals, CIFAR pickles). Whatever comes in, a command ends with exit code 0 or 2 and
never with a traceback.

Nothing here trains or downloads: the first allocation of a network (`train.build_with`), the
Chromium render and torchvision's download are replaced by stubs, so "the input was good
enough to start real work" is one more clean exit 2. The examples are derandomized, so CI
sees the same ones every run; `HYPOTHESIS_PROFILE=explore pytest tests/test_fuzz.py` draws
new ones (and more of them).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import string
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from archsearch.cli import cli
from archsearch.errors import EnvironmentFailure
from helpers import make_pattern

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.register_profile("default", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """`n` examples in the default suite (about half a minute in all), ten times as many to explore."""
    return n * (10 if PROFILE == "explore" else 1)


class ReachedWork(EnvironmentFailure):
    """Raised by the stubs: the input got as far as real work (a clean exit 2 here)."""


def _stop(*a, **k):
    raise ReachedWork("reached real work (stopped by the fuzz test)")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory and libraries in tmp, no training, no network, no browser."""
    from archsearch import counting, plot, propose, train
    from archsearch.data import cifar
    from archsearch.sweep import app, results, table_report

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train, "build_with", _stop)
    monkeypatch.setattr(propose.base, "build", _stop)  # where proposers build nets (the lottery's initialisation)
    for module in (plot, results, table_report):  # every module that calls it, by its own name for it
        monkeypatch.setattr(module, "render_png", _stop)
    monkeypatch.setattr(app, "spawn_workers", _stop)  # worker processes would train for real
    # a small machine: every memory check refuses big networks and masks at once (a width-16
    # VGG-19 would otherwise be generated, slowly, for real)
    monkeypatch.setattr(counting, "memory_available", lambda dev: 256 << 20)
    monkeypatch.setattr(cifar, "_download", lambda fmt, root: "no network in the fuzz test")
    for var in ("ARCHSEARCH_STORAGE", "ARCHSEARCH_PATTERNS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def leaf_commands(group: click.Group, prefix: tuple = ()) -> list[tuple[tuple, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += leaf_commands(cmd, prefix + (name,))
        else:
            out.append((prefix + (name,), cmd))
    return out


COMMANDS = leaf_commands(cli)

# values a hostile or careless user types. Paths stay relative to the sandbox, or point where
# nothing can be created (/proc): the tests run as root on CI, and an output named /etc/passwd
# would really be replaced.
NASTY = ["", " ", "-", "--", "nan", "NaN", "inf", "-inf", "-1", "0", "1e20", "1e-320", str(2 ** 64), "-0",
         "0.5", "3", "abc", "../x", "a/../../b", "/proc/archsearch-fuzz/x", "/proc/self/status", ".", "..",
         "vgg11-digits", "vgg16-c10", "vgg19-c100", "vgg99-digits", "resnet56-c10", "slimming-vgg11-digits",
         "magnitude-vgg16-c10", "slimming-vgg16-c10", "quickstart", "fig3-vgg16-c10", "x" * 300, "é∂ƒ",
         "postgresql://u:hunter2@127.0.0.1:1/db", "sqlite:////nonexistent/x.db", "file:///dev/null",
         "0.5M,1M", "1M,nan", "0.05,0.1", "channels", "sparsity", "params", "macs", "cuda:9", "cpu", "tpu",
         "paper", "fast", "tiny", "quick", "scratch-b", "finetune", "uniform,random", "none", "reduced", "8"]
FILE_NAMES = ["pattern.json", "spec.json", "results.json", "sweep.toml", "junk.bin", "fifo.json", "dir"]
# (no fresh folder for $ARCHSEARCH_CACHE: each would decode a dataset again)
ENV_VALUES = ["", "junk.bin", "fifo.json", "/proc/archsearch-fuzz", "pattern.json", "dir", "lib",
              "postgresql://u:hunter2@127.0.0.1:1/db", "sqlite:////proc/x.db", "j.log"]


def _value() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), st.sampled_from(FILE_NAMES),
                     st.text(alphabet=string.printable, max_size=12),
                     st.integers(-10 ** 30, 10 ** 30).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


# a plausible invocation of each command, so that most examples get past click's own checks
# and into archsearch's; drawn options are added after it (click keeps an option's last value)
BASE = {
    ("train",): ["vgg11-digits", "--preset", "tiny", "--out", "r"],
    ("extract",): ["--from", "slimming-vgg11-digits", "--preset", "tiny", "--workdir", "wd", "--library", "lib"],
    ("transfer",): ["--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--out", "t"],
    ("patterns", "show"): ["slimming-vgg16-c10"],
    ("plot", "pattern"): ["magnitude-vgg16-c10", "-o", "p.html"],
    ("plot", "efficiency"): ["good_results.json", "-o", "e.html"],
    ("sweep", "run"): ["quickstart", "--workdir", "wd", "--workers", "1"],
    ("sweep", "status"): ["quickstart", "--workdir", "wd"],
    ("sweep", "worker"): ["--storage", "j.log", "--study", "s"],
    ("report",): ["quickstart", "--workdir", "wd"],
    ("demo",): ["--workdir", "wd", "--workers", "1"],
}


@st.composite
def invocation(draw):
    path, cmd = draw(st.sampled_from(COMMANDS))
    args = list(path)
    if draw(st.integers(0, 3)):  # mostly start from the plausible form
        base = list(BASE.get(path, []))
        if base and not base[0].startswith("-") and draw(st.booleans()):
            base[0] = draw(_value())  # a bad positional argument
        args += base
    params = [p for p in cmd.params if p.name not in ("help", "version")]
    for p in draw(st.lists(st.sampled_from(params), max_size=6)) if params else []:
        if isinstance(p, click.Argument):
            args.append(draw(_value()))
        elif getattr(p, "is_flag", False):
            args.append(draw(st.sampled_from(p.opts + list(p.secondary_opts))))
        else:
            args += [draw(st.sampled_from(p.opts)), draw(_value())]
    env = draw(st.dictionaries(st.sampled_from(["ARCHSEARCH_PATTERNS", "ARCHSEARCH_CACHE", "ARCHSEARCH_STORAGE"]),
                               st.sampled_from(ENV_VALUES), max_size=2))
    return args, env


def check_clean(result, args) -> None:
    """Exit 0 or 2, no traceback, and no exception other than the runner's SystemExit."""
    exc = result.exception
    detail = f"args {args!r}\nexit {result.exit_code}\n{result.output[-3000:]}"
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback

        detail += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert result.exit_code in (0, 2), detail
    assert "Traceback" not in result.output, detail
    assert exc is None or isinstance(exc, SystemExit), detail
    if result.exit_code == 2:
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, detail


def _files(root: Path) -> None:
    """The files the NASTY names point at: each a malformed example of its format."""
    (root / "pattern.json").write_text('{"schema": 1, "name": "p", "accuracy": {}}')
    (root / "spec.json").write_text('{"family": "vgg", "depth": 11, "widths": [1e9], "stages": [0]}')
    (root / "results.json").write_text('[{"generator": "uniform", "params": "many"}]')
    (root / "good_results.json").write_text(json.dumps(FORMATS["results"][0]()))
    (root / "sweep.toml").write_text('name = "x"\ntarget = 5\n')
    (root / "junk.bin").write_bytes(b"\xff\xfe\x00garbage")
    if not (root / "fifo.json").exists():
        os.mkfifo(root / "fifo.json")
    (root / "dir").mkdir(exist_ok=True)


@given(invocation())
@settings(max_examples=examples(250))
def test_any_arguments_end_cleanly(sandbox, inv):
    args, env = inv
    _files(sandbox)
    result = CliRunner().invoke(cli, args, prog_name="archsearch", env=env)
    check_clean(result, args)


# -- malformed files of every format -------------------------------------------------------------------
def _json_leaf() -> st.SearchStrategy:
    return st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                     st.sampled_from([[], {}, [[]], -1, 0, 1e308, "../x", "channels", "sparsity"]))


@st.composite
def mutated(draw, base):
    """`base` (a valid document) with a few random edits: a leaf replaced, a key dropped, a
    list emptied or lengthened, a value wrapped in a list or an object."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        path, node = [], doc
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        op = draw(st.sampled_from(["replace", "drop", "wrap", "empty", "grow"]))
        if op == "replace":
            parent[key] = draw(_json_leaf())
        elif op == "drop" and isinstance(parent, dict):
            del parent[key]
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"x": parent[key]}]))
        elif op == "empty" and isinstance(parent[key], (list, dict)):
            parent[key] = type(parent[key])()
        elif op == "grow" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] + parent[key][:1]
    return doc


def _raw_text() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"[" * 50_000, b"{" * 50_000, b"NaN",
                                                               b'{"a": 1e999}', b"\xff\xfe"]))


def _valid_spec() -> dict:
    from archsearch.archs import base_spec

    return base_spec("vgg11", 10, width=0.125).to_dict()


def _valid_sparse_spec() -> dict:
    import numpy as np

    from archsearch.archs import base_spec, get_family
    from archsearch.spec import ArchSpec

    base = base_spec("vgg11", 10, width=0.125)
    rng = np.random.default_rng(0)
    masks = {c.name: rng.random(c.shape) < 0.5 for c in get_family("vgg").convs(base)}
    return base.replace(masks=masks).to_dict()


FORMATS = {
    "pattern": (lambda: make_pattern("sparsity", "vgg11", "digits", name="p"),
                [["patterns", "show", "{f}"], ["plot", "pattern", "{f}", "-o", "out.html"],
                 ["transfer", "--from", "{f}", "--to", "vgg11-digits", "--budget", "20K"]]),
    "spec": (_valid_spec, [["train", "vgg11-digits", "--spec", "{f}", "--preset", "tiny", "--out", "r"],
                           ["train", "vgg11-digits", "--spec", "{f}", "--schedule", "scratch-b", "--out", "r2"]]),
    "sparse spec": (_valid_sparse_spec, [["train", "vgg11-digits", "--spec", "{f}", "--out", "r"]]),
    "results": (lambda: [{"generator": "uniform", "budget": "1M", "params": 10, "macs": 20, "best_acc_mean": 50.0,
                          "best_acc_std": 1.0, "seeds": 2}],
                [["plot", "efficiency", "{f}", "-o", "e.html"]]),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_malformed_files_end_cleanly(sandbox, fmt):
    valid, commands = FORMATS[fmt]
    base = valid()

    @given(st.one_of(mutated(base).map(lambda d: json.dumps(d).encode()), _raw_text()), st.sampled_from(commands))
    @settings(max_examples=examples(40))
    def inner(content, template):
        f = sandbox / f"{fmt.replace(' ', '_')}.json"
        f.write_bytes(content)
        args = [a.replace("{f}", str(f)) for a in template]
        check_clean(CliRunner().invoke(cli, args, prog_name="archsearch"), args)

    inner()


def _toml(d: dict, prefix: str = "") -> str:
    """A small TOML writer for generated sweep specs (values of any type, tables nested)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v if not isinstance(x, dict)) + "]"
        if v is None:
            return '""'
        return "{}"

    lines = [f"{json.dumps(k)} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            lines.append(f"\n[{name}]\n" + _toml(v, name))
    return "\n".join(lines)


QUICK = {"name": "fz", "target": "vgg11-digits", "generators": ["uniform", "random"], "kinds": ["channels"],
         "fractions": [0.05, 0.2], "seeds": 1, "schedule": "scratch-e",
         "train": {"preset": "tiny", "epochs": 1, "width": 0.25, "train_subset": 200, "checkpoint_every": 1},
         "run": {"heartbeat": 1, "grace": 4}, "scales": {"reduced": {"seeds": 1, "train": {"epochs": 1}}}}


@given(st.one_of(mutated(QUICK).map(lambda d: _toml(d).encode()), _raw_text()),
       st.sampled_from([["sweep", "run", "{f}", "--workers", "1"], ["sweep", "run", "{f}", "--scale", "reduced", "--workers", "1"],
                        ["sweep", "status", "{f}"], ["report", "{f}"]]))
@settings(max_examples=examples(40))
def test_malformed_sweep_specs_end_cleanly(sandbox, content, template):
    f = sandbox / "fz.toml"
    f.write_bytes(content)
    args = [a.replace("{f}", str(f)) for a in template]
    check_clean(CliRunner().invoke(cli, args, prog_name="archsearch"), args)


@given(st.one_of(_raw_text(), st.builds(lambda d: pickle.dumps(d), st.dictionaries(
    st.sampled_from(["fingerprint", "epoch", "model", "opt", "history", "elapsed", "loader_rng"]),
    _json_leaf(), max_size=7))))
@settings(max_examples=examples(30))
def test_malformed_checkpoints_end_cleanly(sandbox, content):
    out = sandbox / "run"
    out.mkdir(exist_ok=True)
    (out / "checkpoint.pt").write_bytes(content)
    args = ["train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--out", str(out)]
    check_clean(CliRunner().invoke(cli, args, prog_name="archsearch"), args)


@given(st.lists(st.one_of(
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
        st.sampled_from(["op_code", "worker_id", "study_id", "trial_id", "study_name", "directions", "user_attr",
                         "state", "values"]), _json_leaf(), max_size=6)),
    st.binary(max_size=30)), max_size=6))
@settings(max_examples=examples(40))
def test_malformed_journals_end_cleanly(sandbox, lines):
    j = sandbox / "optuna-journal.log"
    j.write_bytes(b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[2]}\n' + b"\n".join(lines))
    for args in (["sweep", "status", "s", "--storage", str(j)], ["report", "s", "--storage", str(j)],
                 ["sweep", "worker", "--storage", str(j), "--study", "s"]):
        check_clean(CliRunner().invoke(cli, args, prog_name="archsearch"), args)


@given(st.one_of(_raw_text(), st.builds(lambda d: pickle.dumps(d, protocol=2), st.dictionaries(
    st.sampled_from([b"data", b"labels", b"batch_label", b"filenames"]), _json_leaf(), max_size=4))))
@settings(max_examples=examples(30))
def test_malformed_cifar_pickles_end_cleanly(sandbox, content):
    from test_data import write_cifar10_pickles

    root = sandbox / "data"
    if not (root / "cifar-10-batches-py").exists():
        write_cifar10_pickles(root)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(content)
    cache = sandbox / "cache"
    args = ["train", "vgg11-c10", "--data-dir", str(root), "--preset", "tiny", "--out", "r"]
    check_clean(CliRunner().invoke(cli, args, prog_name="archsearch", env={"ARCHSEARCH_CACHE": str(cache)}), args)


# -- export destinations and artifact ids (issue 27) --------------------------------------------------
def _tree(root: Path) -> dict:
    """Every entry under `root`, links not followed: a file's bytes, a link's target, a folder."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            out[p] = (("link", os.readlink(p)) if p.is_symlink() else ("dir",) if p.is_dir() else
                      ("file", p.read_bytes()) if p.is_file() else ("special",))
    return out


def _export_places(root: Path) -> None:
    """A run, an earlier export of ours, a folder with an export.json that is not ours, and links."""
    import torch

    _files(root)
    if (root / "run").exists():
        return
    (root / "run").mkdir()
    (root / "run" / "spec.json").write_text(json.dumps(_valid_spec()))
    torch.save({"w": torch.zeros(1)}, root / "run" / "model.pt")
    (root / "ours").mkdir()
    (root / "ours" / "export.json").write_text(json.dumps({
        "archsearch_export": 1, "formats": {"torchscript": {"file": "model.ts"}}, "spec": "spec.json",
        "weights": None}))
    (root / "ours" / "model.ts").write_bytes(b"ts")
    (root / "ours" / "spec.json").write_text(json.dumps(_valid_spec()))
    (root / "notours").mkdir()
    (root / "notours" / "export.json").write_text("{}")
    (root / "notours" / "thesis.tex").write_text("years of work")
    for name, to in (("link-ours", "ours"), ("link-notours", "notours"), ("dangling", "nowhere")):
        (root / name).symlink_to(to)


def _must_refuse(root: Path, dest: str) -> bool:
    """What `export --out dest` may not touch: a dangling link, the current folder or one holding
    it, the run folder or one holding it, anything existing but our earlier export, or a place
    under a file."""
    p = Path(dest)
    if p.is_symlink() and not p.exists():
        return True
    real = Path(os.path.realpath(p))
    for keep in (root.resolve(), (root / "run").resolve()):
        if real == keep or real in keep.parents:
            return True
    if os.path.lexists(real):
        return real != (root / "ours").resolve()
    up = real.parent
    while not up.exists():
        up = up.parent
    return not up.is_dir()


@given(st.sampled_from(["", "", "", "/"]),
       st.lists(st.sampled_from([".", "..", "new", "run", "ours", "notours", "link-ours", "link-notours",
                                 "dangling", "junk.bin", "fifo.json", "dir"]), min_size=1, max_size=3))
@settings(max_examples=examples(60))
def test_export_destinations_are_checked_before_any_work(sandbox, monkeypatch, lead, parts):
    """Whatever `--out` names, nothing that was there changes, and the destination is refused (one
    line naming --out) exactly when it is no place for an export, before the network is built."""
    from archsearch import export

    monkeypatch.setattr(export, "build_with", _stop)  # the first step of real work
    _export_places(sandbox)
    dest = lead + "/".join(parts)
    before = _tree(sandbox)
    args = ["export", "run", "--format", "torchscript", "--out", dest]
    result = CliRunner().invoke(cli, args, prog_name="archsearch")
    check_clean(result, args)
    assert result.exit_code == 2 and _tree(sandbox) == before, result.output
    reached = "reached real work" in result.output
    assert reached != _must_refuse(sandbox, dest), f"--out {dest!r}: {result.output}"
    assert reached or "--out" in result.output, result.output


class _FakeS3:
    """Stands in for Optuna's Boto3ArtifactStore: keys in a dict, every key it was given kept."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def write(self, key, body):
        self.objects[key] = body.read()

    def open_reader(self, key):
        import io

        return io.BytesIO(self.objects[key])

    def remove(self, key):
        self.objects.pop(key)


_IDS = st.one_of(st.sampled_from(["../x", "../../escape", "a/../../b", "/abs/x", "..", ".", "", "a/b", "~",
                                  "-rf", ".hidden", "x" * 300, "ok-id", "0b5e6a2c-93c5-4a8f-8c1e-2f3a4b5c6d7e"]),
                 st.text(alphabet=string.printable, max_size=12))


@given(_IDS)
@settings(max_examples=examples(60))
def test_artifact_ids_never_leave_their_folders(sandbox, artifact_id):
    """An artifact id is data (it comes from the storage): one that is not a plain name is one
    line before anything is made; a plain one stays inside the store and the worker's cache."""
    import io

    from archsearch.errors import ArchsearchError
    from archsearch.sweep.table import _Checked, artifact_store, download

    store_dir, cache = sandbox / "wd" / "artifacts", sandbox / "wd" / "artifacts-cache"
    s3 = _FakeS3()
    for store in (artifact_store(str(store_dir)), _Checked(s3, "prefix")):
        before = _tree(sandbox)
        try:
            store.write(artifact_id, io.BytesIO(b"payload"))
            got = download(store, artifact_id, cache, "spec.json")
        except ArchsearchError as e:
            assert len(str(e).splitlines()) == 1 and "artifact id" in str(e), str(e)
            assert _tree(sandbox) == before  # nothing made, here or above
            continue
        assert got == cache / f"{artifact_id}-spec.json" and got.read_bytes() == b"payload"
        made = set(_tree(sandbox)) - set(before)
        assert all(p == cache or p.parent in (store_dir, cache) for p in made), made
    assert all(k.startswith("prefix/") and "/" not in k[7:] and ".." not in k for k in s3.objects), s3.objects


# -- torchvision names (issue 27) ---------------------------------------------------------------------
def _tv_names() -> st.SearchStrategy[str]:
    """NAME in `tv.NAME`: a model archsearch refuses, or no model of torchvision's at all."""
    from archsearch.archs.tv import classification_models, refusal

    known = set(classification_models())
    refused = sorted(n for n in known if refusal(n))
    return st.one_of(st.sampled_from(refused),
                     st.sampled_from(["", ".", "..", "resnet", "vit", "googlenet.", "RESNET18", "resnet18 ", " resnet18",
                                      "resnet18.", "tv.resnet18", "x" * 300, "é∂ƒ", "../resnet18", "__init__",
                                      "get_model", "list_models", "ResNet", "models.resnet18"]),
                     st.text(alphabet=string.ascii_letters + string.digits + "_./ ", max_size=16)
                     ).filter(lambda n: n not in known or n in refused)


TV_FORMS = [["train", "tv.{}-digits", "--preset", "tiny", "--out", "r"],
            ["extract", "--from", "slimming-tv.{}-digits", "--preset", "tiny", "--workdir", "wd", "--library", "lib"],
            ["transfer", "--from", "slimming-vgg16-c10", "--to", "tv.{}-c10", "--out", "t"],
            ["patterns", "show", "l1norm-tv.{}-c10"]]


@given(_tv_names(), st.sampled_from(TV_FORMS))
@settings(max_examples=examples(60))
def test_tv_names_refused_or_unknown_end_in_one_line(sandbox, monkeypatch, name, form):
    """A `tv.` name that is no model of torchvision's, or one archsearch refuses (tv.REFUSED),
    is one line and exit 2 before any torchvision model is built."""
    import torchvision

    from archsearch.archs.tv import refusal

    def built(*a, **k):
        raise AssertionError(f"a torchvision model was built for tv.{name!r}")

    monkeypatch.setattr(torchvision.models, "get_model", built)
    args = [a.format(name) for a in form]
    result = CliRunner().invoke(cli, args, prog_name="archsearch")
    check_clean(result, args)
    assert result.exit_code == 2, result.output
    if refusal(name) is not None:  # the reason is told, whichever command met the name
        assert f"tv.{name} is not supported: {refusal(name)}" in result.stderr, result.stderr


# -- torch files (issue 27): never torch's advice to load unsafely, no non-finite record ---------------
def _torch_bytes(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_files() -> st.SearchStrategy[bytes]:
    """Raw bytes, plain pickles, and torch files (state dicts and not) cut anywhere."""
    import torch

    objs = st.one_of(st.dictionaries(st.text(max_size=4), _json_leaf(), max_size=4),
                     st.builds(lambda n: {"features.0.weight": torch.zeros(n)}, st.integers(1, 64)))
    return st.one_of(_raw_text(), st.builds(pickle.dumps, objs),
                     st.builds(lambda o, cut: _torch_bytes(o)[:cut], objs, st.integers(0, 2000)))


@given(_torch_files())
@settings(max_examples=examples(30))
def test_malformed_weights_end_cleanly_without_unsafe_advice(sandbox, content):
    f = sandbox / "w.pt"
    f.write_bytes(content)
    args = ["train", "vgg11-digits", "--schedule", "finetune", "--weights", str(f), "--preset", "tiny",
            "--out", str(sandbox / "r")]
    result = CliRunner().invoke(cli, args, prog_name="archsearch")
    check_clean(result, args)
    assert "weights_only" not in result.output, result.output  # torch's "Re-running with weights_only=False"


_any_float = st.floats(allow_nan=True, allow_infinity=True)


@given(st.lists(st.fixed_dictionaries({"epoch": st.integers(-1, 3), "test_acc": _any_float},
                                      optional={k: _any_float for k in ("train_loss", "train_acc", "best_acc", "lr",
                                                                        "seconds", "eta")}), max_size=3),
       _any_float)
@settings(max_examples=examples(60))
def test_a_loaded_checkpoint_holds_only_what_json_can_write(tmp_path, history, elapsed):
    """Whatever numbers a checkpoint holds, `load_checkpoint` refuses it in one line or returns
    records that `write_json` can write (a NaN there ended in a traceback, exit 1)."""
    import torch

    from archsearch.errors import ArchsearchError
    from archsearch.train import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_torch_bytes({"fingerprint": "f", "model": {}, "opt": {}, "loader_rng": torch.zeros(2),
                                   "history": history, "epoch": len(history), "elapsed": elapsed}))
    try:
        ck = load_checkpoint(path, torch.device("cpu"))
    except ArchsearchError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    json.dumps({"history": ck["history"], "train_seconds": ck["elapsed"]}, allow_nan=False)


# -- data add: six at once, and a FIFO (issue 27) ------------------------------------------------------
def _forked(targets, timeout: float = 60.0) -> list:
    """Each callable in a forked process, all at once: their exit codes, None for one still
    running after `timeout` seconds (then killed: a hang fails the test, it does not stall it)."""
    import multiprocessing
    import time

    procs = [multiprocessing.get_context("fork").Process(target=t) for t in targets]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return codes


def _cli_exit(args: list[str]) -> None:
    """Run the CLI in this (forked) process, check it ended cleanly, exit with its code."""
    import sys

    result = CliRunner().invoke(cli, args, prog_name="archsearch")
    check_clean(result, args)
    sys.exit(result.exit_code)


def test_data_add_six_at_once_keeps_all_six(sandbox, monkeypatch):
    """Six `data add`s at once, each scanning its folder slowly (a large one): all six entries
    stay (the registry's read-modify-write kept one of them before it was locked)."""
    import multiprocessing
    import time

    from archsearch.data import folders
    from test_folders import make_folder

    folder = make_folder(sandbox / "shapes", per_class=(2, 1))
    scan = folders.scan
    monkeypatch.setattr(folders, "scan", lambda p: (time.sleep(1.0), scan(p))[1])  # the children inherit it
    barrier = multiprocessing.get_context("fork").Barrier(6)

    def add(i):
        barrier.wait(30)
        _cli_exit(["data", "add", f"s{i}", str(folder), "--size", "16"])

    assert _forked([lambda i=i: add(i) for i in range(6)]) == [0] * 6
    assert sorted(folders.read_registry()) == [f"s{i}" for i in range(6)]


def test_data_add_of_a_fifo_ends_cleanly(sandbox):
    os.mkfifo(sandbox / "fifo")
    args = ["data", "add", "x", str(sandbox / "fifo"), "--size", "16"]
    assert _forked([lambda: _cli_exit(args)], timeout=30) == [2]  # it blocked forever


# -- stray torchrun variables and storages without a scheme (issue 27, items 4 and 8) ----------------
_TORCHRUN_VARS = ["WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]
_HANGS = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}


def _train_with_env(env: dict, nproc: bool) -> None:
    """In a forked child: `train` with these variables ends cleanly; a WORLD_SIZE over 1
    outside torchrun (no --nproc) is refused in a line that names it."""
    import sys

    args = ["train", "vgg11-digits", "--preset", "tiny", "--device", "cpu", "--out", "r"] + (["--nproc", "2"] if nproc else [])
    result = CliRunner().invoke(cli, args, prog_name="archsearch", env=env)
    check_clean(result, args)
    try:
        world = int(env.get("WORLD_SIZE", ""))
    except ValueError:
        world = 1
    if world > 1 and not nproc:
        assert result.exit_code == 2 and "WORLD_SIZE" in result.stderr, result.output
    sys.exit(result.exit_code)


@given(st.dictionaries(st.sampled_from(_TORCHRUN_VARS),
                       st.sampled_from(["2", "8", "1", "0", "-1", "abc", "", "127.0.0.1", "29531", "99999"]),
                       max_size=5), st.booleans())
@example(_HANGS, False)  # all five, as torchrun sets them: this one waited (an explicit example is not shrunk)
@settings(max_examples=examples(12))
def test_stray_torchrun_variables_end_cleanly_and_at_once(sandbox, monkeypatch, env, nproc):
    """Left over from another job, they made `train` wait up to 30 minutes for peers; each
    combination now ends within seconds (a child still running after 60 s fails the test)."""
    for k in [k for k in os.environ if k.startswith("TORCHELASTIC_") or k in _TORCHRUN_VARS]:
        monkeypatch.delenv(k)
    monkeypatch.setattr("torch.distributed.run.run", _stop)  # --nproc: the ranks would train for real
    assert _forked([lambda: _train_with_env(env, nproc)], timeout=60) in ([0], [2]), env


def _storage_string() -> st.SearchStrategy[str]:
    """user:password@host... without a scheme; the password made of distinctive pieces joined by
    what a URL parser splits at, so that any piece leaking into the output is seen."""
    pw = st.lists(st.sampled_from(["hunter2", "Zs3cret", "W0rdy"]), min_size=1, max_size=3).flatmap(
        lambda parts: st.lists(st.sampled_from(["@", ":", "%41", "/", "?", "%"]), min_size=len(parts) - 1,
                               max_size=len(parts) - 1).map(lambda seps: parts[0] + "".join(
                                   s + p for s, p in zip(seps, parts[1:]))))
    return st.builds(lambda user, pw, host, port, path: f"{user}:{pw}@{host}{port}{path}",
                     st.sampled_from(["u", "me", "", "a.b"]), pw,
                     st.sampled_from(["host", "127.0.0.1", "db.example", "[::1]"]),
                     st.sampled_from(["", ":5432", ":1"]), st.sampled_from(["", "/db", "/db?sslmode=require"]))


@given(_storage_string(), st.booleans())
@settings(max_examples=examples(25))
def test_storages_without_a_scheme_create_nothing_and_show_no_password(sandbox, storage, from_env):
    """`user:pw@host/db` as a storage was a journal path: a folder named after the password,
    and the password in reports and in `sweep status`."""
    before = sorted(os.listdir(sandbox))
    for cmd in (["sweep", "run", "quickstart", "--workdir", "wd", "--workers", "1"], ["sweep", "status", "quickstart"],
                ["sweep", "worker", "--study", "s"], ["report", "quickstart"]):
        args = cmd if from_env else cmd + ["--storage", storage]
        result = CliRunner().invoke(cli, args, prog_name="archsearch",
                                    env={"ARCHSEARCH_STORAGE": storage} if from_env else None)
        check_clean(result, args)
        assert result.exit_code == 2 and "without its scheme" in result.stderr, (storage, result.output)
        assert not any(p in result.output for p in ("hunter2", "Zs3cret", "W0rdy")), (storage, result.output)
        assert sorted(os.listdir(sandbox)) == before, storage
