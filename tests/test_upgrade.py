"""``petrock upgrade`` and ``petrock check`` on a real generated app, against a changed copy of the templates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from petrock import __version__
from petrock.changelog import listed_versions
from petrock.merge import carry_marker_blocks, has_conflict_markers, sort_import_blocks
from petrock.templates import templates_dir

from .support import (
    REPO,
    git,
    git_snapshot,
    new_app,
    refused_without_a_trace,
    run_app_tests,
    run_petrock,
    tree_snapshot,
)

PROJECT = Path("project/src/{{project_name}}")


def petrock(cwd: Path, *args: str, templates: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_petrock(*args, cwd=cwd, env={"PETROCK_TEMPLATES": str(templates)} if templates else None)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return new_app(tmp_path, "shop")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of the templates to change, declaring a version newer than any petrock's own."""
    copy = tmp_path / "templates"
    shutil.copytree(templates_dir(), copy)
    (copy / "VERSION").write_text("99.0.0\n")
    return copy


def without_git_index(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    """`git status` refreshes the index's stat cache; that is not a write of the app's content."""
    return {path: data for path, data in snapshot.items() if path != ".git/index"}


def manifest(app: Path) -> dict:
    return tomllib.loads((app / ".petrock.toml").read_text())


def head(app: Path) -> str:
    return git(app, "rev-parse", "HEAD").strip()


def test_user_and_template_edits_in_different_parts_of_a_file_both_survive(shop: Path, templates: Path) -> None:
    main = shop / "src/shop/main.py"
    main.write_text(main.read_text() + '\n\ndef shop_banner() -> str:\n    return "my own code"\n')
    git(shop, "commit", "-qam", "Add a banner")
    edit(templates / PROJECT / "main.py", '"""Builds the app:', '"""Builds the app (templates 99.0.0):')

    result = petrock(shop, "upgrade", templates=templates)

    assert result.returncode == 0, result.stderr
    assert "merge  src/shop/main.py" in result.stdout
    text = main.read_text()
    assert '"""Builds the app (templates 99.0.0):' in text
    assert 'return "my own code"' in text
    assert not has_conflict_markers(text)
    assert git(shop, "status", "--porcelain") == ""
    assert git(shop, "log", "-1", "--format=%s") == "Upgrade shop to petrock templates 99.0.0\n"
    recorded = manifest(shop)
    assert recorded["template_version"] == "99.0.0"
    # The new base is the pure render, and it is in the app's history for the next upgrade.
    base = git(shop, "cat-file", "blob", recorded["files"]["src/shop/main.py"])
    assert "(templates 99.0.0)" in base and "my own code" not in base
    again = petrock(shop, "upgrade", templates=templates)
    assert again.returncode == 0, again.stderr
    assert "merge" not in again.stdout and "conflict" not in again.stdout
    assert main.read_text() == text


def test_overlapping_edits_get_conflict_markers_and_nothing_is_committed(shop: Path, templates: Path) -> None:
    main = shop / "src/shop/main.py"
    edit(main, 'DEFAULT_DB = "app.db"', 'DEFAULT_DB = "shop.db"')
    git(shop, "commit", "-qam", "Own database name")
    edit(templates / PROJECT / "main.py", 'DEFAULT_DB = "app.db"', 'DEFAULT_DB = "data/app.db"')
    before = head(shop)

    result = petrock(shop, "upgrade", templates=templates)

    assert result.returncode != 0
    assert "conflict  src/shop/main.py" in result.stdout
    assert result.stderr.startswith("error: conflict markers in src/shop/main.py")
    text = main.read_text()
    assert "<<<<<<< yours" in text and 'DEFAULT_DB = "shop.db"' in text and 'DEFAULT_DB = "data/app.db"' in text
    assert ">>>>>>> templates 99.0.0" in text
    assert head(shop) == before
    checked = petrock(shop, "check", "--json", templates=templates)
    assert checked.returncode == 1
    assert json.loads(checked.stdout)["conflicts"] == ["src/shop/main.py"]


def test_files_the_user_did_not_touch_take_the_new_render(shop: Path, templates: Path) -> None:
    edit(
        templates / PROJECT / "core/kv.py",
        '"""',
        '"""Templates 99.0.0. ',
    )
    result = petrock(shop, "upgrade", templates=templates)
    assert result.returncode == 0, result.stderr
    assert "update  src/shop/core/kv.py" in result.stdout
    rendered = (templates / PROJECT / "core/kv.py").read_text()
    assert (shop / "src/shop/core/kv.py").read_text() == rendered


def test_an_upgrade_says_what_comes_next_a_reinstall_for_dependencies_a_rebuild_for_code(
    shop: Path, templates: Path
) -> None:
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    quiet = petrock(shop, "upgrade", templates=templates)
    assert quiet.returncode == 0, quiet.stderr
    assert "reinstall" not in quiet.stdout  # pyproject.toml unchanged: nothing to say
    assert "next start rebuilds" in quiet.stdout and "`python -m shop projections status`" in quiet.stdout

    pyproject = next(templates.joinpath("project").glob("pyproject.toml*"))
    edit(pyproject, '"httptools', '"rich>=13",\n    "httptools')
    (templates / "VERSION").write_text("99.0.1\n")
    told = petrock(shop, "upgrade", templates=templates)
    assert told.returncode == 0, told.stderr
    assert "pyproject.toml changed" in told.stdout
    assert ".venv/bin/pip install -e '.[test]'" in told.stdout
    assert "rebuilds" not in told.stdout  # no code of the app changed


def test_dry_run_shows_the_diff_and_writes_nothing(shop: Path, templates: Path) -> None:
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    before = without_git_index(tree_snapshot(shop))

    result = petrock(shop, "upgrade", "--dry-run", templates=templates)

    assert result.returncode == 0, result.stderr
    assert "update  src/shop/core/kv.py" in result.stdout
    assert '+"""Templates 99.0.0.' in result.stdout
    assert "dry run: nothing was written" in result.stdout
    assert without_git_index(tree_snapshot(shop)) == before


def test_new_template_files_arrive_and_files_the_user_deleted_stay_deleted(shop: Path, templates: Path) -> None:
    (shop / "tests/test_log.py").unlink()
    git(shop, "commit", "-qam", "We do not need the log tests")
    edit(templates / "project/tests/test_log.py.jinja", '"""', '"""Templates 99.0.0. ')
    (templates / PROJECT / "core/clock.py").write_text('"""Time, injectable in tests."""\n')

    result = petrock(shop, "upgrade", "--json", templates=templates)

    assert result.returncode == 0, result.stderr
    statuses = {f["path"]: f["status"] for f in json.loads(result.stdout)["files"]}
    assert statuses["tests/test_log.py"] == "skip"
    assert statuses["src/shop/core/clock.py"] == "create"
    assert not (shop / "tests/test_log.py").exists()
    assert (shop / "src/shop/core/clock.py").read_text() == '"""Time, injectable in tests."""\n'
    # Still deleted on the next upgrade too.
    assert petrock(shop, "upgrade", templates=templates).returncode == 0
    assert not (shop / "tests/test_log.py").exists()


def test_a_file_dropped_from_the_templates_is_removed_unless_the_user_changed_it(shop: Path, templates: Path) -> None:
    edit(shop / "src/shop/core/pages.py", '"""', '"""Ours. ')
    git(shop, "commit", "-qam", "Note on pages")
    (templates / PROJECT / "core/pages.py").unlink()
    (templates / PROJECT / "core/kv.py").unlink()

    result = petrock(shop, "upgrade", templates=templates)

    assert result.returncode == 0, result.stderr
    assert "remove  src/shop/core/kv.py" in result.stdout
    assert "keep  src/shop/core/pages.py" in result.stdout
    assert not (shop / "src/shop/core/kv.py").exists()
    assert (shop / "src/shop/core/pages.py").read_text().startswith('"""Ours. ')
    assert "src/shop/core/pages.py" not in manifest(shop)["files"]


def test_registrations_between_petrock_markers_survive_a_template_change(shop: Path, templates: Path) -> None:
    features = shop / "src/shop/features.py"
    edit(
        features,
        "# petrock:end-imports",
        "from .posts.register import register as register_posts\n# petrock:end-imports",
    )
    edit(features, "    # petrock:end-registrations", "    register_posts(app)\n    # petrock:end-registrations")
    git(shop, "commit", "-qam", "Register posts")
    edit(templates / PROJECT / "features.py", '"""Every feature', '"""Every feature (99.0.0)')

    result = petrock(shop, "upgrade", templates=templates)

    assert result.returncode == 0, result.stderr
    text = features.read_text()
    assert '"""Every feature (99.0.0)' in text
    assert text.count("register_posts(app)") == 1
    assert text.count("from .posts.register import register as register_posts") == 1


def test_upgrade_refuses_a_dirty_tree_and_a_downgrade(shop: Path, templates: Path) -> None:
    (shop / "src/shop/main.py").write_text("# half-done work\n")
    dirty = petrock(shop, "upgrade", templates=templates)
    assert dirty.returncode != 0
    assert dirty.stderr.startswith("error: the app has uncommitted changes")
    git(shop, "checkout", "--", ".")

    (templates / "VERSION").write_text("0.0.1\n")
    downgrade = petrock(shop, "upgrade", templates=templates)
    assert downgrade.returncode != 0
    assert "newer than the installed 0.0.1" in downgrade.stderr
    assert git(shop, "status", "--porcelain") == ""


def test_check_lists_the_files_the_templates_would_render_differently(shop: Path, templates: Path) -> None:
    assert petrock(shop, "check").returncode == 0
    assert petrock(shop, "check", templates=templates).returncode == 0  # a new version number alone changes nothing
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    (templates / "project/Procfile").write_text("web: python -m shop serve\n")  # a file the app never had
    (templates / PROJECT / "core/pages.py").unlink()

    behind = petrock(shop, "check", templates=templates)

    assert behind.returncode == 1
    assert behind.stderr.startswith("error: 3 files behind the installed templates 99.0.0: ")
    for listed in ("Procfile (new)", "src/shop/core/kv.py (changed)", "src/shop/core/pages.py (dropped)"):
        assert listed in behind.stderr
    as_json = json.loads(petrock(shop, "check", "--json", templates=templates).stdout)
    assert as_json["ok"] is False
    assert as_json["behind"] == ["Procfile", "src/shop/core/kv.py", "src/shop/core/pages.py"]
    assert {c["path"]: c["change"] for c in as_json["changes"]}["Procfile"] == "new"
    assert petrock(shop, "upgrade", templates=templates).returncode == 0
    after = petrock(shop, "check", "--json", templates=templates)
    assert after.returncode == 0
    assert json.loads(after.stdout)["ok"] is True


def test_upgrade_and_check_name_the_changelog_versions_the_app_has_not_taken_in(shop: Path, templates: Path) -> None:
    made_by_0_1 = (shop / ".petrock.toml").read_text().replace(f'"{__version__}"', '"0.1.0"')
    (shop / ".petrock.toml").write_text(made_by_0_1)  # an app generated by petrock 0.1.0
    git(shop, "commit", "-qam", "Made with petrock 0.1.0")
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    since = [v for v in listed_versions((REPO / "CHANGELOG.md").read_text()) if v != "0.1.0"][::-1]
    pointer = f"what changed from 0.1.0 to 99.0.0: see {REPO / 'CHANGELOG.md'} ({', '.join(since)})"

    behind = petrock(shop, "check", templates=templates)
    assert behind.returncode == 1 and behind.stderr.count("\n") == 1
    assert behind.stderr.endswith(f"run `petrock upgrade`; {pointer}\n"), behind.stderr
    checked = json.loads(petrock(shop, "check", "--json", templates=templates).stdout)
    assert checked["changelog"] == {"path": str(REPO / "CHANGELOG.md"), "versions": since}
    looked = petrock(shop, "upgrade", "--dry-run", templates=templates)
    assert f"\n{pointer}\n" in looked.stdout
    upgraded = petrock(shop, "upgrade", templates=templates)
    assert upgraded.returncode == 0 and f"\n{pointer}\n" in upgraded.stdout
    assert json.loads(petrock(shop, "check", "--json", templates=templates).stdout)["changelog"] is None


def test_a_second_upgrade_writes_and_commits_nothing(shop: Path, templates: Path) -> None:
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    assert petrock(shop, "upgrade", templates=templates).returncode == 0
    before = without_git_index(tree_snapshot(shop))

    again = petrock(shop, "upgrade", templates=templates)

    assert again.returncode == 0, again.stderr
    assert again.stdout == "already up to date with templates 99.0.0: nothing to write\n"
    assert without_git_index(tree_snapshot(shop)) == before
    assert json.loads(petrock(shop, "upgrade", "--json", templates=templates).stdout)["up_to_date"] is True


def test_carry_marker_blocks_keeps_the_apps_block_and_the_targets_surroundings() -> None:
    ours = "a\n# petrock:imports\nimport x\n# petrock:end-imports\nb\n"
    theirs = "A\n# petrock:imports\n# petrock:end-imports\nB\n"
    assert carry_marker_blocks(ours, theirs) == "A\n# petrock:imports\nimport x\n# petrock:end-imports\nB\n"
    assert carry_marker_blocks("no markers\n", theirs) == theirs


def test_import_blocks_petrock_owns_are_sorted_and_end_with_one_blank_line() -> None:
    block = "x\n# petrock:imports\nfrom .posts import a\nfrom .articles import b\nfrom .posts import a\n"
    block += "# petrock:end-imports\n"
    assert sort_import_blocks(block) == (
        "x\n# petrock:imports\nfrom .articles import b\nfrom .posts import a\n\n# petrock:end-imports\n"
    )
    assert (
        sort_import_blocks("# petrock:imports\n# petrock:end-imports\n")
        == "# petrock:imports\n\n# petrock:end-imports\n"
    )
    hand_written = "# petrock:imports\nfrom .b import (\n    c,\n)\nfrom .a import d\n# petrock:end-imports\n"
    assert sort_import_blocks(hand_written) == hand_written  # not petrock's lines: left as they are
    registrations = "    # petrock:registrations\n    register_posts(app)\n    register_articles(app)\n"
    registrations += "    # petrock:end-registrations\n"
    assert sort_import_blocks(registrations) == registrations  # the order features were added in


FEATURE = Path("feature/src/{{project_name}}/{{feature}}")


@pytest.mark.slow
def test_a_feature_upgrades_alone_keeping_the_users_edits_and_its_tests_pass(shop: Path, templates: Path) -> None:
    assert petrock(shop, "feature", "add", "posts").returncode == 0
    state = shop / "src/shop/posts/state.py"
    state.write_text(state.read_text() + "\n\n# Our own note at the end of the posts state.\n")
    git(shop, "commit", "-qam", "Note in posts state")
    edit(templates / FEATURE / "state.py.jinja", '"""The {{ feature }} state:', '"""The {{ feature }} state (99.0.0):')
    edit(templates / PROJECT / "main.py", '"""Builds the app:', '"""Builds the app (99.0.0):')

    result = petrock(shop, "upgrade", "--feature", "posts", templates=templates)

    assert result.returncode == 0, result.stderr
    assert "merge  src/shop/posts/state.py" in result.stdout
    text = state.read_text()
    assert text.startswith('"""The posts state (99.0.0):') and "# Our own note at the end" in text
    assert "(99.0.0)" not in (shop / "src/shop/main.py").read_text()  # the project core was not in scope
    recorded = manifest(shop)
    assert recorded["features"]["posts"]["template_version"] == "99.0.0"
    assert git(shop, "log", "-1", "--format=%s") == "Upgrade feature posts to petrock templates 99.0.0\n"
    behind = petrock(shop, "check", templates=templates).stderr
    assert behind.startswith("error: 1 file behind the installed templates 99.0.0: src/shop/main.py (changed)")
    edit(templates / PROJECT / "features.py", '"""Every feature', '"""Every feature (99.0.0)')
    whole = petrock(shop, "upgrade", templates=templates)
    assert whole.returncode == 0, whole.stderr
    features = (shop / "src/shop/features.py").read_text()
    assert '"""Every feature (99.0.0)' in features and features.count("register_posts(app)") == 1
    assert petrock(shop, "check", templates=templates).returncode == 0
    tests = run_app_tests(shop, "-q", "tests/test_posts.py")
    assert tests.returncode == 0, tests.stdout + tests.stderr


def top_level(text: str, line: str) -> str:
    """``line`` as a top-level key (before the first table), any table of the same name renamed away."""
    key = line.split(" =")[0]
    text = text.replace(f"\n[{key}]\n", "\n[renamed]\n")
    return text.replace("\n[answers]", f"\n{line}\n[answers]", 1)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t.replace(f'template_version = "{__version__}"', "template_version = 5"), "`template_version` must"),
        (lambda t: top_level(t, 'files = "nope"'), "`files` must be a table ([files]), not a string ('nope')"),
        (lambda t: top_level(t, 'features = ["posts"]'), "`features` must be a table ([features]), not a list"),
        (lambda t: t.replace('project_name = "shop"', 'project_name = "store"'), "`project_name` = 'store' does"),
        (lambda t: t.replace('project_name = "shop"\n', "", 1), "`project_name` is missing"),
        (lambda t: t.replace('"src/shop/main.py" = "', '"src/shop/main.py" = "x'), '`files."src/shop/main.py"` must'),
    ],
    ids=["version-number", "files-string", "features-list", "renamed", "missing-key", "bad-blob"],
)
def test_a_hand_edited_manifest_is_refused_in_one_line_naming_the_key(shop: Path, change, says: str) -> None:
    manifest_file = shop / ".petrock.toml"
    manifest_file.write_text(change(manifest_file.read_text()))
    for command in (["check"], ["upgrade"], ["feature", "add", "posts"]):
        message = refused_without_a_trace(shop, *command)
        assert message.startswith(f"error: .petrock.toml: {says}"), message
        assert message.endswith("restore it from git (`git checkout .petrock.toml`)\n"), message


