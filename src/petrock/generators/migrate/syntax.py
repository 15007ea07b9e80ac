"""Small libcst helpers the migration steps share: names, docstrings, self attributes."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper

from petrock.errors import UserError

T = TypeVar("T")

BLANK = cst.EmptyLine(indent=False)
DOCSTRING = m.SimpleStatementLine(body=[m.Expr(m.SimpleString() | m.ConcatenatedString())])


def parse(path: Path) -> MetadataWrapper:
    try:
        return MetadataWrapper(cst.parse_module(path.read_text()))
    except cst.ParserSyntaxError as exc:
        raise UserError(f"{path} is not valid Python ({exc.message})", "fix it, then migrate") from None


# What ``walk`` found, by the id of the node walked (the node kept alive with it); None outside ``remembering``.
_walked: dict[int, tuple[cst.CSTNode, Sequence[cst.CSTNode]]] | None = None
_kept: dict[Hashable, object] = {}  # what ``kept`` made
# Every node of the modules read in ``remembering``: (node, its module's nodes in visit order, its span in them).
_subtrees: dict[int, tuple[cst.CSTNode, list[cst.CSTNode], int, int]] = {}


@contextmanager
def remembering() -> Iterator[None]:
    """Keep every walk until the block ends: one migration looks into the same trees (which never
    change) again and again, and a libcst visit rebuilds every node it passes."""
    global _walked, _subtrees, _kept
    if _walked is not None:  # already inside one
        yield
        return
    _walked, _subtrees, _kept = {}, {}, {}
    try:
        yield
    finally:
        _walked, _subtrees, _kept = None, {}, {}


def kept(key: Hashable, make: Callable[[], T]) -> T:
    """``make()``, made once per ``remembering`` for ``key`` (which must say everything it depends on)."""
    if _walked is None:
        return make()
    if key not in _kept:
        _kept[key] = make()
    return _kept[key]  # type: ignore[return-value]


def remember_walk(node: cst.CSTNode, nodes: Sequence[cst.CSTNode]) -> None:
    if _walked is not None:
        _walked[id(node)] = (node, nodes)


class Parents(cst.CSTVisitor):
    """Every node's parent, in one visit (``ParentNodeProvider`` visits, then rebuilds each node again
    to list its children); and, inside ``remembering``, ``walk`` of every node of the tree."""

    def __init__(self) -> None:
        super().__init__()
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self.order: list[cst.CSTNode] = []
        self.path: list[tuple[cst.CSTNode, int]] = []  # the nodes being visited, and where each starts

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.path:
            self.parents[node] = self.path[-1][0]
        self.path.append((node, len(self.order)))
        self.order.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        node, start = self.path.pop()
        if _walked is not None:
            _subtrees[id(node)] = (node, self.order, start, len(self.order))


def parents_of(module: cst.Module) -> dict[cst.CSTNode, cst.CSTNode]:
    parents = Parents()
    module.visit(parents)
    return parents.parents


class _Everything(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.nodes.append(node)
        return True


def walk(node: cst.CSTNode) -> Sequence[cst.CSTNode]:
    """``node`` and every node under it, in the order a libcst visit (so ``m.findall``) meets them."""
    if _walked is not None and (kept := _walked.get(id(node))) is not None and kept[0] is node:
        return kept[1]
    if _walked is not None and (known := _subtrees.get(id(node))) is not None and known[0] is node:
        _, order, start, end = known
        remember_walk(node, nodes := order[start:end])
        return nodes
    if _walked is not None:  # one visit tells the walk of every node under it too
        node.visit(Parents())
        return walk(node)
    everything = _Everything()
    node.visit(everything)
    return everything.nodes


def subtree_size(node: cst.CSTNode) -> int:
    """``len(walk(node))``, without listing them for a node of a module read in ``remembering``."""
    if _walked is not None and (known := _subtrees.get(id(node))) is not None and known[0] is node:
        return known[3] - known[2]
    return len(walk(node))


def find(node: cst.CSTNode, kind: type | tuple[type, ...]) -> list:
    """The nodes of ``kind`` in ``node``, from ``walk`` (for a pattern, :func:`findall`)."""
    return [n for n in walk(node) if isinstance(n, kind)]


def findall(node: object, pattern: object) -> list:
    """``m.findall(node, pattern)``, from ``walk`` (``m.matches`` is the test ``m.findall`` makes of each node)."""
    if not isinstance(node, cst.CSTNode):
        return list(m.findall(node, pattern))  # type: ignore[arg-type]
    names = _node_names(pattern)
    return [n for n in walk(node) if (names is None or type(n).__name__ in names) and m.matches(n, pattern)]  # type: ignore[arg-type]


def _node_names(pattern: object) -> set[str] | None:
    """The node classes a pattern can match (a node matcher matches its own class only), None if any."""
    if isinstance(pattern, m.OneOf):
        found: set[str] = set()
        for option in pattern.options:
            names = _node_names(option)
            if names is None:
                return None
            found |= names
        return found
    if isinstance(pattern, m.BaseMatcherNode) and type(pattern).__name__ in _NODE_CLASSES:
        return {type(pattern).__name__}
    return None


_NODE_CLASSES = {name for name, kind in vars(cst).items() if isinstance(kind, type) and issubclass(kind, cst.CSTNode)}


def takes(function: cst.FunctionDef, count: int) -> bool:
    """Whether ``function`` has exactly ``count`` plain positional parameters and nothing else."""
    params = function.params
    return (
        len(params.params) == count
        and not isinstance(params.star_arg, cst.Param | cst.ParamStar)
        and not params.kwonly_params
        and params.star_kwarg is None
        and not params.posonly_params
    )


def callee(call: cst.Call) -> str | None:
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


def is_thread(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and callee(node) == "Thread"


def self_attribute(node: cst.CSTNode) -> str | None:
    if m.matches(node, m.Attribute(value=m.Name("self"))):
        return node.attr.value
    return None


def without_docstring(statements: Sequence[cst.BaseStatement]) -> Sequence[cst.BaseStatement]:
    return statements[1:] if statements and m.matches(statements[0], DOCSTRING) else statements


def docstring_summary(function: cst.FunctionDef | None) -> str | None:
    """The first line of a function's docstring."""
    if function is None or not function.body.body or not m.matches(function.body.body[0], DOCSTRING):
        return None
    value = function.body.body[0].body[0].value.evaluated_value
    return value.strip().splitlines()[0] if isinstance(value, str) and value.strip() else None


