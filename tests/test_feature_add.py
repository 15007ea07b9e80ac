"""``petrock feature add``: what it writes, registers and commits, and everything it refuses."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from petrock import __version__
from petrock.cli.feature import AddIsDefault
from petrock.generators.feature import add_feature, plan_feature, register_in_features, render_feature
from petrock.git import blob_id

from .support import app_env, git, run_petrock, tree_snapshot

FEATURE_FILES = [
    "__init__.py",
    "commands.py",
    "queries.py",
    "register.py",
    "routes.py",
    "state.py",
    "templates/detail.html",
    "templates/form.html",
    "templates/list.html",
    "worker.py",
]
# The stricter rules petrock holds its own code to (pyproject.toml), applied to generated code.
RUFF_RULES = ["--select", "E,F,I,B,UP,SIM,RUF", "--ignore", "RUF001,RUF002,RUF003", "--line-length", "120"]


def run_in(root: Path, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command in the generated app, with its src/ importable."""
    return subprocess.run(
        command, cwd=root, env=app_env(root), capture_output=True, text=True, timeout=timeout, check=False
    )


def manifest(root: Path) -> dict:
    return tomllib.loads((root / ".petrock.toml").read_text())


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, .git included, except git's stat cache (``git status`` may refresh it)."""
    files = tree_snapshot(root)
    files.pop(".git/index", None)
    return files


