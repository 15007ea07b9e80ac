"""A feature's field changes (``petrock feature field add|rename|remove|change``), as the manifest records them.

Each change is one step of the feature's message schema: it takes the payloads of
``FEATURE/create`` and ``FEATURE/update`` (the two message types that carry the
fields) from version N to N + 1, N being its place in the feature's list of changes.
From that list petrock renders the feature's ``upcasters.py`` (one function per
change) and a test that feeds a frozen payload of each old version through them.
Pure: nothing here reads or writes files; a change that cannot be made raises an
:class:`~petrock.errors.InvalidName` saying why and what to do instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from petrock.errors import InvalidName
from petrock.fields import FieldSpec, parse_field

KINDS = ("add", "rename", "remove", "change")
# Type changes whose upcaster petrock writes: (old type, new type) -> how a stored value converts.
SAFE_CONVERSIONS = {
    ("int", "float"): "float({value})",
    ("int", "decimal"): "str({value})",
    ("str", "text"): "",
}
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class FieldChange:
    """One recorded change: ``add`` (field = its spec), ``rename`` (field -> to), ``remove`` (field = the
    spec removed), ``change`` (field = the old spec, to = the new one)."""

    kind: str
    field: str
    to: str = ""
    default: str | None = None

    def to_entry(self) -> dict[str, str]:
        entry = {"change": self.kind, "field": self.field}
        if self.to:
            entry["to"] = self.to
        if self.default is not None:
            entry["default"] = self.default
        return entry

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FieldChange:
        return cls(str(entry["change"]), str(entry["field"]), str(entry.get("to", "")), entry.get("default"))

    @property
    def name(self) -> str:
        return self.field.split(":", 1)[0]

    @property
    def safe(self) -> bool:
        """Does petrock write this change's upcaster in full (not a stub for the user to fill in)?"""
        return self.kind != "change" or conversion(self.old_spec, self.new_spec) is not None

    @property
    def old_spec(self) -> FieldSpec:
        return _spec(self.field)

    @property
    def new_spec(self) -> FieldSpec:
        return _spec(self.to)

    def describe(self) -> str:
        if self.kind == "add":
            default = f" (old messages: {self.default})" if self.default is not None else ""
            return f"add {self.field}{default}"
        if self.kind == "rename":
            return f"rename {self.field} to {self.to}"
        if self.kind == "remove":
            return f"remove {self.field}"
        return f"change {self.field} to {self.to.split(':', 1)[1]}"


def recorded_changes(entry: Mapping[str, Any]) -> list[FieldChange]:
    changes = entry.get("changes", [])
    return [FieldChange.from_entry(change) for change in changes] if isinstance(changes, list) else []


def conversion(old: FieldSpec, new: FieldSpec) -> str | None:
    """How a stored value of ``old`` becomes one of ``new`` (Python with ``{value}``; '' unchanged), None when
    petrock cannot tell (the user writes the step)."""
    if _model_rules(old) == _model_rules(new):
        return ""  # only `unique` or `label=` changed: the model reads every stored value as before
    if new.optional and not old.optional and (old.type, old.choices, old.ref) == (new.type, new.choices, new.ref):
        return ""  # any -> optional: every stored value is still valid
    if old.optional and not new.optional:
        return None  # a stored null has no value in the new type
    if new.type == "choice" and old.type == "choice" and set(old.choices) <= set(new.choices):
        return ""  # more choices: every stored one is still one
    return SAFE_CONVERSIONS.get((old.type, new.type))


def _model_rules(field: FieldSpec) -> tuple[object, ...]:
    """What of a field the command models read stored values by (not ``unique``, which the state checks,
    nor ``label=``)."""
    return field.type, field.choices, field.ref, field.optional, replace(field.rules, unique=False, label="")


def default_value(field: FieldSpec, text: str) -> object:
    """``--default TEXT`` as the JSON value stored for ``field``; InvalidName if it is not one."""
    try:
        value = _parse_default(field, text)
    except (ValueError, InvalidOperation):
        value = None
    if value is None:
        raise InvalidName(
            f"--default {text!r} is not a valid {field.type} for {field.name}",
            f"give a value such as {json.dumps(field.stored)}",
        )
    return value


def _parse_default(field: FieldSpec, text: str) -> object:
    kind = field.type
    if kind == "int":
        return int(text)
    if kind == "float":
        number = float(text)
        return number if math.isfinite(number) else None
    if kind == "decimal":
        amount = Decimal(text)
        return str(amount) if amount.is_finite() else None
    if kind == "bool":
        word = text.lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
    if kind == "choice":
        return text if text in field.choices else None
    if kind == "date":
        return date.fromisoformat(text).isoformat()
    if kind == "datetime":
        moment = datetime.fromisoformat(text)
        return text if moment.tzinfo is not None else None
    return text if text.strip() else None


