"""The FIELD grammar of ``petrock feature add NAME [FIELD ...]``, parsed into what the templates need.

A FIELD is ``name:type``, optionally followed by an argument and/or ``:optional``:
``total:decimal``, ``status:choice:draft,paid``, ``customer:ref:customers``,
``due:date:optional``. Only letters, digits, ``_ , : . -`` are used, so no shell
(zsh included) globs or splits it. Pure: nothing here reads or writes files; a bad
spec raises an :class:`~petrock.errors.InvalidName` naming the field and the fix.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from petrock.errors import InvalidName
from petrock.field_rules import (
    NO_RULES,
    OTHER_VALUES,
    FieldRules,
    parse_rule,
    parse_unique,
    python_bound,
    readable_label,
    typed,
    unknown_modifier,
)

TYPES = ("str", "text", "int", "float", "decimal", "bool", "date", "datetime", "email", "url", "choice", "ref")
DEFAULT_FIELDS = ("title:str", "content:text")
# Names other generators use for our types, for the "did you mean" of an unknown type.
ALIASES = {
    "string": "str", "varchar": "str", "integer": "int", "number": "float", "double": "float", "boolean": "bool",
    "money": "decimal", "currency": "decimal", "numeric": "decimal", "timestamp": "datetime", "time": "datetime",
    "enum": "choice", "select": "choice", "references": "ref", "reference": "ref", "belongs_to": "ref",
    "fk": "ref", "link": "url", "uri": "url", "mail": "email",
}  # fmt: skip
# The generated Line type's own bound (commands.py's MAX_LINE_LENGTH).
MAX_LINE_LENGTH = 200
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
CHOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
MAX_NAME_LENGTH = 40
# Names the generated code gives its own attributes, query parameters and annotations.
RESERVED = frozenset(
    {
        "id", "created_at", "updated_at", "summary", "summary_status", "summary_error", "summary_request_id",
        "offset", "limit", "sort", "str", "int", "float", "bool", "date", "datetime", "decimal",
    }
)  # fmt: skip

# Per type: the annotation in commands.py, the form input, its step, and the alias it needs.
ANNOTATIONS = {
    "str": "Line", "text": "Text", "int": "Integer", "float": "Number", "decimal": "Amount", "bool": "bool",
    "date": "date", "datetime": "UtcDatetime", "email": "Email", "url": "Url", "ref": "Id",
}  # fmt: skip
INPUTS = {
    "str": "text", "text": "textarea", "int": "number", "float": "number", "decimal": "number",
    "bool": "checkbox", "date": "date", "datetime": "datetime-local", "email": "email", "url": "url",
    "choice": "select", "ref": "select",
}  # fmt: skip
# Per type: the kind of its indexed store column (core/store.py), so values order as what they are.
COLUMNS = {
    "str": "folded", "email": "folded", "url": "folded", "int": "int", "float": "real", "decimal": "decimal",
    "bool": "bool", "date": "text", "datetime": "time", "choice": "text", "ref": "text",
}  # fmt: skip
# Sample values for the generated tests: a valid JSON value, what the app answers for it, an invalid one.
SAMPLES: dict[str, tuple[object, object, object]] = {
    "str": ("A short line", "A short line", ""),
    "text": ("First sentence. Second one.", "First sentence. Second one.", "   "),
    "int": (42, 42, 2**63),  # one past what the databases store: a 400, where it was a 500 at the database
    "float": (2.5, 2.5, "fast"),
    "decimal": ("12.50", "12.50", "12,50"),
    "bool": (True, True, "maybe"),
    "date": ("2025-01-31", "2025-01-31", "31/01/2025"),
    "datetime": ("2025-01-31T12:30:00+02:00", "2025-01-31T10:30:00Z", "2025-01-31T12:30:00"),
    "email": ("ada@example.com", "ada@example.com", "not-an-email"),
    "url": ("https://example.com/a", "https://example.com/a", "example.com"),
}
# What a browser sends for the sample value, and what the app stores for it.
FORM_SAMPLES = {"bool": ("on", True), "datetime": ("2025-01-31T12:30", "2025-01-31T12:30:00Z")}


@dataclass(frozen=True)
class FieldSpec:
    """One field of a feature, with every name and value the templates need."""

    name: str
    type: str
    optional: bool = False
    choices: tuple[str, ...] = ()
    ref: str = ""  # the referenced feature, for ``ref``
    ref_label: str = "id"  # the referenced feature's field to show in selects and pages
    rules: FieldRules = NO_RULES  # unique, min=, max=, default=, label= (field_rules.py)

    @property
    def spec(self) -> str:
        """The FIELD text that makes this field again (recorded in the manifest)."""
        argument = {"choice": ",".join(self.choices), "ref": self.ref}.get(self.type)
        return ":".join(
            [
                self.name,
                self.type,
                *([argument] if argument else []),
                *(["optional"] if self.optional else []),
                *self.rules.modifiers,
            ]
        )

    @property
    def label(self) -> str:
        """What the form and pages call it: ``label=`` if given, else the name with acronyms in capitals."""
        return self.rules.label or readable_label(self.name)

    @property
    def choice_alias(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Choice"

    @property
    def annotation(self) -> str:
        """The type in the command models, with its bounds; ``X | None`` when optional."""
        base = self.choice_alias if self.type == "choice" else ANNOTATIONS[self.type]
        if self.bounds:
            base = f"Annotated[{base}, Field({self.bounds})]"
        return f"{base} | None" if self.optional else base

    @property
    def bounds(self) -> str:
        """The ``Field(...)`` arguments of ``min=``/``max=`` ('' for none)."""
        minimum, maximum = self.rules.minimum, self.rules.maximum
        if self.type in ("str", "text"):
            pairs = (("min_length", minimum), ("max_length", maximum))
            return ", ".join(f"{name}={value}" for name, value in pairs if value)
        pairs = (("ge", minimum), ("le", maximum))
        bounds = [f"{name}={python_bound(self.type, value)}" for name, value in pairs if value]
        if bounds and self.type == "date":  # JSON Schema cannot bound a date: the example clients see keeps them
            bounds.append(f"examples=[{python_literal(self.sample)}]")
        return ", ".join(bounds)

    @property
    def hint(self) -> str:
        """``min=``/``max=`` in words, next to the form's label ('' for none)."""
        low, high = self.rules.minimum, self.rules.maximum
        if self.type in ("str", "text"):
            unit = "characters"
            if low and high:
                return f"{low} to {high} {unit}"
            return f"at least {low} {unit}" if low else (f"at most {high} {unit}" if high else "")
        if low and high:
            return f"{low} to {high}"
        below, above = ("from", "until") if self.type == "date" else ("", "")
        if low:
            return f"{below} {low}".strip() if below else f"{low} or more"
        if high:
            return f"{above} {high}" if above else f"{high} or less"
        return ""

    @property
    def input_rules(self) -> str:
        """The input's HTML attributes for ``min=``/``max=`` (what the browser checks before sending)."""
        minimum, maximum = self.rules.minimum, self.rules.maximum
        names = ("minlength", "maxlength") if self.type in ("str", "text") else ("min", "max")
        if self.type == "str" and not maximum:
            maximum = str(MAX_LINE_LENGTH)
        return "".join(f' {name}="{value}"' for name, value in zip(names, (minimum, maximum), strict=True) if value)

    @property
    def state_annotation(self) -> str:
        """The type kept in the state: the JSON value (decimals, dates and times as text)."""
        base = self.type if self.type in ("int", "float", "bool") else "str"
        return f"{base} | None" if self.optional else base

    @property
    def query_annotation(self) -> str:
        """The type of the list query's filter on this field."""
        return {"bool": "bool", "ref": "Id"}.get(self.type, self.choice_alias)

    @property
    def column(self) -> str:
        """The kind of the store column lists sort and filter this field by ('' for none: long text)."""
        return COLUMNS.get(self.type, "")

    @property
    def sortable(self) -> bool:
        return bool(self.column)

    @property
    def ref_url(self) -> str:
        return "/" + self.ref.replace("_", "-")

    @property
    def default(self) -> str:
        """The model field's default, as Python source ('' when it has none)."""
        if self.rules.default:
            return f" = {self.python_default}"
        if self.optional:
            return " = None"
        return " = False" if self.type == "bool" else ""

    @property
    def python_default(self) -> str:
        """``default=`` as Python source."""
        value = self.rules.default
        if self.type == "bool":
            return "True" if value == "true" else "False"
        if self.type in ("int", "float", "decimal", "date"):
            return python_bound(self.type, value)
        return python_literal(value)

    @property
    def form_default(self) -> object:
        """``default=`` as the new-item form shows it (None: no default)."""
        if not self.rules.default:
            return None
        return self.rules.default == "true" if self.type == "bool" else self.rules.default

    @property
    def stored_default(self) -> object:
        """What the queries answer for a field left out that has ``default=``."""
        value = self.rules.default
        if self.type == "bool":
            return value == "true"
        if self.type in ("int", "float"):
            return {"int": int, "float": float}[self.type](value)
        return str(typed("decimal", value)) if self.type == "decimal" else value

    @property
    def required(self) -> bool:
        """Must a client send it? (A bool is false when left out, as an unchecked checkbox.)"""
        return not self.optional and self.type != "bool" and not self.rules.default

    @property
    def input(self) -> str:
        return INPUTS[self.type]

    @property
    def step(self) -> str:
        return {"int": "1", "float": "any", "decimal": "any"}.get(self.type, "")

    @property
    def filterable(self) -> bool:
        return self.type in ("choice", "bool", "ref")

    @property
    def listed(self) -> bool:
        """Shown as a column of the list page (long text is on the detail page only)."""
        return self.type != "text"

    @property
    def sample(self) -> object:
        """A valid JSON value."""
        if self.type == "choice":
            return self.choices[0]
        if self.type == "ref":
            return sample_id(self.ref)
        return self._within_bounds(SAMPLES[self.type][0])

    def _within_bounds(self, value: object) -> object:
        """The sample moved inside ``min=``/``max=`` (lengths padded or cut)."""
        minimum, maximum = self.rules.minimum, self.rules.maximum
        if self.type in ("str", "text") and isinstance(value, str):
            if minimum and len(value) < int(minimum):
                value += "x" * (int(minimum) - len(value))
            if maximum and len(value) > int(maximum):
                value = "x" * int(maximum)
            return value
        if self.type not in ("int", "float", "decimal", "date"):
            return value
        current = typed(self.type, str(value))
        for bound, outside in ((minimum, lambda b: current < b), (maximum, lambda b: current > b)):
            if bound and outside(typed(self.type, bound)):
                return {"int": int, "float": float}.get(self.type, str)(bound)
        return value

    def fit(self, text: str) -> str:
        """``text`` made to keep a str or text field's length rules (sentences added, or cut), for the
        generated tests' own literals; other fields' text is returned as is."""
        if self.type not in ("str", "text"):
            return text
        low = int(self.rules.minimum or 0)
        high = int(self.rules.maximum or (MAX_LINE_LENGTH if self.type == "str" else 0))
        while len(text) < low:
            text = f"{text} And more.".lstrip()
        if high and len(text) > high:
            text = text[:high].rstrip()
        return text + "x" * (low - len(text))  # only when cutting left a space at the end

    def fit_numbered(self, text: str) -> str:
        """:meth:`fit` for an f-string's text holding ``{n}`` (a digit): the ``{n}`` is kept."""
        at = text.index("{n}")
        fitted = self.fit(text.replace("{n}", "0", 1))
        return fitted[:at] + "{n}" + fitted[at + 1 :] if at < len(fitted) else "{n}" + fitted[1:]

    def fits(self, text: str) -> bool:
        return self.fit(text) == text

    @property
    def exact_decimals(self) -> list[tuple[object, str]]:
        """JSON values a decimal keeps exactly, with the text it keeps, within ``min=``/``max=``."""
        candidates = [(12.5, "12.5"), ("0.10", "0.10"), ("1234567890.123456789", "1234567890.123456789")]
        low, high = (typed("decimal", bound) if bound else None for bound in (self.rules.minimum, self.rules.maximum))
        kept = [
            (sent, text)
            for sent, text in candidates
            if (low is None or Decimal(text) >= low) and (high is None or Decimal(text) <= high)  # type: ignore[operator]
        ]
        return kept or [(self.sample, str(self.stored))]

    @property
    def other_samples(self) -> tuple[object, ...]:
        """For a unique field: valid values other than :attr:`sample` and each other (text apart from its case),
        for the further items a generated test creates."""
        sample = self.sample
        if self.type == "email":
            return tuple(f"n{n}.{sample}" for n in range(1, OTHER_VALUES + 1))
        if self.type == "url":
            return tuple(f"{sample}/{n}" for n in range(1, OTHER_VALUES + 1))
        if self.type == "str":  # as long as the sample, so within its min= and max=
            text = str(sample)
            return tuple(f"{n}{text[len(str(n)) :]}" for n in range(1, OTHER_VALUES + 1))
        if self.type == "datetime":
            moment = datetime.fromisoformat(str(sample))
            return tuple((moment + timedelta(hours=n)).isoformat() for n in range(1, OTHER_VALUES + 1))
        return self._numbers_near(sample)

    def _numbers_near(self, sample: object) -> tuple[object, ...]:
        """The int, float, decimal or date values nearest the sample within ``min=`` and ``max=``."""
        low, high = (typed(self.type, bound) if bound else None for bound in (self.rules.minimum, self.rules.maximum))
        start = typed(self.type, str(sample))
        step: object = timedelta(days=1) if self.type == "date" else 1
        if self.type in ("float", "decimal") and low is not None and high is not None and high - low < 2 * OTHER_VALUES:
            step = (high - low) / (4 * OTHER_VALUES)  # type: ignore[operator]
        found: list[object] = []
        for n in range(1, 4 * OTHER_VALUES):
            for value in (start + n * step, start - n * step):  # type: ignore[operator]
                if (low is None or value >= low) and (high is None or value <= high) and len(found) < OTHER_VALUES:
                    found.append(value)
        convert = {"int": int, "float": float, "date": date.isoformat}.get(self.type, str)
        return tuple(convert(value) for value in found)  # type: ignore[operator]

    @property
    def stored(self) -> object:
        """What the queries answer for :attr:`sample`."""
        if self.type in ("choice", "ref") or self.sample != SAMPLES[self.type][0]:
            return self.sample
        return SAMPLES[self.type][1]

    @property
    def rule_breaking(self) -> list[object]:
        """Values of the right type that ``min=``/``max=`` refuse (for the generated tests)."""
        minimum, maximum = self.rules.minimum, self.rules.maximum
        if self.type in ("str", "text"):
            short = ["x" * (int(minimum) - 1)] if minimum and int(minimum) > 1 else []
            return short + (["x" * (int(maximum) + 1)] if maximum else [])
        if self.type not in ("int", "float", "decimal", "date"):
            return []
        values: list[object] = []
        for bound, step in ((minimum, -1), (maximum, 1)):
            if bound:
                value = typed(self.type, bound)
                if self.type == "date":
                    values.append((value + timedelta(days=step)).isoformat())  # type: ignore[operator]
                elif self.type == "decimal":
                    values.append(str(value + step))  # type: ignore[operator]
                else:
                    values.append({"int": int, "float": float}[self.type](value + step))  # type: ignore[operator]
        return values

    @property
    def invalid(self) -> object:
        """A value the command model refuses."""
        if self.type == "choice":
            return "-".join(self.choices) + "-none-of-these"
        if self.type == "ref":
            return "../not an id"
        return SAMPLES[self.type][2]

    @property
    def filter_miss(self) -> object:
        """A filter value that the sample does not match (None when the field has no other)."""
        if self.type == "bool":
            return not self.sample
        if self.type == "choice":
            return self.choices[1] if len(self.choices) > 1 else None
        return "other-id"

    @property
    def form_sample(self) -> str:
        """What a browser sends for a valid value."""
        if self.type in FORM_SAMPLES:
            return FORM_SAMPLES[self.type][0]
        sample = self.sample
        return str(sample)

    @property
    def form_invalid(self) -> str | None:
        """What a browser could send that the app refuses (None: every input is fine, as for a checkbox,
        or a blank optional text, which is left out)."""
        if self.type == "bool" or (self.optional and self.type in ("str", "text")):
            return None
        if self.type == "datetime":
            return "31/01/2025 12:30"
        return str(self.invalid)

    @property
    def form_stored(self) -> object:
        """What the queries answer after :attr:`form_sample` was posted."""
        return FORM_SAMPLES[self.type][1] if self.type in FORM_SAMPLES else self.stored


