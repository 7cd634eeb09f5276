"""One schema per file format that archsearch reads: patterns, ArchSpec JSON, results,
proposal records, sweep specs (TOML), study plans and transfer result tables.

Files a user or another machine hands us are data: each is checked completely when it
is loaded, types included (strict: "5" is not a number, true is not 1, NaN is not a
number), so a malformed file is one `ArchsearchError` line naming the file and the
field, never a traceback deep inside the code that reads it. The models only validate;
callers keep the plain dicts (the files stay the documented JSON, and extra keys that a
newer archsearch may add are ignored).

Bounds are finite ranges where a value enters: a width of 10^6 channels or an input of
100,000 pixels is refused here; whether a valid network fits in memory is checked before
training (`train.check_memory`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._io import check_name
from .config import DEFAULT_PRESET
from .errors import ArchsearchError

from .limits import (MAX_BUDGET, MAX_CAP, MAX_CLASSES, MAX_EPOCHS, MAX_INPUT, MAX_LAYERS, MAX_ROUND, MAX_SEED,
                     MAX_SEEDS, MAX_WIDTH, MAX_WIDTH_MULT)

Unit = Annotated[float, Field(ge=0, le=1)]
NonNeg = Annotated[float, Field(ge=0)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Stage = Annotated[int, Field(ge=0, le=MAX_LAYERS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
PositiveInt = Annotated[int, Field(ge=1)]
Map3 = Annotated[list[Annotated[list[Unit], Field(min_length=3, max_length=3)]], Field(min_length=3, max_length=3)]
MapK = Annotated[list[Annotated[list[Unit], Field(min_length=1, max_length=15)]], Field(min_length=1, max_length=15)]


class Model(BaseModel):
    """Strict types, finite numbers, unknown keys ignored."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class Closed(Model):
    """A table whose keys are all known (sweep specs): a misspelt key is an error."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


M = TypeVar("M", bound=BaseModel)


def check(model: type[M], data: Any, where: str) -> M:
    """Validate `data` against `model`, or raise one line naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        first = errs[0]
        loc = ".".join(str(x) for x in first["loc"])
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
        raise ArchsearchError(f"{where}: {(loc + ' ') if loc else ''}{_message(first)}{more}") from None
    except RecursionError:
        raise ArchsearchError(f"{where}: nested too deeply") from None


_MESSAGES = {
    "missing": "is missing",
    "model_type": "must be a JSON object (a table)",
    "dict_type": "must be a JSON object (a table)",
    "list_type": "must be a list",
    "int_type": "needs a whole number",
    "int_from_float": "needs a whole number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number (not NaN or infinity)",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "extra_forbidden": "is not a known key",
}


def _message(err: dict) -> str:
    msg = _MESSAGES.get(err["type"])
    ctx = err.get("ctx") or {}
    if err["type"] == "too_short":
        return f"must have at least {ctx.get('min_length')} items (has {ctx.get('actual_length')})"
    if err["type"] == "too_long":
        return f"must have at most {ctx.get('max_length')} items (has {ctx.get('actual_length')})"
    if msg is None:
        msg = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        msg = msg.replace("Input should be", "must be")
    got = err.get("input")
    if err["type"] not in ("missing", "model_type", "dict_type") and not isinstance(got, (dict, list)) \
            and not err["type"].startswith("value_error"):
        msg += f", got {str(got)[:40]!r}" if isinstance(got, str) else f", got {str(got)[:40]}"
    return msg


def _plain_name(v: str, what: str) -> str:
    try:
        check_name(v, what)
    except ArchsearchError as e:
        raise ValueError(str(e)) from None
    return v


def _stages_ok(stages: list[int]) -> None:
    if not stages or stages[0] != 0 or any(b < a or b > a + 1 for a, b in zip(stages, stages[1:])):
        raise ValueError("stages must start at 0 and rise by at most 1 from one layer to the next")


