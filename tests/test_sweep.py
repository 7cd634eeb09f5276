"""Sweeps: specs, the worker loop and its faults, several workers, reports and plots."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from archsearch.cli import cli
from archsearch.errors import ArchsearchError
from archsearch.sweep.spec import find_spec_file, load_spec, parse_spec, sweeps_dirs
from helpers import guided_diverges, make_pattern, prepared_study

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return CliRunner().invoke(cli, list(args), prog_name="archsearch")


def write_spec(tmp_path, name="t", *, extra="", generators='["pruned", "guided", "uniform"]', seeds=2,
               fractions="[0.05, 0.2]", epochs=1, subset=200, run="heartbeat = 1\ngrace = 4", kinds=None,
               patterns=None):
    if patterns is None:
        pat = make_pattern("channels", "vgg11", "digits", name="slimming-vgg11-digits")
        (tmp_path / "own.json").write_text(json.dumps(pat))
        patterns = f'own = ["{tmp_path / "own.json"}"]'
    text = f"""
name = "{name}"
target = "vgg11-digits"
generators = {generators}
{f'fractions = {fractions}' if fractions else ''}
seeds = {seeds}
{f'kinds = {kinds}' if kinds else ''}
{extra}
[patterns]
{patterns}
[train]
preset = "tiny"
epochs = {epochs}
width = 0.25
train_subset = {subset}
checkpoint_every = 1
[run]
{run}
"""
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def grid_points(study):
    """{(kind, generator, budget, seed): [states]} over every trial of a grid study."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        key = tuple(t.params.get(k) for k in ("kind", "generator", "budget", "seed"))
        out.setdefault(key, []).append(t.state.name)
    return out


def open_study(storage, name):
    from archsearch.sweep.plan import load_study

    return load_study(str(storage), name)


def study_if_ready(journal, name):
    """The study of a sweep another process is starting, or None until it exists (the run
    opens its storage first, and creates the study once the plan is built)."""
    try:
        return open_study(journal, name)[0]
    except ArchsearchError:
        return None


# -- specs ------------------------------------------------------------------------------------------
def test_shipped_specs_parse_at_every_scale():
    files = sorted(sweeps_dirs()[0].glob("*.toml"))
    assert {f.stem for f in files} >= {"quickstart", "fig3-vgg16-c10", "fig5-vgg19-c100", "fig5-vgg19-c10",
                                       "table1-l1norm", "table4-slimming", "table6-magnitude", "lottery"}
    import tomllib

    for f in files:
        raw = tomllib.loads(f.read_text())
        for scale in [None, *raw.get("scales", {})]:
            s = load_spec(f, scale)
            assert s.about.strip() and s.cost.strip(), f"{f.name} ({scale}) must say its scale and cost"


def test_find_spec_by_shipped_name():
    assert find_spec_file("quickstart") == sweeps_dirs()[0] / "quickstart.toml"
    with pytest.raises(ArchsearchError, match="no sweep spec 'nope'"):
        find_spec_file("nope")


@pytest.mark.parametrize("raw,msg", [
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1], "colour": 1}, "colour is not a known key"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1], "generators": ["best"]},
     "generators must be"),
    ({"name": "x", "target": "vgg99-digits", "kinds": ["channels"], "fractions": [0.1]}, "not 99"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1], "budgets": ["1M"]},
     "exactly one of budgets or fractions"),
    ({"name": "x", "target": "vgg11-digits", "generators": ["pruned"], "fractions": [0.1]}, "need patterns.own"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [1.5]}, "fractions.0 must be less than or equal to 1"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1], "train": {"epochs": 0}},
     "train.epochs"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1],
      "run": {"heartbeat": 10, "grace": 5}}, "must exceed"),
    ({"name": "x y", "target": "vgg11-digits"}, "sweep name 'x y' is not a plain name"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "budgets": ["1M", "1000K"]},
     r"budgets are listed twice \(as 1M, 1M\)"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels", "channels"], "fractions": [0.1]},
     "kinds are listed twice"),
    ({"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1, 0.1]},
     "fractions are listed twice"),
])
def test_bad_specs_are_one_clear_error(raw, msg):
    with pytest.raises(ArchsearchError, match=msg):
        parse_spec(raw)


def test_scale_overrides_merge_and_rename_the_study():
    raw = {"name": "x", "target": "vgg11-digits", "kinds": ["channels"], "fractions": [0.1], "seeds": 5,
           "train": {"preset": "paper", "width": 1.0},
           "scales": {"small": {"seeds": 1, "train": {"preset": "tiny"}}}}
    s = parse_spec(raw, scale="small")
    assert (s.seeds, s.train["preset"], s.train["width"], s.study_name) == (1, "tiny", 1.0, "x-small")
    assert s.train["floor"] == 0.0 and s.search["trials"] == 20  # every default filled in, from the schema
    with pytest.raises(ArchsearchError, match="no scale 'big'"):
        parse_spec(raw, scale="big")


def test_cli_rejects_missing_and_malformed_specs(tmp_path):
    r = run_cli("sweep", "run", str(tmp_path / "missing.toml"))
    assert r.exit_code == 2 and "no sweep spec" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    r = run_cli("sweep", "run", str(bad))
    assert r.exit_code == 2 and "not valid TOML" in r.output
    r = run_cli("sweep", "status", "nosuchstudy")
    assert r.exit_code == 2 and "no sweep 'nosuchstudy' has run here" in r.output


def test_unmeetable_budget_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, generators='["uniform"]', fractions="[0.0001]")
    r = run_cli("sweep", "run", str(spec), "--workers", "1")
    assert r.exit_code == 2 and "uniform (channels) at" in r.output and "below" in r.output
    assert not (tmp_path / "runs" / "sweeps" / "t" / "trials").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_data_stops_the_run_before_any_trial(tmp_path, monkeypatch, workers):
    from archsearch.sweep.plan import load_study

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "c10.toml"
    spec.write_text('name = "c10"\ntarget = "vgg11-c10"\ngenerators = ["uniform"]\nkinds = ["channels"]\n'
                    'fractions = [0.1]\n[train]\npreset = "tiny"\nwidth = 0.25\ndownload = false\n')
    r = run_cli("sweep", "run", str(spec), "--data-dir", str(tmp_path / "nodata"), "--workers", workers)
    assert r.exit_code == 2 and "CIFAR-10 not found" in r.output and "Traceback" not in r.output
    study, _ = load_study(str(tmp_path / "runs" / "sweeps" / "c10" / "optuna-journal.log"), "c10")
    assert study.trials == []  # no trial was failed for it: the rerun with the data runs them all


def test_workers_auto_is_one_single_thread_worker_per_core_on_cpu():
    from archsearch.sweep.launch import AUTO_CPU_WORKERS, auto_workers, resolve_workers

    assert auto_workers(2, 0) == (2, None)
    assert auto_workers(64, 0) == (AUTO_CPU_WORKERS, None)
    assert auto_workers(1, 0) == (1, None)  # (os.cpu_count() None: resolve_workers counts 1 core)
    assert resolve_workers(3, None, "cpu") == (3, None)           # a number is taken as it is
    assert resolve_workers("auto", "0,1,2", "cpu") == (3, "0,1,2")  # one per listed GPU
    # `auto` reads this machine's cores (and no GPU on the CPU) and asks the policy
    assert resolve_workers("auto", None, "cpu") == auto_workers(os.cpu_count() or 1, 0)