def sample_id(feature: str) -> str:
    """The id the generated tests give the one item of ``feature`` they create."""
    return f"{feature.replace('_', '-')}-1"


def parse_fields(
    specs: Sequence[str],
    *,
    feature: str,
    features: Mapping[str, Sequence[FieldSpec]],
    titles: Mapping[str, str | None] | None = None,
) -> tuple[FieldSpec, ...]:
    """``specs`` as FieldSpecs (the default ``title:str content:text`` when empty).

    ``features`` maps each feature already in the app to its fields: a ``ref`` must name one of them
    (and shows its title field: ``titles`` holds the features' ``--title``, when given).
    """
    parsed: list[FieldSpec] = []
    for text in specs or DEFAULT_FIELDS:
        field = parse_field(text, feature=feature, features=features, titles=titles)
        if any(other.name == field.name for other in parsed):
            raise InvalidName(f"field {field.name!r} is given twice", "give each field once")
        parsed.append(field)
    return tuple(parsed)


def parse_field(
    text: str,
    *,
    feature: str,
    features: Mapping[str, Sequence[FieldSpec]],
    titles: Mapping[str, str | None] | None = None,
) -> FieldSpec:
    """One FIELD; raises InvalidName saying what is wrong with it. ``titles``: each feature's ``--title``."""
    parts = text.split(":")
    name, kind, rest = parts[0], (parts[1] if len(parts) > 1 else ""), parts[2:]
    _check_name(name, text)
    if not kind:
        raise InvalidName(f"field {text!r} has no type", f"write it as `{name}:TYPE`, TYPE one of {', '.join(TYPES)}")
    if kind not in TYPES:
        close = [ALIASES[kind]] if kind in ALIASES else _closest(kind, TYPES)
        fix = f"did you mean `{name}:{close[0]}`?" if close else f"use one of {', '.join(TYPES)}"
        raise InvalidName(f"field {text!r} has an unknown type {kind!r}", fix)
    argument = ""
    if kind in ("choice", "ref"):
        if not rest or not rest[0]:
            example = "choice:draft,paid" if kind == "choice" else "ref:customers"
            raise InvalidName(f"field {text!r} needs an argument", f"write it as `{name}:{example}`")
        argument, rest = rest[0], rest[1:]
    choices = _choices(argument, text) if kind == "choice" else ()
    optional, rules = _modifiers(rest, kind=kind, text=text, choices=choices)
    if kind == "ref":
        return replace(_ref(name, argument, optional, text, feature, features, titles or {}), rules=rules)
    return FieldSpec(name, kind, optional, choices=choices, rules=rules)


