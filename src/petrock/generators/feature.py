"""``petrock feature add``: render templates/feature into an app, register it, commit.

Everything is decided before anything is written: :func:`plan_feature` checks
the name and the app and returns a Plan; :func:`add_feature` applies it and
commits. Only the new files, ``features.py`` and ``.petrock.toml`` are read or
hashed, so the fiftieth feature costs what the first did.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from petrock import __version__, git
from petrock.errors import AlreadyExists, InvalidName, UserError
from petrock.field_changes import recorded_changes, steps
from petrock.fields import (
    DEFAULT_FIELDS,
    FieldSpec,
    app_fields,
    label_field,
    parse_fields,
    python_literal,
    python_tuple,
    recorded_titles,
    referenced_items,
    summarized_field,
    title_field,
)
from petrock.generators.new_project import record_commit
from petrock.inject import add_line
from petrock.names import FeatureNames, validate_feature_name
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest, find_root, require_clean
from petrock.render import render_folder
from petrock.templates import template_version, templates_dir

USERS = "users"  # the feature `petrock generate auth` makes; --owned needs it
# Paths the app's core (and `petrock generate auth`) already serves; a feature's pages at /NAME would be
# hidden behind them, or (/metrics) hide them from what reads them.
CORE_ROUTES = frozenset(
    {
        "commands", "queries", "healthz", "metrics", "docs", "events", "mcp", "static",
        "login", "logout", "register", "account", "dev",
    }
)  # fmt: skip
# Names the feature's modules import or define; the feature's class (posts -> Post) must not be one.
TEMPLATE_CLASS_NAMES = frozenset(
    {
        "Any", "Annotated", "App", "BaseModel", "Callable", "Command", "CommandRejected", "CommandWorker",
        "Column", "ConfigDict", "Content", "Context", "Field", "FakeSummaryAPI", "Id", "Iterator", "Literal",
        "Message", "MessageLog", "NotFound", "Parameters", "Path", "PlainTextResponse", "Projection",
        "RedirectResponse", "Reply", "Request", "Response", "Sort", "Store", "StringConstraints", "Summarizer",
        "SummaryConfig", "SummaryError", "SummaryRequest", "SummaryWorker", "TableSpec", "TestClient", "Title",
        "TypedDict", "ValidationError",
    }
)  # fmt: skip
# Local names in the templates; the variable for one item (posts -> post) must not be one.
TEMPLATE_LOCAL_NAMES = frozenset(
    {
        "action", "app", "batch", "call", "calls", "command", "ctx", "current", "dropped", "exc", "field", "form",
        "free", "ids", "listing", "message", "outcome", "page", "pending", "query", "request", "request_id", "row",
        "state", "summarizer", "summary", "superseded", "values", "waiting", "where",
    }
)  # fmt: skip


@dataclass(frozen=True)
class FeaturePlan:
    """A feature ready to be written: the plan, and the manifest as it will be after."""

    root: Path
    name: str
    plan: Plan
    manifest: Manifest
    use_git: bool


def render_feature(
    project_name: str, feature: str, features: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, str]:
    """Every file the feature template makes, by path from the app root (features.py not included).

    ``features`` is the manifest's ``[features]`` table: the fields and summary worker it
    records for ``feature`` (and for the features it refers to) decide the render, so
    ``upgrade`` and ``feature remove`` see exactly what ``feature add`` wrote. Without an
    entry the feature has the default fields.
    """
    entries = dict(features or {})
    entries.setdefault(feature, {})
    names = FeatureNames.of(feature)
    context = {
        "project_name": project_name,
        "feature": feature,
        **asdict(names),
        "item": _variable(names.item),
        "TABLE": feature.upper(),  # the store table's spec in state.py
        **field_context(feature, entries),
    }
    return render_folder(templates_dir() / "feature", context)


def feature_entry(
    fields: Sequence[FieldSpec], summarize: str, title: str | None = None, *, owned: bool = False
) -> dict[str, Any]:
    """What the manifest records about a feature's shape (``title`` only when ``--title`` chose it,
    ``owned`` only for ``--owned``)."""
    entry = {"fields": [field.spec for field in fields], "summarize": summarize}
    return entry | ({"title": title} if title else {}) | ({"owned": True} if owned else {})


def field_context(feature: str, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the templates need about the feature's fields, from the manifest entries."""
    every = app_fields(entries)
    fields = every[feature]
    known = {name: other for name, other in every.items() if name != feature}
    entry = entries[feature]
    summarize = _summarized(entry, fields)
    types = {field.type for field in fields}
    label = label_field(fields, recorded_titles(entries)[feature])
    return {
        "fields": fields,
        # the title field first: it is the item's link text in lists
        "columns": sorted(fields, key=lambda field: field.name != label),
        "defaults": {field.name: field.form_default for field in fields if field.form_default is not None},
        "summarize": summarize,
        "owned": bool(entry.get("owned")),  # items carry their owner; members see only theirs
        "label": label,
        "types": types,
        "datetime_imports": ", ".join(
            name for name, used in (("UTC", "datetime" in types), ("date", "date" in types)) if used
        ),
        "query_imports": ", ".join(sorted({"Id", *(f.choice_alias for f in fields if f.type == "choice")})),
        "summarize_optional": any(f.name == summarize and f.optional for f in fields),
        "refs": [field for field in fields if field.type == "ref"],
        "uniques": [field for field in fields if field.rules.unique],
        "filters": [field for field in fields if field.filterable],
        "referenced": [
            (name, payload, _summarized(entries[name], known[name]))
            for name, payload in referenced_items(fields, known)
        ],
        "escaped": _escape_probe(fields, label),
        "steps": steps(fields, recorded_changes(entry)),  # upcasters.py: one per field change
        "literal": python_literal,
        "tuple_of": python_tuple,
    }


