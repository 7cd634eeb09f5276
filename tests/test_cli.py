"""The command line: help, version, a real tiny run, and every error path as one line + exit 2."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archsearch import __version__
from archsearch.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), prog_name="archsearch")


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
    (["train", "resnet50-c10"], "unknown architecture"),
    (["train", "vgg11-mnist"], "unknown dataset"),
    (["train", "vgg11"], "ARCH-DATA"),
    (["train", "vgg11-digits", "--width", "0"], "--width"),
    (["train", "vgg11-digits", "--width", "abc"], "--width"),
    (["train", "vgg11-digits", "--width", "100"], "width multiplier"),
    (["train", "vgg11-digits", "--preset", "huge"], "unknown preset"),
    (["train", "vgg11-digits", "--schedule", "later"], "unknown schedule"),
    (["train", "vgg11-digits", "--schedule", "finetune"], "--weights"),
    (["train", "vgg11-digits", "--spec", "/nonexistent.json"], "cannot read spec"),
    (["train", "vgg11-digits", "--spec", "BAD"], "missing"),
    (["train", "vgg11-digits", "--device", "tpu"], "device"),
    (["train", "vgg16-c10", "--data-dir", "EMPTY", "--no-download"], "--data-dir DIR"),
    (["train", "vgg16-c100", "--data-dir", "EMPTY", "--no-download"], "cifar-100-python"),
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
    # a malformed file in the library: list flags it, show refuses it with one line
    (lib / "broken.json").write_text('{"schema": 1}')
    r5 = run("patterns", "list")
    assert r5.exit_code == 0 and "INVALID" in r5.stdout
    r6 = run("patterns", "show", "broken")
    assert r6.exit_code == 2 and r6.stderr.startswith("error: ") and "missing field" in r6.stderr


@pytest.mark.parametrize("args, needle", [
    (["extract", "--from", "slimming-vgg11"], "ARCH-DATA"),
    (["extract", "--from", "pruning-vgg11-digits"], "unknown pruning method"),
    (["extract", "--from", "slimming-vgg11-digits", "--ratio", "1.5"], "prune ratio"),
    (["extract", "--from", "slimming-vgg11-c10", "--data-dir", "EMPTY", "--no-download"], "--data-dir"),
    (["patterns", "show", "slimming-vgg19-c100"], "is a proposer spec"),
    (["patterns", "show", "nothing-here"], "unknown pattern"),
])
def test_extract_and_patterns_errors(args, needle, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(tmp_path / "lib"))
    r = run(*[str(tmp_path) if a == "EMPTY" else a for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
