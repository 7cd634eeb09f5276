"""Table sweeps (mode = "table"): per (row, arm, seed) one trial; proposals first, their arms
from inherited weights in the artifact store; a second machine needs only the storage and
the artifact location."""

import filecmp
from pathlib import Path

import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.sweep.spec import parse_spec
from helpers import prepared_study

ROWS = """
[[rows]]
from = "slimming-vgg11-digits"
ratio = 0.5
paper = {finetune = 93.5}
paper_source = "a made-up number for the test"

[[rows]]
from = "l1norm-vgg11-digits"
ratio = 0.3
"""


def write_table(tmp_path, *, rows=ROWS, arms='["unpruned", "finetune", "scratch-e", "scratch-b"]', seeds=1,
                extra="", epochs=2, name="tbl", finetune_epochs=1):
    text = f"""
name = "{name}"
mode = "table"
title = "a test table"
arms = {arms}
seeds = {seeds}
{extra}
[train]
preset = "tiny"
epochs = {epochs}
finetune_epochs = {finetune_epochs}
width = 0.25
train_subset = 200
checkpoint_every = 1

[run]
heartbeat = 1
grace = 4
{rows}
"""
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def _prepared(tmp_path, storage=None, **kw):
    wd = tmp_path / "wd"
    spec, plan, study = prepared_study(write_table(tmp_path, **kw), wd, storage)
    return spec, wd, plan, study


def _ctx(wd, **kw):
    from archsearch.sweep.runner import WorkerContext

    return WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1, **kw)


