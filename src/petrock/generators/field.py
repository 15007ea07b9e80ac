"""``petrock feature field add|rename|remove|change``: change a feature's fields, and keep its old messages readable.

A change edits the feature's field list in ``.petrock.toml``, records itself in
the feature's ``changes`` (one upcaster step each: ``field_changes.py``) and
re-renders the app through the same 3-way merge as ``petrock upgrade``, so the
user's edits are kept. Before anything is written the result must pass the
gate ``petrock migrate`` uses, on a copy of the app: the files compile, no name
is left undefined, the app builds, and its tests pass. A custom type change
gets a stub whose test fails until the user writes the conversion; only that
test may fail, and the command says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from petrock.errors import ConflictError, InvalidName, UserError
from petrock.field_changes import FieldChange, default_value, recorded_changes
from petrock.fields import FieldSpec, app_fields, parse_field
from petrock.generators.migrate.verify import Problem, Verdict, verify
from petrock.generators.upgrade import Applied, Upgrade, apply_upgrade, plan_upgrade
from petrock.project import Manifest
from petrock.templates import template_version


class FieldChangeFailed(UserError):
    """The app as the change would leave it fails the gate; nothing was written."""

    exit_code = 3


@dataclass
class FieldChangePlan:
    """Everything a field change will do, computed (and proven, unless a dry run) before anything is written."""

    root: Path
    feature: str
    change: FieldChange
    upgrade: Upgrade
    stub: str = ""  # the upcaster the user must write (a custom type change), as path:function
    verdict: Verdict | None = None

    @property
    def version(self) -> int:
        """The version the feature's create and update messages are written at after the change."""
        return len(recorded_changes(self.upgrade.manifest.features[self.feature])) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "change": self.change.to_entry(),
            "messages": {f"{self.feature}/{verb}": self.version for verb in ("create", "update")},
            "files": [{"path": f.path, "status": f.status.value, "note": f.note} for f in self.upgrade.files],
            "stub": self.stub or None,
            "checks": self.verdict.checks if self.verdict else [],
        }


def plan_field_change(
    root: Path,
    feature: str,
    kind: str,
    arguments: tuple[str, ...],
    *,
    default: str | None = None,
    allow_dirty: bool = False,
) -> FieldChangePlan:
    """Check the change and plan the app's new files; raises a UserError and writes nothing if it cannot."""
    manifest = Manifest.load(root)
    entry = _feature_entry(manifest, feature)
    fields = list(app_fields(manifest.features)[feature])
    others = {name: specs for name, specs in app_fields(manifest.features).items() if name != feature}
    make: dict[str, Callable[..., tuple[list[FieldSpec], FieldChange, str]]] = {
        "add": _add,
        "rename": _rename,
        "remove": _remove,
        "change": _change,
    }
    summarize = str(entry.get("summarize", ""))
    new_fields, change, summarize = make[kind](feature, fields, others, summarize, *arguments, default=default)
    wanted = replace(manifest, features={name: dict(value) for name, value in manifest.features.items()})
    wanted.features[feature] = {
        **entry,
        "fields": [field.spec for field in new_fields],
        "summarize": summarize,
        "changes": [*entry.get("changes", []), change.to_entry()],
    }
    upgrade = plan_upgrade(root, allow_dirty=allow_dirty, wanted=wanted)
    if upgrade.conflicts:
        raise ConflictError(
            f"your edits to {', '.join(upgrade.conflicts)} overlap the lines this change rewrites",
            "make the change by hand there, or undo your edits first",
        )
    version = _version(wanted, feature)
    upgrade.message = f"Change the fields of {feature}: {change.describe()} (messages at version {version})"
    step = f"v{version - 1}_{change.kind}_{change.name}"
    stub = "" if change.safe else f"src/{manifest.project_name}/{feature}/upcasters.py ({step})"
    return FieldChangePlan(root, feature, change, upgrade, stub)


def prove(planned: FieldChangePlan, *, run_tests: bool = True) -> Verdict:
    """Run the gate on a copy of the app as the change leaves it (a stub's own test may fail: the user writes it)."""
    package = planned.upgrade.manifest.project_name
    verdict = verify(planned.root, planned.upgrade.plan, package, run_tests=run_tests)
    if planned.stub:
        expected = f"tests/test_{planned.feature}_upcasters.py"
        verdict.problems = [problem for problem in verdict.problems if not problem.where.startswith(expected)]
    planned.verdict = verdict
    return verdict


def apply_field_change(planned: FieldChangePlan) -> Applied:
    """Write and commit the change (after :func:`prove` passed)."""
    if planned.verdict is not None and not planned.verdict.ok:
        raise _failed(planned.verdict.problems)
    return apply_upgrade(planned.upgrade)


def _failed(problems: list[Problem]) -> FieldChangeFailed:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return FieldChangeFailed(
        f"the app would break: {problems[0]}{more}; nothing was written",
        "run with --dry-run to see the change, fix the app first, or make the change by hand",
    )


