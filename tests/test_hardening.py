"""Issue 9: no code runs from a run folder, no password is written down, no input gives a
traceback. One test (or a few) per reproduction of the issue, numbered as there."""

import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from archsearch.cli import cli
from archsearch.errors import ArchsearchError, EnvironmentFailure
from helpers import guided_diverges, make_pattern
from test_sweep import _prepared, write_spec


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="archsearch", env=env)


def one_line_error(r, needle=""):
    """Exit 2, one `error:` line that ends stderr and holds `needle` (progress lines may
    come before it), and no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output)
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in r.output
    return errors[0]


class _Payload:
    """A pickle that runs `touch MARK` when loaded by a full unpickler."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (os.system, (f"touch {self.mark}",))


# -- 1. no code runs from a run folder or a data folder -----------------------------------------------
def test_crafted_checkpoint_does_not_run_on_resume(tmp_path):
    out, mark = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    with open(out / "checkpoint.pt", "wb") as f:
        pickle.dump({"fingerprint": _Payload(mark), "epoch": 1}, f)
    r = run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125", "--out", out)
    line = one_line_error(r, "cannot read checkpoint")
    assert "refused, no code was run" in line and "weights_only" not in line  # no advice to load it unsafely
    assert not mark.exists()
    # torch's own zip format with the payload inside: refused the same way
    torch.save({"fingerprint": _Payload(mark)}, out / "checkpoint.pt")
    one_line_error(run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125",
                       "--out", out), "cannot read checkpoint")
    assert not mark.exists()


def test_checkpoint_of_the_wrong_shape_is_one_line(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"fingerprint": "x", "epoch": "one"}, out / "checkpoint.pt")
    one_line_error(run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125",
                       "--out", out), "not an archsearch checkpoint")


def test_a_real_checkpoint_loads_with_weights_only(tmp_path, small_digits):
    from archsearch.archs import base_spec
    from archsearch.train import load_checkpoint, make_schedule, train

    spec = base_spec("vgg11", 10, width=0.125)
    sched = make_schedule("tiny", epochs=2)
    train(spec, small_digits, sched, out_dir=tmp_path, checkpoint_every=1)
    ck = load_checkpoint(tmp_path / "checkpoint.pt", torch.device("cpu"))
    assert ck["epoch"] == 2 and len(ck["history"]) == 2


def test_crafted_cifar_pickle_does_not_run(tmp_path):
    from archsearch.data import load_dataset
    from test_data import write_cifar10_pickles

    write_cifar10_pickles(tmp_path)
    mark = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Payload(mark), b"labels": [0]}, f)
    with pytest.raises(ArchsearchError, match="refused to load posix.system|refused to load os.system"):
        load_dataset("c10", tmp_path, download=False)
    assert not mark.exists()