@pytest.mark.parametrize("text,match", [
    ('target = "vgg11-digits"\nmode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"',
     "remove target"),
    ('mode = "table"\narms = ["finetune"]', "needs rows"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "nosuch-vgg11-digits"', r"row 1 \(nosuch-vgg11-digits\)"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "sss-vgg11-digits"', "does not apply to the vgg"),
    ('mode = "table"\narms = ["ticket"]\n[[rows]]\nfrom = "magnitude-vgg11-digits"', "ticket arm needs"),
    ('mode = "table"\narms = ["finetune", "finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"', "listed twice"),
    ('mode = "table"\narms = ["fine-tune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"', "arms"),
    ('mode = "table"\narms = ["fine-tune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"', r"unknown arm 'fine-tune'; the arms are unpruned, finetune"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"\npaper = {fintune = 90.0}\n'
     'paper_source = "Table 1"', "unknown arm 'fintune'"),
    ('mode = "tabel"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"', r"unknown sweep mode 'tabel'; known: grid, search, table"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"\nratio = 1.5', "ratio"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"\npaper = {finetune = 90.0}',
     "paper_source"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "l1norm-resnet56-c10"\nvariant = "C"', "variant"),
    ('mode = "table"\narms = ["finetune"]\n[[rows]]\nfrom = "slimming-vgg11-digits"\n[[rows]]\n'
     'from = "slimming-vgg11-digits"', "same label"),
    ('target = "vgg11-digits"\narms = ["finetune"]', "table mode"),
])
def test_bad_table_specs_are_one_line_errors(text, match):
    import tomllib

    raw = tomllib.loads('name = "t"\n' + text)
    with pytest.raises(ArchsearchError, match=match):
        parse_spec(raw, path="t.toml")


def test_table_sweep_runs_every_arm_from_the_proposal_and_reports(tmp_path):
    from archsearch.sweep.app import write_outputs
    from archsearch.sweep.runner import status, work
    from archsearch.sweep.table_report import summary

    spec, wd, plan, study = _prepared(tmp_path)
    assert plan["arms"] == ["unpruned", "finetune", "scratch-e", "scratch-b"]
    assert [t.user_attrs["point"] for t in study.trials] == ["r0/unpruned/s0", "r1/unpruned/s0"]  # proposals only
    assert status(study, plan).total == 8
    work(study, plan, _ctx(wd))
    st = status(study, plan)
    assert st.finished and st.done == 8 and st.failed == 0
    done = {t.user_attrs["point"]: t for t in study.trials if t.state.name == "COMPLETE"}
    assert len(done) == 8
    for r in (0, 1):
        prop = done[f"r{r}/unpruned/s0"]
        se, sb, ft = (done[f"r{r}/{a}/s0"] for a in ("scratch-e", "scratch-b", "finetune"))
        assert se.user_attrs["epochs"] == prop.user_attrs["epochs"] == 2
        assert sb.user_attrs["epochs"] > 2  # the pruned net is cheaper: more epochs for the same compute
        assert ft.user_attrs["epochs"] == 1
        assert se.user_attrs["params"] == sb.user_attrs["params"] == ft.user_attrs["params"] \
            == prop.user_attrs["pruned_params"] < prop.user_attrs["params"]
        # the inherited weights went through the artifact store unchanged
        cached = wd / "artifacts-cache" / f"{prop.user_attrs['artifacts']['pruned_model.pt']}-pruned_model.pt"
        assert filecmp.cmp(cached, Path(prop.user_attrs["run_dir"]) / "pruned_model.pt", shallow=False)
    rows = summary(study, plan)
    assert [r["row"] for r in rows] == ["slimming-vgg11-digits 50%", "l1norm-vgg11-digits 30%"]
    assert rows[0]["paper_finetune"] == 93.5 and rows[1]["paper_finetune"] == ""
    assert all(r[f"{a}_seeds"] == 1 for r in rows for a in plan["arms"])
    from archsearch.sweep.table_report import provenance

    assert [r["width"] for r in rows] == [0.25, 0.25] and "width 0.25, 2 epochs" in provenance(study, plan)
    wide = {**plan, "rows": [plan["rows"][0], {**plan["rows"][1], "settings": {**plan["rows"][1]["settings"],
                                                                              "width": 0.5}}]}
    assert [r["width"] for r in summary(study, wide)] == [0.25, 0.5]
    assert "width per row (0.25, 0.5; the width column)" in provenance(study, wide)  # never one [train] width
    report, html = write_outputs(study, plan, tmp_path / "out")
    text = report.read_text()
    assert "| row |" in text and "| width |" in text and "scratch-b" in text and "made-up number" in text and "fine-tuning" in text
    # the markdown holds the readable columns (a row cites the paper, so its columns stay); the
    # numeric ones are in the CSV
    head = next(line for line in text.splitlines() if line.startswith("| row |"))
    assert "| paper_finetune |" in head and "_mean" not in head and "_seeds" not in head
    assert "finetune_mean" in (tmp_path / "out" / "report.csv").read_text().splitlines()[0]
    uncited = {**plan, "rows": [{**r, "paper": {}, "paper_source": ""} for r in plan["rows"]]}
    text = write_outputs(study, uncited, tmp_path / "out2")[0].read_text()
    assert "| paper_" not in text and "| scratch-e |" in text
    assert html.name == "table.html" and html.stat().st_size > 100_000  # plotly.js embedded: opens offline
    from archsearch.sweep.app import efficiency_from_sweep

    with pytest.raises(ArchsearchError, match="is a table sweep: its figure is table.html"):
        efficiency_from_sweep("tbl", str(wd / "optuna-journal.log"), str(wd), None, str(tmp_path / "e.html"),
                              "params", False)


def test_a_second_machine_trains_the_arms_from_the_artifact_store_alone(tmp_path):
    """Worker A (its own work dir) runs the proposals; worker B, on a fresh work dir with the
    same storage and artifact location and nothing else, trains every arm."""
    from archsearch.sweep.plan import load_study
    from archsearch.sweep.runner import status, work

    spec, wd, plan, study = _prepared(tmp_path)
    storage = str(wd / "optuna-journal.log")
    assert work(study, plan, _ctx(wd), max_trials=2) == 2  # the two proposals
    study_b, plan_b = load_study(storage, study.study_name)
    other = tmp_path / "machine-b"
    art = tmp_path / "mounted-artifacts"
    (wd / "artifacts").rename(art)  # B reaches the store under another path
    n = work(study_b, plan_b, _ctx(other, artifacts=str(art)))
    assert n == 6 and status(study_b, plan_b).finished
    assert not (other / "proposals").exists() and len(list((other / "artifacts-cache").iterdir())) == 4


def test_a_killed_fine_tune_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from archsearch import train as T
    from archsearch.sweep.runner import _Interrupted, status, work

    spec, wd, plan, study = _prepared(tmp_path, arms='["finetune"]', epochs=2, finetune_epochs=2,
                                      rows=ROWS.replace("finetune = 93.5", "unpruned = 90.0"))
    real = T.train
    epochs_seen = []

    def once_interrupted(spec_, data, sched, **kw):
        if sched.kind != "finetune":
            return real(spec_, data, sched, **kw)
        user = kw.pop("progress", None)

        def progress(stats):
            epochs_seen.append(stats.epoch)
            if len(epochs_seen) == 2:
                raise KeyboardInterrupt  # killed in its second epoch, after the first one's checkpoint
            if user:
                user(stats)
        return real(spec_, data, sched, progress=progress, **kw)

    monkeypatch.setattr(T, "train", once_interrupted)
    with pytest.raises(_Interrupted):
        work(study, plan, _ctx(wd))
    work(study, plan, _ctx(wd))
    assert status(study, plan).finished
    ft = [t for t in study.trials if t.user_attrs.get("point") == "r0/finetune/s0"]
    assert [t.state.name for t in ft] == ["FAIL", "COMPLETE"]
    # the retry resumed from the checkpoint: each fine-tune ran epoch 1 once; epoch 2 ran three
    # times (row 0's interrupted one, its retry, row 1's)
    assert epochs_seen.count(1) == 2 and epochs_seen.count(2) == 3


def test_failed_proposal_blocks_its_arms_and_the_run_exits_non_zero(tmp_path, monkeypatch):
    from archsearch import propose as P
    from archsearch.sweep.app import run_sweep

    real = P.propose

    def broken(name, *a, **k):
        if name.startswith("l1norm"):
            raise ArchsearchError("the base net diverged")
        return real(name, *a, **k)

    monkeypatch.setattr(P, "propose", broken)
    path = write_table(tmp_path, arms='["finetune", "scratch-e"]')
    with pytest.raises(ArchsearchError, match=r"1 trial\(s\) failed: #\d+: ArchsearchError: the base net diverged"):
        run_sweep(str(path), workdir=str(tmp_path / "wd"), workers=1, device="cpu", epoch_progress=False)
    from archsearch.sweep.plan import load_study
    from archsearch.sweep.runner import status

    study, plan = load_study(str(tmp_path / "wd" / "optuna-journal.log"), "tbl")
    st = status(study, plan)
    assert st.finished and st.done == 3 and st.blocked == 2 and "2 blocked by a failed proposal" in st.line()
    assert (tmp_path / "wd" / "report.md").exists()


def test_artifact_store_locations(tmp_path):
    from optuna.artifacts import FileSystemArtifactStore

    from archsearch.sweep.table import artifact_store

    assert isinstance(artifact_store(str(tmp_path / "a" / "b")).store, FileSystemArtifactStore)
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(ArchsearchError, match="folder or s3://"):
        artifact_store("gs://bucket/x")
    with pytest.raises(ArchsearchError, match="name a bucket"):
        artifact_store("s3://")
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(ArchsearchError, match="pip install boto3"):
            artifact_store("s3://bucket/prefix")


def test_the_ticket_arm_starts_from_the_winning_ticket(tmp_path, monkeypatch):
    from archsearch import train as T
    from archsearch.sweep.runner import status, work

    rows = '\n[[rows]]\nfrom = "l1norm-vgg11-digits"\nratio = 0.3\n'
    spec, wd, plan, study = _prepared(tmp_path, arms='["ticket", "scratch-e"]', rows=rows, epochs=1)
    real, inits = T.train, {}

    def spy(spec_, data, sched, **kw):
        inits[Path(kw["out_dir"]).name] = kw.get("init_state")
        return real(spec_, data, sched, **kw)

    monkeypatch.setattr(T, "train", spy)
    work(study, plan, _ctx(wd))
    assert status(study, plan).finished
    prop = next(t for t in study.trials if t.user_attrs.get("point") == "r0/unpruned/s0")
    ticket = torch.load(Path(prop.user_attrs["run_dir"]) / "ticket_init.pt", weights_only=True)
    assert inits["row0-scratch-e-s0"] is None  # random init
    got = inits["row0-ticket-s0"]
    assert got.keys() == ticket.keys() and all(torch.equal(got[k], ticket[k]) for k in ticket)


def test_a_stored_table_plan_is_typed_and_a_tampered_row_is_refused(tmp_path):
    """A worker passes a row's settings to `propose` as keywords: the plan reader accepts only
    the known keys, each of its type, and a table plan without rows, arms or store."""
    from archsearch.sweep.plan import read_plan

    _, _, plan, _ = _prepared(tmp_path)
    assert read_plan(plan, "p")["rows"] == plan["rows"]  # the plan as built reads back unchanged
    row = plan["rows"][0]
    for bad, match in (({**row, "settings": {**row["settings"], "device": "cuda"}}, "settings.device.*not a known key"),
                       ({**row, "settings": {**row["settings"], "ratio": "0.5"}}, "settings.ratio"),
                       ({k: v for k, v in row.items() if k != "label"}, "label"),
                       ({**row, "kind": "blocks"}, "kind")):
        with pytest.raises(ArchsearchError, match=match):
            read_plan({**plan, "rows": [bad]}, "p")
    for key in ("rows", "arms", "artifacts"):
        with pytest.raises(ArchsearchError, match="a table plan needs its rows, arms and artifact store"):
            read_plan({**plan, key: None}, "p")


def test_table_figure_bars_start_at_zero_and_carry_each_cell():
    from archsearch.plot import table_figure

    rows = [{"row": "r0", "unpruned": "61.54 ± 0.56", "unpruned_mean": 61.54, "unpruned_std": 0.56,
             "unpruned_seeds": 2, "unpruned_epochs": [8], "finetune": "", "finetune_mean": None,
             "finetune_std": None, "finetune_seeds": 0, "finetune_epochs": [], "paper_finetune": 93.5}]
    fig = table_figure(rows, ["unpruned", "finetune"], title="T", caption="how it was made")
    lo, hi = fig.layout.yaxis.range
    assert lo == 0 and 61.54 + 0.56 < hi <= 105  # never a cut axis, room for the labels
    assert hi > 93.5  # the paper's tick, above every bar here, is on the axis too
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["unpruned", "finetune"]
    assert bars[0].hovertext == ("unpruned: 61.54 ± 0.56 (2 seeds, epochs [8])",)
    assert bars[1].hovertext == ("finetune: not run (0 seeds, epochs -)",)
    assert [t.y for t in fig.data if t.type == "scatter"] == [(93.5,)]  # the paper's tick


@pytest.mark.parametrize("name", __import__("archsearch.sweep.table", fromlist=["ARMS"]).ARMS)
def test_every_arm_of_the_registry_is_complete(name, tmp_path):
    """Driven by the registry (`table.ARMS`): each arm has a legend and a colour, starts from an
    artifact a proposal keeps, builds its schedule from a proposal's record, and is accepted by
    a table spec, in the registry's order with the proposal first."""
    from types import SimpleNamespace

    from archsearch.archs import base_spec
    from archsearch.sweep.table import ARMS, ARTIFACTS, PROPOSAL, plan_arms

    arm = ARMS[name]
    assert arm.about and arm.color.startswith("#")
    assert [a for a in ARMS.values() if a.is_proposal] == [ARMS[PROPOSAL]] and next(iter(ARMS)) == PROPOSAL
    assert arm.init is None or arm.init in ARTIFACTS
    if not arm.is_proposal:
        base = base_spec("vgg11", 10, width=0.25)
        spec = base_spec("vgg11", 10, width=0.125)
        prop = SimpleNamespace(user_attrs={"epochs": 3, "rewind_epoch": 1, "method": "slimming"})
        sched = arm.schedule({"preset": "tiny", "finetune_epochs": 2}, prop, spec, base)
        assert sched.epochs >= 1 and sched.preset == "tiny"
    rows = '\n[[rows]]\nfrom = "lottery-vgg11-digits"\n'
    from archsearch.sweep.spec import load_spec

    spec = load_spec(write_table(tmp_path, arms=f'["{name}"]', rows=rows))
    assert plan_arms(spec.arms) == [PROPOSAL] + ([] if arm.is_proposal else [name])


def test_a_new_arm_is_one_registry_entry(tmp_path, monkeypatch):
    """The extension claim for arms: an entry added to `table.ARMS` (here, half the large net's
    epochs from scratch) is accepted by a table spec and the schema, planned in the registry's
    order, and drawn in its own colour; nothing else names it."""
    from archsearch.archs import base_spec
    from archsearch.plot import table_figure
    from archsearch.sweep.spec import load_spec
    from archsearch.sweep.table import ARMS, Arm, plan_arms
    from archsearch.train import make_schedule

    def half(tr, prop, spec, base):
        return make_schedule(tr["preset"], "scratch-e", epochs=max(1, prop.user_attrs["epochs"] // 2))

    monkeypatch.setitem(ARMS, "scratch-half", Arm("scratch-half", "half the large net's epochs", "#123456", half))
    rows = '\n[[rows]]\nfrom = "slimming-vgg11-digits"\n'
    spec = load_spec(write_table(tmp_path, arms='["scratch-half", "finetune"]', rows=rows))
    assert plan_arms(spec.arms) == ["unpruned", "finetune", "scratch-half"]
    from types import SimpleNamespace

    sched = ARMS["scratch-half"].schedule({"preset": "tiny"}, SimpleNamespace(user_attrs={"epochs": 4}),
                                          base_spec("vgg11", 10, width=0.125), base_spec("vgg11", 10, width=0.25))
    assert sched.epochs == 2
    fig = table_figure([{"row": "r", "scratch-half": "50.00 ± 1.00", "scratch-half_mean": 50.0}], ["scratch-half"], colours={"scratch-half": "#123456"})
    assert fig.data[0].marker.color == "#123456"


# -- the report's statistics (issue 29), on a study of hand-made trials --------------------------------
def _report_study(arms, seeds=3, same_as=False, drop_final=None, b_epochs=20):
    """A finished table study without training: per arm and seed one completed trial with known
    accuracies. Final epoch: finetune 30, 31, 32; scratch-e 31, 33, 35 (differences 1, 2, 3);
    scratch-b 40, 42, 41 (10, 11, 9); the best epoch 5 points above each. Scratch-E trains 8
    epochs, Scratch-B `b_epochs`. With `same_as`, Scratch-B is Scratch-E's run: its trials
    record no accuracy."""
    import optuna

    finals = {"unpruned": [50.0, 51.0, 52.0], "finetune": [30.0, 31.0, 32.0], "scratch-e": [31.0, 33.0, 35.0],
              "scratch-b": [40.0, 42.0, 41.0]}
    study = optuna.create_study(study_name="hand", storage=optuna.storages.InMemoryStorage())
    for arm in arms:
        for s in range(seeds):
            u = {"point": f"r0/{arm}/s{s}", "epochs": b_epochs if arm == "scratch-b" else 8, "params": 1000, "pruned_params": 400, "pruned_macs": 9000,
                 "best_acc": finals[arm][s] + 5, "final_acc": finals[arm][s], "device": "cpu", "torch_version": "t"}
            if same_as and arm == "scratch-b":
                u = {"point": u["point"], "epochs": 8, "same_as": "scratch-e"}
            if drop_final == (arm, s):
                del u["final_acc"]
            study.add_trial(optuna.trial.create_trial(value=u.get("best_acc", 0.0), user_attrs=u))
    plan = {"rows": [{"label": "r0", "method": "slimming", "arch": "vgg11", "data": "digits",
                      "settings": {"ratio": 0.5, "width": 0.25}, "paper": {}, "paper_source": ""}],
            "arms": arms, "spec": {"name": "hand", "title": "hand-made", "seeds": seeds, "train": {"preset": "tiny"}},
            "archsearch_version": "v", "created": "2026-12-07"}
    return study, plan


ALL_ARMS = ["unpruned", "finetune", "scratch-e", "scratch-b"]


def test_table_report_headline_is_the_final_epoch_and_verdicts_are_paired(tmp_path):
    import json
    from types import SimpleNamespace

    from archsearch.sweep.table_report import summary, write_outputs

    study, plan = _report_study(ALL_ARMS)
    (row,) = summary(study, plan)
    assert row["finetune"] == "31.00 ± 1.00" and row["finetune_mean"] == 31.0 and row["finetune_std"] == 1.0
    assert row["finetune_best"] == 36.0 and row["scratch-e"] == "33.00 ± 2.00"  # sample std of 31, 33, 35
    # scratch-e - finetune = 1, 2, 3: mean 2, CI 2 ± 4.302653 / sqrt(3)
    assert (row["scratch-e_vs_finetune_diff"], row["scratch-e_vs_finetune_ci_low"],
            row["scratch-e_vs_finetune_ci_high"], row["scratch-e_vs_finetune_n"]) == (2.0, -0.48, 4.48, 3)
    assert row["scratch-e_vs_finetune_verdict"] == "matches"
    # scratch-b - finetune = 10, 11, 9: mean 10, sd 1: [7.52, 12.48]
    assert (row["scratch-b_vs_finetune_ci_low"], row["scratch-b_vs_finetune_ci_high"]) == (7.52, 12.48)
    assert row["scratch-b_vs_finetune_verdict"] == "beats"
    report, html = write_outputs(study, plan, SimpleNamespace(line=lambda: "12/12 done", failures=[]), tmp_path)
    text = report.read_text()
    assert "at the final epoch (the headline), mean ± sample std (ddof=1) over 3 seeds" in text
    assert ("r0: scratch-e matches fine-tuning: +2.00 points, 95% CI [-0.48, 4.48], n = 3 seeds (no clear "
            "difference: the 95% CI spans 0); scratch-b beats fine-tuning: +10.00 points, 95% CI [7.52, 12.48], "
            "n = 3 seeds") in text
    head = next(line for line in text.splitlines() if line.startswith("| row |"))
    assert "| finetune | scratch-e | scratch-b | unpruned_best | finetune_best |" in head
    rows = json.loads((tmp_path / "report.json").read_text())
    assert rows[0]["scratch-b_vs_finetune_diff"] == 10.0
    assert "scratch-b_vs_finetune_ci_low" in (tmp_path / "report.csv").read_text().splitlines()[0]
    # the figure says what its bars and error bars are (plotly writes "±" as \u00b1)
    assert r"accuracy at the final epoch, mean \u00b1 sample std (ddof=1) over 3 seeds" in html.read_text()


def test_a_scratch_b_that_is_scratch_e_is_shown_once(tmp_path):
    from types import SimpleNamespace

    from archsearch.plot import table_figure
    from archsearch.sweep.table_report import summary, verdicts, write_outputs

    study, plan = _report_study(ALL_ARMS, same_as=True)
    rows = summary(study, plan)
    (row,) = rows
    assert row["scratch-b"] == "= scratch-e" and row["scratch-b_mean"] is None and row["scratch-b_seeds"] == 0
    assert row["scratch-b_same_as"] == "scratch-e" and "scratch-b_vs_finetune_diff" not in row
    assert row["scratch-e_vs_finetune_verdict"] == "matches"  # scratch-e itself is compared as before
    (line,) = verdicts(rows, plan)
    assert line.count("scratch-b") == 1 and "scratch-b is scratch-e's run (the same epochs): compared once" in line
    fig = table_figure(rows, ALL_ARMS)
    bars = {b.name: b for b in fig.data if b.type == "bar"}
    assert bars["scratch-b"].y == (None,)  # no second bar for the same run
    assert bars["scratch-e"].text == ("33.0 = scratch-b",) and "also scratch-b: the same run" in bars["scratch-e"].hovertext[0]
    text = write_outputs(study, plan, SimpleNamespace(line=lambda: "done", failures=[]), tmp_path)[0].read_text()
    assert "Shown once" in text and "r0 (scratch-b = scratch-e)" in text and "| = scratch-e |" in text


def test_a_scratch_b_with_scratch_e_s_epochs_is_shown_once_in_an_older_study():
    """A study made before trials recorded `same_as` (Table 1's ResNet-56-A): its Scratch-B trained
    for Scratch-E's epochs, i.e. repeated that run. The records show it; the report says it once."""
    from archsearch.sweep.table_report import summary, verdicts

    study, plan = _report_study(ALL_ARMS, b_epochs=8)
    rows = summary(study, plan)
    assert rows[0]["scratch-b"] == "= scratch-e" and "scratch-b_vs_finetune_diff" not in rows[0]
    assert rows[0]["scratch-b_epochs"] == [8] and "compared once" in verdicts(rows, plan)[0]
    study, plan = _report_study(ALL_ARMS, b_epochs=9)  # one epoch more: a run of its own
    assert summary(study, plan)[0]["scratch-b"] == "41.00 ± 1.00"


def test_a_table_trial_without_a_final_accuracy_is_refused_in_one_line(tmp_path):
    from archsearch.sweep.table_report import summary

    study, plan = _report_study(ALL_ARMS, drop_final=("finetune", 1))
    with pytest.raises(ArchsearchError, match=r"^trial #\d+ \(r0/finetune/s1\) records no final-epoch accuracy") as e:
        summary(study, plan)
    assert "\n" not in str(e.value)


def test_one_seed_gives_no_verdict():
    from archsearch.sweep.table_report import summary, verdicts

    study, plan = _report_study(ALL_ARMS, seeds=1)
    rows = summary(study, plan)
    assert rows[0]["finetune"] == "30.00 (1 seed)" and rows[0]["finetune_std"] is None
    assert verdicts(rows, plan) == ["r0: scratch-e against fine-tuning: +1.00 points on one seed (no interval, no "
                                    "verdict); scratch-b against fine-tuning: +10.00 points on one seed (no interval, "
                                    "no verdict)"]
