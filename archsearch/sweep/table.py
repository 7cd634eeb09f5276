"""The paper's tables as sweeps (`mode = "table"`): fine-tuned against Scratch-E and Scratch-B.

A table spec lists rows, each a proposer (`METHOD-ARCH-DATA[.VARIANT]`) with the settings
that choose its pruned architecture (a ratio, a variant, stage ratios, rounds), and the
arms to train. One study holds, per (row, arm, seed), one trial:

- `unpruned`: the proposal. The large net is trained as the method trains it (with its
  regulariser, if any) and pruned; its accuracy is the table's "unpruned" column, and its
  pruned architecture, inherited weights and winning-ticket initialisation are uploaded to
  the study's artifact store;
- `finetune`: the pruned net fine-tuned from the inherited weights, for the method's own
  fine-tuning budget and lr rule (`Proposer.finetune`: Network Slimming as long as it trained,
  under the training recipe; L1-norm and magnitude pruning a quarter of it at lr 0.001), with
  the preset's augmentation and regularisers;
- `scratch-e`: the pruned architecture from a random initialisation, for the large net's
  epochs (for a lottery row: the "random init" column);
- `scratch-b`: the same, for the large net's compute (`train.make_schedule`, scratch-b; under
  the imagenet preset capped at 2x for the methods whose originals cap it). When that comes
  to Scratch-E's epochs, its trial trains nothing and records `same_as = "scratch-e"`;
- `ticket`: the pruned net (its mask) from the winning-ticket initialisation (the lottery;
  a channel proposal's kept channels of the large net's initial weights), for the large
  net's epochs, from the rewind epoch if the row rewinds.

Only the proposals are queued when the study is created; a proposal that completes makes
its row's other arms ready, and every worker enqueues ready arms before it asks for work
(so a worker that dies between finishing a proposal and queueing its arms loses nothing).
A trial that needs inherited weights downloads them from the artifact store into its own
work directory: a worker on another machine needs the storage URL and the artifact
location, nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from .. import propose as proposing  # looked up when called: tests stand in their own proposer
from .._io import atomic_path, check_name, load_state, make_dirs, os_error
from ..config import resolve as resolve_config
from ..counting import count
from ..errors import ArchsearchError, clip
from ..experiment import Point, result_numbers, train_point
from ..progress import EpochProgress
from ..spec import ArchSpec
from ..train import Schedule, make_schedule
from .points import record_latency


@dataclass(frozen=True)
class Arm:
    """One way of training a table row's pruned net: a registry entry (`ARMS`) carrying what
    the study, the trainer and the report need. The proposal arm (`unpruned`) trains the large
    net itself and has no schedule of its own; every other arm starts from its row's proposal."""

    name: str
    about: str   # the report's legend
    color: str   # its bars in table.html
    # (the sweep's [train] table, the proposal's trial, the pruned spec, the base spec) -> the arm's
    # schedule; None for the proposal arm
    schedule: Callable[[dict, FrozenTrial, ArchSpec, ArchSpec], Schedule] | None = None
    init: str | None = None  # the proposal's artifact holding its initial weights (None: random)
    rewinds: bool = False    # starts at the proposal's rewind epoch (a lottery ticket rewound)
    # an arm whose run can be another's: when both schedules train the same epochs from the same
    # start (Scratch-B's compute rounding down to Scratch-E's epochs), this arm's trial trains
    # nothing and records `same_as`; the report shows the other arm's numbers once
    same_as: str | None = None

    @property
    def is_proposal(self) -> bool:
        return self.schedule is None


def _method(prop: FrozenTrial) -> proposing.Proposer:
    return proposing.get_proposer(str(prop.user_attrs.get("method")))


def _large_epochs(prop: FrozenTrial) -> int:
    """The epochs the arms measure against: the large net's (`arm_epochs`; a study made before it
    was recorded has only `epochs`, the large net's)."""
    return int(prop.user_attrs.get("arm_epochs") or prop.user_attrs["epochs"])


def _finetune(tr: dict, prop: FrozenTrial, spec: ArchSpec, base: ArchSpec) -> Schedule:
    """The method's own fine-tuning (`Proposer.finetune`): its share of the large net's epochs at its
    lr rule, with the preset's augmentation and regularisers; [train]'s finetune_epochs, when given,
    sets the epochs instead."""
    config = resolve_config(tr["preset"])
    epochs, lr_rule = _method(prop).finetune.resolve(config, _large_epochs(prop))
    return make_schedule(config, "finetune", epochs=tr.get("finetune_epochs") or epochs, finetune_lr=lr_rule)


