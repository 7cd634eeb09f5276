"""Every committed sweep result under benchmarks/results/ recomputes from its raw data (issue 29).

For each folder with an Optuna journal and a report.json: a read-only copy of the journal is
opened in tmp_path, the report is written with today's code by the function `archsearch report`
uses (`sweep.app.write_outputs`, through benchmarks/reexport_reports.py's loader), and the
committed report.json (and trials.json where one is committed) must equal it, every number to
the precision it was written with. After a change to the report format this fails until
`python benchmarks/reexport_reports.py` has rewritten the committed reports.

Then the numbers the READMEs' tables quote are recomputed from the journal's trials, per seed,
with the convention those READMEs state (issue 29: final-epoch accuracy, mean ± sample std
over the seeds; each comparison's paired difference over seeds with its 95% Student-t interval
and the reports' verdict word): each expected table line must appear in its README. About
0.3 s per study on the 2-core CPU box.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


REEXPORT = load_script("reexport_reports")
STUDIES = REEXPORT.committed_studies(RESULTS)


def _name(folder: Path) -> str:
    return folder.relative_to(RESULTS).as_posix()


def test_every_committed_journal_has_its_report():
    """A journal committed without a report (or a report without its journal) escapes the check below."""
    journals = {p.parent for p in RESULTS.rglob("optuna-journal.log")}
    assert journals and set(STUDIES) == journals
    # each study's README numbers are checked below: a new committed study needs its entry
    assert set(map(_name, STUDIES)) == set(README_LINES), "README_LINES lists other studies than are committed"


def _decimals(x: float) -> int:
    text = repr(float(x))
    return 0 if "e" in text else len(text.split(".")[1].rstrip("0"))


def _assert_same(committed, recomputed, where: str) -> None:
    """Equal structures; numbers equal to the precision they were written with."""
    if isinstance(committed, bool) or not isinstance(committed, (int, float)):
        if isinstance(committed, dict):
            assert isinstance(recomputed, dict) and committed.keys() == recomputed.keys(), where
            for k in committed:
                _assert_same(committed[k], recomputed[k], f"{where}.{k}")
        elif isinstance(committed, list):
            assert isinstance(recomputed, list) and len(committed) == len(recomputed), where
            for i, (a, b) in enumerate(zip(committed, recomputed)):
                _assert_same(a, b, f"{where}[{i}]")
        else:
            assert committed == recomputed, f"{where}: committed {committed!r}, recomputed {recomputed!r}"
        return
    assert isinstance(recomputed, (int, float)) and not isinstance(recomputed, bool), where
    # to the finer of the two printed precisions: 0.8 (written for 0.80) is not 0.84
    tol = 0.5 * 10.0 ** -max(_decimals(committed), _decimals(recomputed)) + 1e-9
    assert abs(committed - recomputed) <= tol, f"{where}: committed {committed}, recomputed {recomputed}"


@pytest.fixture(params=STUDIES, ids=_name)
def recomputed(request, tmp_path):
    """(committed folder, the study from a read-only copy of its journal, the report written now)."""
    from archsearch.sweep.app import write_outputs

    folder = request.param
    study, plan = REEXPORT.open_committed(folder, tmp_path)
    out = tmp_path / "out"
    write_outputs(study, plan, out, x=plan["spec"]["by"])
    return folder, study, out


def test_committed_report_recomputes_from_its_journal(recomputed):
    folder, _, out = recomputed
    for name in ("report.json", "trials.json"):
        if (folder / name).is_file() or name == "report.json":
            _assert_same(json.loads((folder / name).read_text()), json.loads((out / name).read_text()),
                         f"{_name(folder)}/{name}")


# -- the READMEs' numbers, from the raw trials ---------------------------------------------------
# Computed here from the trials' records with numpy and scipy, not with archsearch.stats, so that
# a slip in the library's statistics shows as a README that no longer matches.
def _cell(values) -> str:
    """The READMEs' convention: final-epoch accuracy, mean ± sample std (ddof=1) over the seeds."""
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _gap(a: dict, b: dict) -> str:
    """a - b paired by seed: `+mean [low, high] verdict`, the 95% Student-t interval of the mean
    difference and the reports' verdict word for it."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    half = student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    low, high = d.mean() - half, d.mean() + half
    verdict = "beats" if low > 0 else "falls short of" if high < 0 else "matches"
    return f"{d.mean():+.2f} [{low:.2f}, {high:.2f}] {verdict}"


def _tag(budget: float) -> str:
    return f"{round(budget / 1000)}K"


def _grid(trials) -> dict[tuple[str, float], dict]:
    """(generator, budget) -> {seed: final-epoch accuracy} (each seed's first completed trial)."""
    out: dict[tuple[str, float], dict] = {}
    for t in trials:
        u = t.user_attrs
        if t.state.name == "COMPLETE":
            out.setdefault((u.get("generator"), float(u.get("budget", 0))), {}).setdefault(u.get("seed"),
                                                                                         u["final_acc"])
    return out


def _versus(trials, gens: list[str], *, diffs: bool) -> list[str]:
    """Per budget, `| budget | cell | cell | ... |` over `gens`, and each one's paired difference to
    the last's (`_gap`): in the same line (`diffs`), or in a line of their own after it."""
    g = _grid(trials)
    lines = []
    for b in sorted({b for _, b in g}):
        cells = [_cell(list(g[(x, b)].values())) for x in gens]
        gaps = [_gap(g[(x, b)], g[(gens[-1], b)]) for x in gens[:-1]]
        lines.append(f"| {_tag(b)} | " + " | ".join(cells + (gaps if diffs else [])) + " |")
        if not diffs:
            lines.append(f"| {_tag(b)} | " + " | ".join(gaps) + " |")
    return lines


def _sparsity(trials) -> list[str]:
    pct = {46156.0: "5%", 92313.0: "10%", 184626.0: "20%"}
    lines = _versus(trials, ["pruned", "uniform"], diffs=True)
    return [line.replace("K |", f"K ({pct[b]}) |", 1) for line, b in zip(lines, sorted(pct))]


def _kind(trials, kind: str) -> list:
    return [t for t in trials if t.user_attrs.get("kind") == kind]


def _reduced_fig3(trials) -> list[str]:
    return [f"| {kind} " + line for kind in ("channels", "sparsity")
            for line in _versus(_kind(trials, kind), ["pruned", "uniform"], diffs=True)]


ARMS = ("unpruned", "finetune", "scratch-e", "scratch-b")


def _table_arms(trials) -> dict[str, dict[str, dict[str, dict]]]:
    """row -> arm -> seed -> the trial's record (each point's first completed trial)."""
    rows: dict[str, dict[str, dict[str, dict]]] = {}
    for t in trials:
        if t.state.name == "COMPLETE":
            row, arm, seed = t.user_attrs["point"].split("/")
            rows.setdefault(row, {}).setdefault(arm, {}).setdefault(seed, t.user_attrs)
    return rows


def _same_run(arms: dict) -> bool:
    """Scratch-B is Scratch-E's run: recorded so, or (older journals) the same epochs and accuracy
    in every seed."""
    b, e = arms["scratch-b"], arms["scratch-e"]
    return all(u.get("same_as") == "scratch-e" or (u["epochs"] == e[s]["epochs"] and u["final_acc"] == e[s]["final_acc"])
               for s, u in b.items())


def _table(trials) -> list[str]:
    """Per row: `unpruned | fine-tuned | Scratch-E | Scratch-B (epochs) |` over the seeds, a
    Scratch-B that is Scratch-E's run shown as `= Scratch-E (epochs)`; then, per row, each
    scratch arm's paired difference to fine-tuning: `gap | gap |`."""
    lines, gaps = [], []
    for row, arms in sorted(_table_arms(trials).items()):
        acc = {a: {s: u["final_acc"] for s, u in arms[a].items()} for a in ARMS}
        epochs = ", ".join(str(e) for e in sorted({u["epochs"] for u in arms["scratch-b"].values()}))
        same = _same_run(arms)
        b_cell = "= Scratch-E" if same else _cell(list(acc["scratch-b"].values()))
        lines.append(" | ".join([_cell(list(acc[a].values())) for a in ARMS[:3]] + [b_cell]) + f" ({epochs}) |")
        gaps.append(_gap(acc["scratch-e"], acc["finetune"]) + " | "
                    + ("= Scratch-E" if same else _gap(acc["scratch-b"], acc["finetune"])) + " |")
    return lines + gaps


def _mean_train_minutes(trials) -> list[str]:
    secs = [t.user_attrs["train_seconds"] for t in trials if t.state.name == "COMPLETE"]
    return [f"{np.mean(secs) / 60:.1f} min mean training time per trial"]


# study folder -> [(README, what its lines are made of)]
README_LINES = {
    "fig3-vgg16-c10-full/channels": [("fig3-vgg16-c10-full/README.md",
                                      lambda ts: _versus(ts, ["pruned", "uniform"], diffs=True))],
    "fig3-vgg16-c10-full/sparsity": [("fig3-vgg16-c10-full/README.md", _sparsity)],
    "fig3-vgg16-c10-reduced": [
        ("fig3-vgg16-c10-reduced/README.md", _reduced_fig3),
        ("fig3-vgg16-c10-full/README.md",
         lambda ts: (_versus(_kind(ts, "channels"), ["pruned", "uniform"], diffs=True)
                     + _sparsity(_kind(ts, "sparsity"))))],
    "fig5-vgg19-c10-full": [("fig5-vgg19-c10-full/README.md",
                             lambda ts: _versus(ts, ["pruned", "guided", "transferred", "uniform"], diffs=False))],
    "fig5-vgg19-c10-reduced": [
        ("fig5-vgg19-c10-reduced/README.md",
         lambda ts: _versus(ts, ["pruned", "guided", "transferred", "uniform"], diffs=False)),
        ("fig5-vgg19-c10-full/README.md",
         lambda ts: _versus(ts, ["pruned", "guided", "transferred", "uniform"], diffs=False)[::2])],
    "guided-preresnet29-c10-reduced": [
        ("README.md", lambda ts: _versus(ts, ["guided", "transferred", "uniform"], diffs=False)),
        ("README.md", _mean_train_minutes)],
    "table1-l1norm-reduced": [("table1-l1norm-reduced/README.md", _table)],
    "table4-slimming-reduced": [("table4-slimming-reduced/README.md", _table)],
}


def test_readme_numbers_recompute_from_the_journal(recomputed):
    folder, study, _ = recomputed
    for readme, lines in README_LINES[_name(folder)]:
        text = (RESULTS / readme).read_text()
        expected = lines(study.get_trials(deepcopy=False))
        assert expected, readme
        missing = [line for line in expected if line not in text]
        assert not missing, f"{readme} lacks these lines recomputed from {_name(folder)}'s journal: {missing}"
