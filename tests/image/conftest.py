"""Image tests: a generated app's Dockerfile built with buildah and the image run, daemonless.

``blog_image`` is the image of a fresh ``petrock new blog`` + ``petrock feature add
posts``, built from its own Dockerfile on the debootstrap stand-in for
``python:3.11-slim`` (base.py), with this machine's pip configuration (pip_setup.py).
Building takes about a minute, so the tests of this folder share one image. The base
rootfs (a tarball) and buildah's storage holding the base image are kept between runs
in the cache folder (base.cache_dir()); run state and the app's image are not. Without
root, buildah or debootstrap every test here is skipped for the one reason the report
states.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import base
from .buildah import Buildah, Image, unavailable
from .pip_setup import machine_pip_setup

# Names the rootfs tarball an imported base image was made from: a new recipe means a new import.
BASE_LABEL = "petrock.test.rootfs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = unavailable()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=f"image tests: {reason}"))


@pytest.fixture(scope="module")
def buildah() -> Iterator[Buildah]:
    """buildah whose storage (in the cache folder) holds the base image as ``python:3.11-slim``."""
    runroot = Path(tempfile.mkdtemp(prefix="petrock-buildah-run-"))
    tool = Buildah(base.cache_dir() / "storage", runroot)
    try:
        rootfs = base.base_rootfs()
        if tool.label(base.TAG, BASE_LABEL) != rootfs.name:  # first run, or a new recipe
            tool.import_rootfs(rootfs, base.TAG, {BASE_LABEL: rootfs.name})
        yield tool
    finally:
        base.remove_tree(runroot)


@pytest.fixture(scope="module")
def blog_image(buildah: Buildah, _blog_with_posts_original: Path) -> Iterator[Image]:
    """The image of the blog app with posts, built from its Dockerfile as written (removed afterwards)."""
    tag = f"petrock-test-blog-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="petrock-pip-") as pip_dir:
        options = machine_pip_setup().volumes(Path(pip_dir) / "pip.conf")
        built = buildah.build(_blog_with_posts_original, tag, options)
    assert built.returncode == 0, f"the image did not build:\n{(built.stdout + built.stderr)[-6000:]}"
    try:
        yield buildah.image(tag)
    finally:
        buildah.run("rmi", tag)