def _modifiers(rest: Sequence[str], *, kind: str, text: str, choices: tuple[str, ...]) -> tuple[bool, FieldRules]:
    """``optional`` and the rules (``min=0``, ``label=ISBN``, ...) after the type and its argument."""
    optional, rules = False, FieldRules()
    for modifier in rest:
        if modifier == "optional":
            if optional:
                raise InvalidName(f"field {text!r} gives optional twice", "give each rule once")
            optional = True
        elif modifier == "unique":
            rules = parse_unique(rules, kind=kind, text=text)
        elif "=" in modifier:
            rules = parse_rule(rules, modifier, kind=kind, text=text, choices=choices)
        else:
            raise unknown_modifier(modifier, text)
    return optional, rules


def _check_name(name: str, text: str) -> None:
    if not FIELD_NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"field {text!r} has a bad name {name!r}",
            f"use lowercase letters, digits and underscores, starting with a letter (at most {MAX_NAME_LENGTH})",
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise InvalidName(f"field name {name!r} is a Python keyword", f"try `{name}_value` or another name")
    if name in RESERVED or name.startswith("model_"):
        raise InvalidName(
            f"field name {name!r} is used by the generated code itself", f"try `{name}_value` or another name"
        )


def _choices(argument: str, text: str) -> tuple[str, ...]:
    choices = tuple(argument.split(","))
    if not argument or not all(choices):
        raise InvalidName(f"field {text!r} has an empty choice", "list the choices as `choice:draft,paid,shipped`")
    for choice in choices:
        if not CHOICE.match(choice):
            raise InvalidName(
                f"field {text!r} has a choice {choice!r} petrock cannot use", "use letters, digits, `_`, `.` and `-`"
            )
    if len(set(choices)) != len(choices):
        raise InvalidName(f"field {text!r} lists a choice twice", "give each choice once")
    return choices


