"""The command a new study records (issue 29): paths relative to the folder it ran in, never
one machine's absolute folders, so that committed reports name the work folder's paths."""

from __future__ import annotations

import json
import shlex

import pytest

from archsearch.commands import portable_command

CWD = "/home/someone/checkout"


@pytest.mark.parametrize("given, recorded", [
    ("archsearch sweep run /home/someone/checkout/sweeps/x.toml --scale reduced",
     "archsearch sweep run sweeps/x.toml --scale reduced"),
    ("archsearch sweep run x --data-dir /home/someone/shared/data --workdir /home/someone/checkout/runs/x",
     "archsearch sweep run x --data-dir ../shared/data --workdir runs/x"),
    ("archsearch sweep run x --workdir=/home/someone/checkout/runs/x", "archsearch sweep run x --workdir=runs/x"),
    ("archsearch report x --storage file:///home/someone/checkout/runs/j.log", "archsearch report x --storage file://runs/j.log"),
    ("archsearch report x --storage sqlite:////home/someone/checkout/o.db", "archsearch report x --storage sqlite:///o.db"),
    ("archsearch sweep run x --workdir /tmp/fig5/wd", "archsearch sweep run x --workdir ../../../tmp/fig5/wd"),
    ("archsearch sweep run x --workdir /home/someone/checkout", "archsearch sweep run x --workdir ."),
])
def test_absolute_paths_are_recorded_relative_to_the_work_folder(given, recorded):
    assert portable_command(given, CWD) == recorded


@pytest.mark.parametrize("given", [
    "archsearch sweep run fig3-vgg16-c10 --scale full-channels --data-dir ../shared/data --workdir runs/f",
    "archsearch sweep run x --storage 'postgresql://user:***@db.example:5432/archsearch' --fractions 0.05,0.1",
    "archsearch demo",
])
def test_a_command_without_absolute_paths_is_recorded_as_it_was(given):
    assert portable_command(given, CWD) == given


def test_quoted_paths_stay_one_argument():
    cmd = shlex.join(["archsearch", "sweep", "run", "/home/someone/checkout/my sweeps/a b.toml"])
    assert shlex.split(portable_command(cmd, CWD)) == ["archsearch", "sweep", "run", "my sweeps/a b.toml"]


def test_a_command_that_is_not_shell_words_still_loses_its_absolute_paths():
    out = portable_command("archsearch report x --note 'unbalanced /home/someone/checkout/runs", CWD)
    assert "/home/" not in out and "runs" in out


def test_a_new_study_stores_its_command_relative_and_a_resumed_one_keeps_its_own(tmp_path, monkeypatch):
    """Through `create_or_load`, the one place a plan enters a study: the stored plan (which
    workers and reports read) holds the relative command; a resumed study keeps the command it
    began with."""
    from archsearch.sweep.plan import create_or_load, load_study, open_run_storage, run_cfg_of
    from archsearch.sweep.storage import default_storage
    from helpers import make_pattern, prepared_study

    (tmp_path / "own.json").write_text(json.dumps(make_pattern("channels", "vgg11", "digits",
                                                               name="slimming-vgg11-digits")))
    spec_path = tmp_path / "cmd.toml"
    spec_path.write_text(f'''name = "cmd"
target = "vgg11-digits"
generators = ["guided", "uniform"]
fractions = [0.2]
seeds = 1
[patterns]
own = ["{tmp_path / 'own.json'}"]
[train]
preset = "tiny"
epochs = 1
''')
    wd = tmp_path / "wd"
    monkeypatch.chdir(tmp_path)
    spec, plan, _ = prepared_study(spec_path, wd)  # no command: none is recorded
    assert "command" not in plan
    fresh = {**plan, "spec": {**plan["spec"], "name": "cmd2"},
             "command": f"archsearch sweep run {spec_path} --workdir {wd} --data-dir {tmp_path.parent / 'data'}"}
    st = open_run_storage(default_storage(wd), run_cfg_of(spec))
    _, used = create_or_load(st, fresh)
    assert used["command"] == "archsearch sweep run cmd.toml --workdir wd --data-dir ../data"
    _, stored = load_study(default_storage(wd), "cmd2")
    assert stored["command"] == used["command"] and str(tmp_path) not in stored["command"]
    _, again = create_or_load(st, {**fresh, "command": "archsearch sweep run /elsewhere/cmd.toml"})
    assert again["command"] == used["command"]
