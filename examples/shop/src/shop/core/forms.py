"""Reading request bodies and HTML forms, and saying what is wrong with them in plain words."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from .headers import whole_number

MAX_BODY_BYTES = 1024 * 1024


class RequestTooLarge(Exception):
    """The request body is over the limit."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the body, refusing it as soon as it passes ``limit`` bytes."""
    declared = whole_number(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise RequestTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Decode an HTML form post (urlencoded) without extra dependencies."""
    body = await read_body(request, limit)
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as JSON: where, what, and the error kind (never the input)."""
    return [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in map(in_characters, exc.errors(include_url=False))
    ]


def form_errors(exc: ValidationError) -> dict[str, str]:
    """The first error of each field as a sentence for people, to show next to the form's input.

    Errors of the whole form (a model validator) are under ``"form"``. Raise
    ``pydantic_core.PydanticCustomError("kind", "Your own sentence.")`` in a validator
    to choose the words yourself.
    """
    errors: dict[str, str] = {}
    for error in map(in_characters, exc.errors(include_url=False)):
        field = ".".join(str(part) for part in error["loc"]) or "form"
        errors.setdefault(field, plain_message(error))
    return errors


def in_characters(error: ErrorDetails) -> ErrorDetails:
    """A text's length rule as the string error it is ("at least 10 characters"): pydantic checks a
    field's ``min_length``/``max_length`` after the Line and Text types' own validators, and then
    counts "items"."""
    kind = {"too_short": "string_too_short", "too_long": "string_too_long"}.get(error["type"])
    if kind is None or not isinstance(error.get("input"), str):
        return error
    bound = "min_length" if kind == "string_too_short" else "max_length"
    length = error.get("ctx", {}).get(bound)
    words = "at least" if kind == "string_too_short" else "at most"
    message = f"String should have {words} {length} character{'' if length == 1 else 's'}"
    return {**error, "type": kind, "msg": message, "ctx": {bound: length}}


# Error kinds (pydantic's ``type``) whose message needs no detail from the error.
MESSAGES = {
    "missing": "Please fill in this field.",
    "string_type": "Please fill in this field.",
    "int_parsing": "Enter a whole number.",
    "int_type": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "float_parsing": "Enter a number.",
    "float_type": "Enter a number.",
    "finite_number": "Enter a number.",
    "decimal_parsing": "Enter a number.",
    "decimal_type": "Enter a number.",
    "bool_parsing": "Choose yes or no.",
    "bool_type": "Choose yes or no.",
    "date_parsing": "Enter a valid date.",
    "date_type": "Enter a valid date.",
    "date_from_datetime_parsing": "Enter a valid date.",
    "datetime_parsing": "Enter a valid date and time.",
    "datetime_type": "Enter a valid date and time.",
    "datetime_from_date_parsing": "Enter a valid date and time.",
    "timezone_aware": "Enter a date and time with a time zone.",
    "url_parsing": "Enter a valid web address, starting with http:// or https://.",
    "url_scheme": "Enter a web address starting with http:// or https://.",
    "url_type": "Enter a valid web address, starting with http:// or https://.",
    "uuid_parsing": "Enter a valid id.",
    "enum": "Choose one of the options.",
    "literal_error": "Choose one of the options.",
}


def plain_message(error: ErrorDetails) -> str:
    """One pydantic error as a short sentence for people."""
    kind, context = error["type"], error.get("ctx", {})
    if kind in MESSAGES:
        return MESSAGES[kind]
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        return "Please fill in this field." if minimum <= 1 else f"Use at least {minimum} characters."
    if kind == "string_too_long":
        return f"Use at most {context.get('max_length')} characters."
    if kind == "string_pattern_mismatch":
        return pattern_message(str(context.get("pattern", "")))
    bounds = {
        "greater_than": "Enter a number greater than {gt}.",
        "greater_than_equal": "Enter a number of at least {ge}.",
        "less_than": "Enter a number less than {lt}.",
        "less_than_equal": "Enter a number of at most {le}.",
        "decimal_max_places": "Use at most {decimal_places} digits after the decimal point.",
        "decimal_max_digits": "Use at most {max_digits} digits.",
        "decimal_whole_digits": "Use at most {whole_digits} digits before the decimal point.",
    }
    if kind in bounds:  # a float bound that is whole reads as one: "at most 5", not "at most 5.0"
        whole = {key: int(v) if isinstance(v, float) and v.is_integer() else v for key, v in context.items()}
        return bounds[kind].format(**whole)
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else f"{message}."


def pattern_message(pattern: str) -> str:
    """What to tell people whose value does not match ``pattern`` (the generated url and email fields' own)."""
    if pattern.startswith("^https?://"):
        return "Enter a web address starting with http:// or https://, with nothing before the host name."
    if "@" in pattern:
        return "Enter a valid email address."
    return "Use the expected format."