def _version(manifest: Manifest, feature: str) -> int:
    return len(recorded_changes(manifest.features[feature])) + 1


def _feature_entry(manifest: Manifest, feature: str) -> dict[str, Any]:
    if feature not in manifest.features:
        known = ", ".join(sorted(manifest.features)) or "none"
        raise UserError(f"no feature {feature!r} in this app (features: {known})", "check `petrock feature list`")
    entry = manifest.features[feature]
    installed = template_version()
    if "fields" not in entry and "template_version" not in entry:
        raise UserError(f"petrock did not generate {feature!r}", "change its fields by hand")
    versions = {manifest.template_version, str(entry.get("template_version", installed))}
    if versions != {installed}:
        raise UserError(
            f"the app uses templates {' and '.join(sorted(versions - {installed}))}, not the installed {installed}",
            "run `petrock upgrade` first, so that this change brings in nothing else",
        )
    return entry


def _field(fields: list[FieldSpec], name: str, feature: str) -> FieldSpec:
    for field in fields:
        if field.name == name:
            return field
    known = ", ".join(field.name for field in fields)
    raise InvalidName(f"{feature} has no field {name!r}", f"its fields: {known}")


def _refuse_taken(fields: list[FieldSpec], name: str, feature: str) -> None:
    if any(field.name == name for field in fields):
        raise InvalidName(f"{feature} already has a field {name!r}", "choose another name")


def _add(
    feature: str,
    fields: list[FieldSpec],
    others: dict[str, tuple[FieldSpec, ...]],
    summarize: str,
    spec: str,
    *,
    default: str | None,
) -> tuple[list[FieldSpec], FieldChange, str]:
    field = parse_field(spec, feature=feature, features=others)
    _refuse_taken(fields, field.name, feature)
    if default is None and field.required:
        raise InvalidName(
            f"field {field.name} is required, and the {feature} already in the log have no value for it",
            f"give them one with --default VALUE, or add it as `{field.spec}:optional`",
        )
    if default is not None:
        default_value(field, default)
        if field.rules.unique:
            raise InvalidName(
                f"field {field.name} is unique: the {feature} already in the log cannot all share --default {default}",
                f"add it as `{replace(field, optional=True).spec}` and give each its own value",
            )
    return [*fields, field], FieldChange("add", field.spec, default=default), summarize


def _rename(
    feature: str,
    fields: list[FieldSpec],
    others: dict[str, tuple[FieldSpec, ...]],
    summarize: str,
    old: str,
    new: str,
    *,
    default: str | None,
) -> tuple[list[FieldSpec], FieldChange, str]:
    _refuse_default(default, "rename")
    field = _field(fields, old, feature)
    renamed = parse_field(new + field.spec[len(field.name) :], feature=feature, features=others)
    _refuse_taken(fields, renamed.name, feature)
    if field.type == "ref":
        renamed = replace(renamed, ref_label=field.ref_label)
    new_fields = [renamed if f.name == old else f for f in fields]
    return new_fields, FieldChange("rename", old, to=new), new if summarize == old else summarize


def _remove(
    feature: str,
    fields: list[FieldSpec],
    others: dict[str, tuple[FieldSpec, ...]],
    summarize: str,
    name: str,
    *,
    default: str | None,
) -> tuple[list[FieldSpec], FieldChange, str]:
    _refuse_default(default, "remove")
    field = _field(fields, name, feature)
    if len(fields) == 1:
        raise InvalidName(f"{name} is the only field of {feature}", "add the field that replaces it first")
    if summarize == name:
        raise InvalidName(
            f"the summary worker of {feature} summarizes {name}",
            "rename it instead, or change which field is summarized first",
        )
    return [f for f in fields if f.name != name], FieldChange("remove", field.spec), summarize


def _change(
    feature: str,
    fields: list[FieldSpec],
    others: dict[str, tuple[FieldSpec, ...]],
    summarize: str,
    spec: str,
    *,
    default: str | None,
) -> tuple[list[FieldSpec], FieldChange, str]:
    _refuse_default(default, "change")
    changed = parse_field(spec, feature=feature, features=others)
    field = _field(fields, changed.name, feature)
    if changed.spec == field.spec:
        raise InvalidName(f"{field.name} is already {field.spec.split(':', 1)[1]}", "give the new type")
    if summarize == field.name and changed.type != "text":
        raise InvalidName(
            f"the summary worker of {feature} summarizes {field.name}, which must stay text",
            "change which field is summarized first",
        )
    new_fields = [changed if f.name == field.name else f for f in fields]
    return new_fields, FieldChange("change", field.spec, to=changed.spec), summarize


def _refuse_default(default: str | None, kind: str) -> None:
    if default is not None:
        raise InvalidName(f"--default is for `field add`, not `field {kind}`", "leave it out")
