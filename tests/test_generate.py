"""``petrock generate command|query|worker FEATURE/NAME``, run as a user would: real CLI, real git, real app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from petrock.project import Manifest

from .support import git, git_snapshot, petrock_in, refused_without_a_trace, run_app_tests

APP = "blog"


@pytest.fixture
def blog(blog_with_posts: Path) -> Path:
    """The app after `petrock feature add posts`, this test's own copy."""
    return blog_with_posts


# --- the whole loop ---


@pytest.mark.slow
def test_one_of_each_component_is_registered_tested_and_inspectable(blog: Path) -> None:
    for kind, target in [
        ("command", "posts/publish-draft"),
        ("query", "posts/recent_drafts"),
        ("worker", "posts/notify_subscribers"),
    ]:
        result = petrock_in(blog, "generate", kind, target)
        assert result.returncode == 0, result.stderr
        assert git(blog, "status", "--porcelain") == ""

    register = (blog / f"src/{APP}/posts/register.py").read_text()
    for name in ("publish_draft", "recent_drafts", "notify_subscribers"):
        assert f"from .{name} import register as register_{name}\n" in register
        assert f"    register_{name}(app, state)\n" in register

    tests = run_app_tests(blog, "-q")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "failed" not in tests.stdout

    inspect = subprocess.run(
        [sys.executable, "-m", APP, "inspect", "--db", ":memory:"],
        cwd=blog,
        env={"PYTHONPATH": str(blog / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    described = json.loads(inspect.stdout)
    assert "posts/publish-draft" in [c["type"] for c in described["commands"]]
    assert "posts/recent-drafts" in [q["type"] for q in described["queries"]]
    assert "posts-notify-subscribers" in [w["name"] for w in described["workers"]]

    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "E,F,I,B,UP,SIM,RUF", "--line-length", "120"]
        + [f"src/{APP}/posts/{name}.py" for name in ("publish_draft", "recent_drafts", "notify_subscribers")]
        + [f"tests/test_posts_{name}.py" for name in ("publish_draft", "recent_drafts", "notify_subscribers")],
        cwd=blog,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout


def test_generate_commits_the_component_and_records_it(blog: Path) -> None:
    head = git(blog, "rev-parse", "HEAD").strip()
    result = petrock_in(blog, "generate", "command", "posts/publish_draft")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:4] == [
        f"    create  src/{APP}/posts/publish_draft.py",
        "    create  tests/test_posts_publish_draft.py",
        f"    update  src/{APP}/posts/register.py",
        "    update  .petrock.toml",
    ]
    log = git(blog, "log", "--format=%s", f"{head}..HEAD").splitlines()
    assert log == [
        log[0],
        "Generate command posts/publish-draft with petrock",
    ] and log[0].startswith("Record petrock generation")
    manifest = Manifest.load(blog)
    files = [f"src/{APP}/posts/publish_draft.py", "tests/test_posts_publish_draft.py"]
    assert manifest.features["posts"]["components"] == {
        "publish_draft": {"kind": "command", "files": {path: git(blog, "hash-object", path).strip() for path in files}}
    }
    # not among the template renders that `petrock upgrade` owns
    assert not set(files) & set(manifest.files)
    assert manifest.commits["component:posts/publish_draft"] == git(blog, "rev-parse", "HEAD~1").strip()
    # register.py changed only by petrock: it still counts as generated (feature remove removes it)
    register = f"src/{APP}/posts/register.py"
    assert manifest.files[register] == git(blog, "hash-object", register).strip()
    module = (blog / f"src/{APP}/posts/publish_draft.py").read_text()
    assert 'TYPE = "posts/publish-draft"' in module and "class PublishDraft(BaseModel):" in module


def test_upgrade_keeps_generated_components(blog: Path) -> None:
    assert petrock_in(blog, "g", "command", "posts/publish_draft").returncode == 0
    assert petrock_in(blog, "g", "worker", "posts/notify_subscribers").returncode == 0
    upgrade = petrock_in(blog, "upgrade", "--dry-run")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "publish_draft" not in upgrade.stdout and "notify_subscribers" not in upgrade.stdout


def test_running_it_again_reports_identical_and_commits_nothing(blog: Path) -> None:
    assert petrock_in(blog, "g", "query", "posts/recent-drafts").returncode == 0
    before = git_snapshot(blog)
    again = petrock_in(blog, "g", "query", "posts/recent_drafts")
    assert again.returncode == 0, again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()[:4]] == ["identical"] * 4
    assert "already generated and unchanged" in again.stdout
    assert git_snapshot(blog) == before


