"""This machine's pip configuration, carried into the image build so ``pip`` there finds packages.

``pip config list`` gives every setting pip uses here, from its files and its ``PIP_*``
variables alike (the variables win, as they do for pip). They are written into one
``pip.conf`` that the build mounts at ``/etc/pip.conf``, pip's system-wide file. The
local paths the settings name (package indexes given as ``file://`` URLs, ``find-links``
folders, a constraints file, a CA bundle) are mounted read-only at the same paths, so the
settings mean inside the build what they mean here. Indexes on the network need nothing:
the build shares the machine's network.
"""

from __future__ import annotations

import ast
import configparser
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

CONFIG_IN_IMAGE = "/etc/pip.conf"
PATH_SETTINGS = frozenset({"index-url", "extra-index-url", "find-links", "constraint", "cert", "client-cert"})


@dataclass(frozen=True)
class PipSetup:
    config: dict[str, dict[str, str]]  # section -> key -> value, as in a pip.conf
    mounts: tuple[Path, ...]  # host paths the settings name, mounted at the same place

    def volumes(self, config_file: Path) -> list[str]:
        """``buildah bud`` options: write the config to ``config_file`` and mount it and the paths read-only."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_dict(self.config)
        text = io.StringIO()
        parser.write(text)
        config_file.write_text(text.getvalue())
        options = ["-v", f"{config_file}:{CONFIG_IN_IMAGE}:ro"]
        for path in self.mounts:
            options += ["-v", f"{path}:{path}:ro"]
        return options


def machine_pip_setup() -> PipSetup:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    config: dict[str, dict[str, str]] = {}
    from_environment: list[tuple[str, str]] = []
    for line in listed.splitlines():
        name, _, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        value = ast.literal_eval(raw)  # pip prints each value as a Python string literal
        if section == ":env:":
            from_environment.append((key, value))
        else:
            config.setdefault(section, {})[key] = value
    for key, value in from_environment:
        config.setdefault("global", {})[key] = value
    mounts = {path for section in config.values() for key, value in section.items() for path in local_paths(key, value)}
    return PipSetup(config, tuple(sorted(outermost(mounts))))


def local_paths(key: str, value: str) -> list[Path]:
    """The existing local paths a setting names; an index's whole tree (its pages link to ``../../files``)."""
    if key not in PATH_SETTINGS:
        return []
    paths = []
    for item in value.split():
        url = urlparse(item)
        if url.scheme == "file":
            path = Path(unquote(url.path))
        elif url.scheme == "" and item.startswith("/"):
            path = Path(item)
        else:
            continue  # an index on the network
        if key.endswith("index-url") and path.name == "simple":
            path = path.parent
        if path.exists():
            paths.append(path)
    return paths


def outermost(paths: set[Path]) -> set[Path]:
    """Drop the paths that lie inside another one: its mount brings them along."""
    return {path for path in paths if not any(other in path.parents for other in paths)}
