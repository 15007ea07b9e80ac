"""Names: which project, feature and component names are safe, and the names derived from them."""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from dataclasses import dataclass

from petrock.errors import InvalidName

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")
MAX_LENGTH = 50
# Where CamelCase starts a new word: PublishDraft -> Publish_Draft, HTTPServer -> HTTP_Server.
CASE_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Modules every generated app imports; a feature or app with one of these names would shadow it.
APP_DEPENDENCIES = frozenset(
    {
        "starlette", "uvicorn", "pydantic", "pydantic_core", "jinja2", "httpx", "httpcore", "typer",
        "click", "anyio", "sniffio", "h11", "markupsafe", "pytest", "annotated_types", "typing_extensions",
    }
)  # fmt: skip
# Names of the generated app's own modules.
APP_MODULES = frozenset({"core", "features", "cli", "main", "tests", "templates", "static"})
TOOL_NAMES = frozenset({"petrock", "copier", "app"})
# `petrock feature NAME` is short for `feature add NAME`, so a feature cannot be named like a subcommand.
FEATURE_SUBCOMMANDS = frozenset({"add", "list", "remove", "help", "ls", "rm"})


def suggest(name: str) -> str | None:
    """The nearest valid identifier to ``name`` (``My-Posts`` -> ``my_posts``, ``PublishDraft`` ->
    ``publish_draft``), if there is one."""
    words = CASE_BOUNDARY.sub("_", name.strip())
    candidate = re.sub(r"[^a-z0-9_]+", "_", words.lower()).strip("_")
    candidate = re.sub(r"_+", "_", candidate)
    if candidate and candidate[0].isdigit():
        candidate = candidate.lstrip("0123456789_")
    if not candidate or candidate == name or keyword.iskeyword(candidate):
        return None
    return candidate


def _shape_error(kind: str, name: str) -> InvalidName | None:
    if not name:
        return InvalidName(f"the {kind} name is empty", "give a name such as `posts`")
    if len(name) > MAX_LENGTH:
        return InvalidName(f"the {kind} name {name!r} is longer than {MAX_LENGTH} characters", "choose a shorter one")
    if not IDENTIFIER.match(name):
        hint = suggest(name)
        fix = (
            f"did you mean `{hint}`?"
            if hint
            else "use lowercase letters, digits and underscores, starting with a letter"
        )
        return InvalidName(f"{name!r} is not a valid {kind} name (a lowercase Python identifier)", fix)
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return InvalidName(f"{name!r} is a Python keyword and cannot be a {kind} name", f"try `my_{name}`")
    return None


def _clash(name: str) -> str | None:
    """Why ``name`` would shadow an importable module, or None. Uses find_spec: imports nothing."""
    if name in sys.stdlib_module_names:
        return "a standard-library module"
    if name in APP_DEPENDENCIES:
        return "a module the app depends on"
    if name in TOOL_NAMES:
        return "a name petrock reserves"
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    # A bare folder (namespace package), such as the app's own target directory, is not a module.
    found = spec is not None and spec.origin not in (None, "namespace")
    return "an installed module" if found else None


def validate_project_name(name: str) -> str:
    """Return ``name`` if it can be an app's name and package, else raise InvalidName."""
    if error := _shape_error("project", name):
        raise error
    if name in APP_MODULES:
        raise InvalidName(f"{name!r} is a folder inside every app (its tests would not import)", f"try `my_{name}`")
    if reason := _clash(name):
        raise InvalidName(f"{name!r} is {reason}; an app with that package name would shadow it", f"try `my_{name}`")
    return name


def validate_feature_name(name: str, *, app: str) -> str:
    """Return ``name`` if it can be a feature of ``app``, else raise InvalidName."""
    if error := _shape_error("feature", name):
        raise error
    if name in FEATURE_SUBCOMMANDS:
        raise InvalidName(f"{name!r} is a `petrock feature` subcommand, not a feature name", f"try `{name}_items`")
    if name in APP_MODULES or name == app:
        raise InvalidName(f"{name!r} is already a module of the app", f"try `{name}_items` or another name")
    if reason := _clash(name):
        raise InvalidName(f"{name!r} is {reason}; a feature with that name would shadow it", f"try `{name}_items`")
    return name


def component_identifier(name: str) -> str:
    """``publish-draft`` or ``publish_draft`` -> ``publish_draft``, validated."""
    identifier = name.replace("-", "_")
    if error := _shape_error("component", identifier):
        raise error
    return identifier


# --- inflection ---

_IRREGULAR = {"people": "person", "children": "child", "men": "man", "women": "woman", "mice": "mouse", "data": "datum"}
_UNCOUNTABLE = {"news", "series", "species", "status", "information", "equipment", "feedback", "media", "analytics"}


def singular(word: str) -> str:
    """English singular of a lowercase word, good enough for class names (``categories`` -> ``category``)."""
    if word in _UNCOUNTABLE or word.endswith(("ss", "us", "is")):
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    for ending in ("ches", "shes", "sses", "xes", "zes"):
        if word.endswith(ending):
            return word[:-2]
    if word.endswith("s") and len(word) > 1:
        return word[:-1]
    return word


def pascal(name: str) -> str:
    """``order_items`` -> ``OrderItems``."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def kebab(name: str) -> str:
    """``publish_draft`` -> ``publish-draft`` (message type verbs)."""
    return name.replace("_", "-")


def title(name: str) -> str:
    """``order_items`` -> ``Order items`` (headings in pages)."""
    return name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class FeatureNames:
    """Every name the feature template needs, derived once from the feature name."""

    name: str  # posts, order_items: package and message-type prefix
    item: str  # post, order_item: one of them, in variables
    Item: str  # Post, OrderItem: class-name stem
    Items: str  # Posts, OrderItems
    title: str  # Posts, Order items
    item_title: str  # Post, Order item
    kebab: str  # posts, order-items: URL paths
    a_item: str  # a post, an order item: in sentences

    @classmethod
    def of(cls, name: str) -> FeatureNames:
        parts = name.split("_")
        item = "_".join([*parts[:-1], singular(parts[-1])])
        if item == name:
            item = f"{name}_item"
        item_title = title(item)
        article = "an" if item_title[0].lower() in "aeiou" else "a"
        return cls(
            name,
            item,
            pascal(item),
            pascal(name),
            title(name),
            item_title,
            kebab(name),
            f"{article} {item_title.lower()}",
        )
