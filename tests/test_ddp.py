"""One training over several processes (DistributedDataParallel, gloo on CPU)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from archsearch.archs import base_spec
from archsearch.cli import cli
from archsearch.data import load_dataset
from archsearch.distributed import Dist
from archsearch.train import Engine, make_schedule


def test_shards_partition_every_batch():
    for n in (1, 5, 64, 67):
        for world in (1, 2, 3, 8):
            parts = [Dist(r, world, r).shard(n) for r in range(world)]
            got = [i for p in parts for i in range(n)[p]]
            assert got == list(range(n)) and max(len(range(n)[p]) for p in parts) - min(len(range(n)[p]) for p in parts) <= 1


def test_sharded_loaders_together_give_the_single_process_batches():
    ds = load_dataset("digits")
    one = list(ds.loader("train", 64, train=True, seed=3, drop_last=True))
    parts = [list(ds.loader("train", 64, train=True, seed=3, drop_last=True, dist=Dist(r, 2, r))) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(one)
    for (x, y), (x0, y0), (x1, y1) in zip(one, *parts):
        assert len(y0) == len(y1) == 32
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    test = [list(ds.loader("test", 100, train=False, dist=Dist(r, 3, r))) for r in range(3)]
    assert sum(len(y) for part in test for _, y in part) == len(ds.y_test)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    spec = base_spec("vgg11", 10, width=0.25)
    eng = Engine(spec, ds, make_schedule("tiny"), seed=0, device="cpu", dist=Dist(rank, world, rank))
    losses = []
    for _ in range(3):
        loss_sum, _, n = eng.run_epoch(max_steps=1)
        losses.append(loss_sum.item() / n)
    params = torch.cat([p.detach().flatten() for p in eng.model.parameters()])
    torch.save({"losses": losses, "params": params}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    """The first steps' losses (over the global batch) match a single process at the same
    global batch, within the batch-norm difference (statistics per process, as the paper's
    ImageNet code); both processes end with the same weights, which moved as one process's did."""
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["losses"] == r1["losses"] and torch.equal(r0["params"], r1["params"])
    ds = load_dataset("digits")
    spec = base_spec("vgg11", 10, width=0.25)
    eng = Engine(spec, ds, make_schedule("tiny"), seed=0, device="cpu")
    torch.manual_seed(0)
    init = torch.cat([p.detach().flatten().clone() for p in eng.model.parameters()])
    single = []
    for _ in range(3):
        loss_sum, _, n = eng.run_epoch(max_steps=1)
        single.append(loss_sum.item() / n)
    params = torch.cat([p.detach().flatten() for p in eng.model.parameters()])
    assert np.allclose(r0["losses"], single, rtol=0.03), (r0["losses"], single)
    moved_one, moved_two = params - init, r0["params"] - init
    cos = torch.nn.functional.cosine_similarity(moved_one, moved_two, dim=0).item()
    assert cos > 0.9 and abs(moved_two.norm() / moved_one.norm() - 1) < 0.15, cos


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "archsearch", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_nproc_kill_one_rank_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = ("train", "vgg11-digits", "--preset", "tiny", "--epochs", 4, "--width", 0.25, "--nproc", 2,
           "--checkpoint-every", 1, "--out", out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = _cli(*cmd, env=env)
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.2)
    ranks = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(ranks) == 2, ranks
    os.kill(int(ranks[1]), signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert "training processes failed" in err and "resume" in err and "Traceback" not in err, err
    done = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= done["epoch"] < 4
    p = _cli(*cmd, env=env)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    res = json.loads((out / "result.json").read_text())
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3, 4] and "x 2 processes" in res["device_name"]
    assert res["history"][: done["epoch"]] == done["history"]  # resumed, not started over