def _large_net_epochs(tr: dict, prop: FrozenTrial, spec: ArchSpec, base: ArchSpec) -> Schedule:
    return make_schedule(tr["preset"], "scratch-e", epochs=_large_epochs(prop))


def scratch_b_cap(tr: dict, method: proposing.Proposer) -> float | None:
    """[train]'s cap when given; under the imagenet preset the method's own (the originals cap only
    L1-norm, ThiNet and regression); otherwise the preset's."""
    if tr.get("cap") is not None:
        return tr["cap"]
    config = resolve_config(tr["preset"])
    return method.imagenet_scratch_b_cap if config.name == "imagenet" else config.scratch_b_cap


def _large_net_compute(tr: dict, prop: FrozenTrial, spec: ArchSpec, base: ArchSpec) -> Schedule:
    return make_schedule(tr["preset"], "scratch-b", epochs=_large_epochs(prop), spec=spec, base=base,
                         cap=scratch_b_cap(tr, _method(prop)), count_convention=tr.get("count"))


# the arms in table order (the proposal first): a new arm is one entry here (and its colour and
# legend come with it)
ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("unpruned", "the large net as the method trained it, before pruning", "#7f7f7f"),
    Arm("finetune", "the pruned net fine-tuned from the large net's weights", "#1f77b4", _finetune,
        init="pruned_model.pt"),
    Arm("scratch-e", "the pruned architecture trained from scratch for the large net's epochs", "#ff7f0e",
        _large_net_epochs),
    Arm("scratch-b", "the pruned architecture trained from scratch for the large net's compute", "#2ca02c",
        _large_net_compute, same_as="scratch-e"),
    Arm("ticket", "the pruned net trained from the winning-ticket initialisation", "#9467bd", _large_net_epochs,
        init="ticket_init.pt", rewinds=True),
)}
PROPOSAL = next(a.name for a in ARMS.values() if a.is_proposal)
SAME_AS = "same_as"  # a trial's record: the arm whose run it is (`Arm.same_as`), when it trained nothing
TICKET = "ticket_init.pt"  # the artifact only some proposers keep (the lottery's, channel pruning's)
ARTIFACTS = ("spec.json", "pruned_model.pt", "ticket_init.pt")
TRAIN_SETTINGS = ("preset", "width", "epochs", "train_subset", "batch_size")  # a row's come from [train]
# a row's own: every named option of the proposers' models but the training ones, and a method's own
ROW_SETTINGS = tuple(k for k in proposing.NAMED if k not in TRAIN_SETTINGS) + ("options",)


# -- the spec -------------------------------------------------------------------------------------
def plan_arms(arms: list[str]) -> list[str]:
    """The arms in table order; the proposal (`unpruned`) is always one of them."""
    return [a for a in ARMS if ARMS[a].is_proposal or a in arms]


def row_settings(row: dict, train: dict) -> dict[str, Any]:
    """The keyword settings of `propose` for one row: its method settings, and the shared
    training settings of `[train]` (preset, width, epochs, training subset)."""
    kw = {k: row[k] for k in ROW_SETTINGS if row.get(k) is not None}
    kw["preset"] = train["preset"]
    for k in ("width", "epochs", "train_subset"):
        if train.get(k) is not None:
            kw[k] = train[k]
    if row.get("width") is not None:  # a row's own width (a deep net at reduced scale)
        kw["width"] = row["width"]
    return kw


def row_label(row: dict) -> str:
    if row.get("label"):
        return row["label"]
    src = row["from"]
    return src + ("" if row.get("ratio") is None else f" {round(100 * row['ratio'])}%")