# -- patterns -----------------------------------------------------------------------------------
class MeanStd(Model):
    mean: float
    std: NonNeg


class PatternAccuracy(Model):
    base: MeanStd
    pruned: MeanStd
    base_final: Optional[MeanStd] = None


class PatternProvenance(Model):
    method: str
    arch: str
    data: str
    ratio: float
    seeds: Annotated[list[Seed], Field(min_length=1)]
    epochs: Epochs
    width: Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]
    archsearch_version: str
    command: str
    proposer: Optional[str] = None
    preset: Optional[str] = None
    torch_version: Optional[str] = None
    date: Optional[str] = None
    scale: Optional[str] = None
    devices: Optional[list[str]] = None
    train_subset: Optional[Annotated[int, Field(ge=1, le=1 << 31)]] = None
    variant: Optional[str] = None
    layer_ratios: Optional[list[Annotated[float, Field(ge=0, lt=1)]]] = None
    rounds: Optional[Annotated[int, Field(ge=1, le=100)]] = None
    ratio_per_round: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    rewind_epoch: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None


class LayerStats(Model):
    ratio_mean: Optional[list[Unit]] = None
    ratio_std: Optional[list[NonNeg]] = None
    density_mean: Optional[list[Unit]] = None
    density_std: Optional[list[NonNeg]] = None


class StageStats(LayerStats):
    # None for a stage without 3x3 convs (schema 2; 1x1 convs have densities alone)
    kernel_keep_mean: Optional[list[Optional[Map3]]] = None
    kernel_keep_std: Optional[list[Optional[Map3]]] = None


class ProposalSummary(Model):
    seed: Seed
    # one k x k map per conv (k its kernel size: 1, 3, a stem's 7, an EfficientNet's 5)
    layer_kernel_keep: Optional[list[Optional[MapK]]] = None


class Pattern(Model):
    schema_: Literal[1, 2] = Field(alias="schema")
    name: str
    kind: Literal["channels", "sparsity", "depth"]  # depth: per removable block, kept (1) or removed (0)
    method: str
    arch: str
    family: str
    depth: Annotated[int, Field(ge=0, le=MAX_LAYERS)]  # 0: a family that names one network (tv.resnet18)
    data: str
    ratio: Annotated[float, Field(ge=0, le=1)]
    stages: Annotated[list[Stage], Field(min_length=1, max_length=MAX_LAYERS)]
    base_widths: Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]
    layer_names: Optional[list[Annotated[str, Field(min_length=1, max_length=200)]]] = None
    kernels: Optional[list[Annotated[int, Field(ge=1, le=15)]]] = None
    width: Optional[Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]] = None
    layers: LayerStats
    stage: StageStats
    accuracy: PatternAccuracy
    provenance: PatternProvenance
    proposals: Optional[list[ProposalSummary]] = None

    @model_validator(mode="after")
    def _consistent(self) -> "Pattern":
        _plain_name(self.name, "pattern name")
        if self.arch != (self.family if self.depth == 0 else f"{self.family}{self.depth}"):
            raise ValueError(f"arch {self.arch!r} is not family {self.family!r} + depth {self.depth}")
        n = len(self.stages)
        if len(self.base_widths) != n:
            raise ValueError(f"{n} stage labels but {len(self.base_widths)} base widths")
        for what, v in (("layer_names", self.layer_names), ("kernels", self.kernels)):
            if v is not None and len(v) != n:
                raise ValueError(f"{n} stage labels but {len(v)} {what}")
        _stages_ok(self.stages)
        n_stages = self.stages[-1] + 1
        what = "density" if self.kind == "sparsity" else "ratio"
        for group, length in (("layers", n), ("stage", n_stages)):
            for stat in ("mean", "std"):
                v = getattr(getattr(self, group), f"{what}_{stat}")
                if v is None or len(v) != length:
                    raise ValueError(f"{group}.{what}_{stat} must be a list of {length} numbers")
        if self.kind == "sparsity":
            km = self.stage.kernel_keep_mean
            if km is None or len(km) != n_stages:
                raise ValueError(f"stage.kernel_keep_mean must be {n_stages} 3x3 maps")
            for p in self.proposals or []:
                if p.layer_kernel_keep is None:
                    continue
                if len(p.layer_kernel_keep) != n:
                    raise ValueError(f"proposals: layer_kernel_keep must be {n} maps, one per conv")
                for i, m in enumerate(p.layer_kernel_keep):
                    k = self.kernels[i] if self.kernels is not None else None
                    if m is not None and (any(len(row) != len(m) for row in m) or (k is not None and len(m) != k)):
                        raise ValueError(f"proposals: layer_kernel_keep {i} must be a {k or len(m)}x{k or len(m)} map "
                                         "(the conv's kernel size)")
        return self