def test_workers_auto_on_cuda_shares_each_gpu_for_small_images():
    """Measured on one H200 (benchmarks/results/sweep_throughput.jsonl): the quickstart grid
    with 4 workers on the GPU ran 1.13x the trials per hour of one worker."""
    from archsearch.sweep.launch import auto_workers, resolve_workers

    for gpus, want in ((1, (4, None)), (2, (8, "0,1")), (4, (8, "0,1,2,3"))):  # 16 cores: >= 2 a worker
        assert auto_workers(16, gpus) == want
    assert auto_workers(16, 2, input_size=224) == (2, "0,1")  # ImageNet: one per GPU
    assert auto_workers(16, 2, nproc=2) == (1, None)  # a trial takes both GPUs
    assert auto_workers(16, 8, nproc=2) == (4, "0,2,4,6")  # one worker per pair
    assert auto_workers(16, 8, nproc=3) == (2, "0,3")
    assert auto_workers(16, 2, device_named=True) == (4, None)  # the one GPU named, shared
    assert resolve_workers("auto", "0,1", "auto") == (2, "0,1")  # listed devices: one each
    assert auto_workers(2, 2, device_named=True) == (1, None)  # 2 cores: too few to share


def test_a_multi_gpu_trial_runs_on_its_workers_group_of_gpus(monkeypatch, tmp_path):
    """A worker on cuda:K with train.nproc = N hands its trial GPUs K..K+N-1: before, every
    trial's ranks took cuda:0..N-1, so 4 workers on 8 GPUs stacked 8 ranks on GPUs 0 and 1."""
    import torch

    from archsearch.archs import base_spec
    from archsearch.sweep import processes, runner

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert processes.gpu_group("cuda:4", 2) == ["4", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6,7")  # counted among the GPUs the worker sees
    assert processes.gpu_group("cuda:2", 2) == ["6", "7"]
    with pytest.raises(ArchsearchError, match="needs GPUs 3..4, and this worker sees 4"):
        processes.gpu_group("cuda:3", 2)
    seen = {}

    def fake(cmd, env=None):
        seen.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 3, None, "error: stop here")

    monkeypatch.setattr(processes, "run_as_group", fake)
    plan = {"spec": {"target": "vgg11-digits", "train": {"preset": "tiny", "checkpoint_every": 1, "nproc": 2,
                                                           "download": False}}}
    arch = base_spec("vgg11", 10, width=0.25)
    for device, visible, dev_arg in (("cuda:2", "6,7", "cuda"), ("auto", None, "auto")):
        ctx = runner.WorkerContext(tmp_path, device, None, lambda m: None)
        with pytest.raises(ArchsearchError, match="stop here"):
            processes.train_processes(plan, arch, kind="scratch-e", seed=0, run=tmp_path / device, ctx=ctx)
        assert seen["cmd"][seen["cmd"].index("--device") + 1] == dev_arg
        assert (seen["env"] or {}).get("CUDA_VISIBLE_DEVICES") == visible


def test_spawned_workers_share_the_decoder_processes(monkeypatch, tmp_path):
    """Each sweep worker gets its share of the cores for a streamed dataset's decoders, not
    one decoder per core each."""
    from archsearch.sweep import launch

    envs = []

    class P:
        returncode = 0

        def __init__(self, cmd, env=None, **kw):
            envs.append(env)

        def poll(self):
            return 0

    monkeypatch.delenv("ARCHSEARCH_DATA_WORKERS", raising=False)
    monkeypatch.setattr(launch.subprocess, "Popen", P)
    monkeypatch.setattr(launch, "status", lambda *a: SimpleNamespace(line=lambda n=None: ""))
    study = SimpleNamespace(study_name="s")
    launch.spawn_workers(study, {}, "journal.log", tmp_path, 4, ["cuda:0"] * 4, 4, None, lambda m: None, poll=0)
    assert [e["ARCHSEARCH_DATA_WORKERS"] for e in envs] == ["3"] * 4
    monkeypatch.setenv("ARCHSEARCH_DATA_WORKERS", "6")  # the user's choice stands
    envs.clear()
    launch.spawn_workers(study, {}, "journal.log", tmp_path, 2, ["cpu"] * 2, 1, None, lambda m: None, poll=0)
    assert [e["ARCHSEARCH_DATA_WORKERS"] for e in envs] == ["6"] * 2


def test_spec_input_size_reads_targets_and_table_rows():
    from archsearch.sweep.launch import spec_input_size
    from archsearch.sweep.spec import SweepSpec

    assert spec_input_size(SweepSpec(name="a", target="vgg16-c10")) == 32
    assert spec_input_size(SweepSpec(name="b", target="resnet18-in")) == 224
    assert spec_input_size(SweepSpec(name="c", mode="table", rows=[{"from": "l1norm-vgg16-c10"},
                                                                   {"from": "l1norm-resnet34-in"}])) == 224


@pytest.mark.parametrize("value", ["0", "many", "-1", "1.5"])
def test_workers_option_refuses_nonsense(value):
    r = run_cli("sweep", "run", "quickstart", "--workers", value)
    assert r.exit_code == 2 and "--workers" in r.output and "Traceback" not in r.output


# -- the worker loop, in process ----------------------------------------------------------------------
def _prepared(tmp_path, storage=None, **kw):
    wd = tmp_path / "wd"
    spec, plan, study = prepared_study(write_spec(tmp_path, **kw), wd, storage)
    return spec, wd, plan, study


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_sweep_in_process_runs_every_grid_point_once(tmp_path, backend):
    from archsearch.sweep.results import summary_rows
    from archsearch.sweep.runner import WorkerContext, status, work

    storage = f"sqlite:///{tmp_path / 'optuna.db'}" if backend == "sqlite" else None
    spec, wd, plan, study = _prepared(tmp_path, storage=storage)
    n = work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1))
    assert n == 3 * 2 * 2
    pts = grid_points(study)
    assert len(pts) == 12 and all(v == ["COMPLETE"] for v in pts.values())
    st = status(study, plan)
    assert st.finished and (st.done, st.failed, st.remaining) == (12, 0, 0)
    t = study.trials[0]
    for key in ("best_acc", "final_acc", "params", "macs", "train_seconds", "widths", "stages", "epochs"):
        assert key in t.user_attrs
    rows = summary_rows(study)
    assert len(rows) == 6 and all(r["seeds"] == 2 for r in rows)
    # budgets are met: every generator's params within 1% of its budget
    for r in rows:
        assert abs(r["params"] - r["budget_value"]) / r["budget_value"] < 0.01
    # running again does nothing: finished trials are not repeated
    assert work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False)) == 0


def test_diverged_trial_is_failed_with_reason_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from archsearch.sweep.runner import WorkerContext, status, work

    guided_diverges(monkeypatch)
    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1))
    st = status(study, plan)
    assert st.finished and st.done == 4 and st.failed == 2
    assert all("Diverged: training diverged" in why for _, why in st.failures)
    fails = [t for t in study.trials if t.state.name == "FAIL"]
    assert {t.params["generator"] for t in fails} == {"guided"}  # not retried: the same seed diverges again


def test_sweep_run_with_a_failed_trial_exits_non_zero_and_keeps_the_report(tmp_path, monkeypatch):
    """Failed trials (here: diverged): the other trials run to the end, the report is written,
    and the run ends in an error naming each trial and its cause (a broken sweep never looks
    finished)."""
    from archsearch import train as trainer
    from archsearch.sweep.app import run_sweep

    real = guided_diverges(monkeypatch)
    path = write_spec(tmp_path, seeds=1)
    with pytest.raises(ArchsearchError, match=r"2 trial\(s\) failed: #\d+: Diverged: training diverged.*--retry-failed"):
        run_sweep(str(path), workdir=str(tmp_path / "wd"), workers=1, device="cpu")
    assert (tmp_path / "wd" / "report.md").exists()
    monkeypatch.setattr(trainer, "train", real)
    run_sweep(str(path), workdir=str(tmp_path / "wd"), workers=1, device="cpu", retry_failed=True)  # fixed: exit 0