def validate_table(spec, where: str) -> None:
    """Every row names a proposer that applies to its network, with valid settings; each arm
    can be trained for each row. Nothing is trained here."""
    def want(cond: bool, msg: str) -> None:
        if not cond:
            raise ArchsearchError(f"{where}: {msg}")

    want(spec.target is None, "a table's rows name their own networks: remove target")
    want(bool(spec.rows) and bool(spec.arms), "table mode needs rows ([[rows]] with from = \"METHOD-ARCH-DATA\") "
                                              "and arms (e.g. [\"unpruned\", \"finetune\", \"scratch-e\", \"scratch-b\"])")
    unknown = [a for a in spec.arms + [k for r in spec.rows for k in r.get("paper") or {}] if a not in ARMS]
    want(not unknown, f"unknown arm {unknown[0] if unknown else ''!r}; the arms are {', '.join(ARMS)}")
    want(len(set(spec.arms)) == len(spec.arms), "arms are listed twice")
    want(int(spec.train.get("nproc", 1)) == 1, "train.nproc > 1 is for grid and search sweeps; a table's arms "
                                              "(inherited weights, rewound tickets) train in one process each")
    for i, row in enumerate(spec.rows):
        src = row["from"]
        try:
            prop = proposing.resolve_settings(src, **row_settings(row, spec.train))[1]
        except ArchsearchError as e:
            raise ArchsearchError(f"{where}: row {i + 1} ({src}): {e}") from None
        for arm in (ARMS[a] for a in spec.arms if ARMS[a].init == TICKET):
            want(prop.kind == "channels" or prop.name == "lottery",
                 f"row {i + 1} ({src}): the {arm.name} arm needs a winning-ticket initialisation, which {prop.name} "
                 "proposals do not keep (the lottery and channel-pruning methods do)")
    labels = [row_label(r) for r in spec.rows]
    want(len(set(labels)) == len(labels), f"two rows have the same label; give them distinct `label`s: {labels}")


def build_table_plan(spec, workdir: Path, data_dir: str | None, artifacts: str | None) -> dict:
    """The table part of a study's plan: its resolved rows and arms, and the artifact store."""
    rows = []
    for row in spec.rows:
        src = row["from"]
        pn, prop, settings, schedule, base = proposing.resolve_settings(src, **row_settings(row, spec.train))
        rows.append({"from": src, "label": row_label(row), "method": prop.name, "kind": prop.kind,
                     "arch": pn.target.arch, "data": pn.target.data, "settings": row_settings(row, spec.train),
                     "record": settings.record(), "epochs": schedule.epochs,
                     "paper": row.get("paper"), "paper_source": row.get("paper_source")})
    loc = artifacts or spec.run.get("artifacts") or str((workdir / "artifacts").resolve())
    artifact_store(loc)  # checked (and a local folder made) before any work
    return {"rows": rows, "arms": plan_arms(spec.arms), "artifacts": loc}


# -- the artifact store ---------------------------------------------------------------------------
def check_artifact_id(artifact_id) -> str:
    """An artifact id is a plain name (Optuna's are UUIDs): it becomes a file name in the local
    store and in a worker's cache, and a key under the S3 prefix. The ids a worker reads come
    from the storage, so they are data; one holding '/' or '..' is refused before anything is
    made (Optuna's own check of a local store comes after the download's folders exist)."""
    return check_name(artifact_id, "artifact id")


