"""The command line: help, version, a real tiny run, and every error path as one line + exit 2."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from archsearch import __version__
from helpers import run
from archsearch.cli import cli


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output
    r = run("--help")
    assert r.exit_code == 0 and "Example" in r.output


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_example(command):
    r = run(command, "--help")
    assert r.exit_code == 0
    assert "Example" in r.output and f"archsearch {command}" in r.output



def _words(text: str) -> str:
    """Help text with click's line wrapping undone."""
    return " ".join(text.split())


def test_extract_help_lists_every_registered_method_with_its_default_ratio():
    from archsearch.propose import PROPOSERS

    r = run("extract", "--help")
    assert r.exit_code == 0 and PROPOSERS
    methods = _words(r.output.split("--from TEXT")[1].split("--ratio NUMBER")[0])
    ratios = _words(r.output.split("--ratio NUMBER")[1].split("--seeds")[0])
    table = _words(r.output.split("Methods (")[1])
    for p in PROPOSERS.values():
        assert p.name in methods
        assert f"{p.name} {p.default_ratio:g}" in ratios
        assert _words(f"{p.name} {p.default_ratio:g} {p.kind} {p.about}") in table


def test_transfer_help_lists_the_generator_registry():
    from archsearch.budget import BY
    from archsearch.generate import BASELINES, KINDS

    out = _words(run("transfer", "--help").output)
    assert all(b in out.split("--baselines TEXT")[1].split("--width")[0] for b in BASELINES)
    assert " | ".join(KINDS) in out and " | ".join(BY) in out


