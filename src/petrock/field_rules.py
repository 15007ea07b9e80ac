"""Field rules: the ``unique``, ``min=``, ``max=``, ``default=`` and ``label=`` modifiers of a FIELD spec.

``price:decimal:optional:min=0`` or ``isbn:str:unique:label=ISBN``: each rule goes into the
command model (so every client is held to it), the form's input (``min``, ``max``,
``minlength``, ``maxlength``) and the generated tests. ``min``/``max`` bound the value of
an int, float, decimal or date, and the length of a str or text. ``unique`` is checked by
the feature's state, in the transaction that appends (core/uniqueness.py). Pure, like
fields.py: a bad modifier raises :class:`~petrock.errors.InvalidName` naming the field and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation

from petrock.errors import InvalidName

RULES = ("min", "max", "default", "label")
VALUE_BOUNDED = ("int", "float", "decimal", "date")
LENGTH_BOUNDED = ("str", "text")
# Types a unique value makes sense for, each with an indexed column to look it up by (long text has none).
UNIQUE_TYPES = ("str", "email", "url", "int", "float", "decimal", "date", "datetime")
# The generated tests give each item after a test's first other values for its unique fields: this many.
OTHER_VALUES = 8
MODIFIERS = "modifiers are `optional`, `unique`, `min=N`, `max=N`, `default=VALUE` and `label=TEXT`"
# A label is shown as is in pages and forms: words, digits and a little punctuation, nothing HTML reads.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.,()/'-]{0,59}\Z")
# The longest value the generated Line and Text types hold, the digits an Amount holds, an int column's range.
LONGEST = {"str": 200, "text": 100_000}
DECIMAL_DIGITS = 30
INT_RANGE = (-(2**63), 2**63 - 1)
# How messages name a type's values: "not an integer", not "not a int".
VALUES = {"int": "an integer", "float": "a number", "decimal": "a decimal number", "date": "a date"}
# Words that read as capitals in a label made from a field name (isbn -> ISBN, api_key -> API key).
ACRONYMS = frozenset(
    {"id", "isbn", "url", "uri", "api", "sku", "vat", "iban", "bic", "ean", "upc", "ip", "html", "pdf"}
)


@dataclass(frozen=True)
class FieldRules:
    """A field's rules, as the text the spec gave (``""``: no such rule)."""

    minimum: str = ""
    maximum: str = ""
    default: str = ""
    label: str = ""
    unique: bool = False

    @property
    def modifiers(self) -> list[str]:
        """The spec's modifiers that make these rules again, in a fixed order."""
        pairs = (("min", self.minimum), ("max", self.maximum), ("default", self.default), ("label", self.label))
        return ["unique"] * self.unique + [f"{name}={value}" for name, value in pairs if value]


NO_RULES = FieldRules()


def parse_rule(rules: FieldRules, modifier: str, *, kind: str, text: str, choices: tuple[str, ...]) -> FieldRules:
    """``rules`` with one more ``NAME=VALUE`` modifier; InvalidName if it does not fit the field."""
    name, _, value = modifier.partition("=")
    if name not in RULES:
        raise unknown_modifier(modifier, text)
    if not value:
        raise InvalidName(f"field {text!r} has an empty {name}=", f"give it a value, as `{name}=...`")
    if getattr(rules, _ATTRIBUTES[name]):
        raise InvalidName(f"field {text!r} gives {name}= twice", "give each rule once")
    if name == "label":
        if not LABEL.match(value):
            raise InvalidName(
                f"field {text!r} has a label petrock cannot use", "use letters, digits, spaces and `_ . , ( ) / ' -`"
            )
    elif name == "default":
        _check_default(value, kind, text, choices)
    else:
        _check_bound(name, value, kind, text)
    updated = replace(rules, **{_ATTRIBUTES[name]: value})
    _check_consistent(updated, kind, text)
    return updated


_ATTRIBUTES = {"min": "minimum", "max": "maximum", "default": "default", "label": "label"}