def _ref(
    name: str,
    target: str,
    optional: bool,
    text: str,
    feature: str,
    features: Mapping[str, Sequence[FieldSpec]],
    titles: Mapping[str, str | None],
) -> FieldSpec:
    if target == feature:
        raise InvalidName(f"field {text!r} refers to the feature being added", "refer to another feature of the app")
    if target not in features:
        known = ", ".join(sorted(features)) or "none yet"
        close = _closest(target, list(features))
        hint = f"did you mean `ref:{close[0]}`? " if close else ""
        raise InvalidName(
            f"field {text!r} refers to {target!r}, which is not a feature of this app",
            f"{hint}add that feature first (features: {known})",
        )
    return FieldSpec(name, "ref", optional, ref=target, ref_label=label_field(features[target], titles.get(target)))


def _closest(word: str, choices: Sequence[str]) -> list[str]:
    """The choice nearest to ``word``, if any is near (difflib is imported only for a mistake)."""
    import difflib

    return difflib.get_close_matches(word, choices, n=1)


TITLE_NAMES = ("title", "name", "label")


def label_field(fields: Sequence[FieldSpec], title: str | None = None) -> str:
    """The title field, which names an item in lists, headings, selects and links: ``title`` (the
    feature's ``--title``) if given, else the first ``str`` named title, name or label, else the first
    ``str``, else ``id``."""
    if title:
        return title
    strings = [field.name for field in fields if field.type == "str"]
    return next((name for name in strings if name in TITLE_NAMES), strings[0] if strings else "id")