def strip_blank(lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
    kept = list(lines)
    while kept and kept[0].comment is None:
        kept.pop(0)
    return kept


def self_attributes(node: cst.CSTNode) -> list[str]:
    return [found.attr.value for found in findall(node, m.Attribute(value=m.Name("self")))]


def count_self_attribute(node: cst.CSTNode | None, name: str) -> int:
    return 0 if node is None else len(findall(node, m.Attribute(value=m.Name("self"), attr=m.Name(name))))


def attributes_set_from(function: cst.FunctionDef, parameter: str) -> set[str]:
    """Attributes assigned straight from a parameter (``self.app = app``): shared safely by every worker."""
    pattern = m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))], value=m.Name(parameter))
    return {found.targets[0].target.attr.value for found in findall(function, pattern)}


def variable_names(node: cst.CSTNode) -> set[str]:
    """Variable names in ``node`` (not attribute names or keyword-argument names)."""
    nodes = walk(node)
    not_variables = {id(a.attr) for a in nodes if isinstance(a, cst.Attribute)}
    not_variables |= {id(a.keyword) for a in nodes if isinstance(a, cst.Arg) and a.keyword is not None}
    return {found.value for found in nodes if isinstance(found, cst.Name) and id(found) not in not_variables}


def assigned_names(node: cst.CSTNode) -> set[str]:
    nodes = walk(node)
    targets = [
        *(t.target for t in nodes if isinstance(t, cst.AssignTarget)),
        *(a.target for a in nodes if isinstance(a, cst.AugAssign | cst.AnnAssign | cst.NamedExpr)),
        *(f.target for f in nodes if isinstance(f, cst.For)),
        *(a.name for a in nodes if isinstance(a, cst.AsName)),
    ]
    return {name for target in targets for name in bound_by(target)}


def bound_by(target: cst.CSTNode) -> set[str]:
    """The names an assignment target binds: ``x``, ``a, b``, ``*rest``; not ``d[k]`` or ``obj.x``."""
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, cst.Tuple | cst.List):
        return {name for element in target.elements for name in bound_by(element.value)}
    if isinstance(target, cst.StarredElement):
        return bound_by(target.value)
    return set()


def local_name(alias: cst.ImportAlias) -> str:
    return alias.asname.name.value if alias.asname else alias.name.value


def one_line(module: cst.Module, node: cst.CSTNode) -> str:
    """The node's code on one line: a compound statement by its first line."""
    code = module.code_for_node(node.with_changes(leading_lines=()) if hasattr(node, "leading_lines") else node)
    return code.strip().splitlines()[0].rstrip(",")


def bound_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None:
        return alias.asname.name.value
    name = cst.helpers.get_full_name_for_node(alias.name) or ""
    return name.split(".")[0]
