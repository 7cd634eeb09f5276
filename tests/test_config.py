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
    import archsearch.propose
    import archsearch.train

    seen: list[tuple] = []

    def stub(spec, data, schedule, *a, checkpoint_every=None, **k):
        seen.append((spec.width, schedule.epochs, checkpoint_every))
        raise Captured

    # (`transfer --train` trains through the experiment driver, which calls archsearch.train's)
    for mod in (archsearch.train, archsearch.propose):
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