# -- ArchSpec JSON --------------------------------------------------------------------------------
class MaskModel(Model):
    shape: Annotated[list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]], Field(min_length=1, max_length=8)]
    bits: str


ModuleName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class ArchSpecModel(Model):
    """Schema 2 (one width per channel group, masks by conv name) and schema 1 (VGG's chain:
    one width per conv layer, masks as a list in layer order), which is still read."""

    schema_: Literal[1, 2] = Field(default=1, alias="schema")
    family: str
    depth: Annotated[int, Field(ge=0, le=MAX_LAYERS)]  # 0: a family that names one network (tv.resnet18)
    widths: Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]
    stages: Annotated[list[Stage], Field(min_length=1, max_length=MAX_LAYERS)]
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    in_channels: Annotated[int, Field(ge=1, le=MAX_WIDTH)] = 3
    input_size: Annotated[int, Field(ge=1, le=MAX_INPUT)] = 32
    base_widths: Optional[Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]] = None
    masks: Optional[list[MaskModel] | dict[ModuleName, MaskModel]] = None
    width: Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)] = 1.0
    groups: Optional[list[ModuleName]] = None
    selected: Optional[dict[ModuleName, Annotated[list[Annotated[int, Field(ge=0, lt=MAX_WIDTH)]],
                                                  Field(min_length=1, max_length=MAX_WIDTH)]]] = None
    blocks: Optional[Annotated[list[bool], Field(min_length=1, max_length=MAX_LAYERS)]] = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "ArchSpecModel":
        n = len(self.widths)
        for what, v in (("stages", self.stages), ("base_widths", self.base_widths), ("groups", self.groups)):
            if v is not None and len(v) != n:
                raise ValueError(f"{n} widths but {len(v)} {what}")
        if self.schema_ == 1 and isinstance(self.masks, dict):
            raise ValueError("schema 1 lists its masks in layer order; masks by name need schema 2")
        if self.schema_ == 2 and isinstance(self.masks, list):
            raise ValueError("schema 2 keys its masks by conv module name")
        if self.schema_ == 1 and (self.groups or self.selected or self.blocks):
            raise ValueError("groups, selected and blocks need schema 2")
        _stages_ok(self.stages)
        return self


# -- results and proposals ------------------------------------------------------------------------
class EpochRecord(Model):
    epoch: PositiveInt
    test_acc: Unit
    train_loss: Optional[float] = None
    train_acc: Optional[Unit] = None
    best_acc: Optional[Unit] = None
    lr: Optional[float] = None
    seconds: Optional[NonNeg] = None
    eta: Optional[NonNeg] = None
    epochs: Optional[PositiveInt] = None


class Preprocess(Model):
    size: Annotated[int, Field(ge=1, le=MAX_WIDTH)]
    mean: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1, max_length=4)]
    std: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1, max_length=4)]
    scale: Annotated[str, Field(max_length=200)]
    classes: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=100_000)]


