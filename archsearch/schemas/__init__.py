"""One schema per file format that archsearch reads: patterns (`pattern`), ArchSpec JSON
(`archspec`), results, checkpoints, proposal records and sensitivity points (`records`),
sweep specs (TOML) and study plans (`sweep`); what they share is in `base`. Every name is
importable from here.

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

from .archspec import ArchSpecModel, MaskModel, ModuleName
from .base import (Closed, Epochs, Map3, MapK, Model, NonNeg, PositiveInt, Seed, Stage, Unit, Width, check)
from .pattern import (LayerStats, MeanStd, Pattern, PatternAccuracy, PatternProvenance, ProposalSummary,
                      SensitivityOrigin, StageStats)
from .records import (CheckpointRecord, EpochRecord, LastPattern, Preprocess, ProposalRecord, RecordedConfig,
                      ResultModel, SensitivityPoint, TransferRow)
from .sweep import (Fraction, PlanModel, PlanRow, PlanRowSettings, Preset, RowSettings, SweepExtract, SweepFile,
                    SweepPatterns, SweepRow, SweepRun, SweepSearch, SweepTrain, TableArm)

__all__ = ["check", "Model", "Closed", "Pattern", "ArchSpecModel", "ResultModel", "CheckpointRecord",
           "ProposalRecord", "LastPattern", "TransferRow", "RowSettings", "SweepFile", "SweepExtract", "SweepTrain",
           "SweepSearch", "SweepRun", "SweepRow", "SweepPatterns", "PlanRow", "PlanRowSettings", "PlanModel",
           "EpochRecord", "Preprocess", "RecordedConfig", "MeanStd", "PatternAccuracy", "PatternProvenance", "LayerStats", "StageStats",
           "ProposalSummary", "MaskModel", "ModuleName", "TableArm", "Preset", "Fraction", "Unit", "NonNeg", "Width",
           "Stage", "Seed", "Epochs", "PositiveInt", "Map3", "MapK", "SensitivityOrigin", "SensitivityPoint"]
