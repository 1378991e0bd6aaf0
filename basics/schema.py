"""Declarative option schemas: a command's options are fields of frozen dataclasses whose
metadata carries the flag, the type, the bounds, the default, the unit and the help.

The command line (`robustness.cli.common.schema_options`), the TOML reader, the bounds
check, `--print-config` and the run hash all read the same fields, so a flag and a config
key accept exactly the same values, and adding an option is adding one field:

    mc_samples: int = option(10, "M: posterior samples for BMA, perturbed copies for chips.",
                             number="int", low=1, high=10_000)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable

from basics.errors import BadInput
from basics.ranges import out_of_bounds

SEED_MAX = 2**63 - 1  # what torch.Generator.manual_seed and the int64 seed tensors hold
MAX_MC_SAMPLES = 10_000  # networks per prediction: each is a copy of the model
DATA_DIR_HELP = "Local folder of the dataset (overrides the checkpoint's)."

_WORDS = {"str": "string", "int": "integer", "float": "number", "bool": "true/false", "list": "list"}


class Kind(str, Enum):
    """How an option is given on the command line (and so in a file)."""

    VALUE = "value"        # one value
    FLAG = "flag"          # a boolean --x
    SWITCH = "switch"      # --x/--no-x
    MULTIPLE = "multiple"  # a repeatable flag; a list in the file
    NAMES = "names"        # a comma-separated list; a list in the file


class Numeric(str, Enum):
    INT = "int"
    FLOAT = "float"


class PathKind(str, Enum):
    """What a path option names (a help's PATH, FILE or DIRECTORY)."""

    ANY = "any"
    FILE = "file"
    DIR = "dir"


@dataclass(frozen=True)
class Option:
    """How one field is given. `kind`: `value` (one value), `flag` (a boolean `--x`),
    `switch` (`--x/--no-x`), `multiple` (a repeatable flag; a list in the file), `names`
    (a comma-separated list; a list in the file; `choices` then bound each name). `number`: `int` or `float` for numeric
    values, checked against [low, high] (`low_open`/`high_open`: strict). `file_types`
    overrides the TOML types a key may hold (levels: a range string, a number or a list)."""

    help: str = ""
    flag: str | None = None  # default: --field-name
    short: str | None = None
    kind: Kind = Kind.VALUE
    number: Numeric | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    unit: str = ""
    path: PathKind | None = None
    show_default: bool = True
    hidden: bool = False
    in_file: bool = True  # a config-file key too
    file_types: tuple[type, ...] | None = None
    file_keys: tuple[str, ...] = ()  # other names the file accepts for it
    nargs: int = 1
    after: str | None = None  # listed in --help after this field (its place before the field order was fixed)
    required: bool = False
    text_default: str | None = None  # the default as typed, where the field holds it parsed (widths)
    parse: Callable[[Any], Any] | None = None  # text as typed -> the field's value (ranges, spans)
    example: str = ""  # a valid value, for the error that refuses an empty list

    def types(self) -> tuple[type, ...]:
        """The TOML types a file may give this option as."""
        if self.file_types is not None:
            return self.file_types
        if self.kind in ("flag", "switch"):
            return (bool,)
        if self.kind in ("multiple", "names"):
            return (str, list)
        if self.number == "int":
            return (int,)
        if self.number == "float":
            return (int, float)
        return (str,)


def option(default: Any, help: str = "", **kw: Any) -> Any:
    """A dataclass field with its option metadata (`kind` and `number` by name: "flag", "int")."""
    if "kind" in kw:
        kw["kind"] = Kind(kw["kind"])
    if kw.get("number") is not None:
        kw["number"] = Numeric(kw["number"])
    if "path" in kw:  # path=True: any path; "file" or "dir" narrow it
        kw["path"] = PathKind.ANY if kw["path"] is True else PathKind(kw["path"]) if kw["path"] else None
    meta = {"option": Option(help=help, **kw)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Field:
    """One option of a schema: its field name, default and metadata."""

    name: str
    default: Any
    opt: Option

    @property
    def flag(self) -> str:
        return self.opt.flag or "--" + self.name.replace("_", "-")


def fields(*schemas: type) -> list[Field]:
    """The option fields of each schema, in definition order (fields without option metadata,
    such as resolved plans, are not options)."""
    out = []
    for cls in schemas:
        for f in dataclasses.fields(cls):
            if "option" in f.metadata:
                default = f.default if f.default is not dataclasses.MISSING else None
                out.append(Field(f.name, default, f.metadata["option"]))
    return out


def help_order(schema_fields: list[Field]) -> list[Field]:
    """The fields as --help lists them: definition order, each `after` field moved behind its anchor."""
    out = [f for f in schema_fields if f.opt.after is None]
    waiting = [f for f in schema_fields if f.opt.after is not None]
    while waiting:  # a field may follow one that itself follows another
        placed = [f for f in waiting if any(g.name == f.opt.after for g in out)]
        if not placed:
            raise ValueError(f"no field {waiting[0].opt.after!r} for {waiting[0].name} to follow")
        for f in placed:
            out.insert(next(i for i, g in enumerate(out) if g.name == f.opt.after) + 1, f)
            waiting.remove(f)
    return out


def file_keys(schema_fields: Iterable[Field]) -> dict[str, Field]:
    """Config-file key -> field (dashes and underscores alike are accepted by the reader)."""
    out: dict[str, Field] = {}
    for f in schema_fields:
        if f.opt.in_file:
            for k in (f.name, *f.opt.file_keys):
                out[k] = f
    return out


def check_type(key: str, f: Field, v: Any, where: str) -> None:
    """A file value of the type its option takes (bool is not a number; list items are
    strings or numbers)."""
    kinds = f.opt.types()
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        names = " or ".join(sorted({_WORDS[t.__name__] for t in kinds}))
        raise BadInput(f"{where}: {key} = {v!r} must be {'an' if names[0] in 'aeiou' else 'a'} {names}")
    if isinstance(v, list):
        for x in v:
            if not isinstance(x, (str, int, float, dict)) or isinstance(x, bool):
                raise BadInput(f"{where}: {key} holds {x!r}, not a string or number")
    if f.opt.choices is not None and isinstance(v, str) and v not in f.opt.choices and f.opt.kind != "names":
        raise BadInput(f"{where}: {key} = {v!r} is not one of {', '.join(f.opt.choices)}")


def check_bounds(schema_fields: Iterable[Field], values: dict[str, Any], where: str = "") -> None:
    """Numbers finite and within their option's bounds, whether given as flags or in a file
    (NaN passes no comparison, so it is refused by name)."""
    for f in schema_fields:
        if f.opt.number is None or (f.opt.low is None and f.opt.high is None):
            continue
        v = values.get(f.name)
        if v is None or isinstance(v, str):  # a word ('auto') is its own parser's to judge
            continue
        shown = f"{where}{f.name}" if where else f.flag
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadInput(f"{shown} must be a finite number, got {v!r}")
        why = out_of_bounds(v, f.opt.low, f.opt.high, f.opt.low_open, f.opt.high_open)
        if why:
            raise BadInput(f"{shown} {why}, got {v!r}")


def read_file(raw: dict[str, Any], schema_fields: list[Field], where: str) -> dict[str, Any]:
    """A config file's keys (dashes or underscores) checked against the schema: unknown keys,
    types, choices and bounds refused with the file's name."""
    keys = file_keys(schema_fields)
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.replace("-", "_")
        if key not in keys:
            raise BadInput(f"{where}: unknown option {k!r}")
        check_type(key, keys[key], v, where)
        out[key] = v
    check_bounds(schema_fields, {keys[k].name: v for k, v in out.items()}, f"{where}: ")
    return out


def names(v: Any) -> tuple[str, ...]:
    """A comma-separated list (flag) or a list (file) as a tuple of names, blanks dropped."""
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(str(x) for x in (v or ()))


def field_value(f: Field, v: Any) -> Any:
    """A flag's or a file's value as its field holds it (types and bounds checked already)."""
    o = f.opt
    if o.kind == "names":
        got = names(v)
        bad = [x for x in got if o.choices is not None and x not in o.choices]
        if bad:
            raise BadInput(f"{f.flag} {bad[0]!r}: use any of {', '.join(o.choices)}")
        if not got and v not in (None, ()):
            hint = f" (give e.g. {o.example})" if o.example else ""
            raise BadInput(f"{f.flag} {v!r}: names no {f.name.removesuffix('s')}{hint}")
        return None if not got and f.default is None else got
    if v is None:
        return None
    if o.parse is not None:
        return o.parse(v)
    if o.kind in ("flag", "switch"):
        return bool(v)
    if o.kind == "multiple" or o.nargs > 1:
        return tuple(v)
    if o.number == "int":
        return int(v)
    if o.number == "float":
        return float(v)
    return str(v) if o.choices else v


def build(schema: type, values: dict[str, Any], **resolved: Any) -> Any:
    """An instance of `schema` from option values by field name (missing: the default), with
    `resolved` fields (expanded model lists, plans) given as they are."""
    kw = {f.name: field_value(f, values.get(f.name, f.default)) for f in fields(schema)}
    return schema(**{**kw, **resolved})
