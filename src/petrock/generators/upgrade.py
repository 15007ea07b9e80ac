"""``petrock upgrade`` and ``petrock check``: bring template changes into an app that has been edited.

Each generated file is merged three ways: base = the file as petrock generated
it (its blob id is in ``.petrock.toml``), ours = the file now, theirs = the same
file rendered by the installed templates. A file whose render did not change
since generation needs no base at all, so nothing already settled is merged again.

The pure renders are committed as a parentless commit that the upgrade merges
in, so later upgrades (and clones) find their bases in the branch's history.
Conflicts leave a git merge in progress with that commit as ``MERGE_HEAD``:
``git commit`` (or ``petrock upgrade --continue``) records it too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from petrock import git
from petrock.changelog import ChangesSince, changes_since, version_key
from petrock.errors import DirtyTree, GitError, UserError
from petrock.generators.fingerprint import Drift, drift, missing_bases, render_app, renders_alike
from petrock.merge import carry_marker_blocks, files_with_conflict_markers, merge_text, sort_import_blocks
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest, require_clean
from petrock.templates import template_version

STATE_FILE = "petrock-upgrade.json"  # in .git/: the paths and commit of an upgrade stopped by conflicts


class Status(StrEnum):
    """What upgrade does with one file."""

    CREATE = "create"  # new in the templates
    UPDATE = "update"  # you had not changed it: replaced by the new render
    MERGE = "merge"  # you and the templates changed it: merged cleanly
    CONFLICT = "conflict"  # overlapping changes: written with conflict markers
    TIDY = "tidy"  # the templates did not change it; petrock's import block is sorted again
    IDENTICAL = "identical"  # nothing to bring in
    SKIP = "skip"  # you deleted it: stays deleted
    REMOVE = "remove"  # gone from the templates and unchanged by you: deleted
    KEEP = "keep"  # gone from the templates but changed by you: kept as yours

    @property
    def writes(self) -> bool:
        return self in (Status.CREATE, Status.UPDATE, Status.MERGE, Status.CONFLICT, Status.TIDY, Status.REMOVE)


@dataclass(frozen=True)
class FileUpgrade:
    path: str
    status: Status
    note: str = ""


@dataclass
class Upgrade:
    """Everything an upgrade will do, computed before anything is written."""

    root: Path
    scope: str  # "project" or "feature:NAME"
    from_version: str
    to_version: str
    files: list[FileUpgrade]
    plan: Plan
    manifest: Manifest  # as it will be after the upgrade
    generated: dict[str, str]  # path -> blob id recorded before the upgrade (the merge bases)
    renders: dict[str, str] = field(default_factory=dict)  # the pure new renders (the next bases)
    up_to_date: bool = False  # nothing to write: no file and no recorded fingerprint changes
    dirty_overlap: list[str] = field(default_factory=list)  # files it would write that hold uncommitted edits
    message: str = ""  # the commit's message (default: "Upgrade APP to petrock templates VERSION")

    @property
    def conflicts(self) -> list[str]:
        return [f.path for f in self.files if f.status == Status.CONFLICT]

    def changes(self) -> ChangesSince | None:
        """The changelog's versions this upgrade brings in (None when it brings nothing)."""
        return None if self.up_to_date else changes_since(self.from_version, self.to_version)

    def to_json(self) -> dict[str, Any]:
        changes = self.changes()
        return {
            "scope": self.scope,
            "from": self.from_version,
            "to": self.to_version,
            "up_to_date": self.up_to_date,
            "files": [{"path": f.path, "status": f.status.value, "note": f.note} for f in self.files],
            "conflicts": self.conflicts,
            "changelog": changes.to_json() if changes else None,
        }


@dataclass(frozen=True)
class Applied:
    commit: str | None  # None when conflicts stopped the commit, or there was nothing to do
    conflicts: list[str]  # every file in the tree with conflict markers