class ResultModel(Model):
    best_acc: Unit
    final_acc: Unit
    best_epoch: PositiveInt
    epochs: Epochs
    history: list[EpochRecord]
    params: Annotated[int, Field(ge=0)]
    params_nonzero: Annotated[int, Field(ge=0)]
    macs: Annotated[int, Field(ge=0)]
    flops: Annotated[int, Field(ge=0)]
    original_flops: Annotated[int, Field(ge=0)]
    train_seconds: NonNeg
    device: str
    device_name: str
    torch_version: str
    archsearch_version: str
    seed: Seed
    data: str
    arch: str
    schedule: dict[str, Any]
    date: str
    counting: str
    preprocess: Optional[Preprocess] = None


class CheckpointRecord(Model):
    """The plain data of a training checkpoint (`train.load_checkpoint` checks its tensors).
    Its history and time go on into result.json, so they are held to the same rules."""

    fingerprint: str
    epoch: Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
    start_epoch: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 0
    elapsed: NonNeg
    history: list[EpochRecord]
    lr_rule: Optional[list[float]] = None

    @model_validator(mode="after")
    def _consistent(self) -> "CheckpointRecord":
        if len(self.history) != self.epoch - self.start_epoch:
            raise ValueError(f"history has {len(self.history)} epochs, but the checkpoint is at epoch {self.epoch} "
                             f"of a run that started at {self.start_epoch}")
        return self


class ProposalRecord(Model):
    proposer: str
    method: str
    kind: Literal["channels", "sparsity", "depth"]
    seed: Seed
    settings: dict[str, Any]
    base_acc: Unit
    base_final_acc: Unit
    pruned_acc: Unit
    info: dict[str, Any]
    run_dir: str
    base_epochs: Epochs
    base_seconds: NonNeg
    device: str
    torch_version: str
    archsearch_version: str
    date: str


class LastPattern(Model):
    path: str


class TransferRow(Model):
    generator: str
    params: NonNeg
    macs: NonNeg
    best_acc_mean: Annotated[float, Field(ge=0, le=100)]
    best_acc_std: Annotated[float, Field(ge=0, le=100)]
    budget: Optional[str] = None
    seeds: Optional[PositiveInt] = None
    kind: Optional[str] = None


# -- sweep specs (TOML) ---------------------------------------------------------------------------
Preset = str  # checked against the presets (`config.PRESETS`) by sweep.spec
Fraction = Annotated[float, Field(gt=0, le=1)]


class SweepPatterns(Closed):
    own: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    transferred: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class SweepExtract(Closed):
    preset: Preset = DEFAULT_PRESET
    seeds: Annotated[int, Field(ge=1, le=100)] = 1
    epochs: Optional[Epochs] = None
    width: Optional[Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]] = None
    ratio: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    sparsity: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    floor: Optional[Annotated[float, Field(ge=0, lt=1)]] = None
    train_subset: Optional[Annotated[int, Field(ge=1, le=1 << 31)]] = None
    stage_ratios: Optional[Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=1, max_length=64)]] = None
    skip: Optional[Annotated[list[str], Field(max_length=100000)]] = None
    rounds: Optional[Annotated[int, Field(ge=1, le=100)]] = None
    rewind_epoch: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None
    in_sweep: bool = False


# Every default of a sweep spec lives here, once: `parse_spec` fills them in, and the plan a
# study stores holds the filled-in spec, so no reader needs a default of its own.
class SweepTrain(Closed):
    preset: Preset = DEFAULT_PRESET
    epochs: Optional[Epochs] = None  # None: the preset's
    width: Optional[Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]] = None  # None: the preset's (sweep.spec)
    data_dir: Optional[str] = None
    download: bool = True
    train_subset: Optional[Annotated[int, Field(ge=1, le=1 << 31)]] = None
    round: Annotated[int, Field(ge=1, le=MAX_ROUND)] = 1
    floor: Annotated[float, Field(ge=0, lt=1)] = 0.0
    device: Optional[str] = None
    checkpoint_every: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None  # None: the preset's
    cap: Optional[Annotated[float, Field(gt=0, le=MAX_CAP)]] = None
    count: Optional[Literal["macs", "original"]] = None
    finetune_epochs: Optional[Epochs] = None  # table mode: the fine-tune arm (default: the preset's)
    nproc: Annotated[int, Field(ge=1, le=1024)] = 1  # processes per trial (DDP under torchrun; grid and search modes)