def assert_refused(result: subprocess.CompletedProcess, before: dict[str, bytes], root: Path, *needles: str) -> None:
    """Exit != 0, one ``error: ...`` line naming the problem, and not a byte changed (.git included)."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(root) == before


def test_add_posts_then_order_items_renders_registers_and_commits(blog_app: Path) -> None:
    result = run_petrock("feature", "add", "posts", cwd=blog_app)
    assert result.returncode == 0, result.stderr
    for path in FEATURE_FILES:
        assert f"create  src/blog/posts/{path}" in result.stdout
    assert "create  tests/test_posts.py" in result.stdout
    assert "update  src/blog/features.py" in result.stdout
    assert "next steps" in result.stdout and "/posts" in result.stdout

    # `petrock feature NAME` is the same as `feature add NAME`, from anywhere inside the app
    result = run_petrock("feature", "order_items", cwd=blog_app / "src" / "blog")
    assert result.returncode == 0, result.stderr

    assert git(blog_app, "status", "--porcelain") == ""
    subjects = git(blog_app, "log", "--format=%s").splitlines()
    assert subjects[3] == f"Add feature posts with petrock {__version__}"
    assert subjects[1] == f"Add feature order_items with petrock {__version__}"
    assert subjects[0].startswith("Record petrock generation") and subjects[2].startswith("Record petrock generation")

    recorded = manifest(blog_app)
    assert set(recorded["features"]) == {"posts", "order_items"}
    assert recorded["features"]["posts"]["template_version"]
    for name in ("posts", "order_items"):
        commit = recorded["commits"][f"feature:{name}"]
        subject = git(blog_app, "log", "-1", "--format=%s", commit).strip()
        assert subject == f"Add feature {name} with petrock {__version__}"
        for path in render_feature("blog", name):
            assert recorded["files"][path] == blob_id((blog_app / path).read_bytes()), path

    features = (blog_app / "src/blog/features.py").read_text()
    assert features.count("from .posts.register import register as register_posts") == 1
    assert features.count("register_order_items(app)") == 1
    state = (blog_app / "src/blog/order_items/state.py").read_text()
    assert "class OrderItem(TypedDict):" in state and "class OrderItemsState(Projection):" in state
    assert "class CreateOrderItem(OrderItemFields):" in (blog_app / "src/blog/order_items/commands.py").read_text()


def test_render_feature_returns_every_file_but_features_py() -> None:
    files = render_feature("blog", "posts")
    assert sorted(files) == sorted([*(f"src/blog/posts/{path}" for path in FEATURE_FILES), "tests/test_posts.py"])
    register = files["src/blog/posts/register.py"]
    assert (
        "def register(app: App) -> None:" in register
        and "    state = PostsState(app.store, app.references)" in register
    )
    for marker in ("# petrock:imports", "# petrock:end-imports"):
        assert f"\n{marker}\n" in register  # at module level
    for marker in ("# petrock:components", "# petrock:end-components"):
        assert f"\n    {marker}\n" in register  # inside register()
    assert "{{" not in files["src/blog/posts/worker.py"]  # rendered
    assert '{{ item["title"] }}' in files["src/blog/posts/templates/detail.html"]  # runtime Jinja kept


EVERY_TYPE = (
    "customer:ref:customers",
    "total:decimal",
    "paid:bool",
    "due:date:optional",
    "status:choice:draft,paid,shipped",
    "note:text:optional",
    "qty:int",
    "rate:float",
    "shipped_at:datetime:optional",
    "contact:email:unique",
    "site:url:optional",
    "reference:str:unique",
)
# A rule on every type that takes one: the generated tests' own sample values must keep them all.
EVERY_RULE = (
    "isbn:str:label=ISBN:min=10:max=17",
    "title:str:min=30:max=40",
    "customer:ref:customers",
    "blurb:text:optional:min=20:max=100",
    "pages:int:min=1:max=5000:default=100",
    "rating:float:optional:min=0:max=4.5",
    "price:decimal:min=0:max=1000",
    "published:date:min=1900-01-01:max=1999-12-31",
    "genre:choice:fiction,history:default=history",
    "in_stock:bool:default=true",
)


@dataclass(frozen=True)
class ManyFeatures:
    root: Path  # the app, after every feature below was added
    tests: subprocess.CompletedProcess  # its whole own suite, run once after the last


# Each step a real `petrock feature add` on the app with posts: order_items; then every type, a ref to a feature
# made before (with its own text field summarized), one feature without any text field (so no summary worker),
# one with a rule on every type that takes one, and length rules too short for the generated tests' usual texts.
MANY_FEATURES = [
    ("order_items",),
    ("customers", "name:str", "email:email", "bio:text:optional:max=1"),  # a summarized text of one letter
    ("orders", *EVERY_TYPE, "--summarize", "note"),
    ("stamps", "code:str:max=3", "at:datetime", "order:ref:orders:optional"),  # no room for a script tag
    ("books", *EVERY_RULE),
]


@pytest.fixture(scope="module")
def many_features(_blog_with_posts_original: Path, tmp_path_factory: pytest.TempPathFactory) -> ManyFeatures:
    """One app with all the features the two tests below add, and the app's whole suite run once on it (with
    -p no:xdist, as a user runs it). Two apps, one suite each, ran the app's own tests twice; here those run once,
    beside the tests of all six features. Each test checks its own features from this one app."""
    root = tmp_path_factory.mktemp("many-features") / "blog"
    shutil.copytree(_blog_with_posts_original, root, symlinks=True)
    for step in MANY_FEATURES:
        result = run_petrock("feature", "add", *step, cwd=root)
        assert result.returncode == 0, result.stderr
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"]
    return ManyFeatures(root, run_in(root, *command, timeout=300))


@pytest.mark.slow
def test_a_feature_with_every_type_passes_its_own_tests_and_is_lint_clean(
    many_features: ManyFeatures, tmp_path: Path
) -> None:
    """Every type, a ref to a feature made before (with its own text field summarized), one
    feature without any text field (so no summary worker), one with a rule on every type that
    takes one, and length rules too short for the generated tests' usual texts, in one app whose own
    tests then pass."""
    root = many_features.root
    assert not (root / "src/blog/stamps/worker.py").exists()
    recorded = manifest(root)["features"]
    assert recorded["orders"]["fields"] == list(EVERY_TYPE) and recorded["orders"]["summarize"] == "note"
    assert recorded["stamps"]["summarize"] == ""
    # upgrade re-renders exactly what was generated: nothing to bring in
    upgrade = run_petrock("upgrade", "--dry-run", cwd=root)
    assert upgrade.returncode == 0, upgrade.stderr
    assert not any(word in upgrade.stdout for word in ("update ", "merge ", "conflict ", "create ", "remove "))

    generated = [
        *(f"src/blog/{name}" for name in ("customers", "orders", "stamps", "books")),
        *(f"tests/test_{name}.py" for name in ("customers", "orders", "stamps", "books")),
        "src/blog/core/references.py",
    ]
    assert_lint_clean(root, generated)
    tests = many_features.tests
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "failed" not in tests.stdout

    # Last, on a copy: the tests of this file share the app.
    copy = Path(shutil.copytree(root, tmp_path / "blog", symlinks=True))
    refused = run_petrock("feature", "remove", "customers", cwd=copy)
    assert refused.returncode != 0 and "books, orders refer to 'customers'" in refused.stderr


def assert_lint_clean(root: Path, paths: list[str]) -> None:
    """``paths`` pass ruff with the app's own settings, then petrock's stricter ones, and are formatted."""
    for rules in ([], RUFF_RULES):
        lint = run_in(root, sys.executable, "-m", "ruff", "check", *rules, *paths)
        assert lint.returncode == 0, lint.stdout
    fmt = run_in(root, sys.executable, "-m", "ruff", "format", "--check", "--line-length", "120", *paths)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_the_apps_own_tests_pass_and_generated_code_is_lint_clean(many_features: ManyFeatures) -> None:
    """posts and order_items, added by the CLI one after the other (among the other features of ``many_features``:
    its one run of the app's whole suite has their tests and the app's own)."""
    root = many_features.root
    assert set(manifest(root)["features"]) >= {"posts", "order_items"}
    generated = [
        "src/blog/posts",
        "src/blog/order_items",
        "src/blog/core/summaries.py",
        "tests/test_posts.py",
        "tests/test_order_items.py",
        "tests/fake_summary_api.py",
    ]
    assert_lint_clean(root, generated)

    tests = many_features.tests
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("Posts", "not a valid feature name"),
        ("my-posts", "not a valid feature name"),
        ("2posts", "not a valid feature name"),
        ("../x", "not a valid feature name"),
        ("src/x", "not a valid feature name"),
        ("", "empty"),
        ("pöst", "not a valid feature name"),
        ("class", "keyword"),
        ("core", "module of the app"),
        ("features", "module of the app"),
        ("cli", "module of the app"),
        ("tests", "module of the app"),
        ("blog", "module of the app"),
        ("json", "standard-library"),
        ("typing", "standard-library"),
        ("http", "standard-library"),
        ("starlette", "depends on"),
        ("commands", "/commands"),
        ("metrics", "/metrics"),  # a fresh-user trial: the feature's list page replaced the Prometheus answer
        ("docs", "/docs"),
        ("events", "/events"),
        ("login", "/login"),
        ("messages", "class Message"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(blog_app: Path, name: str, needle: str) -> None:
    before = snapshot(blog_app)
    assert_refused(run_petrock("feature", "add", name, cwd=blog_app), before, blog_app, needle)


def test_outside_an_app_it_refuses(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    assert_refused(run_petrock("feature", "add", "posts", cwd=tmp_path), before, tmp_path, "no petrock app")


def test_a_dirty_tree_is_refused_unless_allow_dirty(blog_app: Path) -> None:
    (blog_app / "notes.txt").write_text("work in progress\n")
    before = snapshot(blog_app)
    assert_refused(run_petrock("feature", "add", "posts", cwd=blog_app), before, blog_app, "notes.txt", "--allow-dirty")

    result = run_petrock("feature", "add", "posts", "--allow-dirty", cwd=blog_app)
    assert result.returncode == 0, result.stderr
    assert git(blog_app, "status", "--porcelain").splitlines() == ["?? notes.txt"]
    assert "notes.txt" not in git(blog_app, "show", "--name-only", "--format=", "HEAD~1")


def test_an_existing_feature_is_refused(blog_with_posts: Path) -> None:
    before = snapshot(blog_with_posts)
    result = run_petrock("feature", "add", "posts", cwd=blog_with_posts)
    assert_refused(result, before, blog_with_posts, "already exists", "--force")


def test_dry_run_shows_the_plan_and_diff_and_writes_nothing(blog_app: Path) -> None:
    before = snapshot(blog_app)
    result = run_petrock("feature", "add", "posts", "--dry-run", cwd=blog_app)
    assert result.returncode == 0, result.stderr
    assert "create  src/blog/posts/worker.py" in result.stdout
    assert "+++ b/src/blog/posts/register.py" in result.stdout
    assert "+from .posts.register import register as register_posts" in result.stdout
    assert "dry run: nothing was written" in result.stdout
    assert snapshot(blog_app) == before


def test_json_output_lists_files_and_the_commit(blog_app: Path) -> None:
    before = snapshot(blog_app)
    planned = json.loads(run_petrock("feature", "add", "posts", "--dry-run", "--json", cwd=blog_app).stdout)
    assert planned["dry_run"] is True and planned["feature"] == "posts"
    assert snapshot(blog_app) == before

    done = json.loads(run_petrock("feature", "add", "posts", "--json", cwd=blog_app).stdout)
    assert done["dry_run"] is False
    assert {"path": "src/blog/posts/worker.py", "action": "create", "note": ""} in done["files"]
    assert done["commit"] == manifest(blog_app)["commits"]["feature:posts"]
    assert done["fields"] == ["title:str", "content:text"]


def test_typed_fields_show_in_the_dry_run_and_pick_what_is_summarized(blog_app: Path) -> None:
    before = snapshot(blog_app)
    args = ("feature", "add", "notes", "title:str", "pinned:bool", "body:text", "extra:text:optional")
    planned = json.loads(run_petrock(*args, "--summarize", "extra", "--dry-run", "--json", cwd=blog_app).stdout)
    assert planned["fields"] == ["title:str", "pinned:bool", "body:text", "extra:text:optional"]
    assert snapshot(blog_app) == before

    assert run_petrock(*args, "--summarize", "extra", cwd=blog_app).returncode == 0
    assert manifest(blog_app)["features"]["notes"]["summarize"] == "extra"
    worker = (blog_app / "src/blog/notes/worker.py").read_text()
    assert 'content=current["extra"]' in worker and "command.extra != " in worker
    form = (blog_app / "src/blog/notes/templates/form.html").read_text()
    assert '<input type="checkbox" id="pinned" name="pinned"' in form and '<textarea id="body"' in form


def test_registration_is_idempotent_and_keeps_user_edits(blog_with_posts: Path) -> None:
    features = blog_with_posts / "src/blog/features.py"
    text = features.read_text()
    assert register_in_features(text, "posts") == text  # registering again changes nothing
    edited = text.replace("# petrock:imports\n", "# petrock:imports\nfrom .legacy import register as register_legacy\n")
    edited = edited.replace("    # petrock:end-registrations", "    # petrock:end-registrations\n    print('mine')")
    features.write_text("import logging  # mine\n" + edited)
    git(blog_with_posts, "commit", "-qam", "my edits")

    assert run_petrock("feature", "add", "order_items", cwd=blog_with_posts).returncode == 0
    result = features.read_text()
    assert result.startswith("import logging  # mine\n")
    assert "from .legacy import register as register_legacy" in result and "print('mine')" in result
    assert result.count("register_posts(app)") == 1 and result.count("register_order_items(app)") == 1

    forced = run_petrock("feature", "add", "order_items", "--force", cwd=blog_with_posts)
    assert forced.returncode == 0, forced.stderr
    assert "identical  src/blog/features.py" in forced.stdout
    assert features.read_text().count("register_order_items(app)") == 1


def test_force_renders_again_over_edited_files(blog_with_posts: Path) -> None:
    worker = blog_with_posts / "src/blog/posts/worker.py"
    original = worker.read_text()
    worker.write_text(original + "\n# my change\n")
    git(blog_with_posts, "commit", "-qam", "edit the worker")
    result = run_petrock("feature", "add", "posts", "--force", cwd=blog_with_posts)
    assert result.returncode == 0, result.stderr
    assert "force  src/blog/posts/worker.py" in result.stdout
    assert "identical  src/blog/posts/state.py" in result.stdout
    assert worker.read_text() == original
    assert git(blog_with_posts, "status", "--porcelain") == ""


def test_an_app_without_git_gets_the_feature_without_commits(tmp_path: Path) -> None:
    assert run_petrock("new", "shop", "--no-git", cwd=tmp_path).returncode == 0
    root = tmp_path / "shop"
    result = run_petrock("feature", "add", "order_items", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "src/shop/order_items/worker.py").is_file()
    assert not (root / ".git").exists()
    recorded = manifest(root)
    assert "order_items" in recorded["features"] and "feature:order_items" not in recorded["commits"]


def cpu_seconds() -> float:
    """CPU time of this process and of every finished child (git, petrock): robust to a busy machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def test_feature_add_is_fast(blog_app: Path) -> None:
    """The whole command, commit included, in CPU time; the benchmark reports wall time on a quiet machine."""
    began = cpu_seconds()
    assert run_petrock("feature", "add", "posts", cwd=blog_app).returncode == 0
    assert cpu_seconds() - began < 1.0