def test_allow_dirty_commits_only_what_petrock_changed_and_refuses_files_with_uncommitted_edits(
    shop: Path, templates: Path
) -> None:
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    readme = shop / "README.md"
    readme.write_text(readme.read_text() + "\nOur own notes, not committed yet.\n")
    (shop / "notes.txt").write_text("staged, not committed\n")
    git(shop, "add", "notes.txt")
    kv = shop / "src/shop/core/kv.py"
    kv.write_text(kv.read_text() + "# half-done\n")

    before = git_snapshot(shop)
    refused = petrock(shop, "upgrade", "--allow-dirty", templates=templates)
    assert refused.returncode != 0
    assert refused.stderr.startswith(
        "error: the upgrade would change files with uncommitted edits (src/shop/core/kv.py)"
    )
    assert git_snapshot(shop) == before
    git(shop, "checkout", "--", "src/shop/core/kv.py")

    result = petrock(shop, "upgrade", "--allow-dirty", templates=templates)

    assert result.returncode == 0, result.stderr
    assert set(git(shop, "diff", "--name-only", "HEAD^1", "HEAD").split()) == {
        ".petrock.toml",
        "src/shop/core/kv.py",
    }
    assert git(shop, "status", "--porcelain").splitlines() == [" M README.md", "A  notes.txt"]
    assert "Our own notes" in readme.read_text()