class SweepSearch(Closed):
    budget: Optional[str | Annotated[float, Field(gt=0, le=MAX_BUDGET)]] = None  # exactly one of budget
    fraction: Optional[Fraction] = None                                           # and fraction (search mode)
    trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    low: Annotated[float, Field(gt=0, le=1)] = 0.05
    high: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: Seed = 0
    sampler_seed: Seed = 0
    pruner: Literal["median", "none"] = "median"
    startup_trials: Annotated[int, Field(ge=0, le=100_000)] = 5
    warmup_epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 2
    uniform_reference: bool = True


class SweepRun(Closed):
    heartbeat: Annotated[int, Field(ge=1, le=86_400)] = 10
    grace: Annotated[int, Field(ge=2, le=7 * 86_400)] = 60
    max_retry: Annotated[int, Field(ge=0, le=100)] = 2
    artifacts: Optional[Annotated[str, Field(min_length=1, max_length=4096)]] = None


TableArm = Literal["unpruned", "finetune", "scratch-e", "scratch-b", "ticket"]


class RowSettings(Closed):
    """The settings that choose a table row's pruned architecture: a row of a sweep file
    (`SweepRow`) and, with the training settings, a row resolved into a study's plan
    (`PlanRowSettings`)."""

    width: Optional[Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]] = None  # a row's own, over [train] width
    ratio: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    variant: Optional[Annotated[str, Field(min_length=1, max_length=40)]] = None
    sparsity: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    floor: Optional[Annotated[float, Field(ge=0, lt=1)]] = None
    stage_ratios: Optional[Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=1, max_length=64)]] = None
    skip: Optional[Annotated[list[str], Field(max_length=100000)]] = None
    rounds: Optional[Annotated[int, Field(ge=1, le=100)]] = None
    rewind_epoch: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None


class SweepRow(RowSettings):
    """One row of a table sweep: a proposer (`METHOD-ARCH-DATA[.VARIANT]`) and the settings
    that choose its pruned architecture; `paper` holds the paper's own numbers per arm, with
    `paper_source` naming where they were read."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", populate_by_name=True)

    source: Annotated[str, Field(alias="from", min_length=1, max_length=200)]
    label: Optional[Annotated[str, Field(max_length=200)]] = None
    paper: Optional[dict[TableArm, Annotated[float, Field(ge=0, le=100)]]] = None
    paper_source: Optional[Annotated[str, Field(min_length=1, max_length=1000)]] = None

    @model_validator(mode="after")
    def _cited(self) -> "SweepRow":
        if self.paper and not self.paper_source:
            raise ValueError("paper numbers need paper_source (where they were read)")
        return self


class SweepFile(Closed):
    """The top level of a sweep spec after its scale's overrides are merged in."""

    name: str
    target: Optional[str] = None  # grid and search modes; a table's rows name their own
    mode: Literal["grid", "search", "table"] = "grid"
    title: str = ""
    about: str = ""
    cost: str = ""
    generators: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["uniform"])  # registry: sweep.spec
    kinds: Optional[Annotated[list[Literal["channels", "sparsity", "depth"]], Field(min_length=1)]] = None
    budgets: Optional[Annotated[list[str | Annotated[float, Field(gt=0, le=MAX_BUDGET)]], Field(min_length=1)]] = None
    fractions: Optional[Annotated[list[Fraction], Field(min_length=1)]] = None
    by: Literal["params", "macs"] = "params"
    seeds: Annotated[int, Field(ge=1, le=MAX_SEEDS)] = 1
    schedule: Literal["scratch-e", "scratch-b"] = "scratch-e"
    patterns: SweepPatterns = Field(default_factory=SweepPatterns)
    extract: SweepExtract = Field(default_factory=SweepExtract)
    train: SweepTrain = Field(default_factory=SweepTrain)
    search: SweepSearch = Field(default_factory=SweepSearch)
    run: SweepRun = Field(default_factory=SweepRun)
    rows: Optional[Annotated[list[SweepRow], Field(min_length=1, max_length=1000)]] = None
    arms: Optional[Annotated[list[TableArm], Field(min_length=1)]] = None

    @model_validator(mode="after")
    def _name(self) -> "SweepFile":
        _plain_name(self.name, "sweep name")
        return self


