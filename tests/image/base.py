"""The stand-in for ``python:3.11-slim``: Debian bookworm made with debootstrap, cached as a tarball.

Docker Hub is out of reach here, but Debian's packages are not: bookworm's Python is
3.11, as in the official slim image (which is bookworm too). The rootfs gets what the
official image's users rely on: ``python`` and ``pip`` on the PATH, ``useradd``, and pip
allowed to install into the system (Debian's EXTERNALLY-MANAGED marker removed, as the
official image has no such marker). Making it takes a few minutes, so the tarball is
kept in the cache directory under a key of the recipe: change the recipe, and it is
made anew.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from petrock.user_cache import user_cache

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3", "python3-pip", "python3-venv", "passwd")
# Raise when the steps in finish_rootfs change: the key then names a new tarball.
REVISION = 1
# What the base image is called, so that the app's Dockerfile builds on it unchanged.
TAG = "python:3.11-slim"
DEBOOTSTRAP_TIMEOUT = 900  # seconds; 1 to 3 minutes on the 2-core machine, as busy as it is
# Downloaded packages and indexes: the image needs none of them, and every container copies the rootfs.
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info")


def recipe_key() -> str:
    recipe = f"{SUITE} {VARIANT} {','.join(PACKAGES)} {os.uname().machine} revision {REVISION}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """``$PETROCK_IMAGE_CACHE``, else ``$XDG_CACHE_HOME/petrock/image-test`` (``~/.cache/...``)."""
    if explicit := os.environ.get("PETROCK_IMAGE_CACHE"):
        return Path(explicit)
    return user_cache("petrock", "image-test")


def base_rootfs() -> Path:
    """The cached rootfs tarball, made first if it is not there (one maker at a time)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"base-{SUITE}-{recipe_key()}.tar"
    with (cache / f"{tarball.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            make_rootfs_tarball(tarball)
    return tarball


def make_rootfs_tarball(tarball: Path) -> None:
    """debootstrap into a temporary directory, finish it, tar it, and only then name it ``tarball``."""
    work = Path(tempfile.mkdtemp(prefix="petrock-rootfs-", dir=tarball.parent))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        # In memory: dpkg syncs every file it unpacks, which on a busy disk costs minutes; tmpfs ignores it.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=755", "tmpfs", str(rootfs)], check=True)
        command = ["debootstrap", "--foreign", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}"]
        command += [SUITE, str(rootfs)]
        if (mirror := apt_mirror()) is not None:
            command.append(mirror)
        debootstrap(command)
        # The second stage is the one debootstrap would run next, from this machine, but it reads a package
        # index cut down to the packages the first stage chose: it resolves each pre-dependency again, one
        # pass over the index per level, and over all of bookworm that is a quarter of the minute it takes.
        keep_only_chosen_packages(rootfs)
        second = rootfs / "debootstrap"
        command = [str(second / "debootstrap"), "--second-stage", f"--second-stage-target={rootfs}"]
        debootstrap(command, env={**os.environ, "DEBOOTSTRAP_DIR": str(second)})
        finish_rootfs(rootfs)
        partial = work / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    finally:
        remove_tree(work)


def debootstrap(command: list[str], env: dict[str, str] | None = None) -> None:
    made = subprocess.run(command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT, check=False, env=env)
    if made.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({made.returncode}):\n{(made.stdout + made.stderr)[-3000:]}")


def keep_only_chosen_packages(rootfs: Path) -> None:
    """Cut the first stage's package indexes down to the packages it chose (``debootstrap/required`` and
    ``base``). Those are closed under dependencies already (the first stage resolved them), so every
    resolution the second stage makes gives what it gives on the whole index; the indexes are not in
    the image (finish_rootfs empties var/lib/apt/lists)."""
    chosen = set((rootfs / "debootstrap/required").read_text().split())
    chosen |= set((rootfs / "debootstrap/base").read_text().split())
    for index in (rootfs / "var/lib/apt/lists").glob("*_Packages"):
        stanzas = index.read_bytes().split(b"\n\n")
        kept = [s for s in stanzas if (m := re.match(rb"Package: (\S+)", s)) and m[1].decode() in chosen]
        index.write_bytes(b"\n\n".join(kept) + b"\n\n")


def finish_rootfs(rootfs: Path) -> None:
    """What makes Debian's Python look like the official image's to a Dockerfile."""
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    (rootfs / "usr/local/bin/pip").symlink_to("/usr/bin/pip3")
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for trimmed in TRIMMED:
        for entry in (rootfs / trimmed).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def apt_mirror() -> str | None:
    """The Debian mirror this machine's apt uses for the suite (None: debootstrap's default)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:(.*)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites[1].split():
                return uris[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            found = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if found and found[2] == SUITE:
                return found[1]
    return None


def remove_tree(path: Path) -> None:
    """rmtree that first unmounts whatever is mounted below ``path`` (an interrupted debootstrap
    leaves /proc, /sys or a bind of /dev mounted in its target), so it never deletes through a mount."""
    for point in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    if left := mounts_below(path):
        raise RuntimeError(f"not removing {path}: still mounted there: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


def mounts_below(path: Path) -> list[str]:
    inside = str(path.resolve()) + "/"
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())  # 5th: mount point
    return [point for point in points if point.startswith(inside)]