def _spec(text: str) -> FieldSpec:
    """A recorded spec as a FieldSpec (a ref's target is not looked up: only its type matters here)."""
    parts = text.split(":")
    if len(parts) > 2 and parts[1] == "ref":
        return FieldSpec(parts[0], "ref", parts[-1] == "optional", ref=parts[2])
    return parse_field(text, feature="", features={})


@dataclass(frozen=True)
class Step:
    """What the templates need to render one change as an upcaster and its test."""

    version: int  # the step takes payloads of this version to version + 1
    function: str
    summary: str
    body: str  # the function's body, indented by four spaces
    safe: bool
    frozen: dict[str, object]  # a payload of ``version`` as the log holds it
    expected: dict[str, object] | None  # that payload at today's version (None: a stub decides)


def steps(feature_fields: Sequence[FieldSpec], changes: Sequence[FieldChange]) -> list[Step]:
    """Each recorded change as an upcaster step, with a frozen payload of its version and what it becomes."""
    # The fields at each version, from today's back to the first: undo the changes one by one.
    versions: list[list[FieldSpec]] = [list(feature_fields)]
    for change in reversed(changes):
        versions.insert(0, _undo(versions[0], change))
    result = []
    for index, change in enumerate(changes):
        frozen = {"id": "frozen-1"} | {field.name: field.stored for field in versions[index]}
        expected: dict[str, object] | None = dict(frozen)
        for later in changes[index:]:
            expected = _apply(expected, later) if expected is not None else None
        result.append(
            Step(
                version=index + 1,
                function=f"v{index + 1}_{change.kind}_{change.name}",
                summary=change.describe()[0].upper() + change.describe()[1:],
                body=_body(change),
                safe=change.safe,
                frozen=frozen,
                expected=expected,
            )
        )
    return result


def _undo(fields: list[FieldSpec], change: FieldChange) -> list[FieldSpec]:
    if change.kind == "add":
        return [field for field in fields if field.name != change.name]
    if change.kind == "rename":
        return [_renamed(field, change.name) if field.name == change.to else field for field in fields]
    if change.kind == "remove":
        return [*fields, change.old_spec]
    return [change.old_spec if field.name == change.name else field for field in fields]


def _renamed(field: FieldSpec, name: str) -> FieldSpec:
    return replace(field, name=name)


def _apply(payload: dict[str, object], change: FieldChange) -> dict[str, object] | None:
    """What the step does to ``payload`` (None when the user writes the step)."""
    if change.kind == "add":
        return {**payload, change.name: _added_value(change)}
    if change.kind == "rename":
        return {(change.to if key == change.name else key): value for key, value in payload.items()}
    if change.kind == "remove":
        return {key: value for key, value in payload.items() if key != change.name}
    how = conversion(change.old_spec, change.new_spec)
    if how is None:
        return None
    value = payload[change.name]
    if how and value is not None:
        value = float(value) if how.startswith("float") else str(value)  # type: ignore[arg-type]
    return {**payload, change.name: value}


def _added_value(change: FieldChange) -> object:
    """What an old message gets for an added field: ``--default``, else the spec's ``default=``, else nothing."""
    field = change.old_spec
    if change.default is not None:
        return default_value(field, change.default)
    if field.rules.default:
        return default_value(field, field.rules.default)
    return False if field.type == "bool" and not field.optional else None


def _body(change: FieldChange) -> str:
    name = json.dumps(change.name)
    if change.kind == "add":
        return f"return {{**payload, {name}: {_python(_added_value(change))}}}"
    if change.kind == "rename":
        new = json.dumps(change.to)
        return f"return {{({new} if key == {name} else key): value for key, value in payload.items()}}"
    if change.kind == "remove":
        return f"return {{key: value for key, value in payload.items() if key != {name}}}  # the log keeps the value"
    how = conversion(change.old_spec, change.new_spec)
    if how is None:
        old, new = (spec.spec.split(":", 1)[1] for spec in (change.old_spec, change.new_spec))
        return (
            f"# petrock cannot tell how to turn a stored {old} into {new}:\n"
            f"    # return {{**payload, {name}: ...}}\n"
            f'    raise NotImplementedError("write the {change.name} conversion in this upcaster")'
        )
    if not how:
        return "return payload  # every stored value is valid as it is"
    value = how.format(value=f"payload[{name}]")
    if change.old_spec.optional:
        value = f"None if payload[{name}] is None else {value}"
    return f"return {{**payload, {name}: {value}}}"


def _python(value: object) -> str:
    from petrock.fields import python_literal

    return python_literal(value)
