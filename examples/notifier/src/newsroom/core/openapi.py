"""``GET /openapi.json`` and ``GET /docs``: the API as registered when the app runs, and a page to try it.

The description is OpenAPI 3.1, built from the registries (never written by hand,
so it cannot drift): ``POST /commands`` takes one schema per public command type,
told apart by ``type`` (the discriminator), with the command's pydantic schema as
``payload``; each query is a ``GET /queries/{feature}/{name}`` path with its
parameters. Client generators read it as they read FastAPI's.

``/docs`` is rendered on the server from the same description, with the app's own
stylesheet and one small script (static/docs.js) that sends a command or a query:
no CDN, so the Content-Security-Policy stays ``'self'``. Both sit behind the token
like the pages (a login, or a bearer token).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .pages import APP_NAME

if TYPE_CHECKING:
    from .app import App

OPENAPI_VERSION = "3.1.0"
REF_PREFIX = "#/components/schemas/"
JSON = "application/json"
# Every error answer is {"error": "..."}; a 400 for a payload adds the fields at fault.
ERRORS = {
    400: "The body or the parameters are not valid (`fields` says which, and why).",
    401: "A token is required: send `Authorization: Bearer <APP_API_TOKEN>`.",
    404: "No such command or query type, or the command names an item that does not exist.",
    409: "The command conflicts with the current state.",
    413: "The body is too large.",
    415: "The body is not `application/json`.",
    421: "The `Host` header names a host this app does not serve.",
    422: "A reference names an item of another feature that does not exist.",
    503: "The log cannot be written right now (nothing was appended); try again later.",
}
COMMAND_ERRORS = (400, 401, 404, 409, 413, 415, 421, 422, 503)
QUERY_ERRORS = (400, 401, 404, 421)
# Strings tried, in order, as the example of a string field with a pattern.
EXAMPLE_STRINGS = ("example", "someone@example.com", "https://example.com/", "example-1", "0")


def openapi_spec(app: App, *, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``app``'s HTTP API (``secured``: a bearer token is required)."""
    commands = [spec for spec in app.commands if spec.public]
    queries = list(app.queries)
    refs, schemas = _component_schemas([spec.model for spec in commands] + [spec.model for spec in queries])
    components: dict[str, Any] = {"schemas": {**schemas, **_core_schemas()}}
    envelopes: dict[str, str] = {}
    for spec in commands:
        name = component_name(spec.type)
        components["schemas"][name] = {
            "type": "object",
            "title": spec.type,
            "description": _doc(spec.model) or f"The command {spec.type}.",
            "required": ["type", "payload"],
            "properties": {
                "type": {"const": spec.type},
                "payload": {"$ref": refs[spec.model]},
            },
        }
        envelopes[spec.type] = REF_PREFIX + name
    paths: dict[str, Any] = {"/commands": {"post": _post_commands(envelopes, components), "get": _list("commands")}}
    paths["/queries"] = {"get": _list("queries")}
    for spec in queries:
        paths[f"/queries/{spec.type}"] = {"get": _query(spec.type, spec.model, refs[spec.model], components)}
    paths.update(_core_paths(metrics=app.metrics.enabled))
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": APP_NAME,
            "version": _version(),
            "description": (
                'Commands change state: `POST /commands` with `{"type": ..., "payload": {...}}`; '
                "every refusal is a 4xx and appends nothing. Queries read it: `GET /queries/{feature}/{name}`."
            ),
        },
        "paths": paths,
        "components": components,
    }
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "The value of APP_API_TOKEN."}
    }
    if secured:
        document["security"] = [{"bearer": []}]
    return document


def component_name(type: str) -> str:
    """The component a command's envelope is named by: ``posts/create`` -> ``posts.create``."""
    return re.sub(r"[^A-Za-z0-9._-]", ".", type)