def test_nproc_beyond_the_gpus_is_one_line_before_any_process_starts(monkeypatch):
    """Seen on a 1-GPU machine: `--nproc 2` started both ranks; rank 1 found no GPU, and rank 0
    sat in the process group's start until torchrun's 30 s shutdown grace ran out."""
    import torch

    started = []
    monkeypatch.setattr("torch.distributed.run.run", lambda *a: started.append(a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("auto", "cuda", "cuda:0"):
        r = CliRunner().invoke(cli, ["train", "vgg11-digits", "--nproc", "2", "--device", device], prog_name="archsearch")
        assert r.exit_code == 2 and "--nproc 2 needs 2 GPUs, one per process; this machine has 1: use --nproc 1 " \
            "or --device cpu" in r.output, r.output
    assert started == []  # no torchrun was started
    for device in ("cpu", "cpu:0"):  # CPU processes (gloo) need no GPU
        r = CliRunner().invoke(cli, ["train", "vgg11-digits", "--nproc", "2", "--device", device], prog_name="archsearch")
        assert r.exit_code == 0, r.output
    assert len(started) == 2


def test_bad_nproc_and_sync_bn_on_cpu():
    r = CliRunner().invoke(cli, ["train", "vgg11-digits", "--nproc", "0"], prog_name="archsearch")
    assert r.exit_code == 2 and "--nproc" in r.output
    with pytest.raises(Exception, match="sync-bn needs several processes on GPUs"):
        Engine(base_spec("vgg11", 10, width=0.25), load_dataset("digits"), make_schedule("tiny"), device="cpu",
               sync_bn=True)


def test_a_sweep_trial_over_two_processes(tmp_path):
    """train.nproc = 2: each trial runs `archsearch train --nproc 2` (torchrun) and reads its result back."""
    from test_sweep import open_study, run_cli, write_spec

    spec = write_spec(tmp_path, "ddp", generators='["uniform"]', seeds=1, fractions="[0.2]")
    spec.write_text(spec.read_text().replace("checkpoint_every = 1\n", "checkpoint_every = 1\nnproc = 2\n"))
    wd = tmp_path / "wd"
    r = run_cli("sweep", "run", str(spec), "--workdir", str(wd), "--workers", "1")
    assert r.exit_code == 0, r.output
    study, _ = open_study(wd / "optuna-journal.log", "ddp")
    (t,) = study.get_trials()
    assert t.state.name == "COMPLETE" and "x 2 processes" in t.user_attrs["device"]
    res = json.loads((Path(t.user_attrs["run_dir"]) / "result.json").read_text())
    assert res["best_acc"] * 100 == t.value and res["arch"] == "vgg11"


def test_a_table_refuses_several_processes_per_trial(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('name = "t"\nmode = "table"\narms = ["unpruned"]\n[[rows]]\nfrom = "slimming-vgg11-digits"\n'
                 '[train]\npreset = "tiny"\nnproc = 2\n')
    r = CliRunner().invoke(cli, ["sweep", "run", str(p)], prog_name="archsearch")
    assert r.exit_code == 2 and "train.nproc > 1 is for grid and search sweeps" in r.output, r.output


def test_a_stopped_worker_stops_its_trials_processes(tmp_path):
    """A worker stopped while a multi-process trial runs takes the trial's processes (the
    launcher and what it started) down with it: none runs on holding the run folder."""
    from archsearch.sweep.processes import run_as_group

    pidfile = tmp_path / "child.pid"
    launcher = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; "
                f"time.sleep(120)']); open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(120)")

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, stop)
    try:
        signal.alarm(3)
        with pytest.raises(KeyboardInterrupt):
            run_as_group([sys.executable, "-c", launcher], grace=5)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    child = int(pidfile.read_text())

    def alive():
        try:
            return "zombie" not in Path(f"/proc/{child}/status").read_text().lower()
        except FileNotFoundError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and alive():
        time.sleep(0.2)
    assert not alive()


# -- stray torchrun variables, and every wait for peers interruptible (issue 27, item 8) -------------
def _env_without_torchrun(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("stray", [
    {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"},
    {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "PORT"},
])
def test_stray_torchrun_variables_are_one_line_at_once(tmp_path, stray):
    """Left in a shell by another job, they made a plain `train` wait 30 minutes for peers
    (deaf to Ctrl-C and SIGTERM); torchrun did not start this process, so they are refused."""
    stray = {k: str(_free_port()) if v == "PORT" else v for k, v in stray.items()}
    start = time.time()
    p = _cli("train", "vgg11-digits", "--preset", "tiny", "--out", tmp_path / "run", env=_env_without_torchrun(**stray))
    try:
        _, err = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("a stray WORLD_SIZE made `train` wait for peers")
    assert p.returncode == 2 and time.time() - start < 90
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "WORLD_SIZE=2" in line and "torchrun did not start this process" in line
    assert "unset WORLD_SIZE RANK" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("rank, sig", [(0, signal.SIGINT), (1, signal.SIGTERM)])
def test_a_wait_for_peers_says_what_it_waits_for_and_a_signal_ends_it(tmp_path, rank, sig):
    """Under torchrun, a rank whose peers do not come (rank 0 serves the store and waits for
    rank 1; rank 1 waits for rank 0's store) says so, and Ctrl-C or SIGTERM ends the wait."""
    env = _env_without_torchrun(TORCHELASTIC_RUN_ID="t", WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as f:  # a shell's background job ignores SIGINT: this child gets a terminal's default
        p = subprocess.Popen([sys.executable, "-m", "archsearch", "train", "vgg11-digits", "--preset", "tiny",
                              "--device", "cpu", "--out", str(tmp_path / "run")], stdout=subprocess.DEVNULL,
                             stderr=f, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while "waiting for" not in log.read_text():
            assert p.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        p.send_signal(sig)
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = log.read_text()
    want = "1 of 2 training processes" if rank == 0 else "the rendezvous store"
    assert f"rank {rank}: waiting for {want} at 127.0.0.1:" in err and "up to 300 s" in err, err
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err


def test_a_wait_for_peers_gives_up_after_its_stated_time(monkeypatch, capsys):
    from archsearch import distributed
    from archsearch.errors import ArchsearchError

    monkeypatch.setattr(distributed, "PEER_TIMEOUT_S", 1)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    for rank, what in ((0, "1 of 2 training processes"), (1, "the rendezvous store")):
        monkeypatch.setenv("MASTER_PORT", str(_free_port()))
        start = time.time()
        with pytest.raises(ArchsearchError, match=f"rank {rank}: {what} at 127.0.0.1:.* did not come within 1 s"):
            distributed._join(Dist(rank, 2, rank))
        assert time.time() - start < 10


def test_nproc_checks_every_argument_before_any_process_starts(monkeypatch, tmp_path):
    """`--nproc 12 --device cpu` started 12 trainers (3.4 GB) before each found that the batch
    does not split over 12; and stray torchrun variables do not stop --nproc (torchrun sets its own)."""
    started = []
    monkeypatch.setattr("torch.distributed.run.run", lambda *a: started.append(a))
    for k in [k for k in os.environ if k.startswith("TORCHELASTIC_")]:
        monkeypatch.delenv(k)

    def train(*args, env=None):
        return CliRunner().invoke(cli, ["train", "vgg11-digits", "--preset", "tiny", "--device", "cpu",
                                        "--out", str(tmp_path / "run"), *args], prog_name="archsearch", env=env)

    r = train("--nproc", "12")
    assert r.exit_code == 2 and "--nproc 12: the batch of 64 does not split evenly over 12 processes" in r.output
    assert "--nproc 8" in r.output
    r = train("--nproc", "2", "--sync-bn")
    assert r.exit_code == 2 and "--sync-bn needs several processes on GPUs" in r.output
    r = train("--nproc", "2", "--train-subset", "3")  # the data is checked too: 10 classes need 10 images
    assert r.exit_code == 2 and "at least one image per class" in r.output, r.output
    assert started == [] and not (tmp_path / "run").exists()
    r = train("--nproc", "2", env={"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"})
    assert r.exit_code == 0 and len(started) == 1, r.output