# -- study plans (stored in a study by `sweep run`, read by every worker) ----------------------------
class PlanRowSettings(RowSettings):
    """A table row's keyword settings of `propose` (`sweep.table.row_settings`): a worker passes
    them on as they are, so only these keys, each of its type, are accepted."""

    preset: Annotated[str, Field(min_length=1, max_length=40)]
    epochs: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None
    train_subset: Optional[Annotated[int, Field(ge=1)]] = None


class PlanRow(Model):
    """One resolved row of a table plan (`sweep.table.build_table_plan`)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", populate_by_name=True)

    source: Annotated[str, Field(alias="from", min_length=1, max_length=200)]
    label: Annotated[str, Field(min_length=1, max_length=400)]
    method: Annotated[str, Field(min_length=1, max_length=40)]
    kind: Literal["channels", "sparsity", "depth"]
    arch: Annotated[str, Field(min_length=1, max_length=200)]
    data: Annotated[str, Field(min_length=1, max_length=200)]
    settings: PlanRowSettings
    record: dict[str, Any]
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
    paper: Optional[dict[TableArm, Annotated[float, Field(ge=0, le=100)]]] = None
    paper_source: Optional[Annotated[str, Field(max_length=1000)]] = None


class PlanModel(Model):
    """A study's plan (`sweep.plan.read_plan` reads it; version 1 plans are upgraded there)."""

    version: Literal[3]
    spec: dict[str, Any]  # the spec with every default filled in; checked again by sweep.spec.parse_spec
    filled: list[Literal["train.width", "train.checkpoint_every", "extract.preset"]] = []  # sweep.spec.LEGACY_DEFAULTS
    patterns: dict[Literal["own", "transferred"], dict[Literal["channels", "sparsity", "depth"], dict[str, Any]]]
    kinds: Annotated[list[Literal["channels", "sparsity", "depth"]], Field(min_length=0)]  # a table has none
    budgets: Annotated[list[Annotated[float, Field(gt=0, le=MAX_BUDGET)]], Field(min_length=0)]
    full: dict[str, Annotated[int, Field(ge=0)]]
    rows: Optional[Annotated[list[PlanRow], Field(min_length=1, max_length=1000)]] = None  # table mode
    arms: Optional[Annotated[list[TableArm], Field(min_length=1)]] = None  # table mode, in table order
    artifacts: Optional[str] = None  # table mode: where inherited weights are stored
    archsearch_version: str
    created: str
    data_dir: Optional[str] = None
    command: Optional[str] = None
    search_start: Optional[list[Annotated[float, Field(gt=0)]]] = None
    search_pattern: Optional[str] = None

    @model_validator(mode="after")
    def _table(self) -> "PlanModel":
        if self.spec.get("mode") == "table" and not (self.rows and self.arms and self.artifacts):
            raise ValueError("a table plan needs its rows, arms and artifact store")
        return self


__all__ = ["check", "Pattern", "ArchSpecModel", "ResultModel", "ProposalRecord", "LastPattern", "TransferRow",
           "RowSettings", "SweepFile", "PlanRow", "PlanRowSettings", "PlanModel"]