def test_dry_run_shows_the_diff_and_writes_nothing(blog: Path) -> None:
    before = git_snapshot(blog)
    result = petrock_in(blog, "generate", "worker", "posts/notify_subscribers", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"+++ b/src/{APP}/posts/notify_subscribers.py" in result.stdout
    assert "+class NotifySubscribers(CommandWorker):" in result.stdout
    assert f"+++ b/src/{APP}/posts/register.py" in result.stdout
    assert "+    register_notify_subscribers(app, state)" in result.stdout
    assert result.stdout.rstrip().endswith("dry run: nothing was written")
    assert git_snapshot(blog) == before


def test_json_prints_the_plan_and_the_commit(blog: Path) -> None:
    dry = json.loads(petrock_in(blog, "g", "command", "posts/archive", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True and dry["registers"] == "posts/archive" and dry["component"] == "posts/archive"
    assert {"path": f"src/{APP}/posts/archive.py", "action": "create", "note": ""} in dry["files"]
    done = json.loads(petrock_in(blog, "g", "command", "posts/archive", "--json").stdout)
    assert done["dry_run"] is False
    assert done["files"] == dry["files"]
    assert done["commit"] == git(blog, "rev-parse", "HEAD~1").strip()


def test_a_worker_can_react_to_another_message_type(blog: Path) -> None:
    result = petrock_in(blog, "g", "worker", "posts/audit", "--on", "posts/delete")
    assert result.returncode == 0, result.stderr
    assert 'WATCHES = "posts/delete"' in (blog / f"src/{APP}/posts/audit.py").read_text()


def test_user_code_in_register_py_is_kept(blog: Path) -> None:
    register = blog / f"src/{APP}/posts/register.py"
    text = register.read_text().replace(
        "# petrock:end-components", "# petrock:end-components\n    app.add_link('Drafts', '/drafts')  # mine", 1
    )
    register.write_text("# my header\n" + text)
    git(blog, "commit", "-qam", "my edits")
    assert petrock_in(blog, "g", "command", "posts/publish_draft").returncode == 0
    after = register.read_text()
    assert after.startswith("# my header\n")
    assert "    app.add_link('Drafts', '/drafts')  # mine\n" in after
    assert after.count("register_publish_draft(app, state)") == 1


def test_generating_a_worker_that_exists_says_so_and_writes_nothing(blog: Path) -> None:
    assert petrock_in(blog, "g", "worker", "posts/announce", "--on", "posts/create").returncode == 0
    module = blog / f"src/{APP}/posts/announce.py"
    module.write_text(module.read_text() + "\n# my announcement\n")
    git(blog, "commit", "-qam", "my announcement")
    refused = refused_without_a_trace(blog, "g", "worker", "posts/announce", "--on", "posts/delete")
    assert refused.startswith(f"error: worker posts-announce already exists (src/{APP}/posts/announce.py) — ")


def test_generating_a_changed_component_again_says_it_exists_unless_forced(blog: Path) -> None:
    assert petrock_in(blog, "g", "command", "posts/publish_draft").returncode == 0
    module = blog / f"src/{APP}/posts/publish_draft.py"
    module.write_text(module.read_text() + "\n# my rule\n")
    git(blog, "commit", "-qam", "my rule")
    before = git_snapshot(blog)
    refused = petrock_in(blog, "g", "command", "posts/publish_draft")
    assert refused.returncode != 0
    assert refused.stderr == (
        f"error: command posts/publish-draft already exists (src/{APP}/posts/publish_draft.py) — "
        "choose another name, or pass --force to render it again over your edits\n"
    )
    assert git_snapshot(blog) == before
    forced = petrock_in(blog, "g", "command", "posts/publish_draft", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"     force  src/{APP}/posts/publish_draft.py" in forced.stdout
    assert "# my rule" not in module.read_text()


# --- bad input: one clear line, exit != 0, nothing written ---


def _commit_generated_query(root: Path) -> None:
    assert petrock_in(root, "g", "query", "posts/recent_drafts").returncode == 0


def _dirty(root: Path) -> None:
    (root / "notes.txt").write_text("work in progress\n")


def _hand_written_module(root: Path) -> None:
    (root / f"src/{APP}/posts/helpers.py").write_text('"""Mine."""\n')
    git(root, "add", "-A")
    git(root, "commit", "-qm", "helpers")


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["command", "drafts/publish"], None, "error: there is no feature 'drafts' — this app has posts; add it"),
        (["command", "publish_draft"], None, "error: 'publish_draft' does not say which feature it belongs to"),
        (["command", "/publish"], None, "error: '/publish' has no feature before the `/`"),
        (["command", "posts/Publish Draft"], None, "did you mean `publish_draft`?"),
        (["command", "posts/a/b"], None, "is not a component name (no paths)"),
        (["command", "posts/../x"], None, "is not a component name (no paths)"),
        (["command", "posts/class"], None, "'class' is a Python keyword"),
        (["query", "posts/state"], None, "'state' is one of the modules every feature has"),
        (["command", "posts/app"], None, "'app' would name its class App, which the component's code already uses"),
        (["worker", "posts/posts_state"], None, "would name its class PostsState"),
        (["command", "posts/create"], None, "error: posts/create is already defined in src/blog/posts/"),
        (["command", "posts/recent_drafts"], _commit_generated_query, "posts/recent_drafts is already a query"),
        (["command", "posts/helpers"], _hand_written_module, f"error: src/{APP}/posts/helpers.py already exists"),
        (["worker", "posts/audit", "--on", "create"], None, "'create' is not a message type"),
        (["command", "posts/publish"], _dirty, "error: the app has uncommitted changes (notes.txt)"),
        (["command", "--no-input"], None, "needs an answer and there is no terminal"),
        (["command"], None, "needs an answer and there is no terminal"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_nothing_written(
    blog: Path, args: list[str], setup: object, message: str
) -> None:
    if callable(setup):
        setup(blog)
    assert message in refused_without_a_trace(blog, "generate", *args)


def test_outside_an_app_it_says_where_to_run_it(tmp_path: Path) -> None:
    result = petrock_in(tmp_path, "generate", "command", "posts/publish")
    assert result.returncode != 0
    assert result.stderr.startswith("error: no petrock app here")
    assert list(tmp_path.iterdir()) == []


def test_allow_dirty_generates_and_commits_only_its_own_files(blog: Path) -> None:
    (blog / "notes.txt").write_text("work in progress\n")
    result = petrock_in(blog, "g", "command", "posts/publish", "--allow-dirty")
    assert result.returncode == 0, result.stderr
    assert git(blog, "status", "--porcelain") == "?? notes.txt\n"