def _variable(item: str) -> str:
    """The variable name for one item: ``post``, or ``type_item`` where ``type`` would shadow a name in use."""
    if keyword.iskeyword(item) or hasattr(builtins, item) or item in TEMPLATE_LOCAL_NAMES:
        return f"{item}_item"
    return item


def sample_items(entries: Mapping[str, Mapping[str, Any]], feature: str) -> dict[str, Any]:
    """How a component's tests create items of ``feature``: a valid payload (without its id), and
    the items of other features its ref fields need first. A feature petrock did not generate
    (no entry) is taken to have the default fields."""
    every = app_fields({**entries, feature: entries.get(feature, {})})
    fields = every[feature]
    known = {name: other for name, other in every.items() if name != feature}
    return {
        "default_fields": [field.spec for field in fields] == list(DEFAULT_FIELDS),
        "sample": {field.name: field.sample for field in fields},
        "referenced": dict(referenced_items(fields, known)),
        # a unique field's values, one per item a test creates (the sample's first)
        "unique": {field.name: (field.sample, *field.other_samples) for field in fields if field.rules.unique},
        "literal": python_literal,
        "tuple_of": python_tuple,
    }


def _summarized(entry: Mapping[str, Any], fields: Sequence[FieldSpec]) -> str:
    """The text field a recorded feature's summary worker summarizes ('' for none)."""
    return str(entry["summarize"]) if "summarize" in entry else summarized_field(fields, None)


def registration_lines(feature: str) -> tuple[str, str]:
    """The import and the call that register ``feature`` in features.py."""
    return f"from .{feature}.register import register as register_{feature}", f"register_{feature}(app)"


def register_in_features(text: str, feature: str, path: str = "features.py") -> str:
    """``features.py`` with ``feature`` registered; unchanged if it already is."""
    import_line, call_line = registration_lines(feature)
    text = add_line(text, "imports", import_line, path)
    return add_line(text, "registrations", call_line, path)


