"""One typed training config (issue 28, item 1): a preset is a named `TrainConfig`, flags and
sweep tables override it, and the same preset means the same width, epochs and checkpointing
from `train`, `extract`, `transfer --train` and a sweep."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsearch import config
from archsearch.cli import cli
from archsearch.config import DEFAULT_PRESET, PRESETS, TrainConfig, resolve
from archsearch.errors import ArchsearchError


class Captured(Exception):
    """Raised by the trainer stub once it has seen what an entry point would train."""


@pytest.fixture
def capture(monkeypatch):
    """Replace the trainer wherever an entry point calls it; record (base width, epochs,
    checkpoint_every) of the first call, then stop."""
    import archsearch.propose.base
    import archsearch.train

    seen: list[tuple] = []

    def stub(spec, data, schedule, *a, checkpoint_every=None, **k):
        seen.append((spec.width, schedule.epochs, checkpoint_every))
        raise Captured

    # (`transfer --train` trains through the experiment driver, which calls archsearch.train's)
    for mod in (archsearch.train, archsearch.propose.base):
        monkeypatch.setattr(mod, "train", stub)
    return seen


def _cli(args, tmp_path):
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    assert isinstance(r.exception, Captured), (r.exit_code, r.output, r.exception)


@pytest.mark.parametrize("preset", ["tiny", "fast", "quick", "paper"])
def test_the_same_preset_resolves_alike_everywhere(preset, capture, tmp_path, monkeypatch):
    from archsearch.sweep.spec import parse_spec
    from archsearch.train import make_schedule

    monkeypatch.chdir(tmp_path)
    want = PRESETS[preset]
    _cli(["train", "vgg11-digits", "--preset", preset, "--out", "t"], tmp_path)
    _cli(["extract", "--from", "slimming-vgg11-digits", "--preset", preset, "--workdir", "p", "--seeds", "1"], tmp_path)
    _cli(["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg11-digits", "--budget", "20K", "--baselines",
          "none", "--train", "--preset", preset, "--seeds", "1", "--out", "x"], tmp_path)
    sw = parse_spec({"name": "s", "target": "vgg11-digits", "kinds": ["channels"], "generators": ["uniform"],
                     "fractions": [0.5], "train": {"preset": preset}}, path="s.toml")
    tr = sw.train
    swept = (tr["width"], make_schedule(tr["preset"], epochs=tr["epochs"]).epochs, tr["checkpoint_every"])
    assert capture == [(want.width, want.epochs, want.checkpoint_every)] * 3, capture
    assert swept == (want.width, want.epochs, want.checkpoint_every)


def test_a_sweep_tables_overrides_are_overrides_of_its_preset():
    from archsearch.sweep.spec import parse_spec

    base = {"name": "s", "target": "vgg11-digits", "kinds": ["channels"], "generators": ["uniform"],
            "fractions": [0.5]}
    tr = parse_spec({**base, "train": {"preset": "fast", "width": 0.5, "checkpoint_every": 3}}, path="s.toml").train
    assert (tr["width"], tr["checkpoint_every"]) == (0.5, 3)
    # a scale that names another preset takes that preset's width, where no width is given
    sw = parse_spec({**base, "train": {"preset": "paper"},
                     "scales": {"small": {"train": {"preset": "quick"}}}}, scale="small", path="s.toml")
    assert (sw.train["width"], sw.train["checkpoint_every"]) == (PRESETS["quick"].width,
                                                                 PRESETS["quick"].checkpoint_every)
    assert parse_spec(base, path="s.toml").train["preset"] == DEFAULT_PRESET


def test_defaults_live_in_the_config():
    """Every entry point's default preset is the config's, not a literal of its own."""
    for cmd in ("train", "extract", "transfer"):
        opt = next(p for p in cli.commands[cmd].params if p.name == "preset")
        assert opt.default == DEFAULT_PRESET, cmd
    assert resolve() == PRESETS[DEFAULT_PRESET]


@pytest.mark.parametrize("change, words", [
    ({"epochs": 0}, "epochs must be"), ({"width": 0.0}, "width must be"), ({"lr": float("nan")}, "lr must be"),
    ({"checkpoint_every": 0}, "checkpoint_every"), ({"lr_shape": "cosine"}, "lr_shape must be"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"momentum": True}, "momentum"), ({"bogus": 1}, "unknown"),
])
def test_an_invalid_override_is_one_line(change, words):
    with pytest.raises(ArchsearchError, match=words):
        resolve("fast", **change)


def test_overrides_keep_the_rest_and_none_changes_nothing():
    c = resolve("quick", epochs=3, width=None)
    assert isinstance(c, TrainConfig) and c.epochs == 3 and c.width == PRESETS["quick"].width
    assert c.override() is c and c.override(width=None) is c
    assert {k: v for k, v in c.to_dict().items() if k != "epochs"} == \
        {k: v for k, v in PRESETS["quick"].to_dict().items() if k != "epochs"}


def test_the_config_module_loads_without_torch():
    import subprocess
    import sys

    code = "import sys, archsearch.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert config.get_preset("tiny") is PRESETS["tiny"]


def test_a_config_of_its_own_name_trains_and_checkpoints(tmp_path):
    """A TrainConfig that is no preset (a user's own, made with dataclasses.replace) trains, and
    checkpoints at the TrainConfig default when no interval is given."""
    import dataclasses

    from archsearch.data import load_dataset, subset_train
    from archsearch.names import parse_target
    from archsearch.train import make_schedule, train

    mine = dataclasses.replace(PRESETS["tiny"], name="mine", epochs=1)
    data = subset_train(load_dataset("digits"), 128)
    r = train(parse_target("vgg11-digits").base_spec(0.25), data, make_schedule(mine), out_dir=tmp_path / "run")
    assert r.epochs == 1 and (tmp_path / "run" / "result.json").is_file()


# -- the resolved config is recorded with every result (issue 28, item 1) ----------------------------
def test_a_schedule_carries_the_config_it_was_made_from():
    """make_schedule's own overrides are the config's fields for its kind, folded into the
    config the schedule carries; the config takes no part in the schedule's record or equality
    (the run's fingerprint stays what it was)."""
    from archsearch.train import make_schedule

    ft = make_schedule("tiny", "finetune", epochs=2, lr=0.01, batch_size=32)
    assert ft.config == resolve("tiny", finetune_epochs=2, finetune_lr=0.01, batch_size=32)
    mine = resolve("fast", width=0.5, checkpoint_every=2)
    e = make_schedule(mine, epochs=3)
    assert e.config == mine.override(epochs=3) and e.epochs == 3
    assert "config" not in e.to_dict() and e == make_schedule("fast", epochs=3)
    assert make_schedule("tiny", count_convention="original").config.count == "original"


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_recorded_config_reads_back_as_the_same_config(name):
    c = PRESETS[name]
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert TrainConfig.from_dict({**c.to_dict(), "added_later": 1}) == c  # a newer release's key is ignored


@pytest.mark.parametrize("change, words", [
    ({"epochs": "5"}, "epochs must be"), ({"milestones": ["0.5"]}, "milestones must be"),
    ({"name": 3}, "name and about"), ({"lr": None}, "lr must be"),
])
def test_a_bad_recorded_config_is_one_line(change, words):
    with pytest.raises(ArchsearchError, match=words):
        TrainConfig.from_dict({**PRESETS["tiny"].to_dict(), **change})
    d = PRESETS["tiny"].to_dict()
    del d["epochs"]
    with pytest.raises(ArchsearchError, match="epochs is missing"):
        TrainConfig.from_dict(d)


def test_train_records_the_resolved_config_in_its_result_and_checkpoint(tmp_path):
    """`archsearch train vgg11-digits --preset tiny` (with a few flags) writes result.json and a
    checkpoint whose config is config.resolve("tiny", ...) with the command's overrides; a
    result.json of today's release, which has no config, still loads; a bad one is one line."""
    import json

    import torch

    from archsearch.train import load_checkpoint, load_result

    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125",
                                 "--checkpoint-every", "1", "--train-subset", "128", "--device", "cpu",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    want = resolve("tiny", epochs=1, width=0.125, checkpoint_every=1).to_dict()
    d = json.loads((out / "result.json").read_text())
    assert d["config"] == want and load_result(out / "result.json").config == want
    assert load_checkpoint(out / "checkpoint.pt", torch.device("cpu"))["config"] == want

    old = {k: v for k, v in d.items() if k != "config"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_result(tmp_path / "old.json").config is None
    (tmp_path / "bad.json").write_text(json.dumps({**d, "config": {**want, "epochs": 0}}))
    with pytest.raises(ArchsearchError, match="config.*epochs must be"):
        load_result(tmp_path / "bad.json")


def test_the_recorded_width_is_the_trained_nets_own(tmp_path, small_digits):
    """A run whose schedule comes from a preset by name (a proposal's base net, a table arm, a
    spec file) records the width of the net it trained, not the preset's (review, 2026-12-07)."""
    from archsearch.archs import base_spec
    from archsearch.train import load_result, make_schedule, train

    assert PRESETS["tiny"].width == 0.25
    spec = base_spec("vgg11", 10, width=0.125)
    train(spec, small_digits, make_schedule("tiny", epochs=1), seed=0, device="cpu", out_dir=tmp_path / "r")
    rec = load_result(tmp_path / "r" / "result.json").config
    assert rec["width"] == 0.125 and rec == {**PRESETS["tiny"].override(epochs=1).to_dict(), "width": 0.125}