def unknown_modifier(modifier: str, text: str) -> InvalidName:
    """The refusal of a modifier petrock does not know, with the one it was likely meant to be."""
    import difflib  # only for a mistake

    name = modifier.partition("=")[0]
    close = difflib.get_close_matches(name, [*RULES, "unique", "optional"], n=1)
    hint = f"did you mean `{close[0]}{'=' if close[0] in RULES else ''}`?" if close else MODIFIERS
    return InvalidName(f"field {text!r} has an unknown modifier {modifier!r}", hint)


def parse_unique(rules: FieldRules, *, kind: str, text: str) -> FieldRules:
    """``rules`` with ``unique``; InvalidName if the field's type cannot be unique or it is given twice."""
    if rules.unique:
        raise InvalidName(f"field {text!r} gives unique twice", "give each rule once")
    if kind not in UNIQUE_TYPES:
        fix = "unique is for str, email, url, int, float, decimal, date and datetime fields"
        raise InvalidName(f"field {text!r}: a {kind} field cannot be unique", fix)
    updated = replace(rules, unique=True)
    _check_consistent(updated, kind, text)
    return updated


def _check_bound(name: str, value: str, kind: str, text: str) -> None:
    if kind in LENGTH_BOUNDED:
        if not value.isdigit():
            fix = f"a {kind} is bounded by its length: `{name}=3`"
            raise InvalidName(f"field {text!r} has {name}={value}, not a length", fix)
        if name == "max" and int(value) < 1:
            raise InvalidName(f"field {text!r} has max={value}", "a length bound is at least 1")
        if int(value) > LONGEST[kind]:
            longer = "; use `text` for longer" if kind == "str" else ""
            raise InvalidName(
                f"field {text!r} has {name}={value}", f"a {kind} holds at most {LONGEST[kind]} characters{longer}"
            )
        return
    if kind not in VALUE_BOUNDED:
        fix = "min= and max= bound int, float, decimal, date, str and text"
        raise InvalidName(f"field {text!r}: {_article(kind)} field takes no {name}=", fix)
    if typed(kind, value) is None:
        example = "2025-01-31" if kind == "date" else ("10" if kind == "int" else "9.99")
        raise InvalidName(f"field {text!r} has {name}={value}, not {VALUES[kind]}", f"write it as `{name}={example}`")
    if not _holdable(kind, value):
        raise InvalidName(f"field {text!r} has {name}={value}, beyond what {_article(kind)} field holds", _HOLDS[kind])


_HOLDS = {
    "int": "an int is a 64-bit whole number",
    "float": "a float is at most about 1.8e308",
    "decimal": f"a decimal holds at most {DECIMAL_DIGITS} digits",
}


def _holdable(kind: str, value: str) -> bool:
    """Can some value of ``kind`` be as large as the bound ``value`` (else no value meets a ``min=``)?"""
    number = typed(kind, value)
    if kind == "int":
        return INT_RANGE[0] <= number <= INT_RANGE[1]  # type: ignore[operator]
    if kind == "float":
        return abs(float(value)) != float("inf")
    if kind == "decimal":  # the Amount type's max_digits counts the digits on both sides of the point
        return _digits(number) <= DECIMAL_DIGITS  # type: ignore[arg-type]
    return True


def _digits(number: Decimal) -> int:
    """The digits a decimal has, trailing zeros after the point left out (normalize() would round to 28)."""
    _, digits, exponent = number.as_tuple()
    places = -int(exponent) if int(exponent) < 0 else 0
    kept = list(digits)
    while places and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        places -= 1
    return len(kept) + max(int(exponent), 0)


def _article(kind: str) -> str:
    return f"an {kind}" if kind in ("int", "email") else f"a {kind}"


