"""The migration's own tree walks (``syntax.walk``, ``findall``, ``parents_of``) find what libcst finds.

The migration reads each tree once per plan instead of one libcst visit per question; these
tests hold that shortcut to libcst's own answers, node for node and in the same order, on the
modules of the 41-job-shapes fixture app.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, ParentNodeProvider

from petrock.generators.migrate.program import read_program
from petrock.generators.migrate.syntax import findall, remembering, subtree_size, walk

FIXTURES = Path(__file__).parent / "fixtures"
APP = FIXTURES / "job_shapes_more"  # 41 job shapes
PATTERNS = [
    m.Call(func=m.Attribute(value=m.Name("self"))),
    m.AssignTarget(m.Attribute(value=m.Name("self"))) | m.AugAssign() | m.ImportFrom(),
    m.Name() | m.MatchIfTrue(lambda node: isinstance(node, cst.Return)),
]


class _Visited(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.nodes.append(node)
        return True


def visited(node: cst.CSTNode) -> list[cst.CSTNode]:
    found = _Visited()
    node.visit(found)
    return found.nodes


def same(ours: object, theirs: object) -> bool:
    return [id(n) for n in ours] == [id(n) for n in theirs]  # type: ignore[attr-defined]


def package_of(app: Path) -> Path:
    return next(p for p in (app / "src").iterdir() if (p / "core").is_dir())


def test_walks_of_the_programs_modules_are_libcsts_visits() -> None:
    package = package_of(APP)
    with remembering():
        program = read_program(package, package.name)
        assert program.modules
        for module in program.modules.values():
            theirs = MetadataWrapper(module.module, unsafe_skip_copy=True).resolve(ParentNodeProvider)
            assert set(map(id, module.parents)) == set(map(id, theirs)), module.relative
            assert all(theirs[node] is parent for node, parent in module.parents.items()), module.relative
            for node in {id(d): d for d in module.definitions.values()}.values():
                expected = visited(node)
                assert same(walk(node), expected), module.where(node)
                assert subtree_size(node) == len(expected)
            assert same(walk(module.module), visited(module.module)), module.relative
            for pattern in PATTERNS:
                assert same(findall(module.module, pattern), m.findall(module.module, pattern)), module.relative


SOURCE = """
import os
from . import jobs as alpha


class Poller:
    def __init__(self, app):
        self.app = app
        self.seen = 0

    @property
    def name(self):
        return alpha.NAME

    def poll(self):
        self.seen += 1
        self.app.events.append(os.getpid())
        return [x for x in self.app.queue if x]
"""


def test_walks_of_other_trees_and_outside_a_plan_are_libcsts_visits() -> None:
    tree = cst.parse_module(SOURCE)
    method = next(n for n in visited(tree) if isinstance(n, cst.FunctionDef) and n.name.value == "poll")
    for node in (tree, method):
        assert same(walk(node), visited(node))  # no plan: a visit each time
        with remembering():
            first = walk(node)
            assert walk(node) is first  # kept for the plan
            assert same(first, visited(node))
            assert subtree_size(node) == len(first)
            for pattern in PATTERNS:
                assert same(findall(node, pattern), m.findall(node, pattern))
    with remembering():
        walk(tree)  # the one visit of the tree tells every node's walk
        assert same(walk(method), visited(method))
        assert subtree_size(method) == len(visited(method))
