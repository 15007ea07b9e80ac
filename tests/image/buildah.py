"""Daemonless images: buildah builds and runs them, as root, with nothing but Debian's packages.

Each :class:`Buildah` keeps its images and containers in a storage directory of its own
and isolates what it runs with ``chroot``, so no daemon, runtime or registry is involved.
Storage uses the kernel's overlay filesystem where buildah accepts it (a container then
costs nothing to make), else ``vfs``: plain directories, which work anywhere but copy the
whole image for each container and each build stage (about 10 s each on the 2-core
machine); ``PETROCK_IMAGE_STORAGE=vfs`` chooses it. A :class:`Container` runs on a
network namespace of its own, as under Docker: the app listens on 0.0.0.0:8080 as its
image says, seen by nothing but the processes run in the same container.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import cache_dir

TOOLS = ("buildah", "debootstrap", "unshare", "nsenter", "ip", "tar")
ISOLATION = "chroot"
BUILD_TIMEOUT = 600  # seconds; a cached build takes about one minute on the 2-core machine
# What `buildah run` adds to the stderr of a command that exits non-zero, after the command's own output.
BUILDAH_EXIT_REPORT = re.compile(r"(subprocess exited with status \d+|Error: exit status \d+)")


def unavailable() -> str | None:
    """Why images cannot be built and run here (one line), or None when they can."""
    if os.geteuid() != 0:
        return "they need root (debootstrap, and buildah without user namespaces)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install buildah debootstrap iproute2)"
    return None


def report_line() -> str:
    reason = unavailable()
    if reason is not None:
        return f"image tests: skipped: {reason}"
    return f"image tests: base rootfs cached in {cache_dir()}"


@dataclass
class Image:
    """A built image: its tag and the config the Dockerfile gave it."""

    buildah: Buildah
    tag: str
    config: dict[str, Any]  # Docker's image config: Cmd, User, Volumes, Healthcheck, ...

    @property
    def command(self) -> list[str]:
        return [*(self.config.get("Entrypoint") or []), *self.config["Cmd"]]

    @property
    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK as a command line (``CMD-SHELL`` runs through ``/bin/sh -c``, as Docker does)."""
        test = self.config["Healthcheck"]["Test"]
        return test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]

    @property
    def healthcheck_timeout(self) -> float:
        return self.config["Healthcheck"]["Timeout"] / 1e9  # nanoseconds in the config

    @contextlib.contextmanager
    def container(self, env: dict[str, str] | None = None) -> Iterator[Container]:
        """A new container of this image with ``env`` (as ``docker run -e``), on a network of its own."""
        name = f"petrock-test-{uuid.uuid4().hex[:8]}"
        holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "up\n", "no network namespace"
            self.buildah.run("from", "--pull-never", "--quiet", "--name", name, self.tag)
            try:
                yield Container(self.buildah, name, f"/proc/{holder.pid}/ns/net", env or {})
            finally:
                self.buildah.run("rm", name)
        finally:
            holder.kill()
            holder.wait()


@dataclass
class Container:
    """One container: ``start`` runs its main process, ``exec`` runs others beside it (as ``docker exec``)."""

    buildah: Buildah
    name: str
    netns: str
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    output_file: Path | None = None

    def _command(self, argv: Sequence[str]) -> list[str]:
        environment = [f"--env={key}={value}" for key, value in self.env.items()]
        run = ["run", "--network=host", f"--isolation={ISOLATION}", *environment, self.name, "--", *argv]
        return ["nsenter", f"--net={self.netns}", *self.buildah.command(*run)]

    def exec(self, argv: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the container, with its environment and user, and wait for it."""
        return subprocess.run(self._command(argv), capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, argv: Sequence[str], output_file: Path) -> None:
        self.output_file = output_file
        with output_file.open("w") as output:
            self.process = subprocess.Popen(self._command(argv), stdout=output, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        return self.output_file.read_text() if self.output_file is not None else ""

    def wait_for_output(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait until the main process prints a line matching ``pattern``; fail if it exits first."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.output(), re.MULTILINE):
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"the container exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{self.output()}")

    def main_pid(self) -> int:
        """The main process's id on this machine (chroot isolation shares the machine's process ids):
        the first process below ``buildah run`` that is not buildah's own."""
        assert self.process is not None
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        below = list(children.get(self.process.pid, []))
        while below:
            pid = below.pop(0)
            with contextlib.suppress(OSError):
                if not (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]).startswith(b"buildah"):
                    return pid
            below += children.get(pid, [])
        raise AssertionError(f"no main process below buildah ({self.process.pid})")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM to the main process, as ``docker stop`` sends; its exit code.

        Not to buildah: it would SIGKILL its child.
        """
        assert self.process is not None
        os.kill(self.main_pid(), signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to the main process; buildah exits with it. (Killing buildah would leave it running.)"""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(AssertionError, ProcessLookupError):
            os.kill(self.main_pid(), signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Buildah:
    """buildah with storage of its own: images in ``storage`` (kept between runs), run state in ``runroot``."""

    def __init__(self, storage: Path, runroot: Path) -> None:
        self.storage = storage
        self.runroot = runroot
        self.driver = os.environ.get("PETROCK_IMAGE_STORAGE") or "overlay"
        if self.driver == "overlay" and not self.accepts_storage():
            self.driver = "vfs"

    def accepts_storage(self) -> bool:
        return subprocess.run(self.command("info"), capture_output=True, timeout=60, check=False).returncode == 0

    @property
    def root(self) -> Path:
        return self.storage / self.driver  # a folder per driver: their layers do not mix

    def command(self, *args: str) -> list[str]:
        return [
            "buildah",
            f"--storage-driver={self.driver}",
            f"--root={self.root}",
            f"--runroot={self.runroot}",
            *args,
        ]

    def run(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"buildah {args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout

    def label(self, tag: str, name: str) -> str | None:
        """The label ``name`` of the image ``tag``; None when there is no such image or label."""
        found = subprocess.run(
            self.command("inspect", "--type=image", tag), capture_output=True, text=True, timeout=60, check=False
        )
        if found.returncode != 0:
            return None
        return (json.loads(found.stdout)["Docker"]["config"].get("Labels") or {}).get(name)

    def import_rootfs(self, tarball: Path, tag: str, labels: dict[str, str]) -> None:
        """An image of ``tarball``'s files alone, with the environment the official Python images set."""
        container = self.run("from", "--quiet", "scratch").strip()
        self.run("add", "--quiet", container, str(tarball), "/")  # a tar archive is unpacked
        self.run(
            "config",
            "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env=LANG=C.UTF-8",
            "--cmd=python3",
            *(f"--label={key}={value}" for key, value in labels.items()),
            container,
        )
        self.run("commit", "--quiet", "--rm", container, tag)

    def build(self, context: Path, tag: str, options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``buildah bud`` in ``context``: its Dockerfile as written, the base image never pulled.

        Docker's format keeps HEALTHCHECK (OCI's has no place for it); the machine's network
        lets pip reach the indexes on the network that its configuration names.
        """
        command = self.command(
            "bud", "--pull=never", "--network=host", f"--isolation={ISOLATION}", "--format=docker",
            "--tag", tag, *options, str(context),
        )  # fmt: skip
        return subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False, stdin=subprocess.DEVNULL
        )

    def image(self, tag: str) -> Image:
        inspected = json.loads(self.run("inspect", "--type=image", tag))
        return Image(self, tag, inspected["Docker"]["config"])
