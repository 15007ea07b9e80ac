"""The Plan behind every generator: status words, --force, dry-run diffs, all-or-nothing apply."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from petrock.errors import ConflictError
from petrock.git import blob_id
from petrock.plan import Action, Plan


def write(root: Path, path: str, text: str) -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (directories map to "<dir>")."""
    return {
        path.relative_to(root).as_posix(): "<dir>" if path.is_dir() else path.read_text()
        for path in sorted(root.rglob("*"))
    }


# --- status words ---


def test_a_missing_file_is_created_with_the_usual_permissions(tmp_path: Path) -> None:
    plan = Plan(tmp_path)
    change = plan.write("src/app/new.py", "x = 1\n")
    assert change.action is Action.CREATE
    plan.apply()
    target = tmp_path / "src/app/new.py"
    assert target.read_text() == "x = 1\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_same_content_is_identical_and_not_written(tmp_path: Path) -> None:
    target = write(tmp_path, "a.py", "same\n")
    before = target.stat().st_mtime_ns
    plan = Plan(tmp_path)
    assert plan.write("a.py", "same\n").action is Action.IDENTICAL
    assert plan.apply() == []
    assert target.stat().st_mtime_ns == before


def test_a_file_still_as_generated_is_updated(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "generated\n")
    plan = Plan(tmp_path, pristine={"a.py": blob_id("generated\n")})
    assert plan.write("a.py", "regenerated\n").action is Action.UPDATE
    plan.apply()
    assert (tmp_path / "a.py").read_text() == "regenerated\n"


def test_a_file_the_user_changed_is_a_conflict_and_nothing_is_written(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "the user's version\n")
    plan = Plan(tmp_path, pristine={"a.py": blob_id("generated\n")})
    plan.write("b.py", "new file\n")
    change = plan.write("a.py", "regenerated\n")
    assert change.action is Action.CONFLICT
    assert change.note == "modified"
    with pytest.raises(ConflictError, match=r"a\.py"):
        plan.apply()
    assert (tmp_path / "a.py").read_text() == "the user's version\n"
    assert not (tmp_path / "b.py").exists()


def test_force_overwrites_a_changed_file(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "the user's version\n")
    plan = Plan(tmp_path, pristine={"a.py": blob_id("generated\n")}, force=True)
    assert plan.write("a.py", "regenerated\n").action is Action.FORCE
    plan.apply()
    assert (tmp_path / "a.py").read_text() == "regenerated\n"


def test_a_registration_edit_never_counts_as_overwriting_user_changes(tmp_path: Path) -> None:
    write(tmp_path, "features.py", "user code\n")
    plan = Plan(tmp_path, pristine={"features.py": blob_id("original\n")})
    assert plan.write("features.py", "user code\nregistration\n", edit=True).action is Action.UPDATE


def test_delete_removes_a_pristine_file_and_refuses_a_changed_one(tmp_path: Path) -> None:
    write(tmp_path, "ours.py", "generated\n")
    write(tmp_path, "edited.py", "edited\n")
    pristine = {"ours.py": blob_id("generated\n"), "edited.py": blob_id("generated\n")}
    plan = Plan(tmp_path, pristine=pristine)
    assert plan.delete("ours.py").action is Action.REMOVE
    assert plan.delete("edited.py").action is Action.CONFLICT
    assert plan.delete("gone.py").action is Action.SKIP
    with pytest.raises(ConflictError, match=r"edited\.py"):
        plan.apply()
    assert (tmp_path / "ours.py").exists()


def test_forced_delete_removes_a_changed_file(tmp_path: Path) -> None:
    write(tmp_path, "edited.py", "edited\n")
    plan = Plan(tmp_path, pristine={"edited.py": blob_id("generated\n")}, force=True)
    assert plan.delete("edited.py").action is Action.REMOVE
    plan.apply()
    assert not (tmp_path / "edited.py").exists()


def test_a_file_petrock_never_generated_is_not_deleted_without_force(tmp_path: Path) -> None:
    write(tmp_path, "mine.py", "hand written\n")
    assert Plan(tmp_path).delete("mine.py").action is Action.CONFLICT


def test_a_directory_in_the_way_is_a_clear_conflict(tmp_path: Path) -> None:
    (tmp_path / "a.py").mkdir()
    with pytest.raises(ConflictError, match=r"a\.py is a directory"):
        Plan(tmp_path).write("a.py", "x\n")


# --- dry run and JSON read the same plan ---


