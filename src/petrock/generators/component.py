"""``petrock generate command|query|worker FEATURE/NAME``: one component, rendered and registered.

A component is a new module in the feature's folder (``src/APP/posts/publish_draft.py``)
exposing ``register(app, state)``, plus a test in the app. The feature's ``register.py``
gets two lines between its ``petrock:`` markers: the import and the call. Everything is
computed as one Plan first; :func:`apply_and_commit` writes it, or nothing, and commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petrock import git, inject
from petrock.errors import AlreadyExists, InvalidName, UserError
from petrock.generators.feature import sample_items
from petrock.generators.new_project import record_commit
from petrock.names import FeatureNames, component_identifier, kebab, pascal, suggest, title
from petrock.plan import Action, Plan
from petrock.project import MANIFEST, Manifest
from petrock.templates import templates_dir

KINDS = ("command", "query", "worker")

# Modules every feature already has: a component by one of these names would replace it.
FEATURE_MODULES = frozenset(
    {"__init__", "commands", "queries", "state", "routes", "register", "worker", "jobs", "templates", "tests"}
)
# Names the component templates import: a component class by one of these names would hide it.
IMPORTED_NAMES = frozenset(
    {
        "Any", "App", "BaseModel", "Callable", "CommandRejected", "CommandWorker", "ConfigDict", "Context",
        "Field", "Iterator", "Message", "MessageLog", "NotFound", "Path", "TestClient", "ValidationError",
    }
)  # fmt: skip
MESSAGE_TYPE = re.compile(r"[a-z][a-z0-9_]*/[a-z][a-z0-9-]*\Z")


@dataclass(frozen=True)
class Component:
    """Every name one component needs, derived once from the app, the feature and NAME."""

    kind: str
    app: str
    feature: str
    name: str  # publish_draft: module name
    watches: str = ""  # the message type a worker reacts to

    @property
    def type(self) -> str:
        """What the app registers: the message type ``posts/publish-draft``, or the worker's name
        ``posts-notify-subscribers`` (as the feature's own ``posts-summaries``)."""
        return f"{self.feature}{'-' if self.kind == 'worker' else '/'}{kebab(self.name)}"

    @property
    def module_path(self) -> str:
        return f"src/{self.app}/{self.feature}/{self.name}.py"

    @property
    def test_path(self) -> str:
        return f"tests/test_{self.feature}_{self.name}.py"

    @property
    def register_path(self) -> str:
        return f"src/{self.app}/{self.feature}/register.py"

    @property
    def import_line(self) -> str:
        return f"from .{self.name} import register as register_{self.name}"

    @property
    def call_line(self) -> str:
        return f"register_{self.name}(app, state)"

    def context(self) -> dict[str, Any]:
        """What the templates see."""
        return {
            "kind": self.kind,
            "project_name": self.app,
            "feature": FeatureNames.of(self.feature),
            "name": self.name,
            "type": self.type,
            "class_name": pascal(self.name),
            "title": title(self.name),
            "watches": self.watches,
        }


def parse_target(target: str) -> tuple[str, str]:
    """``posts/publish-draft`` -> (``posts``, ``publish_draft``), or a clear InvalidName."""
    feature, slash, name = target.strip().partition("/")
    if not slash:
        example = suggest(target) or target or "publish_draft"
        raise InvalidName(
            f"{target!r} does not say which feature it belongs to", f"write FEATURE/NAME, e.g. `posts/{example}`"
        )
    if not feature:
        raise InvalidName(f"{target!r} has no feature before the `/`", f"write FEATURE/NAME, e.g. `posts/{name}`")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidName(f"{name!r} is not a component name (no paths)", "write FEATURE/NAME with a single `/`")
    identifier = component_identifier(name)
    if identifier in FEATURE_MODULES:
        raise InvalidName(
            f"{identifier!r} is one of the modules every feature has", f"choose another name, e.g. `{identifier}_item`"
        )
    return feature, identifier


def known_features(root: Path, manifest: Manifest) -> list[str]:
    """Features recorded in the manifest or present as a folder with a register.py."""
    package = manifest.package_dir(root)
    on_disk = {path.parent.name for path in package.glob("*/register.py")}
    return sorted(on_disk | set(manifest.features))


def require_feature(root: Path, manifest: Manifest, feature: str) -> None:
    if (manifest.package_dir(root) / feature / "register.py").is_file():
        return
    features = known_features(root, manifest)
    listed = f"this app has {', '.join(features)}; " if features else "this app has no features yet; "
    raise UserError(f"there is no feature {feature!r}", f"{listed}add it with `petrock feature add {feature}`")


def plan_component(
    root: Path, manifest: Manifest, kind: str, target: str, *, force: bool = False, watches: str | None = None
) -> tuple[Plan, Manifest, Component]:
    """Validate and plan one component; nothing is written. Returns the plan and the manifest it writes."""
    if kind not in KINDS:
        raise UserError(f"unknown component kind {kind!r}", f"use one of {', '.join(KINDS)}")
    feature, name = parse_target(target)
    require_feature(root, manifest, feature)
    if watches is not None and not MESSAGE_TYPE.match(watches):
        raise InvalidName(f"{watches!r} is not a message type", "write FEATURE/VERB, e.g. `posts/create`")
    component = Component(kind, manifest.project_name, feature, name, watches or f"{feature}/create")
    class_name = pascal(name)
    if class_name in IMPORTED_NAMES | {f"{pascal(feature)}State"}:
        raise InvalidName(
            f"{name!r} would name its class {class_name}, which the component's code already uses",
            f"choose another name, e.g. `{name}_item`",
        )
    recorded = manifest.features.get(feature, {}).get("components", {})
    _refuse_clashes(root, component, recorded.get(name, {}).get("kind"), force=force)

    files = render(component, sample_items(manifest.features, feature))
    plan = Plan(root, pristine={**manifest.files, **component_files(manifest)}, force=force)
    for path, text in files.items():
        plan.write(path, text)
    if recorded.get(name, {}).get("kind") == kind and not force:
        _refuse_existing(component, plan, files)

    registration = (root / component.register_path).read_text()
    registered = inject.add_line(registration, "imports", component.import_line, component.register_path)
    registered = inject.add_line(registered, "components", component.call_line, component.register_path)
    plan.write(component.register_path, registered, edit=True)

    updated = copy_manifest(manifest)
    entry = updated.features.setdefault(feature, {})
    # Recorded apart from `files` (the template renders that upgrade merges), which never lists components.
    entry["components"] = {
        **entry.get("components", {}),
        name: {"kind": kind, "files": {path: git.blob_id(text) for path, text in files.items()}},
    }
    keep_pristine(updated, manifest, component.register_path, registration, registered)
    plan.write(MANIFEST, updated.dumps(), edit=True)
    return plan, updated, component


def _refuse_clashes(root: Path, component: Component, recorded_kind: str | None, *, force: bool) -> None:
    """A component by that name that petrock did not generate, or of another kind, is not replaced."""
    if recorded_kind is not None and recorded_kind != component.kind:
        raise AlreadyExists(
            f"{component.feature}/{component.name} is already a {recorded_kind}",
            "choose another name, or remove that one first",
        )
    if recorded_kind is None and not force:
        for path in (component.module_path, component.test_path):
            if (root / path).exists():
                raise AlreadyExists(f"{path} already exists", "choose another name, or pass --force to replace it")
        defined_in = _files_mentioning(root / Path(component.module_path).parent, f'"{component.type}"')
        if defined_in:
            where = defined_in[0].relative_to(root).as_posix()
            raise AlreadyExists(f"{component.type} is already defined in {where}", "choose another name")


def _refuse_existing(component: Component, plan: Plan, files: dict[str, str]) -> None:
    """Generating a component petrock already generated is a no-op when it would come out the same;
    anything else (an edit, another ``--on``) is a new component under a taken name."""
    if any(change.path in files and change.action != Action.IDENTICAL for change in plan):
        raise AlreadyExists(
            f"{component.kind} {component.type} already exists ({component.module_path})",
            "choose another name, or pass --force to render it again over your edits",
        )


def _files_mentioning(folder: Path, needle: str) -> list[Path]:
    return [path for path in sorted(folder.rglob("*.py")) if needle in path.read_text(errors="replace")]


def render(component: Component, samples: dict[str, Any]) -> dict[str, str]:
    """The component's module and test, path -> text; ``samples`` says how its tests create items."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(
        loader=FileSystemLoader(templates_dir() / "components"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Python source, not HTML
    )
    context = {**component.context(), **samples}
    return {
        component.module_path: environment.get_template(f"{component.kind}.py.jinja").render(context),
        component.test_path: environment.get_template(f"test_{component.kind}.py.jinja").render(context),
    }


def component_files(manifest: Manifest, feature: str | None = None) -> dict[str, str]:
    """Path -> blob id at generation of every component's files (of one feature, or all)."""
    features = [feature] if feature is not None else list(manifest.features)
    return {
        path: blob
        for name in features
        for component in manifest.features.get(name, {}).get("components", {}).values()
        for path, blob in component.get("files", {}).items()
    }


def keep_pristine(updated: Manifest, original: Manifest, path: str, old: str, new: str) -> None:
    """After petrock edits a file it generated, record the new blob if the old one was untouched,
    so the file still counts as unmodified by the user (``feature remove`` then removes it)."""
    if original.files.get(path) == git.blob_id(old):
        updated.files[path] = git.blob_id(new)


def copy_manifest(manifest: Manifest) -> Manifest:
    return Manifest(
        project_name=manifest.project_name,
        template_version=manifest.template_version,
        petrock_version=manifest.petrock_version,
        answers=dict(manifest.answers),
        commits=dict(manifest.commits),
        features={name: _deep_copy(entry) for name, entry in manifest.features.items()},
        files=dict(manifest.files),
    )


def _deep_copy(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, dict) else value for key, value in entry.items()}


def apply_and_commit(plan: Plan, manifest: Manifest, message: str, *, record_as: str | None = None) -> str | None:
    """Write the plan (all or nothing) and commit what it wrote; returns the commit id, if any.

    ``record_as`` names the generation in the manifest's ``commits`` (the base for upgrades).
    """
    written = plan.apply()
    if not written or not git.is_repo(plan.root):
        return None
    commit = git.commit(plan.root, message, [change.path for change in written])
    if record_as is not None:
        record_commit(plan.root, manifest, record_as, commit)
    return commit
