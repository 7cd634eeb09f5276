"""Sweep specs (TOML) and the study plans that `sweep run` stores and every worker reads."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from ..config import DEFAULT_PRESET
from ..limits import (MAX_BUDGET, MAX_CAP, MAX_EPOCHS, MAX_LATENCY_BATCH, MAX_REPEATS, MAX_ROUND, MAX_SEEDS,
                      MAX_THREADS, MAX_WIDTH_MULT, OPTION_NAME)
from ..errors import ArchsearchError
from ..measures import parse_budget
from .base import Closed, Epochs, Model, Seed, _plain_name


def _budget_text(text: str) -> str:
    """A plan's budget written as text must read as one (`measures.parse_budget`)."""
    try:
        parse_budget(text)
    except ArchsearchError as e:
        raise ValueError(str(e)) from None
    return text

Preset = str  # checked against the presets (`config.PRESETS`) by sweep.spec
Fraction = Annotated[float, Field(gt=0, le=1)]


class SweepPatterns(Closed):
    own: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    transferred: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


# a method's own options by name (`options = {batches = 2}`): which names and values a method
# takes is its options model's to say (`propose.Proposer.make_options`), checked before training
OptionValue = Union[bool, int, float, Annotated[str, Field(max_length=200)],
                    Annotated[list[Union[int, float, Annotated[str, Field(max_length=200)]]], Field(max_length=1000)]]
OwnOptions = Annotated[dict[Annotated[str, Field(pattern=OPTION_NAME)], OptionValue], Field(max_length=64)]


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
    options: Optional[OwnOptions] = None
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


class SweepLatency(Closed):
    """How the sweep measures latency (`measures.LatencyMeasure`): every trained net's, and the
    bound of `by = "latency"` budgets."""

    backend: Literal["eager", "onnxruntime", "cuda"] = "eager"
    threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] = 1
    batch: Annotated[int, Field(ge=1, le=MAX_LATENCY_BATCH)] = 1
    repeats: Annotated[int, Field(ge=1, le=MAX_REPEATS)] = 30


class SweepRun(Closed):
    heartbeat: Annotated[int, Field(ge=1, le=86_400)] = 10
    grace: Annotated[int, Field(ge=2, le=7 * 86_400)] = 60
    max_retry: Annotated[int, Field(ge=0, le=100)] = 2
    artifacts: Optional[Annotated[str, Field(min_length=1, max_length=4096)]] = None


# a registry name (a table arm, a sweep mode): which names exist is the registry's to say
# (`sweep.table.ARMS`, `sweep.modes.MODES`), checked where the spec is validated
RegistryName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9-]*$")]
TableArm = RegistryName


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
    options: Optional[OwnOptions] = None  # the method's own (propose.options.with_own)


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
    mode: RegistryName = "grid"  # sweep.modes.MODES
    title: str = ""
    about: str = ""
    cost: str = ""
    generators: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["uniform"])  # registry: sweep.spec
    kinds: Optional[Annotated[list[Literal["channels", "sparsity", "depth"]], Field(min_length=1)]] = None
    budgets: Optional[Annotated[list[str | Annotated[float, Field(gt=0, le=MAX_BUDGET)]], Field(min_length=1)]] = None
    fractions: Optional[Annotated[list[Fraction], Field(min_length=1)]] = None
    by: Literal["params", "macs", "latency"] = "params"
    latency: Optional[SweepLatency] = None  # None: the default measure
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


# -- study plans ---------------------------------------------------------------------------------
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
    # a number bounds spec.by (params or MACs); a text is a budget of its own (`measures.parse_budget`:
    # a latency, or bounds on several measures)
    budgets: Annotated[list[Annotated[float, Field(gt=0, le=MAX_BUDGET)]
                            | Annotated[str, Field(max_length=200), AfterValidator(_budget_text)]], Field(min_length=0)]
    nets: Optional[dict[str, dict[str, Any]]] = None  # latency-bound points solved and measured at plan time
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

