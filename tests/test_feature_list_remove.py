"""``petrock feature list`` and ``petrock feature remove``, run as a user would: real CLI, real git, real app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .support import git, git_snapshot, new_app, petrock_in, refused_without_a_trace

APP = "blog"
COMPONENTS = [
    ("command", "posts/publish-draft"),
    ("query", "posts/recent_drafts"),
    ("worker", "posts/notify_subscribers"),
]


@pytest.fixture(scope="session")
def base_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An app with a `posts` feature and one component of each kind, made once, and the
    commit it had before `feature add`."""
    root = new_app(tmp_path_factory.mktemp("base"), APP)
    before_feature = git(root, "rev-parse", "HEAD").strip()
    for args in (("feature", "add", "posts"), *(("generate", kind, target) for kind, target in COMPONENTS)):
        result = petrock_in(root, *args)
        assert result.returncode == 0, result.stderr
    return root, before_feature


@pytest.fixture
def blog(base_app: tuple[Path, str], tmp_path: Path) -> Path:
    root = tmp_path / APP
    shutil.copytree(base_app[0], root, symlinks=True)
    return root


@pytest.fixture
def before_feature(base_app: tuple[Path, str]) -> str:
    return base_app[1]


def assert_back_to(root: Path, commit: str) -> None:
    """The app's files, manifest included, are exactly those of ``commit``, and all committed."""
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "diff", "--stat", commit, "HEAD") == ""
    assert not (root / f"src/{APP}/posts").exists()


# --- feature list ---


def test_list_shows_what_the_app_registers_for_each_feature(blog: Path) -> None:
    listed = json.loads(petrock_in(blog, "feature", "list", "--json").stdout)
    assert listed["app"] == APP
    [posts] = listed["features"]
    assert posts["name"] == "posts" and posts["registered"] and posts["generated"]
    assert "posts/create" in posts["commands"] and "posts/publish-draft" in posts["commands"]
    assert "posts/recent-drafts" in posts["queries"]
    assert "posts-notify-subscribers" in posts["workers"]
    assert posts["components"] == {"publish_draft": "command", "recent_drafts": "query", "notify_subscribers": "worker"}

    table = petrock_in(blog, "feature", "list")
    assert table.returncode == 0, table.stderr
    assert "posts/publish-draft" in table.stdout and "posts-notify-subscribers" in table.stdout
    assert git(blog, "status", "--porcelain") == ""


def test_list_in_an_app_without_features_says_how_to_add_one(tmp_path: Path) -> None:
    root = new_app(tmp_path, APP)
    result = petrock_in(root, "feature", "list")
    assert result.returncode == 0, result.stderr
    assert "has no features yet" in result.stdout


def test_list_reports_an_app_that_does_not_load(blog: Path) -> None:
    (blog / f"src/{APP}/posts/recent_drafts.py").write_text("def broken(:\n")
    result = petrock_in(blog, "feature", "list")
    assert result.returncode != 0
    assert result.stderr.startswith("error: the app failed to load: SyntaxError")
    assert result.stderr.count("\n") == 1


# --- feature remove ---


@pytest.mark.slow
def test_remove_leaves_the_app_as_it_was_before_feature_add(blog: Path, before_feature: str) -> None:
    result = petrock_in(blog, "feature", "remove", "posts")
    assert result.returncode == 0, result.stderr
    assert f"    remove  src/{APP}/posts/register.py" in result.stdout
    assert f"    remove  src/{APP}/posts/publish_draft.py" in result.stdout
    assert "    remove  tests/test_posts_notify_subscribers.py" in result.stdout
    assert f"    update  src/{APP}/features.py" in result.stdout
    assert "undo with `git revert" in result.stdout
    assert git(blog, "log", "-1", "--format=%s") == "Remove feature posts with petrock\n"
    # Byte for byte the tree `petrock new blog` made: its tests pass (test_new runs them on that very tree).
    assert_back_to(blog, before_feature)