class _Checked:
    """Optuna's artifact store with every id checked, under an optional key prefix
    (`s3://bucket/prefix`)."""

    def __init__(self, store, prefix: str = ""):
        self.store, self.prefix = store, prefix.strip("/") + "/" if prefix.strip("/") else ""

    def open_reader(self, artifact_id: str):
        return self.store.open_reader(self.prefix + check_artifact_id(artifact_id))

    def write(self, artifact_id: str, content_body) -> None:
        self.store.write(self.prefix + check_artifact_id(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + check_artifact_id(artifact_id))


def artifact_store(location: str):
    """Optuna's artifact store at `location`: a folder (made if missing), or `s3://bucket[/prefix]`
    for an S3-compatible store through boto3 (credentials and endpoint from boto3's usual
    environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL; never written down)."""
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if not bucket:
            raise ArchsearchError(f"artifact store {location!r}: name a bucket, as s3://bucket[/prefix]")
        if any(part in (".", "..") for part in prefix.split("/")):  # a key prefix is no path to walk up
            raise ArchsearchError(f"artifact store {location!r}: the prefix may not hold '.' or '..'")
        try:
            import boto3  # an optional dependency, for s3:// stores only
        except ImportError:
            raise ArchsearchError("an s3:// artifact store needs boto3: pip install boto3") from None
        return _Checked(Boto3ArtifactStore(bucket, client=boto3.client("s3")), prefix)
    if "://" in location:
        raise ArchsearchError(f"artifact store {location!r}: give a folder or s3://bucket[/prefix]")
    return _Checked(FileSystemArtifactStore(str(make_dirs(location))))


def upload(store, trial, path: Path) -> str:
    try:
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    except OSError as e:
        raise os_error(e, path) from None


def download(store, artifact_id: str, cache: Path, name: str) -> Path:
    """The artifact `artifact_id` (a proposal's file `name`) in the folder `cache`, kept there: a
    retry on this machine reads it again without a download."""
    dest = cache / f"{check_artifact_id(artifact_id)}-{name}"  # checked before any folder is made
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(dest) as tmp:
                os.unlink(tmp)  # download_artifact refuses an existing file
                download_artifact(artifact_store=store, file_path=str(tmp), artifact_id=artifact_id)
        except Exception as e:  # noqa: BLE001  an artifact store's errors have no common type
            if isinstance(e, ArchsearchError):
                raise
            raise ArchsearchError(f"cannot read artifact {artifact_id} from the artifact store: "
                                  f"{type(e).__name__}: {clip(e, 200)}") from None
    return dest


# -- the study ------------------------------------------------------------------------------------
def point(row: int, arm: str, seed: int) -> str:
    return f"r{row}/{arm}/s{seed}"


def _distributions(plan: dict) -> dict:
    return {"row": CategoricalDistribution(list(range(len(plan["rows"])))),
            "arm": CategoricalDistribution(plan["arms"]),
            "seed": CategoricalDistribution(list(range(plan["spec"]["seeds"])))}


def _enqueue(study: optuna.Study, plan: dict, row: int, arm: str, seed: int) -> None:
    study.enqueue_trial({"row": row, "arm": arm, "seed": seed}, user_attrs={"point": point(row, arm, seed)},
                        skip_if_exists=False)


def enqueue_proposals(study: optuna.Study, plan: dict) -> None:
    for seed in range(plan["spec"]["seeds"]):
        for row in range(len(plan["rows"])):
            _enqueue(study, plan, row, PROPOSAL, seed)


def enqueue_ready(study: optuna.Study, plan: dict) -> int:
    """Queue the arms of every completed proposal that are not in the study yet. Returns how many."""
    trials = study.get_trials(deepcopy=False)
    seen = {t.user_attrs.get("point") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.COMPLETE and t.params.get("arm") == PROPOSAL:
            for arm in plan["arms"][1:]:
                if point(t.params["row"], arm, t.params["seed"]) not in seen:
                    _enqueue(study, plan, t.params["row"], arm, t.params["seed"])
                    n += 1
    return n


def total(plan: dict) -> int:
    return len(plan["rows"]) * len(plan["arms"]) * plan["spec"]["seeds"]


def blocked(plan: dict, failed_points: set[str], seen: set[str]) -> int:
    """Arms that cannot run because their row's proposal failed for good."""
    return sum(point(r, a, s) not in seen and point(r, PROPOSAL, s) in failed_points
               for r in range(len(plan["rows"])) for a in plan["arms"][1:] for s in range(plan["spec"]["seeds"]))


def proposal_trial(study: optuna.Study, row: int, seed: int) -> FrozenTrial:
    want = point(row, PROPOSAL, seed)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("point") == want:
            return t
    raise ArchsearchError(f"the proposal {want} has not completed (its arms were queued early?)")


def trial_label(params: dict, plan: dict | None = None) -> str:
    row = params.get("row")
    name = plan["rows"][row]["label"] if plan is not None and row is not None else f"row {row}"
    return f"{name} {params.get('arm')} seed {params.get('seed')}"


# -- one trial ------------------------------------------------------------------------------------
def run_trial(study: optuna.Study, trial: optuna.Trial, plan: dict, ctx, label: str) -> float:
    """Train one (row, arm, seed) and return its best test accuracy (%)."""
    dist = _distributions(plan)
    row = trial.suggest_categorical("row", dist["row"].choices)
    arm = trial.suggest_categorical("arm", dist["arm"].choices)
    seed = trial.suggest_categorical("seed", dist["seed"].choices)
    r = plan["rows"][row]
    for k, v in (("label", r["label"]), ("method", r["method"]), ("arch", r["arch"]), ("data", r["data"])):
        trial.set_user_attr(k, v)
    bar = EpochProgress(f"{label} {trial_label(trial.params, plan)}") if ctx.epoch_progress else None
    data = ctx.data(plan, r["data"])
    if ARMS[arm].is_proposal:
        return _propose(study, trial, plan, ctx, row, seed, data, bar)
    return _train_arm(study, trial, plan, ctx, row, arm, seed, data, bar)


def _propose(study, trial, plan, ctx, row: int, seed: int, data, bar) -> float:
    r, tr = plan["rows"][row], plan["spec"]["train"]
    prop = proposing.propose(r["from"], data, seed=seed, workdir=ctx.workdir / "proposals", device=ctx.device,
                             progress=bar, checkpoint_every=int(tr["checkpoint_every"]), test_untrained=True,
                             **r["settings"])
    store = artifact_store(ctx.artifacts or plan["artifacts"])
    run = Path(prop.run_dir)
    ids = {name: upload(store, trial, run / name) for name in ARTIFACTS if (run / name).is_file()}
    base, pruned = count(prop.base_spec), count(prop.spec)
    for k, v in (("artifacts", ids), ("base_spec", prop.base_spec.to_dict()), ("best_acc", 100 * prop.base_acc),
                 ("final_acc", 100 * prop.base_final_acc), ("epochs", prop.base_epochs),
                 # what the arms train for: the large net's epochs, or (a proposer at initialisation
                 # trains no large net) the row's schedule
                 ("arm_epochs", prop.base_epochs or plan["rows"][row]["epochs"]),
                 ("train_seconds", prop.base_seconds), ("params", base.params_nonzero), ("macs", base.macs_nonzero),
                 ("pruned_params", pruned.params_nonzero), ("pruned_macs", pruned.macs_nonzero),
                 ("pruned_acc", 100 * prop.pruned_acc), ("rewind_epoch", prop.info.get("rewind_epoch")),
                 ("device", prop.device), ("torch_version", prop.torch_version),
                 ("archsearch_version", prop.archsearch_version), ("run_dir", str(run))):
        trial.set_user_attr(k, v)
    return 100 * prop.base_final_acc


def _train_arm(study, trial, plan, ctx, row: int, arm: str, seed: int, data, bar) -> float:
    """Train one arm of a row from its proposal's artifacts, as its registry entry says."""
    tr, a = plan["spec"]["train"], ARMS[arm]
    prop = proposal_trial(study, row, seed)
    ids = prop.user_attrs.get("artifacts")
    if not isinstance(ids, dict):  # the storage is data: a tampered record is bad input, not a crash
        raise ArchsearchError(f"the proposal of {plan['rows'][row]['label']} seed {seed} has no artifact list")
    store = artifact_store(ctx.artifacts or plan["artifacts"])
    cache = ctx.workdir / "artifacts-cache"

    def fetch(name: str) -> Path:
        if name not in ids:
            raise ArchsearchError(f"the proposal of {plan['rows'][row]['label']} seed {seed} kept no {name}")
        return download(store, ids[name], cache, name)

    spec = ArchSpec.load(fetch("spec.json"))
    base = ArchSpec.from_dict(prop.user_attrs["base_spec"], "the proposal's base spec")
    sched = a.schedule(tr, prop, spec, base)
    if a.same_as is not None and ARMS[a.same_as].init == a.init and \
            sched.epochs == ARMS[a.same_as].schedule(tr, prop, spec, base).epochs:
        for k, v in ((SAME_AS, a.same_as), ("epochs", sched.epochs), ("proposal_trial", prop.number)):
            trial.set_user_attr(k, v)
        return 0.0  # no accuracy of its own: the report reads `same_as`'s trial of this row and seed
    init = load_state(fetch(a.init), "artifact") if a.init else None
    start = int(prop.user_attrs.get("rewind_epoch") or 0) if a.rewinds else 0
    c = count(spec)
    for k, v in (("params", c.params_nonzero), ("macs", c.macs_nonzero), ("epochs", sched.epochs),
                 ("proposal_trial", prop.number)):
        trial.set_user_attr(k, v)
    run = ctx.workdir / "trials" / f"row{row}-{arm}-s{seed}"
    trial.set_user_attr("run_dir", str(run))
    res = train_point(Point(spec, sched, seed, run, init_state=init, start_epoch=start), data, device=ctx.device,
                      checkpoint_every=int(tr["checkpoint_every"]), progress=bar)
    for k, v in result_numbers(res).items():
        if k != "best_epoch":  # (an arm's trial records what it always has)
            trial.set_user_attr(k, v)
    record_latency(trial, spec, plan)
    return 100 * res.final_acc


__all__ = ["ARMS", "validate_table", "build_table_plan", "artifact_store", "check_artifact_id", "enqueue_proposals",
           "enqueue_ready", "run_trial", "point"]