def plan_upgrade(
    root: Path, *, feature: str | None = None, allow_dirty: bool = False, wanted: Manifest | None = None
) -> Upgrade:
    """Render with the installed templates and merge every generated file; nothing is written.

    ``wanted`` is the manifest to render instead of the recorded one (a feature's fields
    changed: ``petrock feature field``); the recorded one still gives the merge bases.
    """
    manifest = Manifest.load(root)
    if not git.is_repo(root):
        raise GitError(f"{root} is not a git repository", "upgrade merges from the app's history; run `git init` first")
    _refuse_while_merging(root)
    require_clean(root, allow_dirty=allow_dirty)
    installed = template_version()
    if feature is not None and feature not in manifest.features:
        known = ", ".join(sorted(manifest.features)) or "none"
        raise UserError(f"no feature {feature!r} in this app (features: {known})", "check `petrock feature list`")
    from_version = manifest.template_version
    if feature is not None:
        from_version = manifest.features[feature].get("template_version") or from_version
    if version_key(installed) < version_key(from_version):
        raise UserError(
            f"the app uses templates {from_version}, newer than the installed {installed}",
            "install a petrock at least that new; upgrade never downgrades",
        )
    renders = render_app(wanted or manifest, feature)
    upgraded = replace(
        wanted or manifest,
        files=dict(manifest.files),
        features={name: dict(entry) for name, entry in (wanted or manifest).features.items()},
        commits=dict(manifest.commits),
    )
    plan = Plan(root, pristine=manifest.files)
    labels = ("yours", f"generated (templates {from_version})", f"templates {installed}")
    files = [
        _merge_one(root, path, text, manifest, upgraded, plan, labels) for path, text in sorted(renders.files.items())
    ]
    for path in sorted(renders.owned - renders.files.keys()):
        files.append(_drop_one(root, path, manifest, upgraded, plan))
    for name in [feature] if feature else list(upgraded.features):
        upgraded.features[name]["template_version"] = installed
    if feature is None:
        upgraded.template_version = installed
    scope = f"feature:{feature}" if feature else "project"
    # Nothing to write and every fingerprint as recorded: a new version number alone changes nothing.
    up_to_date = not plan.writes and upgraded.files == manifest.files
    written = {change.path for change in plan.writes} | {MANIFEST}
    dirty = set(git.dirty_files(root)) if allow_dirty and not up_to_date else set()
    overlap = sorted(dirty & written)
    return Upgrade(
        root, scope, from_version, installed, files, plan, upgraded, manifest.files, renders.files, up_to_date, overlap
    )


def _refuse_while_merging(root: Path) -> None:
    if git.git_path(root, "MERGE_HEAD").is_file():
        ours = _stopped_upgrade(root) is not None
        raise UserError(
            "an upgrade is waiting for its conflicts to be resolved" if ours else "a git merge is in progress",
            "resolve the markers, then `petrock upgrade --continue` (or `petrock upgrade --abort`)"
            if ours
            else "finish it (`git commit`) or `git merge --abort` first",
        )


def _merge_one(
    root: Path,
    path: str,
    render: str,
    manifest: Manifest,
    upgraded: Manifest,
    plan: Plan,
    labels: tuple[str, str, str],
) -> FileUpgrade:
    recorded = manifest.files.get(path)
    upgraded.files[path] = git.blob_id(render)
    target = root / path
    if not target.is_file():
        if recorded is not None:
            return FileUpgrade(path, Status.SKIP, "you deleted it; it stays deleted")
        plan.write(path, render)
        return FileUpgrade(path, Status.CREATE, "new in the templates")
    on_disk = target.read_text()
    ours = sort_import_blocks(on_disk)
    theirs = carry_marker_blocks(ours, render)

    def unchanged() -> FileUpgrade:
        if ours == on_disk:
            return FileUpgrade(path, Status.IDENTICAL)
        plan.write(path, ours, edit=True)
        return FileUpgrade(path, Status.TIDY, "sorted the imports between petrock's markers")

    # Same render as at generation (up to petrock's own marker lines): nothing to bring in, and the
    # recorded fingerprint stays, since it may include lines `generate` added while the file was pristine.
    if renders_alike(root, recorded, render):
        upgraded.files[path] = recorded
        return unchanged()
    if ours == theirs:
        return unchanged()
    if recorded is not None and git.blob_id(on_disk) == recorded:
        plan.write(path, theirs, edit=True)
        return FileUpgrade(path, Status.UPDATE)
    generated = git.read_blob(root, recorded) if recorded else None
    base = carry_marker_blocks(ours, generated) if generated is not None else None
    if base == theirs:
        return unchanged()
    if ours == base:
        plan.write(path, theirs, edit=True)
        return FileUpgrade(path, Status.UPDATE)
    merged, clean = merge_text(ours, base or "", theirs, labels)
    plan.write(path, merged, edit=True)
    if clean:
        return FileUpgrade(path, Status.MERGE, "your changes kept")
    if base is not None:
        why = "overlapping changes"
    elif recorded is not None:
        why = f"the file petrock generated (blob {recorded[:10]}) is not in this repository, so all of it is compared"
    else:
        why = "petrock has no record of generating it"
    return FileUpgrade(path, Status.CONFLICT, f"{why}; resolve the markers")