def plan_feature(
    name: str,
    field_specs: Sequence[str] = (),
    *,
    summarize: str | None = None,
    worker: bool = True,
    title: str | None = None,
    owned: bool = False,
    start: Path | None = None,
    force: bool = False,
    allow_dirty: bool = False,
) -> FeaturePlan:
    """Check everything and plan the feature's files; raises a UserError and writes nothing if it cannot."""
    root = find_root(start)
    manifest = Manifest.load(root)
    validate_feature_name(name, app=manifest.project_name)
    others = {feature: fields for feature, fields in app_fields(manifest.features).items() if feature != name}
    fields = parse_fields(field_specs, feature=name, features=others, titles=recorded_titles(manifest.features))
    shape = feature_entry(
        fields, summarized_field(fields, summarize, worker=worker), title_field(fields, title), owned=owned
    )
    if owned:
        require_users(manifest)
        require_new_or_owned(name, manifest.features)
    require_no_refs_to_owned(fields, manifest.features)
    if name in CORE_ROUTES:
        raise InvalidName(f"{name!r} would hide the app's own /{name} route", f"try `{name}_items` or another name")
    if (item_class := FeatureNames.of(name).Item) in TEMPLATE_CLASS_NAMES:
        raise InvalidName(
            f"{name!r} would name its class {item_class}, which the feature's code already uses",
            f"try `my_{name}` or another name",
        )
    package = f"src/{manifest.project_name}/{name}"
    if not force and (name in manifest.features or (root / package).exists()):
        raise AlreadyExists(
            f"feature {name!r} already exists ({package})", "choose another name, or pass --force to render it again"
        )
    use_git = git.is_repo(root)
    require_clean(root, allow_dirty=allow_dirty)

    manifest.features[name] = {**manifest.features.get(name, {}), "template_version": template_version(), **shape}
    files = render_feature(manifest.project_name, name, manifest.features)
    plan = Plan(root, pristine=manifest.files, force=force)
    for path, text in files.items():
        plan.write(path, text)
    features_path = f"src/{manifest.project_name}/features.py"
    features_text = (root / features_path).read_text(encoding="utf-8")
    plan.write(features_path, register_in_features(features_text, name, features_path), edit=True)

    manifest.files.update({path: git.blob_id(text) for path, text in files.items()})
    plan.write(MANIFEST, manifest.dumps(), edit=True)
    return FeaturePlan(root, name, plan, manifest, use_git)


def require_users(manifest: Manifest) -> None:
    """``--owned`` needs users to own the items: the users feature of ``petrock generate auth``."""
    if manifest.features.get(USERS, {}).get("generator") != "auth":
        raise UserError("--owned needs users to own the items", "run `petrock generate auth` first")


def require_new_or_owned(name: str, features: Mapping[str, Mapping[str, Any]]) -> None:
    """``--owned`` only for a new feature (or one already owned): an existing one has commands in the
    log that name no owner, which a rebuild could not read, and features may refer to it."""
    if name in features and not features[name].get("owned"):
        raise UserError(
            f"{name} already exists without owners: its logged commands name nobody", "add a new feature with --owned"
        )


def require_no_refs_to_owned(fields: Sequence[FieldSpec], features: Mapping[str, Mapping[str, Any]]) -> None:
    """A ref field may not point at an owned feature: checking it would tell one user about another's items."""
    for field in fields:
        if field.type == "ref" and features.get(field.ref, {}).get("owned"):
            raise UserError(
                f"{field.name} refers to {field.ref}, whose items are owned by their users",
                "refer to a feature that is not --owned",
            )


def add_feature(planned: FeaturePlan) -> str | None:
    """Write the planned feature and commit it; returns the commit id (None in an app without git)."""
    written = planned.plan.apply()
    if not planned.use_git:
        return None
    commit = git.commit(
        planned.root,
        f"Add feature {planned.name} with petrock {__version__}",
        [change.path for change in written] or [MANIFEST],
    )
    return record_commit(planned.root, planned.manifest, f"feature:{planned.name}", commit)


SCRIPT_TAG = "<script>alert(1)</script>"


def _escape_probe(fields: Sequence[FieldSpec], label: str) -> str:
    """The field the generated escaping test types a script tag into: the label, else a text field, if its
    length rules leave room for the tag (a ``max=5`` title cannot hold it); "" for none."""
    candidates = [f for f in fields if f.name == label] + [f for f in fields if f.type == "text"]
    return next((f.name for f in candidates if "<script>alert(1)" in f.fit(SCRIPT_TAG)), "")