def test_dry_run_lists_the_removals_and_writes_nothing(blog: Path) -> None:
    before = git_snapshot(blog)
    result = petrock_in(blog, "feature", "remove", "posts", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"--- a/src/{APP}/posts/register.py\n+++ /dev/null" in result.stdout
    assert "-from .posts.register import register as register_posts" in result.stdout
    assert result.stdout.rstrip().endswith("dry run: nothing was written")
    assert git_snapshot(blog) == before


def test_json_prints_the_plan_and_the_commit(blog: Path) -> None:
    result = json.loads(petrock_in(blog, "feature", "remove", "posts", "--json").stdout)
    assert result["feature"] == "posts" and result["kept"] == []
    assert {"path": f"src/{APP}/posts/state.py", "action": "remove", "note": ""} in result["files"]
    assert result["commit"] == git(blog, "rev-parse", "HEAD").strip()


def test_a_changed_file_is_refused_unless_forced(blog: Path, before_feature: str) -> None:
    state = blog / f"src/{APP}/posts/state.py"
    state.write_text(state.read_text() + "\n# my change\n")
    git(blog, "commit", "-qam", "my change")
    before = git_snapshot(blog)
    refused = petrock_in(blog, "feature", "remove", "posts")
    assert refused.returncode != 0
    assert refused.stderr.startswith(f"error: would delete your changes to src/{APP}/posts/state.py")
    assert "pass --force" in refused.stderr
    assert git_snapshot(blog) == before

    forced = petrock_in(blog, "feature", "remove", "posts", "--force")
    assert forced.returncode == 0, forced.stderr
    assert_back_to(blog, before_feature)


def test_files_petrock_did_not_generate_are_kept(blog: Path) -> None:
    notes = blog / f"src/{APP}/posts/NOTES.md"
    notes.write_text("my notes\n")
    git(blog, "add", "-A")
    git(blog, "commit", "-qm", "notes")
    result = petrock_in(blog, "feature", "remove", "posts")
    assert result.returncode == 0, result.stderr
    assert f"      keep  src/{APP}/posts/NOTES.md  (not generated by petrock)" in result.stdout
    assert notes.read_text() == "my notes\n"
    assert sorted(p.name for p in notes.parent.iterdir()) == ["NOTES.md"]
    assert "register_posts" not in (blog / f"src/{APP}/features.py").read_text()
    assert git(blog, "status", "--porcelain") == ""


def _hand_made_feature(root: Path) -> None:
    (root / f"src/{APP}/drafts").mkdir()
    (root / f"src/{APP}/drafts/__init__.py").write_text('"""Mine."""\n')
    git(root, "add", "-A")
    git(root, "commit", "-qm", "drafts by hand")


def _dirty(root: Path) -> None:
    (root / "notes.txt").write_text("work in progress\n")


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["remove", "comments"], None, "error: there is no feature 'comments' — features petrock generated: posts"),
        (["remove", "drafts"], _hand_made_feature, "error: petrock did not generate a feature 'drafts'"),
        (["remove", "posts"], _dirty, "error: the app has uncommitted changes (notes.txt)"),
        (["remove", "--no-input"], None, "needs an answer and there is no terminal"),
        (["remove"], None, "needs an answer and there is no terminal"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_nothing_written(
    blog: Path, args: list[str], setup: object, message: str
) -> None:
    if callable(setup):
        setup(blog)
    assert message in refused_without_a_trace(blog, "feature", *args)


@pytest.mark.parametrize("command", [["list"], ["remove", "posts"]])
def test_outside_an_app_it_says_where_to_run_it(tmp_path: Path, command: list[str]) -> None:
    result = petrock_in(tmp_path, "feature", *command)
    assert result.returncode != 0
    assert result.stderr.startswith("error: no petrock app here")
    assert list(tmp_path.iterdir()) == []