def title_field(fields: Sequence[FieldSpec], title: str | None) -> str | None:
    """``--title FIELD`` checked: it must name one of the feature's ``str`` fields."""
    if title is None:
        return None
    strings = [field.name for field in fields if field.type == "str"]
    if title not in strings:
        fix = f"str fields: {', '.join(strings)}" if strings else "the feature has no str field; add one as `NAME:str`"
        raise InvalidName(f"--title {title} does not name a str field", fix)
    return title


def summarized_field(fields: Sequence[FieldSpec], summarize: str | None, *, worker: bool = True) -> str:
    """The text field the summary worker summarizes ('' for none); raises InvalidName if ``summarize`` is not one."""
    texts = [field.name for field in fields if field.type == "text"]
    if not worker:
        if summarize:
            raise InvalidName("--summarize and --no-worker contradict each other", "pass one of them")
        return ""
    if summarize is None:
        return texts[0] if texts else ""
    if summarize not in texts:
        fix = f"text fields: {', '.join(texts)}" if texts else "the feature has no text field; add one as `NAME:text`"
        raise InvalidName(f"--summarize {summarize} does not name a text field", fix)
    return summarize


def recorded_fields(entry: Mapping[str, object]) -> tuple[str, ...]:
    """The FIELD specs a manifest entry records (features made before fields existed have the default)."""
    fields = entry.get("fields")
    return tuple(str(spec) for spec in fields) if isinstance(fields, list) else DEFAULT_FIELDS