def test_ctrl_c_requeues_the_trial_and_a_rerun_completes_without_repeats(tmp_path, monkeypatch):
    from archsearch import train as trainer
    from archsearch.sweep.runner import WorkerContext, _Interrupted, status, work

    real, calls = trainer.train, []

    def interrupted_once(spec, *a, **k):
        calls.append(spec.meta.get("generator"))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, *a, **k)

    monkeypatch.setattr(trainer, "train", interrupted_once)
    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    ctx = WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1)
    with pytest.raises(_Interrupted):
        work(study, plan, ctx)
    st = status(study, plan)
    assert (st.done, st.waiting) == (1, 1)
    work(study, plan, ctx)
    pts = grid_points(study)
    assert len(pts) == 6 and sum(v.count("COMPLETE") for v in pts.values()) == 6
    assert sorted(v for v in pts.values() if len(v) > 1) == [["FAIL", "COMPLETE"]]
    assert status(study, plan).finished


def test_worker_devices_and_threads():
    from archsearch.sweep.app import _threads
    from archsearch.sweep.launch import _worker_devices

    assert _worker_devices("0,1", 3, "auto") == ["cuda:0", "cuda:1", "cuda:0"]
    assert _worker_devices(None, 2, "cpu") == ["cpu", "cpu"]
    with pytest.raises(ArchsearchError, match="--devices"):
        _worker_devices(",", 2, "auto")
    assert _threads(1, None) is None and _threads(2, 3) == 3
    assert _threads(2, None) == max(1, (os.cpu_count() or 1) // 2)


def test_a_changed_spec_does_not_silently_reuse_the_study(tmp_path):
    from archsearch.sweep.plan import build_plan, create_or_load, open_run_storage, run_cfg_of
    from archsearch.sweep.storage import default_storage

    spec, wd, plan, study = _prepared(tmp_path)
    spec2 = load_spec(write_spec(tmp_path, seeds=3))
    plan2 = build_plan(spec2, wd, device="cpu", log=lambda m: None)
    with pytest.raises(ArchsearchError, match="another version of this spec"):
        create_or_load(open_run_storage(default_storage(wd), run_cfg_of(spec2)), plan2)
    # reworded prose (title, about, cost) is the same sweep: it resumes
    reworded = {**plan, "spec": {**plan["spec"], "title": "new words", "about": "more", "cost": "less"}}
    assert create_or_load(open_run_storage(default_storage(wd), run_cfg_of(spec)), reworded)[0].study_name == study.study_name


def test_sparsity_kind_and_two_kinds_in_one_grid(tmp_path):
    from archsearch.sweep.plan import build_plan
    from archsearch.sweep.points import arch_for

    ch = make_pattern("channels", "vgg11", "digits", name="slimming-vgg11-digits")
    sp = make_pattern("sparsity", "vgg11", "digits", name="magnitude-vgg11-digits")
    (tmp_path / "ch.json").write_text(json.dumps(ch))
    (tmp_path / "sp.json").write_text(json.dumps(sp))
    spec = load_spec(write_spec(tmp_path, generators='["pruned", "uniform"]',
                                patterns=f'own = ["{tmp_path / "ch.json"}", "{tmp_path / "sp.json"}"]'))
    plan = build_plan(spec, tmp_path / "wd", device="cpu", log=lambda m: None)
    assert plan["kinds"] == ["channels", "sparsity"]
    a = arch_for(plan, "sparsity", "pruned", plan["budgets"][0], 0)
    dens = [float(m.mean()) for m in a.masks.values()]
    assert dens[0] > dens[-1]  # the pruner's per-layer densities: dense early, sparse late


def test_search_mode_starts_from_the_pattern_and_prunes(tmp_path):
    from archsearch.sweep.results import summary_rows
    from archsearch.sweep.runner import WorkerContext, status, work

    extra = """mode = "search"
[search]
fraction = 0.1
trials = 6
startup_trials = 1
warmup_epochs = 0
"""
    spec, wd, plan, study = _prepared(tmp_path, extra=extra, epochs=3, subset=1000)
    work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1))
    st = status(study, plan)
    assert st.finished and st.done + st.pruned == 6 and st.pruned >= 1  # the median pruner stopped some
    first = study.trials[0]
    start = [round(v, 6) for v in plan["search_start"]]
    assert [round(first.params[f"stage{k}"], 6) for k in range(5)] == start
    assert first.user_attrs["reference"].startswith("pattern")
    assert study.trials[1].user_attrs["reference"] == "uniform"
    budget = plan["budgets"][0]
    for t in study.trials:
        assert abs(t.user_attrs["params"] - budget) / budget < 0.01  # every candidate meets the budget
    assert study.trials[0].state.name == study.trials[1].state.name == "COMPLETE"  # references are never pruned
    gens = {r["generator"] for r in summary_rows(study)}
    assert {"pattern", "uniform"} <= gens


