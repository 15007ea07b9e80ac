"""Apps made by petrock from earlier commits of this repository, upgraded by this petrock.

Each old petrock is extracted with ``git archive`` and run from its source
(``PYTHONPATH=<old>/src python -m petrock``; its templates sit beside it), so the
apps are exactly what those versions generated, history and manifest included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from petrock.templates import templates_dir

from .support import REPO, git, run_app_tests, run_in_app, run_petrock, tree_snapshot

# `feature add` appended imports unsorted, with no blank line after them; `petrock upgrade` did not exist yet.
UNSORTED_IMPORTS = "328609c"
# `petrock upgrade` kept the render commit of a conflicted upgrade only under refs/petrock/templates.
RENDERS_OUTSIDE_HISTORY = "51f7ba6"
# The last petrock whose apps kept state in memory and replayed the log at every start.
STATE_IN_MEMORY = "e207e0d"
COMMIT = ("commit", "-qam")
# Run in an app made by STATE_IN_MEMORY: create posts, let the summary worker summarize each (offline).
FILL_OLD_APP = """
import asyncio, sys
from shop.main import build_app

async def main() -> None:
    app = build_app(sys.argv[1])
    app.replay()
    await app.start_workers()
    for n in range(int(sys.argv[2])):
        app.dispatch_payload("posts/create", {"id": f"p{n}", "title": f"Post {n}", "content": f"Post {n} says hi."})
    for _ in range(400):
        if all(p["summary_status"] == "ready" for p in app.query("posts/list", {"limit": 1000})["items"]):
            break
        await asyncio.sleep(0.05)
    await app.close()

asyncio.run(main())
"""
# Run in the upgraded app: start as serve does, print the posts and the log's length, start no worker.
READ_NEW_APP = """
import json, sys
from shop.main import build_app

app = build_app(sys.argv[1])
rebuilt = app.prepare()
print(json.dumps({"rebuilt": rebuilt, "posts": app.query("posts/list", {"limit": 1000}), "log": app.log.version()}))
"""

pytestmark = pytest.mark.slow

OldPetrock = Callable[..., subprocess.CompletedProcess]
_APPS: dict[tuple[str, ...], Path] = {}


@pytest.fixture(scope="module")
def old_petrock(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], OldPetrock]:
    """``old_petrock(commit)`` -> a function running that commit's petrock CLI in a directory."""
    sources: dict[str, Path] = {}

    def at(commit: str) -> OldPetrock:
        if commit not in sources:
            known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, check=False)
            if known.returncode != 0:
                pytest.skip(f"commit {commit} is not in this clone's history (a shallow clone?)")
            target = tmp_path_factory.mktemp(f"petrock-{commit}")
            archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
            sources[commit] = target

        def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            return run_petrock(*args, cwd=cwd, env={"PYTHONPATH": str(sources[commit] / "src"), **(env or {})})

        run.templates = sources[commit] / "templates"  # type: ignore[attr-defined]
        return run

    return at


def old_app(old_petrock: Callable[[str], OldPetrock], parent: Path, commit: str, *features: str) -> Path:
    """An app named shop made by the petrock at ``commit`` (with ``features`` added), copied into ``parent``."""
    key = (commit, *features)
    if key not in _APPS:
        cache = Path(tempfile.mkdtemp(prefix="petrock-old-app-"))
        old = old_petrock(commit)
        made = old(cache, "new", "shop")
        assert made.returncode == 0, made.stderr
        for feature in features:
            added = old(cache / "shop", "feature", "add", feature)
            assert added.returncode == 0, added.stderr
        _APPS[key] = cache / "shop"
    target = parent / "shop"
    shutil.copytree(_APPS[key], target, symlinks=True)
    return target


def petrock(app: Path, *args: str, templates: Path | None = None) -> subprocess.CompletedProcess:
    return run_petrock(*args, cwd=app, env={"PETROCK_TEMPLATES": str(templates)} if templates else None)


def ruff(app: Path) -> subprocess.CompletedProcess:
    """ruff with the app's own settings (its pyproject.toml)."""
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "."]
    return subprocess.run(command, cwd=app, capture_output=True, text=True, check=False)


def changed_by_last_commit(app: Path) -> set[str]:
    return set(git(app, "diff", "--name-only", "HEAD^1", "HEAD").split()) - {".petrock.toml"}


def without_git_index(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in snapshot.items() if path != ".git/index"}