def recorded_titles(entries: Mapping[str, Mapping[str, object]]) -> dict[str, str | None]:
    """Each feature's ``--title``, as the manifest records it (None: the default title field)."""
    return {name: (str(entry["title"]) if entry.get("title") else None) for name, entry in entries.items()}


def app_fields(entries: Mapping[str, Mapping[str, object]]) -> dict[str, tuple[FieldSpec, ...]]:
    """Every recorded feature's fields, by feature (``entries`` is the manifest's ``features`` table)."""
    resolved: dict[str, tuple[FieldSpec, ...]] = {}
    titles = recorded_titles(entries)

    def resolve(name: str, seen: frozenset[str]) -> tuple[FieldSpec, ...]:
        if name not in resolved:
            specs = recorded_fields(entries[name])
            targets = {spec.split(":")[2] for spec in specs if spec.split(":")[1:2] == ["ref"] and spec.count(":") > 1}
            known = {
                target: resolve(target, seen | {name})
                for target in targets
                if target in entries and target not in seen | {name}
            }
            resolved[name] = parse_fields(specs, feature=name, features=known, titles=titles)
        return resolved[name]

    for name in entries:
        resolve(name, frozenset())
    return resolved


def referenced_items(
    fields: Sequence[FieldSpec], features: Mapping[str, Sequence[FieldSpec]]
) -> list[tuple[str, dict[str, object]]]:
    """What the generated tests create first so every ``ref`` has an item to point at:
    ``(feature, create payload)``, the features they refer to first."""
    ordered: dict[str, dict[str, object]] = {}

    def visit(target: str) -> None:
        if target in ordered:
            return
        for field in features[target]:
            if field.type == "ref":
                visit(field.ref)
        payload = {"id": sample_id(target)} | {field.name: field.sample for field in features[target]}
        ordered[target] = payload

    for field in fields:
        if field.type == "ref":
            visit(field.ref)
    return list(ordered.items())


def python_literal(value: object) -> str:
    """``value`` as Python source in the generated code's style (double quotes)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def python_tuple(names: Iterable[object], room: int = 96) -> str:
    """A tuple of strings (or numbers) as Python source, as ruff formats it: ``("a",)``, ``("a", "b")``, or one
    per line (with the trailing comma that keeps it so) when it is longer than ``room``."""
    quoted = [json.dumps(name) for name in names]
    if len(quoted) == 1:
        return f"({quoted[0]},)"
    inline = f"({', '.join(quoted)})"
    return inline if len(inline) <= room else "(\n" + "".join(f"    {item},\n" for item in quoted) + ")"