@pytest.mark.slow
def test_the_fiftieth_feature_is_no_slower_than_the_first(blog_app: Path) -> None:
    """Adding a feature reads and hashes only what it writes, so its cost does not grow with the app."""
    costs = []
    for n in range(50):
        began = cpu_seconds()
        add_feature(plan_feature(f"things_{n}", start=blog_app))
        costs.append(cpu_seconds() - began)
    first, last = sorted(costs[1:6])[2], sorted(costs[-5:])[2]  # medians, after a warm-up
    print(f"first {first * 1000:.0f} ms, fiftieth {last * 1000:.0f} ms")
    # git's index and the manifest grow by a few lines per feature (measured: ~50 -> ~110 ms of CPU at the
    # fiftieth); reading or hashing every earlier feature's files would cost several times more.
    assert last < first * 2 + 0.02, (first, last)
    assert git(blog_app, "status", "--porcelain") == ""


def test_subcommands_added_later_resolve_and_other_words_mean_add() -> None:
    """`feature list` / `feature remove` (registered from other modules) stay commands; `feature posts` is add."""
    group = typer.Typer(cls=AddIsDefault)
    calls: list[tuple[str, ...]] = []

    @group.command("add")
    def add(name: str, dry_run: bool = False) -> None:
        calls.append(("add", name, str(dry_run)))

    @group.command("list")
    def list_features() -> None:
        calls.append(("list",))

    runner = CliRunner()
    for args in (["posts", "--dry-run"], ["list"], ["add", "list"]):
        assert runner.invoke(group, args).exit_code == 0
    assert calls == [("add", "posts", "True"), ("list",), ("add", "list", "False")]