def conflicting_upgrade(shop: Path, templates: Path) -> subprocess.CompletedProcess[str]:
    """An upgrade stopped by a conflict in main.py (the user and the templates changed the same line)."""
    edit(shop / "src/shop/main.py", 'DEFAULT_DB = "app.db"', 'DEFAULT_DB = "shop.db"')
    git(shop, "commit", "-qam", "Own database name")
    edit(templates / PROJECT / "main.py", 'DEFAULT_DB = "app.db"', 'DEFAULT_DB = "data/app.db"')
    edit(templates / PROJECT / "core/kv.py", '"""', '"""Templates 99.0.0. ')
    result = petrock(shop, "upgrade", templates=templates)
    assert result.returncode != 0
    return result


def resolve(path: Path, line: str) -> None:
    path.write_text(re.sub(r"<<<<<<<.*?>>>>>>>[^\n]*\n", line + "\n", path.read_text(), flags=re.DOTALL))


def render_commit(app: Path) -> str:
    return manifest(app)["commits"]["project"]


@pytest.mark.slow
def test_a_conflict_leaves_a_merge_whose_commit_keeps_the_new_bases_in_the_history(
    shop: Path, templates: Path, tmp_path: Path
) -> None:
    stopped = conflicting_upgrade(shop, templates)
    assert "petrock upgrade --continue" in stopped.stderr
    assert git(shop, "rev-parse", "MERGE_HEAD").strip() == render_commit(shop)
    status = git(shop, "status", "--porcelain").splitlines()
    assert "UU src/shop/main.py" in status and "M  src/shop/core/kv.py" in status
    again = petrock(shop, "upgrade", templates=templates)
    assert again.returncode != 0 and "waiting for its conflicts to be resolved" in again.stderr

    resolve(shop / "src/shop/main.py", 'DEFAULT_DB = "data/shop.db"')
    git(shop, "commit", "-qa", "--no-edit")  # the user's own commit, as after any git merge

    assert git(shop, "rev-parse", "HEAD^2").strip() == render_commit(shop)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-local", str(shop), str(clone)], check=True)
    checked = petrock(clone, "check", templates=templates)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    assert petrock(clone, "upgrade", templates=templates).stdout.startswith("already up to date")


