"""What every file schema shares: strict models (`Model`, `Closed`), the one-line error of
`check`, and the bounded number types the formats are built from."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._io import check_name
from ..errors import ArchsearchError
from ..limits import MAX_EPOCHS, MAX_LAYERS, MAX_SEED, MAX_WIDTH

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