def _drop_one(root: Path, path: str, manifest: Manifest, upgraded: Manifest, plan: Plan) -> FileUpgrade:
    """A file petrock generated that the new templates no longer have."""
    upgraded.files.pop(path, None)
    target = root / path
    if not target.is_file():
        return FileUpgrade(path, Status.SKIP, "gone from the templates and from the app")
    if git.blob_id(target.read_text()) == manifest.files.get(path):
        plan.delete(path)
        return FileUpgrade(path, Status.REMOVE, "gone from the templates")
    return FileUpgrade(path, Status.KEEP, "gone from the templates; you changed it, so it is yours now")


def apply_upgrade(upgrade: Upgrade) -> Applied:
    """Write the merges; commit them unless any file in the tree holds conflict markers.

    Only the files petrock writes go into its commit: with ``--allow-dirty`` the
    user's other uncommitted (even staged) changes stay as they were, and a file
    petrock would write that holds uncommitted edits stops the upgrade first.
    """
    if upgrade.up_to_date:
        return Applied(None, [])
    if upgrade.dirty_overlap:
        raise DirtyTree(
            f"the upgrade would change files with uncommitted edits ({', '.join(upgrade.dirty_overlap)})",
            "commit or stash those files first; the others may stay as they are",
        )
    root = upgrade.root
    render_commit = _store_renders(root, upgrade.renders, f"petrock templates {upgrade.to_version} ({upgrade.scope})")
    upgrade.manifest.commits[upgrade.scope] = render_commit
    upgrade.plan.write(MANIFEST, upgrade.manifest.dumps(), edit=True)
    paths = [change.path for change in upgrade.plan.writes]
    upgrade.plan.apply()
    what = upgrade.manifest.project_name if upgrade.scope == "project" else upgrade.scope.replace(":", " ")
    message = upgrade.message or f"Upgrade {what} to petrock templates {upgrade.to_version}"
    conflicts = files_with_conflict_markers(root)
    if conflicts:
        _stop_for_conflicts(upgrade, render_commit, message, paths)
        return Applied(None, conflicts)
    return Applied(_commit_paths(root, message, paths, render_commit), [])


def _store_renders(root: Path, renders: dict[str, str], message: str) -> str:
    """Write the pure renders as a parentless commit; returns its id."""
    blobs = {path: _write_blob(root, text) for path, text in renders.items()}
    tree = _make_tree(root, [(path.split("/"), blob) for path, blob in blobs.items()])
    return git.run(root, *git.identity(root), "commit-tree", tree, "-m", message).stdout.decode().strip()


def _write_blob(root: Path, text: str) -> str:
    return git.run(root, "hash-object", "-w", "--stdin", input=text.encode()).stdout.decode().strip()


