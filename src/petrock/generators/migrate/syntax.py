"""Small libcst helpers the migration steps share: names, docstrings, self attributes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper

from petrock.errors import UserError

BLANK = cst.EmptyLine(indent=False)
DOCSTRING = m.SimpleStatementLine(body=[m.Expr(m.SimpleString() | m.ConcatenatedString())])


def parse(path: Path) -> MetadataWrapper:
    try:
        return MetadataWrapper(cst.parse_module(path.read_text()))
    except cst.ParserSyntaxError as exc:
        raise UserError(f"{path} is not valid Python ({exc.message})", "fix it, then migrate") from None


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
    return [found.attr.value for found in m.findall(node, m.Attribute(value=m.Name("self")))]


def count_self_attribute(node: cst.CSTNode | None, name: str) -> int:
    return 0 if node is None else len(m.findall(node, m.Attribute(value=m.Name("self"), attr=m.Name(name))))


def attributes_set_from(function: cst.FunctionDef, parameter: str) -> set[str]:
    """Attributes assigned straight from a parameter (``self.app = app``): shared safely by every worker."""
    pattern = m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))], value=m.Name(parameter))
    return {found.targets[0].target.attr.value for found in m.findall(function, pattern)}


def variable_names(node: cst.CSTNode) -> set[str]:
    """Variable names in ``node`` (not attribute names or keyword-argument names)."""
    not_variables = {id(a.attr) for a in m.findall(node, m.Attribute())}
    not_variables |= {id(a.keyword) for a in m.findall(node, m.Arg()) if a.keyword is not None}
    return {found.value for found in m.findall(node, m.Name()) if id(found) not in not_variables}


def assigned_names(node: cst.CSTNode) -> set[str]:
    targets = [
        *(t.target for t in m.findall(node, m.AssignTarget())),
        *(a.target for a in m.findall(node, m.AugAssign() | m.AnnAssign() | m.NamedExpr())),
        *(f.target for f in m.findall(node, m.For())),
        *(a.name for a in m.findall(node, m.AsName())),
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