def test_check_lists_exactly_the_files_an_upgrade_then_changes(old_petrock, tmp_path: Path) -> None:
    app = old_app(old_petrock, tmp_path, RENDERS_OUTSIDE_HISTORY, "posts")

    behind = petrock(app, "check", "--json")

    assert behind.returncode == 1
    listed = json.loads(behind.stdout)["behind"]
    # Templates changed since that commit (every app has features.py; its import block changed since).
    assert "src/shop/features.py" in listed and "src/shop/core/app.py" in listed
    assert petrock(app, "check").stderr.startswith(f"error: {len(listed)} files behind the installed templates")
    upgraded = petrock(app, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    # Nothing was edited in this app, so the upgrade changed exactly the files check listed.
    assert changed_by_last_commit(app) == set(listed)
    assert petrock(app, "check").returncode == 0

    before = without_git_index(tree_snapshot(app))
    again = petrock(app, "upgrade")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already up to date")
    assert without_git_index(tree_snapshot(app)) == before


def test_an_app_with_unsorted_imports_upgrades_ruff_clean_with_edits_kept_and_tests_passing(
    old_petrock, tmp_path: Path
) -> None:
    app = old_app(old_petrock, tmp_path, UNSORTED_IMPORTS, "posts", "articles")
    assert ruff(app).returncode != 0  # as that petrock left it: articles imported after posts
    main = app / "src/shop/main.py"
    # Our own code where the templates have not changed since (their last lines have).
    main.write_text(
        main.read_text().replace(
            'DEFAULT_DB = "app.db"\n', 'DEFAULT_DB = "app.db"\n\n\ndef banner() -> str:\n    return "our own code"\n'
        )
    )
    git(app, *COMMIT, "Banner")

    upgraded = petrock(app, "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    assert "tidy  src/shop/features.py" in upgraded.stdout or "update  src/shop/features.py" in upgraded.stdout
    linted = ruff(app)
    assert linted.returncode == 0, linted.stdout
    features = (app / "src/shop/features.py").read_text()
    assert features.index("register as register_articles") < features.index("register as register_posts")
    assert 'return "our own code"' in main.read_text()
    assert git(app, "status", "--porcelain") == ""
    # Import lines added after the upgrade land in blocks ruff accepts too.
    generated = petrock(app, "generate", "command", "posts/publish")
    assert generated.returncode == 0, generated.stderr
    linted = ruff(app)
    assert linted.returncode == 0, linted.stdout
    tests = run_app_tests(app, "-q", "-x", "-p", "no:randomly")
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert petrock(app, "upgrade").stdout.startswith("already up to date")


def test_a_clone_without_petrock_refs_warns_and_does_not_raise_settled_conflicts_again(
    old_petrock, tmp_path: Path
) -> None:
    """The old flow: conflicts resolved with `git commit -a` left the new bases outside the branch."""
    old = old_petrock(RENDERS_OUTSIDE_HISTORY)
    app = old_app(old_petrock, tmp_path, RENDERS_OUTSIDE_HISTORY)
    newer = tmp_path / "templates"  # that petrock's templates, changed where the user changes the app too
    shutil.copytree(old.templates, newer)
    (newer / "VERSION").write_text("0.2.0\n")
    template = newer / "project/src/{{project_name}}/main.py"
    template.write_text(template.read_text().replace('DEFAULT_DB = "app.db"', 'DEFAULT_DB = "data/app.db"'))
    main = app / "src/shop/main.py"
    main.write_text(main.read_text().replace('DEFAULT_DB = "app.db"', 'DEFAULT_DB = "shop.db"'))
    git(app, *COMMIT, "Our database")
    stopped = old(app, "upgrade", env={"PETROCK_TEMPLATES": str(newer)})
    assert stopped.returncode != 0 and "conflict  src/shop/main.py" in stopped.stdout
    main.write_text(
        re.sub(r"<<<<<<<.*?>>>>>>>[^\n]*\n", 'DEFAULT_DB = "data/shop.db"\n', main.read_text(), flags=re.DOTALL)
    )
    git(app, *COMMIT, "Upgrade, conflicts resolved")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-local", str(app), str(clone)], check=True)
    assert "refs/petrock" not in git(clone, "for-each-ref")

    checked = petrock(clone, "check", templates=newer)

    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.startswith("warning: the generated versions of 1 file are not in this repository")
    assert "src/shop/main.py" in checked.stderr
    assert "warning" not in petrock(app, "check", templates=newer).stderr  # the original still has the ref
    dry = petrock(clone, "upgrade", "--dry-run", templates=newer)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.startswith("already up to date")  # the settled conflict is not raised again
    # With templates that change main.py again, the missing base is said, not hidden.
    current = tmp_path / "current"  # the installed templates, numbered past the ones the app has
    shutil.copytree(templates_dir(), current)
    (current / "VERSION").write_text("0.3.0\n")
    later = petrock(clone, "upgrade", "--dry-run", "--json", templates=current)
    assert "files" in later.stdout, later.stdout + later.stderr
    statuses = {f["path"]: f for f in json.loads(later.stdout)["files"]}
    assert statuses["src/shop/main.py"]["status"] == "conflict"
    assert "is not in this repository" in statuses["src/shop/main.py"]["note"]
    assert statuses["src/shop/core/app.py"]["status"] == "update"  # unedited: no base needed


def test_an_app_that_kept_state_in_memory_upgrades_to_projections_keeping_every_item_and_summary(
    old_petrock, tmp_path: Path
) -> None:
    app = old_app(old_petrock, tmp_path, STATE_IN_MEMORY, "posts")
    db = str(tmp_path / "shop.db")
    filled = run_in_app(app, FILL_OLD_APP, db, "300")
    assert filled.returncode == 0, filled.stderr

    upgraded = petrock(app, "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "src/shop/core/projections.py" in upgraded.stdout and "src/shop/posts/state.py" in upgraded.stdout

    first = run_in_app(app, READ_NEW_APP, db)
    assert first.returncode == 0, first.stderr
    after = json.loads(first.stdout)
    assert after["rebuilt"] == ["posts"]  # built from the log on the first start
    assert after["log"] == 900  # every post with its request and its summary, nothing appended since
    posts = after["posts"]
    assert posts["total"] == 300
    assert {post["id"] for post in posts["items"]} == {f"p{n}" for n in range(300)}
    assert all(
        post["summary_status"] == "ready" and post["summary"] == f"Post {post['id'][1:]} says hi."
        for post in posts["items"]
    )

    second = json.loads(run_in_app(app, READ_NEW_APP, db).stdout)
    assert second["rebuilt"] == [] and second["posts"] == posts  # from then on, start rebuilds nothing
    tested = run_app_tests(app)
    assert tested.returncode == 0, tested.stdout[-3000:]