def _make_tree(root: Path, entries: Iterable[tuple[list[str], str]]) -> str:
    """A git tree from (path parts, blob id) pairs, built bottom-up with ``git mktree``."""
    files: dict[str, str] = {}
    folders: dict[str, list[tuple[list[str], str]]] = {}
    for parts, blob in entries:
        if len(parts) == 1:
            files[parts[0]] = blob
        else:
            folders.setdefault(parts[0], []).append((parts[1:], blob))
    lines = [f"100644 blob {blob}\t{name}" for name, blob in files.items()]
    lines += [f"040000 tree {_make_tree(root, children)}\t{name}" for name, children in folders.items()]
    return git.run(root, "mktree", input=("\n".join(lines) + "\n").encode()).stdout.decode().strip()


def _commit_paths(root: Path, message: str, paths: list[str], render_commit: str) -> str:
    """Commit ``paths`` as they are on disk, as a merge of HEAD and the render commit.

    The tree is HEAD's plus those paths, built in a scratch index, so nothing
    else the user changed or staged can slip into petrock's commit.
    """
    head = git.head(root)
    with tempfile.TemporaryDirectory(prefix="petrock-index-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git.run(root, "read-tree", head, env=index)
        git.run(root, "add", "-A", "--", *paths, env=index)
        tree = git.run(root, "write-tree", env=index).stdout.decode().strip()
    parents = ["-p", head, "-p", render_commit]
    commit = git.run(root, *git.identity(root), "commit-tree", tree, *parents, "-m", message).stdout.decode().strip()
    git.run(root, "update-ref", "-m", f"petrock: {message}", "HEAD", commit, head)
    # The real index catches up for petrock's paths only (and forgets their conflict stages).
    git.run(root, "reset", "-q", "--", *paths)
    return commit


def _stop_for_conflicts(upgrade: Upgrade, render_commit: str, message: str, paths: list[str]) -> None:
    """Leave a git merge in progress, as ``git merge`` would: the render commit is ``MERGE_HEAD``.

    Clean files are staged; conflicted ones carry base/yours/theirs stages, so
    ``git status`` lists them and ``git commit`` refuses until they are added.
    Whichever way the user commits, the render commit (the next bases) joins the history.
    """
    root = upgrade.root
    conflicted = [f.path for f in upgrade.files if f.status == Status.CONFLICT]
    if clean := [path for path in paths if path not in conflicted]:
        git.run(root, "add", "-A", "--", *clean)
    stages = []
    for path in conflicted:
        ours = sort_import_blocks(git.show(root, "HEAD", path) or "")
        generated = git.read_blob(root, upgrade.generated.get(path) or "0" * 40)
        base = _write_blob(root, carry_marker_blocks(ours, generated)) if generated is not None else None
        theirs = _write_blob(root, carry_marker_blocks(ours, upgrade.renders[path]))
        stages.append(f"0 {'0' * 40}\t{path}")
        for stage, blob in ((1, base), (2, git.blob_id(ours) if ours else None), (3, theirs)):
            if blob:
                stages.append(f"100644 {blob} {stage}\t{path}")
    if stages:
        git.run(root, "update-index", "--index-info", input=("\n".join(stages) + "\n").encode())
    git.git_path(root, "MERGE_HEAD").write_text(render_commit + "\n")
    git.git_path(root, "MERGE_MSG").write_text(message + "\n")
    state = {"render_commit": render_commit, "message": message, "paths": paths}
    git.git_path(root, STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _stopped_upgrade(root: Path) -> dict[str, Any] | None:
    """The upgrade waiting for its conflicts to be resolved, if the merge in progress is petrock's."""
    merge_head = git.git_path(root, "MERGE_HEAD")
    state_file = git.git_path(root, STATE_FILE)
    if not merge_head.is_file() or not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
    except ValueError:
        return None
    return state if merge_head.read_text().strip() == state.get("render_commit") else None


def _finish_merge(root: Path) -> None:
    for name in ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", STATE_FILE):
        git.git_path(root, name).unlink(missing_ok=True)


def continue_upgrade(root: Path) -> str:
    """Commit an upgrade whose conflicts the user resolved; returns the commit id."""
    state = _stopped_upgrade(root)
    if state is None:
        raise UserError("no upgrade is waiting to be continued", "run `petrock upgrade`")
    if remaining := files_with_conflict_markers(root):
        raise UserError(f"conflict markers remain in {', '.join(remaining)}", "resolve them, then run this again")
    commit = _commit_paths(root, state["message"], state["paths"], state["render_commit"])
    _finish_merge(root)
    return commit


def abort_upgrade(root: Path) -> list[str]:
    """Put back every file the stopped upgrade wrote; returns them. Other uncommitted work stays."""
    state = _stopped_upgrade(root)
    if state is None:
        raise UserError("no upgrade is waiting to be aborted", "nothing to undo")
    paths: list[str] = state["paths"]
    listed = git.run(root, "ls-tree", "-r", "--name-only", "HEAD", "--", *paths).stdout.decode().splitlines()
    in_head = set(listed)
    git.run(root, "reset", "-q", "--", *paths)
    if restored := [path for path in paths if path in in_head]:
        git.run(root, "checkout", "HEAD", "--", *restored)
    for path in paths:
        if path not in in_head:
            (root / path).unlink(missing_ok=True)
    _finish_merge(root)
    return paths


@dataclass(frozen=True)
class CheckResult:
    app_version: str
    installed: str
    behind: list[tuple[str, Drift]]  # files the installed templates would render differently
    conflicts: list[str]
    missing_bases: list[str]  # generated files whose recorded render is not in this repository
    upgrading: bool  # an upgrade stopped for conflicts and waits for --continue

    @property
    def ok(self) -> bool:
        return not self.behind and not self.conflicts and not self.upgrading

    def changes(self) -> ChangesSince | None:
        """The changelog's versions an upgrade would bring in (None when the app is not behind)."""
        return changes_since(self.app_version, self.installed) if self.behind else None

    def reason(self) -> str:
        if self.conflicts:
            return f"conflict markers in {', '.join(self.conflicts)} — resolve them and commit"
        if self.upgrading:
            return "an upgrade waits for its conflicts to be resolved — run `petrock upgrade --continue`"
        if self.behind:
            shown = ", ".join(f"{path} ({how})" for path, how in self.behind[:8])
            more = f" and {len(self.behind) - 8} more" if len(self.behind) > 8 else ""
            count = f"{len(self.behind)} file{'s' if len(self.behind) != 1 else ''}"
            reason = f"{count} behind the installed templates {self.installed}: {shown}{more} — run `petrock upgrade`"
            return f"{reason}; {changes.pointer()}" if (changes := self.changes()) else reason
        return f"up to date with templates {self.installed}"

    def warnings(self) -> list[str]:
        if not self.missing_bases:
            return []
        count = len(self.missing_bases)
        warning = (
            f"the generated versions of {count} file{'s' if count != 1 else ''} are not in this repository "
            f"(e.g. {self.missing_bases[0]}): fetch them (`git fetch origin 'refs/petrock/*:refs/petrock/*'`) if "
            "the original repository has them; otherwise upgrade compares your edits to those files with the new "
            "render only, as conflicts to settle once"
        )
        return [warning]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "app_version": self.app_version,
            "installed": self.installed,
            "behind": [path for path, _ in self.behind],
            "changes": [{"path": path, "change": how.value} for path, how in self.behind],
            "conflicts": self.conflicts,
            "missing_bases": self.missing_bases,
            "upgrading": self.upgrading,
            "changelog": changes.to_json() if (changes := self.changes()) else None,
            "warnings": self.warnings(),
            "reason": self.reason(),
        }


def check(root: Path) -> CheckResult:
    """Would the installed templates render any file differently? Any leftover conflict markers?"""
    manifest = Manifest.load(root)
    behind = drift(root, manifest, render_app(manifest))
    upgrading = git.is_repo(root) and _stopped_upgrade(root) is not None
    return CheckResult(
        manifest.template_version,
        template_version(),
        behind,
        files_with_conflict_markers(root),
        missing_bases(root, manifest),
        upgrading,
    )