def test_cifar_pickles_of_the_real_format_still_load(tmp_path):
    """Real CIFAR files are protocol-2 pickles of numpy arrays and lists (also written by
    numpy 2 as numpy._core...): the allow-list takes all of them."""
    from archsearch.data import load_dataset
    from test_data import write_cifar10_pickles

    x_tr, y_tr, _, _ = write_cifar10_pickles(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    for name in [f"data_batch_{k}" for k in range(1, 6)]:
        with open(d / name, "rb") as f:
            obj = pickle.load(f)
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    ds = load_dataset("c10", tmp_path, download=False)
    assert np.array_equal(ds.x_train, x_tr) and np.array_equal(ds.y_train, y_tr)


# -- 2. no password is written down ----------------------------------------------------------------------
@pytest.mark.parametrize("text, hidden", [
    ("postgresql://user:secret@host/db", "secret"),
    ("postgresql://:secret@host:5432/db", "secret"),
    ("postgresql://user:p@ss@w0rd@host/db", "p@ss@w0rd"),
    ("postgresql://user:p%40ss@host/db", "p%40ss"),
    ("mysql://u:se:cret@h/db", "se:cret"),
    ("postgresql://user@host/db?password=secret&sslmode=require", "secret"),
    ("postgresql://user@host/db?sslmode=require&sslpassword=secret", "secret"),
    ("archsearch sweep run x --storage 'postgresql://u:secret@h/db' --workers 2", "secret"),
    ("PGPASSWORD=secret archsearch sweep run x", "secret"),
    ("postgresql://u:my secret@host/db", "my secret"),  # a space: no exact secret needed
    ("cannot open storage postgresql://u:it's-secret@host/db", "it's-secret"),
    ("https://ghp_secrettoken@host/org/repo.git", "ghp_secrettoken"),
    ("https://host/api?access_token=secret&x=1", "secret"),
    ("https://host/cb?client_secret=s3cr3tval", "s3cr3tval"),
    ("MYSQL_PWD=secret archsearch sweep run x", "secret"),
    ("HF_TOKEN=secret archsearch sweep run x", "secret"),
    ("db_password=secret in archsearch's log", "secret"),
])
def test_redact_hides_every_shape_of_password(text, hidden):
    from archsearch.redact import redact

    out = redact(text)
    assert hidden not in out and "***" in out
    assert "host" in out or "h/" in out or "archsearch" in out  # the rest stays readable


def test_redact_keeps_urls_without_secrets_and_known_secrets_go_too():
    from archsearch.redact import redact, url_secrets

    assert redact("postgresql://user@host/db?sslmode=require") == "postgresql://user@host/db?sslmode=require"
    assert redact("runs/sweeps/x/optuna-journal.log") == "runs/sweeps/x/optuna-journal.log"
    url = "postgresql://u:pass word@h/db"  # a space: the URL pattern stops there, the known secret does not
    assert "pass word" not in redact(f"cmd --storage '{url}'", url_secrets(url))
    # raw, decoded, and the piece before the '@' that a driver splitting there would echo
    assert set(url_secrets("postgresql://u:s3cr%40t@h/db")) == {"s3cr%40t", "s3cr@t", "s3cr"}


def test_error_lines_are_redacted(tmp_path):
    pytest.importorskip("psycopg")
    for url in ("postgresql://:hunter2@127.0.0.1:1/db", "postgresql://u:hun@ter2@127.0.0.1:1/db",
                "postgresql://u@127.0.0.1:1/db?password=hunter2"):
        r = run("sweep", "status", "x", "--storage", url)
        line = one_line_error(r, "cannot open storage")
        assert "hunter2" not in line and "hun@ter2" not in line


@pytest.mark.parametrize("text, hidden", [
    ("user:hunter2@db.example/sweeps", "hunter2"),
    ("--storage user:hunter2@db.example:5432/sweeps --workers 2", "hunter2"),
    ("journal file user:W@r:ng%41pw@127.0.0.1/db/optuna-journal.log", "ng%41pw"),
    ("no journal storage runs/user:hunter2@host/db", "hunter2"),
    (":hunter2@host", "hunter2"),
])
def test_redact_hides_a_password_without_a_scheme(text, hidden):
    """Issue 27, item 4: `user:pw@host` is a credential wherever it stands, scheme or not."""
    from archsearch.redact import redact

    out = redact(text)
    assert hidden not in out and ":***@" in out, out
    assert redact("me@example.org at 12:30, image@sha256:ab12") == "me@example.org at 12:30, image@sha256:ab12"


@pytest.mark.parametrize("url", [
    "postgresql://u:W@r:ng%41pw@127.0.0.1:1/db",  # SQLAlchemy reads host "r", port "ng%41pw@127.0.0.1:1"
    "postgresql://u:W@rng%41pw@127.0.0.1:1/db",  # psycopg then tries to resolve host "rng%41pw@127.0.0.1"
    "postgresql://u:W@rng%41pw@127.0.0.1:1/db?password=ng%41pw",
])
def test_a_drivers_message_loses_every_piece_of_the_password(url):
    """A password holding '@' or ':' unescaped: our part of the line was masked, but the
    driver's own message repeated the piece after the '@' (`ng%41pw@127.0.0.1`)."""
    pytest.importorskip("psycopg")
    line = one_line_error(run("sweep", "status", "x", "--storage", url), "cannot open storage")
    assert not any(piece in line for piece in ("ng%41pw", "ngApw", "W@r")), line
    assert "127.0.0.1" in line  # the host that was tried stays readable


@pytest.mark.parametrize("storage", ["user:hunter2@db.example/sweeps", "user:hunter2@db.example:5432/sweeps",
                                     "me@db.example:5432/sweeps", "user:W@r:ng%41pw@127.0.0.1/db"])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_storage_without_its_scheme_is_refused_before_anything_is_created(tmp_path, monkeypatch, storage, how):
    """`sweep run --storage user:pw@host/db` ran as a journal in a new folder ./user:pw@host/
    and wrote the password into report.md and efficiency.html; `sweep status` printed it."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=1, fractions="[0.2]")
    before = sorted(os.listdir(tmp_path))
    for cmd in (["sweep", "run", spec, "--workers", "1"], ["sweep", "status", "t"], ["sweep", "worker", "--study", "t"],
                ["report", "t"], ["plot", "efficiency", "t", "-o", "e.html"]):
        r = run(*cmd, "--storage", storage) if how == "flag" else run(*cmd, env={"ARCHSEARCH_STORAGE": storage})
        line = one_line_error(r, "looks like a database URL without its scheme")
        assert ("--storage" if how == "flag" else "$ARCHSEARCH_STORAGE") in line
        assert "hunter2" not in r.output and "ng%41pw" not in r.output, r.output
        assert sorted(os.listdir(tmp_path)) == before  # nothing created
    for ok in (f"./{storage}", f"file://{tmp_path}/j@x/journal.log"):  # a path with '@' said to be one
        from archsearch.sweep import check_storage

        assert check_storage(ok) == ok


def test_the_storage_functions_refuse_a_url_without_its_scheme_too(tmp_path, monkeypatch):
    """The same check below the CLI: `run_sweep` refuses before its work dir. What archsearch
    makes itself is not checked: a work dir whose name holds '@' keeps its journal."""
    from archsearch.sweep.app import run_sweep
    from archsearch.sweep.storage import default_storage, open_storage

    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=1, fractions="[0.2]")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ArchsearchError, match=r"user:\*\*\*@host/db looks like a database URL"):
        run_sweep(str(spec), storage="user:hunter2@host/db", workdir=str(tmp_path / "wd"), workers=1)
    assert sorted(os.listdir(tmp_path)) == before
    assert open_storage(default_storage("exp@v2"), create=True) is not None
    assert (tmp_path / "exp@v2").is_dir()


def test_workers_get_the_storage_from_the_environment_not_argv(tmp_path, monkeypatch):
    import subprocess

    from archsearch.sweep import launch

    seen = []

    class FakePopen:
        def __init__(self, cmd, env=None, **kw):
            seen.append((cmd, env))
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    url = "postgresql://u:hunter2@db.example/sweeps"
    launch.spawn_workers(study, plan, url, wd, 2, ["cpu", "cpu"], 1, None, log=lambda m: None, poll=0)
    assert len(seen) == 2
    for cmd, env in seen:
        assert not any("hunter2" in c for c in cmd) and "--storage" not in cmd
        assert env["ARCHSEARCH_STORAGE"] == url
    logs = "".join(p.read_text() for p in (wd / "logs").glob("*.log"))
    assert "hunter2" not in logs and "u:***@db.example" in logs


def test_storage_url_from_the_environment(tmp_path):
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=1, fractions="[0.2]")
    journal = tmp_path / "elsewhere" / "j.log"
    r = run("sweep", "run", spec, "--workdir", tmp_path / "wd", "--workers", "1", env={"ARCHSEARCH_STORAGE": str(journal)})
    assert r.exit_code == 0, r.output
    assert journal.exists() and not (tmp_path / "wd" / "optuna-journal.log").exists()
    r = run("sweep", "status", "t", env={"ARCHSEARCH_STORAGE": str(journal)})
    assert r.exit_code == 0 and "1/1 done" in r.stdout


def test_old_plan_commands_are_redacted_in_reports(tmp_path):
    """A study recorded before redaction existed: its command is redacted when written out."""
    from archsearch.sweep.app import provenance
    from archsearch.sweep.plan import PLAN_ATTR
    from archsearch.sweep.runner import WorkerContext, work

    spec, wd, plan, study = _prepared(tmp_path, seeds=1, generators='["uniform"]', fractions="[0.2]")
    work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False))
    plan = {**study.user_attrs[PLAN_ATTR], "command": "archsearch sweep run x --storage postgresql://u:hunter2@h/db"}
    from archsearch.sweep.results import summary_rows

    text = provenance(study, plan, summary_rows(study))
    assert "hunter2" not in text and "u:***@h/db" in text


# -- 3. a damaged journal ---------------------------------------------------------------------------------
def test_partial_journal_tail_is_cut_before_the_next_append(tmp_path):
    spec = write_spec(tmp_path, generators='["uniform"]', seeds=2, fractions="[0.2]")
    wd = tmp_path / "wd"
    r = run("sweep", "run", spec, "--workdir", wd, "--workers", "1")
    assert r.exit_code == 0, r.output
    journal = wd / "optuna-journal.log"
    done = journal.read_bytes()
    with open(journal, "ab") as f:  # what a full disk leaves: half a line
        f.write(b'{"op_code":4,"worker_id":"x","study_id":0,"datetime_st')
    spec2 = write_spec(tmp_path, generators='["uniform"]', seeds=3, fractions="[0.2]", name="t")
    r = run("sweep", "run", spec2, "--workdir", wd, "--workers", "1")  # another spec: refused, but the journal is readable
    one_line_error(r, "another version of this spec")
    r = run("sweep", "status", spec, "--workdir", wd)
    assert r.exit_code == 0 and "2/2 done" in r.stdout, r.output
    assert journal.read_bytes().startswith(done) and journal.read_bytes().endswith(b"\n")


def test_failed_append_is_cut_back(tmp_path, monkeypatch):
    import optuna

    from archsearch.sweep.storage import open_storage

    j = tmp_path / "j.log"
    st = open_storage(str(j))
    study = optuna.create_study(study_name="s", storage=st)
    size = j.stat().st_size
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EnvironmentFailure, match="No space left"):
        study.set_user_attr("a", "x" * 1000)
    monkeypatch.setattr(os, "fsync", real)
    assert j.stat().st_size == size  # the half-written entry is gone
    study.set_user_attr("b", 1)
    assert optuna.load_study(study_name="s", storage=open_storage(str(j))).user_attrs == {"b": 1}


@pytest.mark.parametrize("damage, needle", [
    (b'{"op_code":99,"worker_id":"w"}\n', "not an operation"),
    (b'{"op_code":4,"wor\n{"op_code":1,"worker_id":"w","study_id":0}\n', "damaged after entry 1"),
    (b'{"op_code":0,"worker_id":"w"}\n', "cannot be replayed"),
    (b'[1, 2]\n', "not an operation"),
])
def test_damaged_journal_is_one_line(tmp_path, damage, needle):
    import optuna

    from archsearch.sweep.storage import open_storage

    j = tmp_path / "optuna-journal.log"
    optuna.create_study(study_name="s", storage=open_storage(str(j)))
    with open(j, "ab") as f:
        f.write(damage)
    one_line_error(run("sweep", "status", "s", "--storage", j), needle)


def test_an_unfinished_last_entry_is_cut_before_appending(tmp_path):
    """A last line that ends in a newline but is not JSON is what Optuna's reader skips; the
    next append must not bury it in the middle, where it would break every later read."""
    import optuna

    from archsearch.sweep.storage import open_storage

    j = tmp_path / "j.log"
    optuna.create_study(study_name="s", storage=open_storage(str(j)))
    good = j.read_bytes()
    with open(j, "ab") as f:
        f.write(b'{"op_code":4,"wor\n')
    study = optuna.load_study(study_name="s", storage=open_storage(str(j)))
    study.set_user_attr("after", 1)
    assert j.read_bytes().startswith(good) and b'"wor\n' not in j.read_bytes()
    assert optuna.load_study(study_name="s", storage=open_storage(str(j))).user_attrs == {"after": 1}


# -- 4. disk and permission errors --------------------------------------------------------------------------
def test_output_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--out", blocker / "run"),
                   str(blocker))
    one_line_error(run("extract", "--from", "slimming-vgg11-digits", "--library", blocker / "lib", "--preset",
                       "tiny", "--seeds", "1", "--epochs", "1", "--workdir", tmp_path / "wd"), str(blocker))
    one_line_error(run("plot", "pattern", "slimming-vgg16-c10", "-o", blocker / "p.html"), str(blocker))
    one_line_error(run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--budget", "1M",
                       "--out", blocker / "t"), str(blocker))
    assert not (tmp_path / "wd").exists()  # the bad library was noticed before any training
    # $ARCHSEARCH_PATTERNS naming a file: searching skips it, writing there is one line
    one_line_error(run("extract", "--from", "slimming-vgg11-digits", "--preset", "tiny", "--seeds", "1",
                       "--workdir", tmp_path / "wd", env={"ARCHSEARCH_PATTERNS": str(blocker)}), str(blocker))
    r = run("patterns", "list", env={"ARCHSEARCH_PATTERNS": str(blocker)})
    assert r.exit_code == 0 and "slimming-vgg16-c10" in r.stdout


def test_cache_naming_a_file_is_one_line(tmp_path, monkeypatch):
    from test_data import write_cifar10_pickles

    write_cifar10_pickles(tmp_path / "data")
    blocker = tmp_path / "cachefile"
    blocker.write_text("x")
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(blocker))
    one_line_error(run("train", "vgg11-c10", "--data-dir", tmp_path / "data", "--no-download", "--preset", "tiny",
                       "--epochs", "1", "--out", tmp_path / "r"), str(blocker))


def test_full_disk_stops_the_sweep_and_the_rerun_retries(tmp_path, monkeypatch):
    from archsearch import train as trainer
    from archsearch.sweep.runner import WorkerContext, requeue_failed, status, work

    real, calls = trainer.train, []

    def disk_full(spec, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise EnvironmentFailure(f"cannot write {tmp_path}/x/result.json: No space left on device")
        return real(spec, *a, **k)

    monkeypatch.setattr(trainer, "train", disk_full)
    spec, wd, plan, study = _prepared(tmp_path, seeds=1)  # 6 grid points
    ctx = WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False, poll=0.1)
    with pytest.raises(EnvironmentFailure, match="sweep stopped at trial #1.*No space left"):
        work(study, plan, ctx)
    st = status(study, plan)
    assert (st.done, st.failed, st.remaining) == (1, 1, 4)  # stopped at once: the grid was not burnt through
    assert requeue_failed(study, plan) == [1]  # what `sweep run` does first: the machine's failures come back
    work(study, plan, ctx)
    assert status(study, plan).finished and status(study, plan).done == 6


def test_retry_failed_retries_the_trials_own_failures_too(tmp_path, monkeypatch):
    from archsearch import train as trainer

    real = guided_diverges(monkeypatch)
    spec = write_spec(tmp_path, seeds=1, fractions="[0.2]")
    wd = tmp_path / "wd"
    r = run("sweep", "run", spec, "--workdir", wd, "--workers", "1")
    # a failed trial: the report is written, and the run says so with a non-zero exit
    assert r.exit_code == 2 and "1 trial(s) failed: #1: Diverged" in r.stderr, r.output
    assert (wd / "report.md").exists()
    r = run("sweep", "run", spec, "--workdir", wd, "--workers", "1")
    assert r.exit_code == 2 and "requeued" not in r.stderr and "1 failed" in r.stderr  # a plain rerun leaves it
    monkeypatch.setattr(trainer, "train", real)
    r = run("sweep", "run", spec, "--workdir", wd, "--retry-failed", "--workers", "1")
    assert r.exit_code == 0 and "requeued 1 failed trial(s)" in r.stderr and "3/3 done" in r.stderr, r.output


def test_a_bug_in_a_trial_stops_the_worker_loudly(tmp_path, monkeypatch):
    from archsearch import train as trainer
    from archsearch.sweep.runner import WorkerContext, status, work

    def bug(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(trainer, "train", bug)
    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    with pytest.raises(ZeroDivisionError):
        work(study, plan, WorkerContext(wd, "cpu", log=lambda m: None, epoch_progress=False))
    st = status(study, plan)
    assert st.failed == 1 and st.failures[0][1].startswith("bug: ZeroDivisionError")


# -- 5. names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/abs/path", "sub/dir", "..", ".hidden", "-x", "a b", ""])
def test_extract_name_is_a_plain_name(tmp_path, name):
    r = run("extract", "--from", "slimming-vgg11-digits", "--name", name, "--preset", "tiny", "--seeds", "1",
            "--workdir", tmp_path / "wd", "--library", tmp_path / "lib")
    one_line_error(r, "not a plain name")
    assert not (tmp_path / "wd").exists()


def test_study_names_and_pattern_names_are_plain(tmp_path):
    one_line_error(run("sweep", "worker", "--storage", tmp_path / "j.log", "--study", "../../x"), "not a plain name")
    pat = make_pattern("channels", "vgg11", "digits", name="ok")
    pat["name"] = "../../evil"
    (tmp_path / "p.json").write_text(json.dumps(pat))
    one_line_error(run("transfer", "--from", tmp_path / "p.json", "--to", "vgg11-digits"), "not a plain name")


# -- 6. malformed files -------------------------------------------------------------------------------------
def test_list_skips_bad_files_and_never_hangs(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "good.json").write_text(json.dumps(make_pattern(name="good")))
    (lib / "bad.json").write_text('{"schema": 1, "accuracy": {}}')
    (lib / "utf.json").write_bytes(b'{"name": "\xff\xfe"}')
    (lib / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(lib / "fifo.json")
    (lib / "zero.json").symlink_to("/dev/zero")
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(lib))
    r = run("patterns", "list")
    assert r.exit_code == 0 and "good" in r.stdout
    assert "bad" in r.stderr and "utf" in r.stderr and "deep" in r.stderr and "Traceback" not in r.output
    assert "fifo" not in r.output and "zero" not in r.output
    one_line_error(run("patterns", "show", "bad"), "is missing")
    one_line_error(run("patterns", "show", "utf"), "not UTF-8")
    one_line_error(run("patterns", "show", "deep"), "nested too deeply")
    one_line_error(run("patterns", "show", lib / "zero.json"), "")


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(accuracy={}), "accuracy.base is missing"),
    (lambda d: d["provenance"].update(seeds=3), "provenance.seeds must be a list"),
    (lambda d: d.update(stages=["a"] * len(d["stages"])), "stages.0 needs a whole number"),
    (lambda d: d["stage"].update(kernel_keep_mean=[[["x"] * 3] * 3] * 5), "kernel_keep_mean.0.0.0 must be a number"),
    (lambda d: d["stage"].update(kernel_keep_mean=[[[-1.0] * 3] * 3] * 5), "greater than or equal to 0"),
    (lambda d: d.update(ratio=float("nan")), "not valid JSON"),
])
def test_deep_wrong_types_in_a_pattern_are_one_line(tmp_path, mutate, needle):
    d = make_pattern("sparsity", name="p")
    mutate(d)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(d))
    one_line_error(run("patterns", "show", f), needle)
    one_line_error(run("transfer", "--from", f, "--to", "vgg16-c10"), needle)


def _spec_dict(**over):
    from archsearch.archs import base_spec

    d = base_spec("vgg11", 10, width=0.125).to_dict()
    d.update(over)
    return d


@pytest.mark.parametrize("over, needle", [
    ({"base_widths": [0] * 8}, "base_widths.0 must be greater than or equal to 1"),
    ({"widths": [1_000_000] * 8}, "widths.0 must be less than or equal to 65536"),
    ({"input_size": 100_000}, "input_size must be less than or equal to 4096"),
    ({"stages": ["a"] * 8}, "stages.0 needs a whole number"),
    ({"widths": [8] * 7}, "7 widths but 8 stages"),
    ({"meta": []}, "meta must be a JSON object"),
    ({"depth": True}, "depth needs a whole number"),
])
def test_bad_spec_files_are_one_line(tmp_path, over, needle):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(_spec_dict(**over)))
    one_line_error(run("train", "vgg11-digits", "--spec", f, "--preset", "tiny", "--epochs", "1",
                       "--out", tmp_path / "r"), needle)


def test_a_mask_that_empties_a_layer_is_refused(tmp_path):
    from archsearch.archs import base_spec, get_family
    from archsearch.spec import encode_mask

    spec = base_spec("vgg11", 10, width=0.125)
    masks = [np.ones(c.shape, dtype=bool) for c in get_family("vgg").convs(spec)]
    masks[3][:] = False
    d = {**spec.to_dict(), "schema": 1, "groups": None, "masks": [encode_mask(m) for m in masks]}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(d))
    one_line_error(run("train", "vgg11-digits", "--spec", f, "--preset", "tiny", "--out", tmp_path / "r"),
                   "conv(s) features.11 keep no weight")


def test_weights_that_are_not_a_state_dict(tmp_path):
    for obj in ([1, 2], torch.zeros(3), {"a": 1}, {}):
        torch.save(obj, tmp_path / "w.pt")
        one_line_error(run("train", "vgg11-digits", "--schedule", "finetune", "--weights", tmp_path / "w.pt",
                           "--preset", "tiny", "--width", "0.125", "--out", tmp_path / "r"), "not a state dict")


def test_malformed_result_and_proposal_files(tmp_path):
    from archsearch.propose import finished, resolve_settings, run_dir
    from archsearch.train import load_result

    f = tmp_path / "result.json"
    f.write_text('{"best_acc": "high"}')
    with pytest.raises(ArchsearchError, match="best_acc must be a number"):
        load_result(f)
    pn, _, settings, _, _ = resolve_settings("slimming-vgg11-digits", preset="tiny")
    run_ = run_dir(pn, settings, tmp_path, 0)
    run_.mkdir(parents=True)
    (run_ / "proposal.json").write_text('{"settings": 5}')
    assert finished(run_, settings) is None  # a damaged record: the pruning step is redone


@pytest.mark.parametrize("toml, needle", [
    ('name = "x"\ntarget = 5', "target must be a string"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nfractions = [0.1]\n[train]\ncap = "x"',
     "train.cap must be a number"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nfractions = [0.1]\n[train]\ncount = "flops"',
     "train.count must be 'macs' or 'original'"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nbudgets = [nan]', "budgets.0"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nbudgets = [inf]', "budgets.0"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nfractions = [0.1]\n[scales.r]\nseeds = "2"',
     "[scales.r]: seeds needs a whole number"),
    ('name = "x"\ntarget = "vgg11-digits"\nkinds = ["channels"]\nbudgets = ["nan"]', "finite"),
    ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("a = " + "1" * 5000, "not valid TOML"),  # tomllib's plain ValueError: an integer too long to convert
])
def test_bad_sweep_tomls_fail_at_once(tmp_path, toml, needle):
    f = tmp_path / "s.toml"
    f.write_text(toml)
    one_line_error(run("sweep", "run", f, "--workdir", tmp_path / "wd"), needle)
    assert not (tmp_path / "wd" / "trials").exists()


def test_invalid_utf8_toml(tmp_path):
    f = tmp_path / "s.toml"
    f.write_bytes(b'name = "\xff"\n')
    one_line_error(run("sweep", "run", f), "not UTF-8")


def test_a_tampered_plan_in_the_study_is_one_line(tmp_path):
    from archsearch.sweep.plan import PLAN_ATTR

    spec, wd, plan, study = _prepared(tmp_path, seeds=1)
    study.set_user_attr(PLAN_ATTR, {**plan, "budgets": ["lots"]})
    one_line_error(run("sweep", "worker", "--storage", wd / "optuna-journal.log", "--study", "t"), "budgets.0")


# -- 7. numbers at the edge ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--budget", "nan"], "finite"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--budget", "inf"], "finite"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--floor", "nan"], "--floor"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--floor", "inf"], "--floor"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--floor", "-5"], "--floor"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--fractions", "nan"], "fractions"),
    (["transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--width", "nan"], "--width"),
    (["train", "vgg11-digits", "--seed", "-1"], "--seed"),
    (["train", "vgg11-digits", "--seed", str(2 ** 64)], "--seed"),
    (["train", "vgg11-digits", "--epochs", "100000000000000000000"], "--epochs"),
    (["train", "vgg11-digits", "--epochs", "1e20"], "--epochs"),
    (["train", "vgg11-digits", "--cap", "nan"], "--cap"),
    (["extract", "--from", "slimming-vgg11-digits", "--sparsity", "nan"], "--sparsity"),
    (["extract", "--from", "slimming-vgg11-digits", "--ratio", "nan"], "--ratio"),
    (["extract", "--from", "slimming-vgg11-digits", "--floor", "nan"], "--floor"),
    (["sweep", "run", "quickstart", "--workers", "100000"], "--workers"),
])
def test_numbers_are_checked_where_they_enter(args, needle, tmp_path):
    out_option = {"train": "--out", "transfer": "--out", "extract": "--workdir", "sweep": "--workdir"}[args[0]]
    r = run(*args, out_option, tmp_path / "o")
    one_line_error(r, needle)
    assert not (tmp_path / "o").exists()


def test_a_spec_too_big_for_memory_is_refused_before_allocating(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(_spec_dict(widths=[65536] * 8, base_widths=None)))
    one_line_error(run("train", "vgg11-digits", "--spec", f, "--preset", "tiny", "--out", tmp_path / "r"),
                   "GiB to train")


# -- 8. the array cache ------------------------------------------------------------------------------------
def test_damaged_cache_entries_are_rebuilt_and_bad_labels_refused(tmp_path, monkeypatch):
    from archsearch.data import load_dataset
    from archsearch.data.cache import cache_dir
    from test_data import write_cifar10_pickles

    x_tr, y_tr, _, _ = write_cifar10_pickles(tmp_path / "d")
    load_dataset("c10", tmp_path / "d", download=False)
    entry = next(e for e in cache_dir().iterdir() if e.name.startswith("c10-pickles"))
    (entry / "x_train.npy").write_bytes(b"")  # 0 bytes
    ds = load_dataset("c10", tmp_path / "d", download=False)
    assert np.array_equal(ds.x_train, x_tr)
    np.save(entry / "y_train.npy", np.arange(10))  # arrays that disagree: 60 images, 10 labels
    ds = load_dataset("c10", tmp_path / "d", download=False)
    assert len(ds.y_train) == len(ds.x_train) == len(x_tr)
    np.save(entry / "y_train.npy", np.full(len(y_tr), 12))  # labels outside the classes
    assert load_dataset("c10", tmp_path / "d", download=False).y_train.max() < 10
    # the source itself with a label outside the 10 classes: refused before training
    d = tmp_path / "d2" / "cifar-10-batches-py"
    write_cifar10_pickles(tmp_path / "d2")
    with open(d / "data_batch_1", "rb") as f:
        obj = pickle.load(f)
    obj[b"labels"][0] = 10
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump(obj, f)
    one_line_error(run("train", "vgg11-c10", "--data-dir", tmp_path / "d2", "--no-download", "--preset", "tiny",
                       "--out", tmp_path / "r"), "labels run from 0 to 10")


# -- 9. one process per run folder ---------------------------------------------------------------------------
def test_a_second_process_on_a_run_folder_gets_one_line(tmp_path):
    from archsearch._io import RunLock

    out = tmp_path / "run"
    with RunLock(out):  # as a first `train --out run` holds it
        r = run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125", "--seed", "1",
                "--out", out)
        one_line_error(r, "in use by another archsearch process")
        assert not (out / "result.json").exists()
    r = run("train", "vgg11-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.125", "--out", out)
    assert r.exit_code == 0, r.output  # released with the holder


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    code = f"from archsearch._io import RunLock; import time\nwith RunLock({str(out)!r}):\n print('held', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    from archsearch._io import RunLock

    with pytest.raises(ArchsearchError, match="in use"):
        with RunLock(out):
            pass
    p.kill()
    p.wait()
    with RunLock(out):
        pass


# -- 10. read-only commands have no side effects; storages are checked first ------------------------------
def test_read_only_commands_create_nothing(tmp_path):
    missing = tmp_path / "missing.log"
    one_line_error(run("sweep", "status", "x", "--storage", missing), "no journal storage")
    one_line_error(run("report", "x", "--storage", missing), "no journal storage")
    assert not missing.exists()
    db = tmp_path / "missing.db"
    one_line_error(run("report", "x", "--storage", f"sqlite:///{db}"), "no SQLite storage")
    one_line_error(run("sweep", "status", "x", "--storage", f"sqlite:///{db}"), "no SQLite storage")
    assert not db.exists()
    d = tmp_path / "dir"
    d.mkdir()
    one_line_error(run("sweep", "worker", "--storage", d, "--study", "x"), "no optuna-journal.log")
    assert list(d.iterdir()) == []


def test_a_bad_storage_is_noticed_before_any_training(tmp_path):
    pytest.importorskip("psycopg")
    spec = write_spec(tmp_path, extra="[extract]\nin_sweep = true\npreset = \"tiny\"\nepochs = 1",
                      patterns='own = ["slimming-vgg11-digits"]')
    one_line_error(run("sweep", "run", spec, "--workdir", tmp_path / "wd", "--storage",
                       "postgresql://u:pw@127.0.0.1:1/db"), "cannot open storage")
    assert not (tmp_path / "wd" / "proposals").exists() and not (tmp_path / "wd" / "patterns").exists()


def test_a_waiting_run_lock_takes_the_folder_when_its_holder_lets_go(tmp_path):
    """Two table proposals that share one base net: the second waits for the first's lock
    (then reuses what it wrote) instead of failing."""
    import threading
    import time

    from archsearch._io import RunInUse, RunLock

    held, got = threading.Event(), []

    def holder():
        with RunLock(tmp_path):
            held.set()
            time.sleep(0.5)
            got.append("released")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    with pytest.raises(RunInUse) as e:
        with RunLock(tmp_path):
            pass
    assert e.value.folder == tmp_path
    with RunLock(tmp_path, wait=True):
        got.append("taken")
    t.join()
    assert got == ["released", "taken"]



def test_the_recorded_command_hides_a_password_with_a_quote(monkeypatch):
    """shlex quotes a ' as '"'"', which would split the password an exact match looks for:
    each argument is redacted before it is quoted."""
    import sys

    from archsearch.sweep.app import recorded_command

    store = "postgresql://u:it's S3cret@h/db"
    monkeypatch.setattr(sys, "argv", ["archsearch", "sweep", "run", "x", "--storage", store])
    cmd = recorded_command(None, store)
    assert "S3cret" not in cmd and cmd.startswith("archsearch sweep run x --storage") and "@h/db" in cmd
    assert "S3cret" not in recorded_command(f"archsearch demo --storage '{store}'", store)


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A power loss after the rename must not leave an empty file: the bytes are synced first."""
    import os

    from archsearch._io import write_text

    calls, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), replace(a, b))[1])
    write_text(tmp_path / "f.txt", "x")
    assert calls == ["fsync", "replace", "fsync"] and (tmp_path / "f.txt").read_text() == "x"