def test_diff_shows_creations_updates_and_removals_but_not_conflicts(tmp_path: Path) -> None:
    write(tmp_path, "old.py", "a\nb\n")
    write(tmp_path, "gone.py", "bye\n")
    write(tmp_path, "edited.py", "user\n")
    pristine = {"old.py": blob_id("a\nb\n"), "gone.py": blob_id("bye\n")}
    plan = Plan(tmp_path, pristine=pristine)
    plan.write("new.py", "hello\n")
    plan.write("old.py", "a\nc\n")
    plan.delete("gone.py")
    plan.write("edited.py", "generated\n")
    diff = plan.diff()
    assert "--- /dev/null\n+++ b/new.py\n" in diff and "+hello" in diff
    assert "--- a/old.py\n+++ b/old.py\n" in diff and "-b\n+c\n" in diff
    assert "--- a/gone.py\n+++ /dev/null\n" in diff and "-bye" in diff
    assert "edited.py" not in diff
    assert plan.to_json() == [
        {"path": "new.py", "action": "create", "note": ""},
        {"path": "old.py", "action": "update", "note": ""},
        {"path": "gone.py", "action": "remove", "note": ""},
        {"path": "edited.py", "action": "conflict", "note": "modified"},
    ]
    assert snapshot(tmp_path) == {"edited.py": "user\n", "gone.py": "bye\n", "old.py": "a\nb\n"}


def test_line_endings_and_permissions_of_an_updated_file_are_kept(tmp_path: Path) -> None:
    script = write(tmp_path, "run.sh", "")
    script.write_bytes(b"one\r\ntwo\r\n")
    script.chmod(0o755)
    plan = Plan(tmp_path, pristine={"run.sh": blob_id(b"one\r\ntwo\r\n")})
    assert plan.write("run.sh", "one\r\ntwo\r\n").action is Action.IDENTICAL
    plan.write("run.sh", "one\r\ntwo\r\nthree\r\n")
    plan.apply()
    assert script.read_bytes() == b"one\r\ntwo\r\nthree\r\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


# --- all-or-nothing ---


def test_a_failure_midway_puts_back_only_what_this_run_wrote(tmp_path: Path) -> None:
    write(tmp_path, "keep/untouched.txt", "not ours\n")
    write(tmp_path, "existing/other.txt", "someone else's\n")
    write(tmp_path, "updated.py", "generated\n")
    write(tmp_path, "removed.py", "generated\n")
    before = snapshot(tmp_path)
    pristine = {"updated.py": blob_id("generated\n"), "removed.py": blob_id("generated\n")}
    plan = Plan(tmp_path, pristine=pristine)
    plan.write("updated.py", "regenerated\n")
    plan.delete("removed.py")
    plan.write("existing/new.txt", "new in an existing folder\n")
    plan.write("fresh/deep/new.txt", "new in new folders\n")
    plan.write("blocker", "a file\n")
    plan.write("blocker/child.txt", "cannot be written: its parent is a file\n")
    with pytest.raises(OSError):
        plan.apply()
    assert snapshot(tmp_path) == before


def test_a_file_changed_after_planning_stops_the_run_and_keeps_that_change(tmp_path: Path) -> None:
    write(tmp_path, "b.py", "generated\n")
    plan = Plan(tmp_path, pristine={"b.py": blob_id("generated\n")})
    plan.write("a.py", "first\n")
    plan.write("b.py", "regenerated\n")
    plan.write("c.py", "created by the plan\n")
    (tmp_path / "b.py").write_text("edited meanwhile\n")
    (tmp_path / "c.py").write_text("someone else made this\n")
    with pytest.raises(ConflictError, match=r"b\.py changed"):
        plan.apply()
    assert snapshot(tmp_path) == {"b.py": "edited meanwhile\n", "c.py": "someone else made this\n"}


def test_a_file_created_by_someone_else_after_planning_is_never_replaced_or_deleted(tmp_path: Path) -> None:
    plan = Plan(tmp_path)
    plan.write("a.py", "planned\n")
    (tmp_path / "a.py").write_text("someone else's\n")
    with pytest.raises(ConflictError):
        plan.apply()
    assert (tmp_path / "a.py").read_text() == "someone else's\n"


def test_the_refusal_says_whether_it_would_overwrite_or_delete(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "changed\n")
    write(tmp_path, "b.py", "changed\n")
    overwrite, delete, both = Plan(tmp_path), Plan(tmp_path), Plan(tmp_path)
    overwrite.write("a.py", "new\n")
    delete.delete("a.py")
    both.write("a.py", "new\n")
    both.delete("b.py")
    with pytest.raises(ConflictError, match=r"^would overwrite your changes to a\.py"):
        overwrite.check()
    with pytest.raises(ConflictError, match=r"^would delete your changes to a\.py"):
        delete.check()
    with pytest.raises(ConflictError, match=r"^would overwrite or delete your changes to a\.py, b\.py"):
        both.check()