def example(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Any:
    """A value that fits ``schema`` (its required fields only), for a page's or a client's first try."""
    if "$ref" in schema:
        return example(components["schemas"][schema["$ref"].removeprefix(REF_PREFIX)], components)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"] or schema[key]
            return example(options[0], components)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = schema.get("required", [])
        fields = schema.get("properties", {})
        return {name: example(field, components) for name, field in fields.items() if name in required}
    if kind == "array":
        return [example(schema.get("items", {}), components)] * schema.get("minItems", 0)
    if kind == "integer":
        low = max(int(schema.get("minimum", 0)), int(schema.get("exclusiveMinimum", -1)) + 1)
        return min(low, int(schema.get("maximum", low)))  # 0 unless the bounds rule it out
    if kind == "number":
        return min(float(schema.get("minimum", 0)), float(schema.get("maximum", "inf")))
    if kind == "boolean":
        return False
    if kind == "string":
        return _example_string(schema)
    return None


def describe(schema: Mapping[str, Any], components: Mapping[str, Any]) -> str:
    """A field's type in a few words, for people (``text, 1 to 200 characters``)."""
    if "$ref" in schema:
        return describe(components["schemas"][schema["$ref"].removeprefix(REF_PREFIX)], components)
    if "enum" in schema:
        return "one of " + ", ".join(str(value) for value in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"]
            return " or ".join(dict.fromkeys(describe(option, components) for option in options)) or "null"
    kind = schema.get("type")
    if kind == "string":
        named = {"date": "date (YYYY-MM-DD)", "date-time": "date and time (ISO 8601)", "email": "email", "uri": "URL"}
        text = named.get(schema.get("format", ""), "text")
        low, high = schema.get("minLength"), schema.get("maxLength")
        if high is not None:
            text += f", {low} to {high} characters" if low else f", up to {high} characters"
        return text
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{kind}, {low} to {high}"
        if low is not None or high is not None:
            return f"{kind} ≥ {low}" if low is not None else f"{kind} ≤ {high}"
        return kind
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        return "list of " + describe(schema.get("items", {}), components)
    if kind == "object":
        return "object"
    return "any JSON value"


class OpenAPIRoutes:
    """``/openapi.json`` and ``/docs``, with the description built once, on the first request."""

    def __init__(self, app: App, *, secured: bool) -> None:
        self.app = app
        self.secured = secured
        self._spec: dict[str, Any] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        if self._spec is None:  # features register before the first request; built then, kept after
            self._spec = openapi_spec(self.app, secured=self.secured)
        return self._spec

    def routes(self) -> list[BaseRoute]:
        return [Route("/openapi.json", self.openapi_json, name="openapi"), Route("/docs", self.docs, name="docs")]

    async def openapi_json(self, _: Request) -> Response:
        return JSONResponse(self.spec)

    async def docs(self, request: Request) -> Response:
        return self.app.pages.render(
            "core/docs.html",
            request=request,
            title="API",
            secured=self.secured,
            commands=list(_commands_for_people(self.spec)),
            queries=list(_queries_for_people(self.spec)),
        )


# --- building the description ---


def _component_schemas(models: list[type[BaseModel]]) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    """Every model's JSON schema under components, with the models they use; returns (model -> $ref, schemas)."""
    unique = list(dict.fromkeys(models))
    if not unique:
        return {}, {}
    keys, top = models_json_schema([(model, "validation") for model in unique], ref_template=REF_PREFIX + "{model}")
    refs = {model: keys[(model, "validation")]["$ref"] for model in unique}
    return refs, top.get("$defs", {})


def _core_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What was wrong, in one sentence."},
                "fields": {"type": "array", "items": {"$ref": REF_PREFIX + "FieldError"}},
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {"type": "array", "items": {"type": "string"}, "description": "Where: the field's path."},
                "msg": {"type": "string", "description": "What is wrong with it."},
                "type": {"type": "string", "description": "The kind of error (pydantic's error type)."},
            },
        },
        "AppendedMessage": {
            "type": "object",
            "required": ["id", "type", "timestamp", "data"],
            "properties": {
                "id": {"type": "integer", "description": "The message's position in the log."},
                "type": {"type": "string"},
                "timestamp": {"type": "string", "description": "When it was appended (UTC, ISO 8601)."},
                "data": {"type": "object", "description": "The payload as stored, defaults filled in."},
            },
        },
        "TypeDescription": {
            "type": "object",
            "required": ["type", "feature", "model", "schema"],
            "properties": {
                "type": {"type": "string"},
                "feature": {"type": "string"},
                "model": {"type": "string"},
                "schema": {"type": "object", "description": "The JSON schema of its payload or parameters."},
            },
        },
    }


def _errors(codes: tuple[int, ...]) -> dict[str, Any]:
    error = {"content": {JSON: {"schema": {"$ref": REF_PREFIX + "Error"}}}}
    return {str(code): {"description": ERRORS[code], **error} for code in codes}