# -- issue 27: torch files through the one reader (FIFOs, non-checkpoints, crafted artifacts) ----------
TRAIN_TINY = ("train", "vgg11-digits", "--preset", "tiny", "--width", "0.125")


def _cli_within(args, seconds=90):
    """`archsearch ARGS` in a process of its own, so that a hang fails the test instead of blocking it."""
    import subprocess
    import sys

    try:
        return subprocess.run([sys.executable, "-m", "archsearch", *map(str, args)], capture_output=True, text=True,
                              timeout=seconds, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"archsearch {' '.join(map(str, args))} hung for {seconds} s")


def _one_line(p, *needles):
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert all(n in errors[0] for n in needles), errors[0]
    return errors[0]


def test_fifo_weights_and_fifo_checkpoint_answer_at_once(tmp_path):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    _one_line(_cli_within([*TRAIN_TINY, "--schedule", "finetune", "--weights", fifo, "--out", tmp_path / "r1"]),
              str(fifo), "not a regular file")
    out = tmp_path / "r2"
    out.mkdir()
    os.mkfifo(out / "checkpoint.pt")
    _one_line(_cli_within([*TRAIN_TINY, "--epochs", "1", "--out", out]), str(out / "checkpoint.pt"), "not a regular file")


def _zip_of_other_files(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes/readme.txt", "not a checkpoint")


@pytest.mark.parametrize("make,needle", [
    (lambda p: p.write_bytes(b"\0" * 4096), "not a PyTorch checkpoint (truncated or corrupt)"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a PyTorch checkpoint"),
    (lambda p: (torch.save({"w": torch.zeros(64)}, p), p.write_bytes(p.read_bytes()[:300])),
     "not a PyTorch checkpoint (truncated or corrupt)"),
    (_zip_of_other_files, "not a PyTorch checkpoint (a zip archive"),
    (lambda p: p.write_bytes(b""), "empty, not a PyTorch checkpoint"),
], ids=["zeros", "random", "truncated", "foreign-zip", "empty"])
def test_a_file_that_is_no_checkpoint_never_suggests_unsafe_loading(tmp_path, make, needle):
    """torch's own text says 'Re-running with weights_only=False will likely succeed': the
    one thing not to do with a file from someone else."""
    w = tmp_path / "w.pt"
    make(w)
    line = one_line_error(run(*TRAIN_TINY, "--schedule", "finetune", "--weights", w, "--out", tmp_path / "r"), needle)
    assert str(w) in line and "weights_only" not in line
    out = tmp_path / "run"
    out.mkdir()
    os.replace(w, out / "checkpoint.pt")
    line = one_line_error(run(*TRAIN_TINY, "--epochs", "1", "--out", out), needle)
    assert str(out / "checkpoint.pt") in line and "weights_only" not in line and "delete it" in line


def test_dev_zero_as_weights_is_one_line(tmp_path):
    line = one_line_error(run(*TRAIN_TINY, "--schedule", "finetune", "--weights", "/dev/zero", "--out", tmp_path / "r"),
                          "/dev/zero")
    assert "not a regular file" in line and "weights_only" not in line


def test_a_pickle_payload_in_rewind_pt_is_refused_naming_the_file(tmp_path, monkeypatch):
    from archsearch.propose import lottery

    mark = tmp_path / "pwned"

    def crafted(self, model, epoch):  # the snapshot a hostile hand left in the run folder
        if epoch + 1 == self.epoch:
            torch.save({"features.0.weight": _Payload(mark)}, self.path)

    monkeypatch.setattr(lottery.Snapshot, "epoch_end", crafted)
    line = one_line_error(run("extract", "--from", "lottery-vgg11-digits", "--preset", "tiny", "--width", "0.125",
                              "--epochs", "2", "--rounds", "1", "--rewind-epoch", "1", "--seeds", "1",
                              "--train-subset", "128", "--workdir", tmp_path / "w", "--library", tmp_path / "lib"),
                          "rewind.pt")
    assert "refused, no code was run" in line and not mark.exists()


def test_a_crafted_pruned_model_artifact_fails_its_trial_as_bad_input(tmp_path, monkeypatch):
    """The arm's trial fails as the trial's fault (one line naming the file); before, the
    worker's traceback classed it as a bug in archsearch."""
    from archsearch.sweep import table
    from archsearch.sweep.runner import status, work
    from test_table import _ctx, _prepared

    mark, real = tmp_path / "pwned", table.upload
    crafted = tmp_path / "crafted.pt"
    torch.save({"features.0.weight": _Payload(mark)}, crafted)
    monkeypatch.setattr(table, "upload", lambda store, trial, path: real(
        store, trial, crafted if path.name == "pruned_model.pt" else path))
    spec, wd, plan, study = _prepared(tmp_path, arms='["finetune"]', epochs=1,
                                      rows='\n[[rows]]\nfrom = "l1norm-vgg11-digits"\nratio = 0.3\n')
    work(study, plan, _ctx(wd))  # a bug would raise here
    st = status(study, plan)
    assert st.failed == 1, st.line()
    reason = st.failures[0][1]
    assert reason.startswith("ArchsearchError: cannot read artifact") and "pruned_model.pt" in reason, reason
    assert "refused, no code was run" in reason and not mark.exists()


def test_a_checkpoint_with_nan_in_its_history_is_one_line(tmp_path):
    out = tmp_path / "run"
    args = (*TRAIN_TINY, "--epochs", "1", "--train-subset", "128", "--out", out)
    assert run(*args).exit_code == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    for field, bad in (("train_loss", float("nan")), ("seconds", float("inf"))):
        ck["history"][0] = {**ck["history"][0], field: bad}
        torch.save(ck, out / "checkpoint.pt")
        line = one_line_error(run(*args), f"checkpoint {out / 'checkpoint.pt'}: history.0.{field}")
        assert "finite" in line
        assert json.loads((out / "result.json").read_text())["history"][0][field] != bad
        ck["history"][0] = {**ck["history"][0], field: 0.5}


@pytest.mark.parametrize("exitcode,then", [
    (2, "fix what its error line above says, then run the same command again"),  # a rank's own error line
    (-9, "run the same command again to resume from the last checkpoint"),  # a killed rank: a resume goes on
])
def test_a_ranks_own_error_is_not_answered_with_resume(monkeypatch, exitcode, then):
    """A configuration error on a rank (exit 2, its line above) is not mended by resuming."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failed(*a):
        raise ChildFailedError("archsearch", {r: ProcessFailure(r, 100 + r, exitcode, "/nonexistent") for r in (0, 1)})

    monkeypatch.setattr("torch.distributed.run.run", failed)
    line = one_line_error(run("train", "vgg11-digits", "--nproc", "2", "--device", "cpu"),
                          "2 of 2 training processes failed")
    assert line.endswith(then), line


def test_torch_files_have_a_stated_size_limit(tmp_path, monkeypatch):
    from archsearch._io import TORCH_LIMIT, load_torch

    w = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1000)}, w)
    assert TORCH_LIMIT >= 4 << 30 and load_torch(w)["w"].shape == (1000,)  # generous by default
    monkeypatch.setenv("ARCHSEARCH_MAX_TORCH_GIB", "0.000001")  # about 1 KB
    with pytest.raises(ArchsearchError, match=r"cannot read weights .*w\.pt: [\d,]+ bytes, more than the 1,073 allowed"):
        load_torch(w, "weights")
    monkeypatch.setenv("ARCHSEARCH_MAX_TORCH_GIB", "nan")
    with pytest.raises(ArchsearchError, match=r"\$ARCHSEARCH_MAX_TORCH_GIB is 'nan'"):
        load_torch(w, "weights")