def _check_default(value: str, kind: str, text: str, choices: tuple[str, ...]) -> None:
    if kind in ("ref", "datetime"):
        fix = "leave it out, or make the field optional"
        raise InvalidName(f"field {text!r}: {_article(kind)} field takes no default=", fix)
    if kind == "choice" and value not in choices:
        fix = f"use one of {', '.join(choices)}"
        raise InvalidName(f"field {text!r} has default={value}, not one of its choices", fix)
    if kind == "bool" and value not in ("true", "false"):
        fix = "a bool's default is `default=true` or `default=false`"
        raise InvalidName(f"field {text!r} has default={value}", fix)
    if kind in VALUE_BOUNDED and typed(kind, value) is None:
        raise InvalidName(f"field {text!r} has default={value}, not {VALUES[kind]}", f"give {VALUES[kind]}")
    if kind in VALUE_BOUNDED and not _holdable(kind, value):
        raise InvalidName(f"field {text!r} has default={value}, beyond what {_article(kind)} field holds", _HOLDS[kind])
    if kind in LENGTH_BOUNDED and len(value) > LONGEST[kind]:
        raise InvalidName(
            f"field {text!r} has a default longer than a {kind} holds", f"at most {LONGEST[kind]} characters"
        )


def _check_consistent(rules: FieldRules, kind: str, text: str) -> None:
    """min is not above max, the default keeps to both, and a unique field has room for different values."""
    low, high = (_measure(kind, rules.minimum), _measure(kind, rules.maximum))
    if low is not None and high is not None and low > high:
        raise InvalidName(f"field {text!r} has min= above max=", "swap them")
    if rules.unique and rules.default:
        raise InvalidName(f"field {text!r} is unique and has a default=", "every item would share it: drop one")
    if rules.unique and kind in ("float", "decimal") and low is not None and low == high:
        raise InvalidName(f"field {text!r} is unique, but min= and max= leave one value", "widen the range")
    if rules.unique and kind in ("int", "date") and low is not None and high is not None:
        room = (high - low).days if kind == "date" else high - low  # type: ignore[operator, union-attr]
        if room < OTHER_VALUES:
            fix = f"the generated tests make items with {OTHER_VALUES + 1} different values: widen the range"
            raise InvalidName(f"field {text!r} is unique, but min= and max= leave too few values", fix)
    if rules.default and kind in (*VALUE_BOUNDED, *LENGTH_BOUNDED):
        value = typed(kind, rules.default) if kind in VALUE_BOUNDED else len(rules.default)
        if (low is not None and value < low) or (high is not None and value > high):  # type: ignore[operator]
            raise InvalidName(f"field {text!r} has a default outside min= and max=", "choose a default within them")


def _measure(kind: str, value: str) -> object:
    if not value:
        return None
    return int(value) if kind in LENGTH_BOUNDED else typed(kind, value)


def typed(kind: str, value: str) -> int | Decimal | date | None:
    """``value`` read as a ``kind`` (floats as exact decimals), or None when it is not one."""
    try:
        if kind == "int":
            return int(value)
        if kind == "date":
            return date.fromisoformat(value)
        number = Decimal(value)
    except (ValueError, InvalidOperation):
        return None
    return number if number.is_finite() else None


def python_bound(kind: str, value: str) -> str:
    """A bound as Python source for ``Field(ge=...)``."""
    if kind == "date":
        day = date.fromisoformat(value)
        return f"date({day.year}, {day.month}, {day.day})"
    if kind == "decimal":  # a whole number as Decimal(5), as ruff prefers; a fraction as text, exactly
        return f"Decimal({int(value)})" if re.fullmatch(r"-?[0-9]+", value) else f'Decimal("{value}")'
    if kind == "float":
        return repr(float(value))
    return str(int(value))


def readable_label(name: str) -> str:
    """A label made from a field name: ``isbn`` -> ``ISBN``, ``vat_rate`` -> ``VAT rate``."""
    words = [word.upper() if word in ACRONYMS else word for word in name.split("_") if word]
    first = words[0] if words[0].isupper() else words[0].capitalize()
    return " ".join([first, *words[1:]])