# -- processes: workers, SIGKILL ---------------------------------------------------------------------
def _archsearch(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "archsearch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_two_workers_on_the_default_storage(tmp_path):
    spec = write_spec(tmp_path, generators='["guided", "uniform"]')
    r = _archsearch("sweep", "run", str(spec), "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    wd = tmp_path / "runs" / "sweeps" / "t"
    study, plan = open_study(wd / "optuna-journal.log", "t")
    pts = grid_points(study)
    assert len(pts) == 8 and all(v == ["COMPLETE"] for v in pts.values())
    logs = sorted((wd / "logs").glob("worker-*.log"))
    assert len(logs) == 2 and all("nothing left to take" in f.read_text() for f in logs)
    assert (wd / "report.md").exists() and (wd / "efficiency.html").exists()
    r = _archsearch("sweep", "status", str(spec), cwd=tmp_path)
    assert r.returncode == 0 and "8/8 done, 0 running, 0 failed, 0 to go" in r.stdout


def test_sigkilled_worker_loses_and_duplicates_nothing(tmp_path):
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=2, epochs=12, subset=300)
    wd = tmp_path / "runs" / "sweeps" / "t"
    p = subprocess.Popen([sys.executable, "-m", "archsearch", "sweep", "run", str(spec), "--workers", "1"], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and killed is None:
            time.sleep(0.3)
            study = study_if_ready(wd / "optuna-journal.log", "t")
            if study is None:
                continue
            for t in study.get_trials(deepcopy=False):
                run = t.user_attrs.get("run_dir")
                if t.state.name == "RUNNING" and t.number >= 1 and run and (Path(tmp_path / run) / "checkpoint.pt").exists():
                    os.kill(p.pid, signal.SIGKILL)
                    killed = t.number
                    break
    finally:
        if p.poll() is None and killed is None:
            p.kill()
    p.wait()
    assert killed is not None, "never saw a running trial with a checkpoint"
    study, plan = open_study(wd / "optuna-journal.log", "t")
    assert study.trials[killed].state.name == "RUNNING"  # stuck until a heartbeat check finds it
    time.sleep(5)  # past the spec's grace period: status tells (and changes nothing)
    r = _archsearch("sweep", "status", str(spec), cwd=tmp_path)
    assert r.returncode == 0 and f"running #{killed} " in r.stdout and "no heartbeat" in r.stdout, r.stdout
    r = _archsearch("sweep", "run", str(spec), "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    study, plan = open_study(wd / "optuna-journal.log", "t")
    pts = grid_points(study)
    assert len(pts) == 4
    assert all(v.count("COMPLETE") == 1 for v in pts.values())
    assert sorted(len(v) for v in pts.values()) == [1, 1, 1, 2]  # the killed one: FAIL, then its retry
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert study.trials[killed].state.name == "FAIL"
    from archsearch.sweep.results import trial_rows

    assert [r["fail_reason"] for r in trial_rows(study) if r["trial"] == killed] == ["worker lost (no heartbeat)"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_on_run_with_workers_requeues_and_the_rerun_completes(tmp_path, sig):
    """Ctrl-C, or SIGTERM (kill, timeout, a scheduler) to a run started with SIGINT ignored, as
    `nohup ... &` starts it: the workers stop, their trials are requeued, a rerun completes."""
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=2, epochs=12, subset=300)
    wd = tmp_path / "runs" / "sweeps" / "t"
    ignore_int = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == "SIGTERM" else None
    p = subprocess.Popen([sys.executable, "-m", "archsearch", "sweep", "run", str(spec), "--workers", "2"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=ignore_int)
    deadline, sent = time.time() + 240, False
    while time.time() < deadline and not sent and p.poll() is None:
        time.sleep(0.3)
        study = study_if_ready(wd / "optuna-journal.log", "t")
        if study is not None:
            if sum(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)) == 2:
                p.send_signal(getattr(signal, sig))
                sent = True
    out, err = p.communicate(timeout=120)
    assert sent, err[-2000:]
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-3000:]
    study, _ = open_study(wd / "optuna-journal.log", "t")
    states = [t.state.name for t in study.trials]
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials if t.state.name == "FAIL"]
    logs = "".join(f.read_text()[-1500:] for f in sorted((wd / "logs").glob("worker-*.log")))
    # every interrupted trial is requeued; two workers that asked at once leave a duplicate, failed as such
    interrupted = [r for r in reasons if r.startswith("interrupted")]
    assert "RUNNING" not in states and len(interrupted) == states.count("WAITING") >= 1, (states, reasons, logs)
    assert all(r.startswith(("interrupted", "duplicate of trial")) for r in reasons), reasons
    r = _archsearch("sweep", "run", str(spec), "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    study, _ = open_study(wd / "optuna-journal.log", "t")
    pts = grid_points(study)
    assert len(pts) == 4 and all(v.count("COMPLETE") == 1 for v in pts.values())


def test_workers_stop_when_their_run_is_killed(tmp_path):
    """`sweep run` killed outright (SIGKILL, the OOM killer): its workers get SIGTERM, requeue
    their trials and stop, rather than run on as orphans beside the next run's workers."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=2, epochs=12, subset=300)
    wd = tmp_path / "runs" / "sweeps" / "t"
    p = subprocess.Popen([sys.executable, "-m", "archsearch", "sweep", "run", str(spec), "--workers", "2"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, sent = time.time() + 240, False
    while time.time() < deadline and not sent and p.poll() is None:
        time.sleep(0.3)
        study = study_if_ready(wd / "optuna-journal.log", "t")
        if study is not None and sum(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)) == 2:
            p.kill()
            sent = True
    p.wait()
    assert sent
    deadline = time.time() + 120
    while time.time() < deadline:
        study, _ = open_study(wd / "optuna-journal.log", "t")
        if not any(t.state.name == "RUNNING" for t in study.trials):
            break
        time.sleep(0.5)
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and states.count("WAITING") >= 1, states
    pids = [int(ln.split()[2]) for f in (wd / "logs").glob("worker-*.log") for ln in f.read_text().splitlines()
            if ln.startswith("worker pid ")]

    def alive(pid):
        try:
            return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
        except FileNotFoundError:
            return False

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.5)
    assert len(pids) == 2 and not any(alive(pid) for pid in pids), pids


# -- reports and plots --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    spec = write_spec(tmp, name="done", generators='["pruned", "guided", "uniform", "random"]', seeds=2)
    r = _archsearch("sweep", "run", str(spec), "--workers", "1", cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp, spec


def test_report_and_plot_from_spec_and_from_study_name(finished_sweep):
    tmp, spec = finished_sweep
    r = _archsearch("report", str(spec), "-o", str(tmp / "rep"), cwd=tmp)
    assert r.returncode == 0, r.stderr
    md = (tmp / "rep" / "report.md").read_text()
    assert "| kind | generator | budget |" in md and "seeds 0..1" in md and "slimming-vgg11-digits" in md
    rows = json.loads((tmp / "rep" / "report.json").read_text())
    assert {r["generator"] for r in rows} == {"pruned", "guided", "uniform", "random"}
    assert "best_acc_mean" in (tmp / "rep" / "report.csv").read_text().splitlines()[0]
    assert "best_acc_mean" not in md  # the markdown shows "mean ± std"; the numbers are in the CSV
    r = _archsearch("plot", "efficiency", "done", "-o", str(tmp / "eff.html"), "--title", "My own title", cwd=tmp)
    assert r.returncode == 0, r.stderr
    html = (tmp / "eff.html").read_text()
    assert "My own title" in html
    assert "<script src=" not in html and len(html) > 3_000_000  # plotly.js embedded, no CDN
    for colour in ("#d62728", "#1f77b4", "#2ca02c", "#7f7f7f"):  # paper colours: uniform, pruned, guided, random
        assert colour in html
    assert "stages" in html  # hover text gives the per-stage widths


def _require_or_skip(tool: str, hint: str):
    if os.environ.get("ARCHSEARCH_CI") == "1":
        pytest.fail(f"{tool} is required in CI: {hint}")
    pytest.skip(f"{tool} not installed ({hint})")


def test_efficiency_plot_draws_in_headless_chromium(finished_sweep):
    from archsearch.plot import find_browser, render_png, rendered_dom

    if find_browser() is None:
        _require_or_skip("chromium", "apt-get install chromium")
    tmp, _ = finished_sweep
    html = tmp / "runs" / "sweeps" / "done" / "efficiency.html"
    dom = rendered_dom(html)
    # per generator two drawn traces: its points, and the line of its Pareto front
    assert dom.count('class="trace scatter') == 8
    assert dom.count('class="point"') >= 8  # markers: 4 generators x 2 budgets
    png = tmp / "shot.png"
    render_png(html, png)
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1100, 700)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 24)}
    assert len(colours) > 50  # not a blank page
    assert any(abs(r - 0xd6) < 30 and g < 80 and b < 80 for r, g, b in colours)  # the red uniform curve


# -- PostgreSQL: the multi-machine path -----------------------------------------------------------------
def _pg_bin(name):
    import glob
    import shutil

    p = shutil.which(name)
    if p:
        return p
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else None


PG_SECRET = "hunter2%40Xy"  # percent-encoded '@': its decoded form must not appear either


def _files_holding(root, needles):
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server on loopback in a temp directory."""
    import pwd
    import shutil
    import socket
    import tempfile

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _require_or_skip("PostgreSQL server", "apt-get install postgresql, or pip's archsearch[postgres] plus a server")
    if os.environ.get("ARCHSEARCH_CI") != "1":
        pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' (archsearch[postgres])")
    as_user = []
    root = tempfile.mkdtemp(prefix="archsearch-pg-")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs a 'postgres' user (Debian's postgresql package makes one)")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_user + [initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True)
    subprocess.run(as_user + [pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
                              f"-h 127.0.0.1 -p {port} -k {root}", "start"], check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE archsearch")
        # trust authentication ignores the password: it is there to prove that none is written down
        yield f"postgresql://postgres:{PG_SECRET}@127.0.0.1:{port}/archsearch"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_through_postgresql(tmp_path, postgres):
    spec = write_spec(tmp_path, name="pg", generators='["guided", "uniform"]')
    r = _archsearch("sweep", "run", str(spec), "--storage", postgres, "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    study, plan = open_study(postgres, "pg")
    pts = grid_points(study)
    assert len(pts) == 8 and all(v == ["COMPLETE"] for v in pts.values())  # every trial once, none lost
    # the password is in no file the sweep wrote (report, plot, logs, runs) and not in the study
    secrets = [PG_SECRET, PG_SECRET.replace("%40", "@")]
    assert _files_holding(tmp_path, secrets) == []
    stored = json.dumps([study.user_attrs] + [(t.user_attrs, t.system_attrs) for t in study.trials], default=str)
    assert not any(x in stored for x in secrets) and "***" in plan["command"]
    assert not any(x in r.stderr + r.stdout for x in secrets)
    # a third worker joining a finished sweep finds nothing to do
    r = _archsearch("sweep", "worker", "--storage", postgres, "--study", "pg", "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and "ran 0 trial(s)" in r.stderr
    r = _archsearch("sweep", "status", "pg", "--storage", postgres, cwd=tmp_path)
    assert "8/8 done" in r.stdout


def test_bad_database_url_is_one_line(tmp_path):
    pytest.importorskip("psycopg")
    r = run_cli("sweep", "status", "x", "--storage", "postgresql://u:secret@127.0.0.1:1/db")
    assert r.exit_code == 2 and "cannot open storage" in r.output and "secret" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_depth_and_erk_generators_in_a_sweep_plan(tmp_path, small_digits):
    """A depth pattern (sss) and a sparsity pattern with the erk baseline plan like the others:
    every (kind, generator, budget) builds at its budget before any training."""
    from archsearch import patterns as P
    from archsearch.counting import count
    from archsearch.propose import propose
    from archsearch.sweep.plan import build_plan
    from archsearch.sweep.points import arch_for

    kw = dict(preset="tiny", width=0.5, epochs=1, workdir=tmp_path / "p", device="cpu", batch_size=64,
              train_subset=128)
    for method in ("sss", "magnitude"):
        pat = P.extract([propose(f"{method}-resnet20-digits", small_digits, seed=0, **kw)], command="test")
        (tmp_path / f"{method}.json").write_text(json.dumps(pat))
    (tmp_path / "d.toml").write_text(f"""
name = "d"
target = "resnet20-digits"
generators = ["pruned", "guided", "uniform", "erk"]
kinds = ["depth", "sparsity"]
fractions = [0.3, 0.45]
seeds = 1
[patterns]
own = ["{tmp_path / 'sss.json'}", "{tmp_path / 'magnitude.json'}"]
[train]
preset = "tiny"
width = 0.5
""")
    with pytest.raises(ArchsearchError, match=r"erk \(depth\).*sparsity baseline"):
        build_plan(load_spec(tmp_path / "d.toml"), tmp_path / "wd", device="cpu", log=lambda m: None)
    text = (tmp_path / "d.toml").read_text().replace('"uniform", "erk"]', '"uniform"]')
    (tmp_path / "d.toml").write_text(text)
    plan = build_plan(load_spec(tmp_path / "d.toml"), tmp_path / "wd", device="cpu", log=lambda m: None)
    assert plan["kinds"] == ["depth", "sparsity"]
    for b in plan["budgets"]:
        g = arch_for(plan, "depth", "guided", b, 0)
        assert g.blocks is not None and abs(count(g).params - b) <= 0.01 * b
        assert arch_for(plan, "depth", "uniform", b, 0).blocks is None
    (tmp_path / "e.toml").write_text(text.replace('kinds = ["depth", "sparsity"]', 'kinds = ["sparsity"]')
                                     .replace('"uniform"]', '"uniform", "erk"]').replace('name = "d"', 'name = "e"'))
    plan = build_plan(load_spec(tmp_path / "e.toml"), tmp_path / "we", device="cpu", log=lambda m: None)
    e = arch_for(plan, "sparsity", "erk", plan["budgets"][0], 0)
    assert e.meta["generator"] == "erk" and abs(count(e).params_nonzero - plan["budgets"][0]) <= 0.01 * plan["budgets"][0]


def test_a_version_1_plan_is_read_and_upgraded_and_a_newer_one_refused(tmp_path):
    """Version 1 plans held the spec as the file said it (no defaults); the one plan reader
    fills the schema's defaults in, so a study made before resumes with today's code."""
    import optuna
    import tomllib

    from archsearch.sweep.plan import (PLAN_ATTR, _as_legacy, build_plan, create_or_load, load_study,
                                       open_run_storage, read_plan, run_cfg_of)
    from archsearch.sweep.spec import SweepSpec
    from archsearch.sweep.storage import default_storage

    path = write_spec(tmp_path)
    spec = load_spec(path)
    wd = tmp_path / "wd"
    plan = build_plan(spec, wd, device="cpu", log=lambda m: None)
    assert plan["version"] == 3 and plan["spec"]["train"]["floor"] == 0.0 and plan["spec"]["search"]["low"] == 0.05
    old_spec = SweepSpec(**tomllib.loads(path.read_text())).to_dict()  # how version 1 stored it
    for k in ("rows", "arms"):
        old_spec.pop(k)
    assert "floor" not in old_spec["train"] and old_spec["search"] == {}
    old = {**plan, "version": 1, "spec": old_spec}
    st = open_run_storage(default_storage(wd), run_cfg_of(spec))
    study = optuna.create_study(study_name=plan["spec"]["name"], storage=st)
    study.set_user_attr(PLAN_ATTR, old)
    create_or_load(st, plan)  # the same sweep: no "another version of this spec"
    _, read = load_study(default_storage(wd), plan["spec"]["name"])
    # what the file left out means what it meant then: [extract]'s preset was fast
    assert read["version"] == 3 and read["spec"] == _as_legacy(plan)["spec"] and read["spec"]["extract"]["preset"] == "fast"
    with pytest.raises(ArchsearchError, match="plan version 4 was written by a newer archsearch"):
        read_plan({**plan, "version": 4}, "p")
    with pytest.raises(ArchsearchError, match="not a sweep plan"):
        read_plan([1, 2], "p")


def test_a_study_begun_before_the_preset_defaults_resumes_with_its_own_plan(tmp_path):
    """Plan version 3 made [train] width and checkpoint_every the preset's and [extract]'s preset
    `paper`; a study begun by the release before (plan version 2, width 1.0, checkpoint_every 1,
    extract preset fast where the file said nothing) is still the same sweep, and goes on with the
    plan it began with. A setting the file now states differently is still another sweep."""
    import copy

    import optuna

    from archsearch.sweep.plan import PLAN_ATTR, build_plan, create_or_load, open_run_storage, run_cfg_of
    from archsearch.sweep.storage import default_storage

    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("width = 0.25\n", "").replace("checkpoint_every = 1\n", ""))
    spec = load_spec(path)
    wd = tmp_path / "wd"
    plan = build_plan(spec, wd, device="cpu", log=lambda m: None)
    assert (plan["spec"]["train"]["width"], plan["spec"]["train"]["checkpoint_every"]) == (0.25, 5)
    assert sorted(plan["filled"]) == ["extract.preset", "train.checkpoint_every", "train.width"]
    old = copy.deepcopy({k: v for k, v in plan.items() if k != "filled"})
    old["version"] = 2
    old["spec"]["train"].update(width=1.0, checkpoint_every=1)
    old["spec"]["extract"]["preset"] = "fast"
    st = open_run_storage(default_storage(wd), run_cfg_of(spec))
    optuna.create_study(study_name=plan["spec"]["name"], storage=st).set_user_attr(PLAN_ATTR, old)
    _, in_force = create_or_load(st, plan)
    assert (in_force["spec"]["train"]["width"], in_force["spec"]["train"]["checkpoint_every"]) == (1.0, 1)
    stated = load_spec(path.write_text(path.read_text().replace("[train]\n", "[train]\ncheckpoint_every = 3\n")) and path)
    with pytest.raises(ArchsearchError, match="another version of this spec"):
        create_or_load(st, build_plan(stated, wd, device="cpu", log=lambda m: None))


def test_a_stop_during_a_storage_write_lands_after_it():
    """A worker writes a trial's state (ask, tell, requeue) with SIGINT and SIGTERM held: the
    write finishes, then the stop arrives, so no trial is left RUNNING by a stopped worker."""
    from archsearch.sweep.runner import _signals_deferred

    for sig in (signal.SIGINT, signal.SIGTERM):
        seen = []
        previous = signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            with pytest.raises(KeyboardInterrupt):
                with _signals_deferred():
                    os.kill(os.getpid(), sig)
                    time.sleep(0.05)
                    seen.append("the write finished")
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert seen == ["the write finished"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back


def test_a_shipped_spec_with_a_scale_and_a_storage_names_the_scaled_study(tmp_path):
    """`archsearch report table1-l1norm --scale reduced --storage FILE` reads the study
    table1-l1norm-reduced (it had looked for a study named table1-l1norm); --scale with a
    name that is no spec is refused in one line."""
    import optuna

    from archsearch.sweep.app import Sweep
    from archsearch.sweep.storage import open_storage

    journal = str(tmp_path / "j.log")
    optuna.create_study(study_name="other", storage=open_storage(journal))
    with pytest.raises(ArchsearchError, match="no study 'fig3-vgg16-c10-reduced' in"):
        Sweep("fig3-vgg16-c10", journal, None, "reduced")
    with pytest.raises(ArchsearchError, match="no study 'fig3-vgg16-c10' in"):
        Sweep("fig3-vgg16-c10", journal, None, None)
    with pytest.raises(ArchsearchError, match="no study 'mine' in"):  # a plain study name still works
        Sweep("mine", journal, None, None)
    with pytest.raises(ArchsearchError, match="no sweep spec"):
        Sweep("mine", journal, None, "reduced")


# -- requeues, heartbeats and duplicates (no training) -----------------------------------------------
def _ask_point(study, plan):
    from archsearch.sweep.points import grid_point

    t = study.ask()
    grid_point(t, plan)
    return t


def test_a_requeued_trial_is_not_stale_when_taken_and_stops_do_not_spend_lost_worker_retries(tmp_path):
    """A requeue carries no old heartbeat (a worker that takes it is not failed at once by
    another's heartbeat check), and a stop (Ctrl-C, the machine) is not counted against the
    retries a lost worker gets."""
    from archsearch.sweep.runner import _requeue
    from archsearch.sweep.storage import HEARTBEAT_ATTR, fail_stale, frozen
    from optuna.trial import TrialState

    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    storage = study._storage
    t = _ask_point(study, plan)
    for _ in range(3):  # three stops of the same point, each with a beat long past the grace period
        storage.set_trial_system_attr(t._trial_id, HEARTBEAT_ATTR, time.time() - 1000)
        t.set_user_attr("fail_reason", "interrupted")
        study.tell(t, state=TrialState.FAIL)
        _requeue(study, frozen(study, t), "interrupted")
        t = study.ask()
        assert t._trial_id not in storage._get_stale_trial_ids(study._study_id)
    # now its worker is lost: after the grace period the trial is failed and still requeued
    storage._grace = 0.2
    time.sleep(0.3)
    fail_stale(study)
    states = [x.state for x in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.WAITING) == 1 and TrialState.RUNNING not in states
    # a trial whose own start is old and that never beat is stale too
    t = study.ask()
    time.sleep(0.3)
    assert t._trial_id in storage._get_stale_trial_ids(study._study_id)


def test_a_duplicate_marker_does_not_hide_the_real_failure(tmp_path):
    """Two workers asked for one point: the later trial is failed as a duplicate. If the
    first then fails, status and the trial table tell the first's reason, and a machine's
    failure is still requeued."""
    from archsearch.sweep.results import trial_rows
    from archsearch.sweep.runner import ENVIRONMENT, RETRY_ATTR, requeue_failed, status
    from archsearch.sweep.storage import DUPLICATE_ATTR
    from optuna.trial import TrialState

    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    first = _ask_point(study, plan)
    dup = study.ask()
    study._storage.set_trial_system_attr(dup._trial_id, "grid_id", study._storage.get_trial_system_attrs(
        first._trial_id)["grid_id"])
    dup.set_user_attr(DUPLICATE_ATTR, first.number)
    dup.set_user_attr("fail_reason", f"duplicate of trial {first.number} (two workers asked at once)")
    study.tell(dup, state=TrialState.FAIL)
    first.set_user_attr("fail_reason", "EnvironmentFailure: no space left")
    first.set_user_attr(RETRY_ATTR, ENVIRONMENT)
    study.tell(first, state=TrialState.FAIL)
    st = status(study, plan)
    assert st.failures == [(first.number, "EnvironmentFailure: no space left")] and st.retryable == 1
    assert [r["trial"] for r in trial_rows(study)] == [first.number]
    assert requeue_failed(study, plan) == [first.number]


def test_a_resume_keeps_the_plan_it_began_with(tmp_path):
    """A pattern changed in the library after a study began: the resume says so and goes on
    with the stored plan (the one its spawned workers read), not a fresh one."""
    from archsearch.sweep.plan import build_plan, create_or_load, open_run_storage, run_cfg_of
    from archsearch.sweep.storage import default_storage

    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    own = tmp_path / "own.json"
    pat = json.loads(own.read_text())
    pat["stage"]["ratio_mean"] = [min(1.0, r * 0.5 + 0.1) for r in pat["stage"]["ratio_mean"]]
    own.write_text(json.dumps(pat))
    fresh = build_plan(spec, wd, device="cpu", log=lambda m: None)
    fresh["command"] = "a later command"
    assert fresh["patterns"] != plan["patterns"]
    said = []
    _, used = create_or_load(open_run_storage(default_storage(wd), run_cfg_of(spec)), fresh, log=said.append)
    assert used["patterns"] == plan["patterns"] and used.get("command") != "a later command"
    assert len(said) == 1 and "slimming-vgg11-digits (own) changed since study" in said[0]


def test_a_search_goes_past_a_diverged_point_and_retries_the_machines_failure_in_place(tmp_path, monkeypatch):
    """In a search, a point that diverges is an outcome (exit 0, listed in the report); one the
    machine failed stops the run with an error and the next run retries it with the same
    params, in the same run directory."""
    from archsearch import train as T
    from archsearch.errors import EnvironmentFailure
    from archsearch import train as trainer
    from archsearch.sweep.app import run_sweep

    extra = """mode = "search"
[search]
fraction = 0.1
trials = 3
startup_trials = 1
pruner = "none"
uniform_reference = false
"""
    path = write_spec(tmp_path, extra=extra, epochs=1, subset=200)
    real, calls = trainer.train, []

    def flaky(spec, *a, **k):
        calls.append(str(k["out_dir"]))
        if len(calls) == 2:
            raise T.Diverged("training diverged at epoch 1 (loss nan)")
        if len(calls) == 3:
            raise EnvironmentFailure("no space left on the scratch disk")
        return real(spec, *a, **k)

    monkeypatch.setattr(trainer, "train", flaky)
    wd = tmp_path / "wd"
    with pytest.raises(ArchsearchError, match=r"sweep stopped at trial #2: EnvironmentFailure") as e:
        run_sweep(str(path), workdir=str(wd), workers=1, device="cpu")
    assert "--retry-failed" not in str(e.value)  # the machine's failures are retried by every run
    report, _ = run_sweep(str(path), workdir=str(wd), workers=1, device="cpu")  # the diverged point is no error
    assert calls[3] == calls[2]  # the retry resumed in its first attempt's run directory
    text = report.read_text()
    assert "Diverged: training diverged" in text and "EnvironmentFailure" not in text.split("- trials:")[1].split("\n")[0]


def test_the_caption_tells_what_the_trials_ran_with():
    """Epochs per net (Scratch-B scales them), the seeds that finished, and the versions the
    trials ran: not what the spec asked for."""
    from types import SimpleNamespace

    from archsearch.sweep.app import provenance

    def trial(seed, epochs, version):
        return SimpleNamespace(state=SimpleNamespace(name="COMPLETE"), user_attrs={
            "seed": seed, "epochs": epochs, "device": "cpu", "torch_version": "2.9", "archsearch_version": version})

    trials = [trial(0, 40, "0.9"), trial(2, 20, "0.9"), SimpleNamespace(state=SimpleNamespace(name="FAIL"),
                                                                          user_attrs={"seed": 1})]
    study = SimpleNamespace(study_name="s", get_trials=lambda deepcopy=False: trials)
    plan = {"spec": {"target": "vgg11-digits", "schedule": "scratch-b", "seeds": 3,
                     "train": {"width": 0.25, "preset": "tiny"}}, "archsearch_version": "0.8", "created": "2026-12-04T00"}
    text = provenance(study, plan, [{"epochs": 40}, {"epochs": 20}])
    assert "20-40 epochs (per net)" in text and "seeds 0, 2" in text and "archsearch 0.9," in text
    assert "0.8" not in text and "seeds 0..2" not in text
    trials[:] = [trial(5, 8, "0.9")]
    text = provenance(study, plan, [{"epochs": 8}])
    assert "8 epochs" in text and "seed 5;" in text


def test_a_reason_with_a_bar_or_a_line_break_keeps_its_table_row():
    from archsearch.compare import markdown_table

    md = markdown_table([{"trial": 3, "fail_reason": "bug: ValueError: a|b\nsecond line"}], ["trial", "fail_reason"])
    row = md.splitlines()[2]
    assert row == "| 3 | bug: ValueError: a\\|b second line |" and len(md.splitlines()) == 3
    # floats read as numbers, not as binary fractions
    md = markdown_table([{"a": 78.97999999999999, "b": 92313.0, "c": 1154.3628074979933, "d": 0.125, "e": 1e-4}],
                        list("abcde"))
    assert md.splitlines()[2] == "| 78.98 | 92313 | 1154.36 | 0.125 | 0.0001 |"
    assert markdown_table([{"a": None}], ["a"]).splitlines()[2] == "|  |"


def test_a_run_that_leaves_trials_undone_is_no_success(tmp_path, monkeypatch):
    from archsearch.sweep import app
    from archsearch.sweep.app import run_sweep

    path = write_spec(tmp_path, generators='["uniform"]', seeds=2, fractions="[0.2]")
    real = app.work
    monkeypatch.setattr(app, "work", lambda study, plan, ctx, **k: real(study, plan, ctx, max_trials=1))
    with pytest.raises(ArchsearchError, match=r"not finished \(1/2 done.*run the same command again"):
        run_sweep(str(path), workdir=str(tmp_path / "wd"), workers=1, device="cpu")
    monkeypatch.setattr(app, "work", real)
    run_sweep(str(path), workdir=str(tmp_path / "wd"), workers=1, device="cpu")


@pytest.mark.parametrize("preset", __import__("archsearch.config", fromlist=["PRESETS"]).PRESETS)
@pytest.mark.parametrize("kind", ["scratch-e", "scratch-b"])
def test_a_sweep_points_schedule_comes_from_its_resolved_config_unchanged(preset, kind):
    """The experiment driver builds a point's schedule from the resolved `TrainConfig`; it must
    be the schedule the preset name and the [train] overrides gave before (a run's fingerprint,
    and so its resume, depends on it)."""
    from archsearch.archs import base_spec
    from archsearch.experiment import point_schedule
    from archsearch.sweep.points import train_config
    from archsearch.train import make_schedule

    base, spec = base_spec("vgg11", 10, width=0.5), base_spec("vgg11", 10, width=0.25)
    for over in ({}, {"epochs": 7, "cap": 1.5, "count": "macs"}, {"epochs": 3, "count": "original"}):
        tr = {"preset": preset, "epochs": None, "cap": None, "count": None, "width": 0.25, "checkpoint_every": 1,
              **over}
        old = make_schedule(preset, kind, epochs=tr["epochs"], spec=spec, base=base, cap=tr["cap"],
                            count_convention=tr["count"])
        assert point_schedule(train_config(tr), kind, spec, base, cap=tr["cap"]).to_dict() == old.to_dict()


def test_one_aggregation_over_seeds():
    """`stats.accuracy_cells`: the sample std (ddof=1), rounded to 2 places, the final epoch first
    (the headline), in the reports' order."""
    import numpy as np

    from archsearch import stats

    best, final = [91.234, 92.5, 90.0], [90.0, 91.0, 89.5]
    cells = stats.accuracy_cells(final=final, best=best)
    assert list(cells) == ["seeds", "final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "final_acc",
                           "best_acc"]
    a = np.asarray(best)
    assert cells["best_acc_std"] == round(float(a.std(ddof=1)), 2) != round(float(a.std()), 2)
    assert cells["best_acc"] == f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"
    assert cells["seeds"] == 3 and stats.Spread.of([]) is None


def _grid_study(finals: dict, *, kind="channels", budget=1e5):
    """A finished grid study without training: per generator and seed one completed trial whose
    final-epoch accuracy is `finals[generator][seed]` and whose best epoch is 10 points above."""
    import optuna

    study = optuna.create_study(study_name="hand", storage=optuna.storages.InMemoryStorage())
    for gen, accs in finals.items():
        for seed, acc in enumerate(accs):
            u = {"kind": kind, "generator": gen, "budget": budget, "seed": seed, "params": int(budget),
                 "macs": 10 * int(budget), "best_acc": acc + 10, "final_acc": acc, "epochs": 4, "train_seconds": 1.0,
                 "stages": [8, 16], "widths": [8, 16], "device": "cpu", "torch_version": "t"}
            study.add_trial(optuna.trial.create_trial(value=acc + 10, user_attrs=u))
    plan = {"spec": {"name": "hand", "title": "hand-made", "target": "vgg11-digits", "schedule": "scratch-e",
                     "train": {"width": 0.25, "preset": "tiny"}},
            "patterns": {}, "archsearch_version": "v", "created": "2026-12-07"}
    return study, plan


def test_grid_report_pairs_each_generator_with_uniform_on_the_final_epoch(tmp_path):
    """The headline is the final epoch (rows sort by it, the plot draws it); each generator's
    difference from uniform is paired by seed, with its 95% CI and verdict."""
    from types import SimpleNamespace

    from archsearch.sweep.results import summary_rows, write_outputs

    # guided - uniform = 1, 2, 3 (mean 2, CI [-0.48, 4.48]: matches); pruned - uniform = 10, 11, 9 (beats)
    study, plan = _grid_study({"uniform": [70.0, 70.0, 70.0], "guided": [71.0, 72.0, 73.0],
                               "pruned": [80.0, 81.0, 79.0]})
    rows = {r["generator"]: r for r in summary_rows(study)}
    assert rows["guided"]["final_acc"] == "72.00 ± 1.00" and rows["guided"]["best_acc_mean"] == 82.0
    assert (rows["guided"]["vs_uniform_diff"], rows["guided"]["vs_uniform_ci_low"],
            rows["guided"]["vs_uniform_ci_high"], rows["guided"]["vs_uniform_n"]) == (2.0, -0.48, 4.48, 3)
    assert rows["guided"]["vs_uniform_verdict"] == "matches" and rows["pruned"]["vs_uniform_verdict"] == "beats"
    assert "vs_uniform_diff" not in rows["uniform"]
    st = SimpleNamespace(line=lambda: "9/9 done", failures=[])
    report, html = write_outputs(study, plan, st, tmp_path)
    text = report.read_text()
    assert "final_acc: test accuracy (%) at the final epoch, the headline" in text
    assert "mean ± sample std (ddof=1), over 3 seeds" in text and "## Paired against uniform (final epoch)" in text
    assert ("- channels 100K: guided matches uniform: +2.00 points, 95% CI [-0.48, 4.48], n = 3 seeds (no clear "
            "difference: the 95% CI spans 0)") in text
    head = next(line for line in text.splitlines() if line.startswith("| kind |"))
    assert head.index("| final_acc |") < head.index("| best_acc |")
    assert "vs_uniform_ci_low" in (tmp_path / "report.csv").read_text().splitlines()[0]
    fig_text = html.read_text()
    assert r"accuracy at the final epoch, mean \u00b1 sample std (ddof=1) over 3 seeds" in fig_text
    import plotly.io as pio

    from archsearch.plot import efficiency_figure

    fig = efficiency_figure(summary_rows(study))
    drawn = {t.name: t for t in fig.data}
    assert drawn["guided"].y == (72.0,) and drawn["guided"].error_y.array == (1.0,)  # the final epoch, sample std
    assert pio.to_json(fig)  # plotly accepts it


def test_grid_report_without_uniform_or_final_accuracy():
    """No uniform: no pairs. A trial that recorded no final-epoch accuracy (an edited journal):
    one line, not a report that quietly shows another measure."""
    import optuna

    from archsearch.sweep.results import summary_rows

    study, _ = _grid_study({"guided": [71.0, 72.0], "pruned": [80.0, 81.0]})
    assert all(not any(k.startswith("vs_uniform") for k in r) for r in summary_rows(study))
    t = _grid_study({"uniform": [70.0]})[0].trials[0]
    old = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    old.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={k: v for k, v in t.user_attrs.items()
                                                                    if k != "final_acc"}))
    with pytest.raises(ArchsearchError, match=r"^trial #0 \(channels uniform 100K seed 0\) records no "
                                              r"final-epoch accuracy"):
        summary_rows(old)


def test_every_sweep_mode_is_a_whole_strategy():
    """Driven by the registry (`modes.MODES`): each mode names itself and gives the operations
    the plan, the worker loop and the commands ask for."""
    from archsearch.sweep.modes import MODES, Mode
    from archsearch.schemas import SweepFile

    assert all(SweepFile.model_validate({"name": "t", "mode": name}).mode == name for name in MODES)  # no hand list
    for name, mode in MODES.items():
        assert mode.name == name
        for op in ("validate", "build", "total", "train"):
            assert getattr(type(mode), op) is not getattr(Mode, op), (name, op)


def test_arms_name_one_of_several_patterns_of_a_kind(tmp_path):
    """Several transferred patterns of one kind in one grid (issue 31's panel: SynFlow, SNIP and
    magnitude patterns against one uniform and one ERK arm): each arm names its pattern
    (`transferred:NAME`), gets its own points, run folders, report rows and plot colour; a
    bare arm among several patterns, or a name on a generator that reads none, is refused."""
    from archsearch.plot import arm_colour
    from archsearch.sweep.plan import build_plan
    from archsearch.sweep.points import arch_for, grid_space

    a = make_pattern("sparsity", "vgg16", "c10", name="a-vgg16-c10")
    b = make_pattern("sparsity", "vgg16", "c10", name="b-vgg16-c10")
    b["stage"]["density_mean"] = list(reversed(b["stage"]["density_mean"]))  # dense late instead of early
    for name, p in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(p))
    pats = f'transferred = ["{tmp_path / "a.json"}", "{tmp_path / "b.json"}"]'
    gens = '["transferred:a-vgg16-c10", "transferred:b-vgg16-c10", "uniform", "erk"]'
    spec = load_spec(write_spec(tmp_path, generators=gens, patterns=pats, fractions="[0.2]", seeds=1))
    plan = build_plan(spec, tmp_path / "wd", device="cpu", log=lambda m: None)
    assert grid_space(plan)["generator"] == json.loads(gens)
    nets = {g: arch_for(plan, "sparsity", g, plan["budgets"][0], 0) for g in json.loads(gens)[:2]}
    dens = {g: [float(m.mean()) for m in n.masks.values()] for g, n in nets.items()}
    assert dens["transferred:a-vgg16-c10"][0] > dens["transferred:a-vgg16-c10"][-1]
    assert dens["transferred:b-vgg16-c10"][0] < dens["transferred:b-vgg16-c10"][-1]
    assert nets["transferred:b-vgg16-c10"].meta["pattern"] == "b-vgg16-c10"
    assert len({arm_colour(g) for g in nets}) == 2 and arm_colour("uniform") == "black"
    r = run_cli("sweep", "run", str(write_spec(tmp_path, "t2", generators=gens, patterns=pats, fractions="[0.2]",
                                               seeds=1)), "--workdir", str(tmp_path / "w2"), "--workers", "1")
    assert r.exit_code == 0, r.output
    report = (tmp_path / "w2" / "report.md").read_text()
    assert "transferred:a-vgg16-c10" in report and "transferred:b-vgg16-c10" in report
    runs = sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "w2" / "trials" / "sparsity").iterdir())
    assert runs == ["erk", "transferred_a-vgg16-c10", "transferred_b-vgg16-c10", "uniform"]
    for gens, needle in (('["transferred", "uniform"]', "name the one each arm reads"),
                         ('["uniform:a-vgg16-c10"]', "only a generator that reads a pattern names one")):
        bad = write_spec(tmp_path, "bad", generators=gens, patterns=pats)
        r = run_cli("sweep", "run", str(bad), "--workdir", str(tmp_path / "w3"))
        assert r.exit_code == 2 and needle in r.output, r.output


def test_a_text_budget_on_another_measure_keeps_its_measure_in_the_plan(tmp_path):
    """`budgets = [..., "macs=4M"]` in a sweep by params: the plan keeps the text, so the MAC
    bound is not read back as 4M parameters."""
    from archsearch.counting import count
    from archsearch.sweep.plan import build_plan
    from archsearch.sweep.points import arch_for

    spec = load_spec(write_spec(tmp_path, generators='["uniform"]', fractions=None, kinds='["channels"]',
                                extra='budgets = ["40K", "macs=2M"]'))
    plan = build_plan(spec, tmp_path / "wd", device="cpu", log=lambda m: None)
    assert plan["budgets"] == [40000.0, "macs=2M"]
    c = count(arch_for(plan, "channels", "uniform", "macs=2M", 0))
    assert abs(c.macs - 2e6) / 2e6 <= 0.01  # bound by MACs, not by 2M parameters (above the full net)
    assert abs(count(arch_for(plan, "channels", "uniform", 40000.0, 0)).params - 40000) <= 400