def _post_commands(envelopes: Mapping[str, str], components: Mapping[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "oneOf": [{"$ref": ref} for ref in envelopes.values()],
        "discriminator": {"propertyName": "type", "mapping": dict(envelopes)},
    }
    if not envelopes:  # no feature yet: the shape every command will have
        schema = {
            "type": "object",
            "required": ["type", "payload"],
            "properties": {"type": {"type": "string"}, "payload": {"type": "object"}},
        }
    examples = {type: {"summary": type, "value": example({"$ref": ref}, components)} for type, ref in envelopes.items()}
    return {
        "operationId": "dispatch_command",
        "summary": "Send a command",
        "description": "Validated against its type's schema, applied to state and appended to the log, or refused.",
        "tags": ["commands"],
        "requestBody": {"required": True, "content": {JSON: {"schema": schema, "examples": examples}}},
        "responses": {
            "201": {
                "description": "Appended: the new message.",
                "content": {JSON: {"schema": {"$ref": REF_PREFIX + "AppendedMessage"}}},
            },
            **_errors(COMMAND_ERRORS),
        },
    }


def _list(kind: str) -> dict[str, Any]:
    return {
        "operationId": f"list_{kind}",
        "summary": f"The {kind} this app offers, with their schemas",
        "tags": [kind],
        "responses": {
            "200": {
                "description": f"Every registered {kind[:-1]} type.",
                "content": {JSON: {"schema": {"type": "array", "items": {"$ref": REF_PREFIX + "TypeDescription"}}}},
            },
            **_errors((401, 421)),
        },
    }


def _query(type: str, model: type[BaseModel], ref: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = components["schemas"][ref.removeprefix(REF_PREFIX)]
    required = set(schema.get("required", []))
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field,
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema.get("properties", {}).items()
    ]
    return {
        "operationId": "query_" + re.sub(r"[^A-Za-z0-9]", "_", type),
        "summary": _doc(model) or f"The query {type}.",
        "tags": ["queries"],
        "parameters": parameters,
        "responses": {
            "200": {"description": "The answer (JSON).", "content": {JSON: {"schema": {}}}},
            **_errors(QUERY_ERRORS),
        },
    }


def _core_paths(*, metrics: bool) -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    paths = {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Whether this process can do its job (200 ok or degraded, 503 not)",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {"description": "Healthy.", "content": {JSON: {"schema": {"type": "object"}}}},
                    "503": {"description": "The log is unreachable or a worker failed.", "content": {JSON: {}}},
                },
            }
        },
        "/events": {
            "get": {
                "operationId": "events",
                "summary": "Appended messages as server-sent events (`id` and `type`, never the payload)",
                "tags": ["operations"],
                "responses": {"200": {"description": "An event stream.", "content": {"text/event-stream": {}}}},
            }
        },
    }
    if metrics:  # not served with serve --no-metrics
        paths["/metrics"] = {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (the API token, or APP_METRICS_TOKEN)",
                "tags": ["operations"],
                "responses": {"200": {"description": "Prometheus' text format.", "content": text}, **_errors((401,))},
            }
        }
    return paths


def _doc(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring, its ``code`` in Markdown's backticks."""
    return (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").replace("``", "`")


def _version() -> str:
    try:
        return importlib.metadata.version(APP_NAME)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0.0.0+source"


def _example_string(schema: Mapping[str, Any]) -> str:
    formats = {"date": "2025-01-31", "date-time": "2025-01-31T12:00:00Z", "email": "someone@example.com"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
    pattern = schema.get("pattern")
    for candidate in EXAMPLE_STRINGS:
        if low <= len(candidate) <= high and (pattern is None or re.search(pattern, candidate)):
            return candidate
    return "x" * max(1, low)


# --- the same description, arranged for the /docs page ---


def _commands_for_people(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    components = spec["components"]
    post = spec["paths"]["/commands"]["post"]
    examples = post["requestBody"]["content"][JSON]["examples"]
    for type, ref in post["requestBody"]["content"][JSON]["schema"].get("discriminator", {}).get("mapping", {}).items():
        envelope = components["schemas"][ref.removeprefix(REF_PREFIX)]
        payload = components["schemas"][envelope["properties"]["payload"]["$ref"].removeprefix(REF_PREFIX)]
        yield {
            "type": type,
            "anchor": component_name(type),
            "description": envelope["description"],
            "fields": list(_fields(payload, components)),
            "example": json.dumps(examples[type]["value"], indent=2),
        }


def _queries_for_people(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    components = spec["components"]
    for path, item in spec["paths"].items():
        if not path.startswith("/queries/"):
            continue
        operation = item["get"]
        yield {
            "type": path.removeprefix("/queries/"),
            "path": path,
            "anchor": operation["operationId"],
            "description": operation["summary"],
            "parameters": [
                {
                    "name": parameter["name"],
                    "type": describe(parameter["schema"], components),
                    "required": parameter["required"],
                    "default": parameter["schema"].get("default"),
                    "description": parameter.get("description", ""),
                }
                for parameter in operation["parameters"]
            ],
        }


def _fields(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        yield {
            "name": name,
            "type": describe(field, components),
            "required": name in required,
            "default": field.get("default"),
            "description": field.get("description", ""),
        }