@pytest.mark.slow
def test_upgrade_continue_commits_the_resolution_and_abort_puts_everything_back(shop: Path, templates: Path) -> None:
    conflicting_upgrade(shop, templates)
    before = head(shop)  # a stopped upgrade commits nothing
    early = petrock(shop, "upgrade", "--continue", templates=templates)
    assert early.returncode != 0 and "conflict markers remain in src/shop/main.py" in early.stderr
    aborted = petrock(shop, "upgrade", "--abort", templates=templates)
    assert aborted.returncode == 0, aborted.stderr
    assert head(shop) == before and git(shop, "status", "--porcelain") == ""
    assert 'DEFAULT_DB = "shop.db"' in (shop / "src/shop/main.py").read_text()
    assert not (shop / ".git/MERGE_HEAD").exists()

    stopped = petrock(shop, "upgrade", templates=templates)
    assert stopped.returncode != 0
    resolve(shop / "src/shop/main.py", 'DEFAULT_DB = "data/shop.db"')
    continued = petrock(shop, "upgrade", "--continue", templates=templates)

    assert continued.returncode == 0, continued.stderr
    assert (
        git(shop, "log", "-1", "--format=%s%n%P")
        == f"Upgrade shop to petrock templates 99.0.0\n{before} {render_commit(shop)}\n"
    )
    assert git(shop, "status", "--porcelain") == ""
    assert petrock(shop, "check", templates=templates).returncode == 0
    assert petrock(shop, "upgrade", templates=templates).stdout.startswith("already up to date")