def test_top_level_help_stays_free_of_torch():
    """`archsearch --help` is quick: the registries' help is computed only for the command asked about."""
    code = ("import sys; from click.testing import CliRunner; from archsearch.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'optuna', 'plotly') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_train_tiny_writes_result_and_spec(tmp_path):
    out = tmp_path / "run"
    r = run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125", "--out", str(out))
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    spec = json.loads((out / "spec.json").read_text())
    assert spec["family"] == "vgg" and spec["depth"] == 11 and spec["widths"][0] == 8
    assert res["epochs"] == 1 and 0 <= res["best_acc"] <= 1
    assert "FLOPs (2xMACs)" in r.stdout and "best" in r.stdout
    assert "epoch 1/1" in r.stderr and "eta" in r.stderr
    # --spec trains that architecture, e.g. the spec just written
    r2 = run("train", "vgg11-digits", "--spec", str(out / "spec.json"), "--preset", "tiny", "--epochs", "1",
             "--schedule", "scratch-b", "--out", str(tmp_path / "b"))
    assert r2.exit_code == 0, r2.output


def _bad_spec(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"family": "vgg", "depth": 11, "widths": [1, 2], "stages": [0]}')
    return p


@pytest.mark.parametrize("args, needle", [
    (["train", "vgg17-digits"], "depths"),
    (["train", "alexnet8-c10"], "unknown architecture"),
    (["train", "resnet51-c10"], "6n+2"),
    (["train", "vgg11-mnist"], "unknown dataset"),
    (["train", "vgg11"], "ARCH-DATA"),
    (["train", "vgg11-digits", "--width", "0"], "--width"),
    (["train", "vgg11-digits", "--width", "abc"], "--width"),
    (["train", "vgg11-digits", "--width", "100"], "--width"),
    (["train", "vgg11-digits", "--preset", "huge"], "unknown preset"),
    (["train", "vgg11-digits", "--schedule", "later"], "unknown schedule"),
    (["train", "vgg11-digits", "--schedule", "finetune"], "--weights"),
    (["train", "vgg11-digits", "--spec", "/nonexistent.json"], "cannot read spec"),
    (["train", "vgg11-digits", "--spec", "BAD"], "missing"),
    (["train", "vgg11-digits", "--device", "tpu"], "device"),
    (["train", "vgg16-c10", "--data-dir", "EMPTY", "--no-download"], "--data-dir DIR"),
    (["train", "vgg16-c100", "--data-dir", "EMPTY", "--no-download"], "cifar-100-python"),
    (["extract", "--from", "l1norm-resnet20-digits", "--variant", "A"], "no variant 'A' for resnet20"),
    (["extract", "--from", "l1norm-resnet20-digits", "--stage-ratios", "0.5,0.3"], "3 stages"),
    (["extract", "--from", "l1norm-resnet20-digits", "--stage-ratios", "0.5,,0.3"], "empty entry"),
    (["extract", "--from", "l1norm-resnet20-digits", "--stage-ratios", "0.5,0.3,1.5"], "--stage-ratios"),
    (["extract", "--from", "l1norm-resnet20-digits", "--skip", "fc"], "not a channel group"),
    (["extract", "--from", "l1norm-densenet40-digits"], "does not apply to the densenet family"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--baselines", "erk"], "sparsity baseline"),
    (["nosuch"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    args = [str(_bad_spec(tmp_path)) if a == "BAD" else str(tmp_path) if a == "EMPTY" else a for a in args]
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.output


def test_console_script_error_path_has_no_traceback(tmp_path):
    """The installed entry point, in a real process."""
    p = subprocess.run([sys.executable, "-m", "archsearch.cli", "train", "vgg11-digits", "--spec", str(_bad_spec(tmp_path))],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr


_SIGTERM_WHILE_FAILING = """
import os, signal, sys
import archsearch.cli as C
import archsearch.redact as R

where, sent = sys.argv[1], []

def kill_once():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10000))  # bytecode boundaries, where Python runs the handler

if where == "before":  # the signal lands as the error path begins
    quiet = C._on_the_way_out
    C._on_the_way_out = lambda: (kill_once(), quiet())
else:  # it lands while the message is being written
    real = R.redact
    R.redact = lambda msg: (kill_once(), real(msg))[1]
sys.argv = ["archsearch", "train", "no-such-net"]
C.main()
"""


@pytest.mark.parametrize("where, code, line", [("before", 130, "interrupted"), ("during", 2, "error: ")])
def test_sigterm_while_reporting_an_error_is_not_a_traceback(where, code, line):
    """torchrun stops the other ranks of a failed run with SIGTERM, often while they are reporting
    their own error (CI, 2026-12-06): that ends with one line and no traceback."""
    p = subprocess.run([sys.executable, "-c", _SIGTERM_WHILE_FAILING, where], capture_output=True, text=True, timeout=60)
    assert p.returncode == code, p.stderr
    assert line in p.stderr and "Traceback" not in p.stderr


def test_extract_then_list_and_show(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(lib))
    args = ["extract", "--from", "slimming-vgg11-digits", "--preset", "tiny", "--seeds", "2", "--epochs", "1",
            "--width", "0.125", "--workdir", str(tmp_path / "wd")]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "estimate: about" in r.stderr and "kept ratio" in r.stdout
    pat = json.loads((lib / "slimming-vgg11-digits.json").read_text())
    assert pat["provenance"]["seeds"] == [0, 1] and pat["provenance"]["epochs"] == 1
    assert pat["provenance"]["command"].startswith("archsearch extract")
    r2 = run(*args)
    assert r2.exit_code == 0 and "reusing" in r2.stderr and "[reused]" in r2.stderr
    r3 = run("patterns", "list")
    assert r3.exit_code == 0 and "slimming-vgg11-digits" in r3.stdout and "channels" in r3.stdout
    r4 = run("patterns", "show", "slimming-vgg11-digits")
    assert r4.exit_code == 0 and "█" in r4.stdout and "made by: archsearch extract" in r4.stdout
    assert len([ln for ln in r4.stdout.splitlines() if ln.strip().startswith(tuple("12345678"))]) >= 8
    # a malformed file in the library: list skips it with a warning and still lists the
    # good ones; show refuses it with one line
    (lib / "broken.json").write_text('{"schema": 1}')
    r5 = run("patterns", "list")
    assert r5.exit_code == 0 and "slimming-vgg11-digits" in r5.stdout and "broken" not in r5.stdout
    assert "warning: skipped" in r5.stderr and "broken" in r5.stderr
    r6 = run("patterns", "show", "broken")
    assert r6.exit_code == 2 and r6.stderr.startswith("error: ") and "is missing" in r6.stderr


@pytest.mark.parametrize("args, needle", [
    (["extract", "--from", "slimming-vgg11"], "ARCH-DATA"),
    (["extract", "--from", "pruning-vgg11-digits"], "unknown pruning method"),
    (["extract", "--from", "slimming-vgg11-digits", "--ratio", "1.5"], "--ratio"),
    (["extract", "--from", "slimming-vgg11-c10", "--data-dir", "EMPTY", "--no-download"], "--data-dir"),
    (["patterns", "show", "slimming-vgg19-c100"], "is a proposer spec"),
    (["patterns", "show", "nothing-here"], "unknown pattern"),
])
def test_extract_and_patterns_errors(args, needle, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(tmp_path / "lib"))
    r = run(*[str(tmp_path) if a == "EMPTY" else a for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture
def lib(tmp_path, monkeypatch):
    from archsearch.patterns import save_pattern
    from helpers import make_pattern

    d = tmp_path / "lib"
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(d))
    save_pattern(make_pattern("channels", name="chan-vgg16-c10"), d / "chan-vgg16-c10.json")
    save_pattern(make_pattern("sparsity", name="sparse-vgg16-c10"), d / "sparse-vgg16-c10.json")
    return d


@pytest.mark.parametrize("to, n_layers", [("vgg19-c100", 16), ("vgg16-c10", 13), ("vgg11-c10", 8), ("vgg13-c10", 10)])
def test_transfer_writes_matched_specs(to, n_layers, lib, tmp_path):
    out = tmp_path / "out"
    r = run("transfer", "--from", "chan-vgg16-c10", "--to", to, "--budget", "0.5M,1M,2M",
            "--baselines", "uniform,random", "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "table.json").read_text())
    own = "guided" if to == "vgg16-c10" else "transferred"  # the pattern's own arch and data
    assert len(rows) == 9 and {r["generator"] for r in rows} == {own, "uniform", "random"}
    for row in rows:
        spec = json.loads(Path(row["spec"]).read_text())
        assert len(spec["widths"]) == n_layers and spec["num_classes"] == (100 if to.endswith("c100") else 10)
        assert abs(row["error_pct"]) <= 1.0
    assert (out / "table.md").exists() and (out / "table.csv").exists()
    assert f"| {own} |" in r.stdout


def test_transfer_guided_label_sparsity_and_last_pattern(lib, tmp_path):
    from archsearch.patterns import record_last

    r = run("transfer", "--from", "sparse-vgg16-c10", "--to", "vgg16-c10", "--kind", "sparsity",
            "--fractions", "0.1,0.3", "--out", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "s" / "table.json").read_text())
    assert {r["generator"] for r in rows} == {"guided", "uniform"}  # same arch and data: guided
    record_last(lib / "chan-vgg16-c10.json")
    r2 = run("transfer", "--to", "vgg19-c100", "--fractions", "0.2", "--out", str(tmp_path / "d"))
    assert r2.exit_code == 0 and "chan-vgg16-c10" in r2.stderr


def test_transfer_train_compares(lib, tmp_path):
    out = tmp_path / "t"
    r = run("transfer", "--from", "chan-vgg16-c10", "--to", "vgg11-digits", "--fractions", "0.3", "--width", "0.125",
            "--train", "--preset", "tiny", "--epochs", "1", "--seeds", "2", "--train-subset", "300", "--out", str(out))
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert {x["generator"] for x in res} == {"transferred", "uniform"} and all(x["seeds"] == 2 for x in res)
    assert "±" in (out / "results.md").read_text()
    assert "300 training images" in (out / "efficiency.html").read_text()


@pytest.mark.parametrize("args, needle", [
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--budget", "50M"], "above the full target"),
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--budget", "100"], "below the smallest"),
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--budget", "lots"], "not a number"),
    (["--from", "chan-vgg16-c10", "--to", "vgg20-c100"], "depths"),
    (["--from", "nope", "--to", "vgg19-c100"], "unknown pattern"),
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--kind", "sparsity"], "is a channels pattern"),
    (["--from", "sparse-vgg16-c10", "--to", "vgg19-c100", "--kind", "channels"], "is a sparsity pattern"),
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--fractions", "1.5"], "fractions"),
    (["--from", "chan-vgg16-c10", "--to", "vgg19-c100", "--baselines", "best"], "unknown baseline"),
    (["--to", "vgg19-c100"], "no pattern given"),
])
def test_transfer_errors(args, needle, lib, tmp_path):
    r = run("transfer", *args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_plots(lib, tmp_path):
    for name in ("chan-vgg16-c10", "sparse-vgg16-c10"):
        out = tmp_path / f"{name}.html"
        r = run("plot", "pattern", name, "-o", str(out))
        assert r.exit_code == 0, r.output
        html = out.read_text()
        assert "Plotly.newPlot" in html and "<script src=\"http" not in html and len(html) > 1_000_000  # js embedded
    rows = [{"generator": g, "budget": "1M", "params": p, "macs": 10 * p, "best_acc_mean": a, "best_acc_std": 0.3,
             "seeds": 2, "stages": [8, 16]} for g, p, a in (("uniform", 1e5, 80), ("uniform", 2e5, 85),
                                                           ("guided", 1e5, 82), ("guided", 2e5, 86))]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    r = run("plot", "efficiency", str(tmp_path), "-o", str(tmp_path / "eff.html"))
    assert r.exit_code == 0, r.output
    html = (tmp_path / "eff.html").read_text()
    assert '"name":"uniform"' in html and '"name":"guided"' in html and "#d62728" in html
    (tmp_path / "bad.json").write_text("[1, 2]")
    r = run("plot", "efficiency", str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.html"))
    assert r.exit_code == 2 and "not a results table" in r.stderr
    # an HTML figure under a .png name would be overwritten by --png's screenshot, or opened as an image
    r = run("plot", "efficiency", str(tmp_path), "-o", str(tmp_path / "eff.png"), "--png")
    assert r.exit_code == 2 and "must end in .html" in r.stderr and not (tmp_path / "eff.png").exists()


# -- issue 27: each refusal states the bound it enforces --------------------------------------------
@pytest.mark.parametrize("args, needle", [
    # a subset larger than any dataset: the range, not "a positive number"
    (["extract", "--from", "slimming-vgg11-digits", "--train-subset", "1000000000000"], "1<=x<=2147483648"),
    (["train", "vgg11-digits", "--train-subset", "1000000000000"], "1<=x<=2147483648"),
    # late resetting needs an epoch before a round's last: a 1-epoch round has none
    (["extract", "--from", "lottery-vgg11-digits", "--epochs", "1", "--rewind-epoch", "1"],
     "--rewind-epoch 1: rounds of 1 epoch are too short for late resetting"),
    (["extract", "--from", "lottery-vgg11-digits", "--epochs", "3", "--rewind-epoch", "3"],
     "--rewind-epoch must be an epoch from 1 to 2, before the last of a round's 3 epochs, got 3"),
    # a depth of the family's form beyond its cap names the cap; a depth of the wrong form names the form
    (["train", "densenet1000000-c10"], "densenet has depths 3n+4 from 7 to 1000 (40, 100, ...), not 1000000: "
                                       "the deepest is 1000"),
    (["train", "densenet41-c10"], "densenet has depths 3n+4 from 7 to 1000 (40, 100, ...), not 41"),
    (["train", "resnet2-c10"], "not 2: the shallowest is 8"),
])
def test_refusals_state_the_real_bound(args, needle, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(tmp_path / "lib"))
    out = ["--out", str(tmp_path / "r")] if args[0] == "train" else ["--workdir", str(tmp_path / "w")]
    r = run(*args, "--preset", "tiny", *out)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_the_training_subset_bound_is_stated_where_settings_are_resolved():
    from archsearch.errors import ArchsearchError
    from archsearch.propose import resolve_settings

    with pytest.raises(ArchsearchError, match=r"must be 1 to 2147483648 images \(a number at or above the training "
                                              r"set's size uses all of it\), got 1000000000000$"):
        resolve_settings("slimming-vgg11-digits", train_subset=10 ** 12)


def test_long_lines_are_cut_between_sentences_or_clauses_never_inside_one():
    from archsearch.errors import clip

    assert clip("short. And whole.\nsecond line", 40) == "short. And whole."
    long = "The first sentence fits. The second sentence is much too long to fit in the limit given here"
    assert clip(long, 60) == "The first sentence fits. ..."
    clauses = "expected input[64, 128, 4, 4] to have 512 channels, but got 128 channels instead of them all"
    assert clip(clauses, 80) == "expected input[64, 128, 4, 4] to have 512 channels ..."
    words = "a " * 30 + "b" * 30
    assert clip(words, 50).endswith("a ...") and len(clip(words, 50)) <= 50
    assert all(len(clip(s, n)) <= n for s in (long, clauses, words, "x" * 500) for n in (20, 50, 100))


def test_nproc_relaunches_the_command_as_given_less_nproc(tmp_path, monkeypatch):
    """Each torchrun rank runs this very command: the options given (negated flags too), not
    the defaults, and without --nproc."""
    import archsearch.workflows.train as W

    for k in [k for k in os.environ if k.startswith("TORCHELASTIC_")]:
        monkeypatch.delenv(k)
    seen = []
    monkeypatch.setattr(W, "run_under_torchrun", lambda nproc, args: seen.append((nproc, args)))
    out = str(tmp_path / "r")
    r = run("train", "vgg11-digits", "--preset", "tiny", "--nproc", "2", "--device", "cpu", "--no-download",
            "--out", out)
    assert r.exit_code == 0, r.output
    assert seen == [(2, ["train", "vgg11-digits", "--preset", "tiny", "--no-download", "--device", "cpu", "--out", out])]
