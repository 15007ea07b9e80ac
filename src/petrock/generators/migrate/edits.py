"""Editing the app's own modules: start lines replaced, moved loops removed, what stays marked.

All edits to one module are collected first (``ModuleEdits``) and applied in one pass
over its syntax tree, so formatting and comments elsewhere are kept. Afterwards the
imports the edits left unused go, and only those: an import the code still uses, or
one that was unused before the migration, stays (pyflakes tells them apart).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider
from pyflakes import checker, messages

from .syntax import BLANK, bound_name, findall, kept, strip_blank

MARK = "# petrock: could not migrate"


@dataclass
class ModuleEdits:
    """What changes in one module."""

    replace: dict[cst.CSTNode, list[cst.BaseStatement]] = field(default_factory=dict)  # statement -> new ones
    before: dict[cst.CSTNode, list[cst.BaseStatement]] = field(default_factory=dict)  # statement -> put first
    drop: set[cst.CSTNode] = field(default_factory=set)  # statements, methods, functions, classes that go
    drop_elements: set[cst.CSTNode] = field(default_factory=set)  # elements of a list or tuple
    marks: dict[cst.CSTNode, str] = field(default_factory=dict)  # statement -> comment above it
    imports: list[str] = field(default_factory=list)  # import lines the new code needs

    def __bool__(self) -> bool:
        return bool(self.replace or self.before or self.drop or self.drop_elements or self.marks or self.imports)


def apply_edits(module: cst.Module, edits: ModuleEdits) -> cst.Module:
    edited = module.visit(_Editor(edits))
    for line in edits.imports:
        edited = ensure_import(edited, line)
    return edited


class _Editor(cst.CSTTransformer):
    def __init__(self, edits: ModuleEdits) -> None:
        super().__init__()
        self.edits = edits
        self.interesting = set(edits.replace) | set(edits.before) | edits.drop | set(edits.marks)
        self.origin: dict[int, tuple[cst.CSTNode, cst.CSTNode]] = {}  # id(updated) -> (original, updated)

    def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        result = super().on_leave(original, updated)
        if original in self.interesting and isinstance(result, cst.CSTNode):
            self.origin[id(result)] = (original, result)
        return result  # type: ignore[return-value]

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        """A decorator that registered the function as a job goes with the job (``@every(30)``)."""
        if not any(d in self.edits.drop_elements for d in original.decorators):
            return updated
        kept = [
            new
            for old, new in zip(original.decorators, updated.decorators, strict=True)
            if old not in self.edits.drop_elements
        ]
        return updated.with_changes(decorators=kept)

    def leave_Tuple(self, original: cst.Tuple, updated: cst.Tuple) -> cst.Tuple:
        return updated.with_changes(elements=self._kept(original, updated, tuple_=True))

    def leave_List(self, original: cst.List, updated: cst.List) -> cst.List:
        return updated.with_changes(elements=self._kept(original, updated, tuple_=False))

    def _kept(self, original: cst.Tuple | cst.List, updated: cst.Tuple | cst.List, *, tuple_: bool) -> list:
        kept = [
            new
            for old, new in zip(original.elements, updated.elements, strict=True)
            if old not in self.edits.drop_elements
        ]
        if len(kept) != len(updated.elements) and kept:
            comma = cst.Comma() if tuple_ and len(kept) == 1 else cst.MaybeSentinel.DEFAULT
            kept[-1] = kept[-1].with_changes(comma=comma)
        return kept

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        return updated.with_changes(body=self._block(updated.body, first_in_block=False))

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        body = self._block(updated.body, first_in_block=True)
        return updated.with_changes(body=body or [cst.SimpleStatementLine([cst.Pass()])])

    def _block(self, body: Sequence[cst.BaseStatement], *, first_in_block: bool) -> list[cst.BaseStatement]:
        result: list[cst.BaseStatement] = []
        spacing: Sequence[cst.EmptyLine] = ()  # the blank lines and comments of what went go to what follows
        for statement in body:
            original, _ = self.origin.get(id(statement), (None, None))
            leading = list(statement.leading_lines)
            if original is not None and original in self.edits.before:
                added = list(self.edits.before[original])
                if added:
                    added[0] = added[0].with_changes(leading_lines=[*(leading or spacing)])
                    spacing, leading = (), []
                    statement = statement.with_changes(leading_lines=[])
                result += added
            if original is not None and (original in self.edits.drop or original in self.edits.replace):
                new = list(self.edits.replace.get(original, []))
                if new:
                    new[0] = new[0].with_changes(leading_lines=[*(leading or spacing), *new[0].leading_lines])
                    spacing = ()
                    result += new
                else:
                    spacing = spacing or leading
                continue
            if original is not None and original in self.edits.marks:
                comment = self.edits.marks[original]
                if not any(
                    line.comment is not None and line.comment.value == comment for line in statement.leading_lines
                ):
                    statement = statement.with_changes(
                        leading_lines=[*statement.leading_lines, cst.EmptyLine(comment=cst.Comment(comment))]
                    )
            if spacing and not statement.leading_lines:
                statement = statement.with_changes(leading_lines=spacing)
            spacing = ()
            result.append(statement)
        if first_in_block and result:
            result[0] = result[0].with_changes(leading_lines=strip_blank(result[0].leading_lines))
        return result


LINE_LENGTH = 100  # wrap longer import lines, as ruff format would


def import_line(source: str, names: list[str]) -> str:
    """``from SOURCE import a, b``, in parentheses one name a line when it would be long."""
    line = f"from {source} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    return f"from {source} import (\n" + "".join(f"    {name},\n" for name in names) + ")"


def ensure_import(module: cst.Module, line: str) -> cst.Module:
    """``module`` with the import ``line`` (``from ..core.hosted import run_with_server``), after its imports."""
    statement = cst.parse_statement(line + "\n")
    small = statement.body[0]  # type: ignore[attr-defined]
    wanted = {bound_name(alias) for alias in small.names}  # type: ignore[attr-defined]
    present = _imported(module.body)
    if wanted <= present:
        return module
    body = list(module.body)
    if isinstance(small, cst.ImportFrom):
        source = cst.Module([]).code_for_node(small.module) if small.module else ""
        for index, existing in enumerate(body):
            found = existing.body[0] if isinstance(existing, cst.SimpleStatementLine) and existing.body else None
            if (
                isinstance(found, cst.ImportFrom)
                and not isinstance(found.names, cst.ImportStar)
                and len(found.relative) == len(small.relative)
                and (cst.Module([]).code_for_node(found.module) if found.module else "") == source
            ):
                names = [*found.names, *(a for a in small.names if bound_name(a) not in present)]  # type: ignore[attr-defined]
                names = [n.with_changes(comma=cst.MaybeSentinel.DEFAULT) for n in names]
                names = sorted(names, key=member_order)
                shown = [cst.Module([]).code_for_node(a) for a in names]
                merged = cst.parse_statement(import_line("." * len(found.relative) + source, shown) + "\n")
                body[index] = merged.with_changes(leading_lines=existing.leading_lines)
                return module.with_changes(body=body)
    imports = [i for i, s in enumerate(body) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))]
    position = imports[-1] + 1 if imports else _after_docstring(body)
    relative = m.SimpleStatementLine(body=[m.ImportFrom(relative=[m.AtLeastN(n=1)])])
    if m.matches(statement, relative):
        # Among the app's own imports, where a sorted block would have it.
        key = _import_key(statement)
        group = [i for i in imports if m.matches(body[i], relative)]
        later = [i for i in group if _import_key(body[i]) > key]
        if later and group == list(range(group[0], group[-1] + 1)):
            position = later[0]
            if position == group[0]:
                statement = statement.with_changes(leading_lines=body[position].leading_lines)
                body[position] = body[position].with_changes(leading_lines=())
            return module.with_changes(body=[*body[:position], statement, *body[position:]])
    if imports and m.matches(statement, relative) and not m.matches(body[imports[-1]], relative):
        statement = statement.with_changes(leading_lines=[BLANK])  # the app's own imports come in a group
    elif not imports:
        statement = statement.with_changes(leading_lines=[BLANK])
    if position < len(body) and not imports:
        body[position] = body[position].with_changes(leading_lines=[BLANK, *strip_blank(body[position].leading_lines)])
    return module.with_changes(body=[*body[:position], statement, *body[position:]])


def member_order(alias: cst.ImportAlias) -> tuple[int, str, str]:
    """The order ruff's isort gives the names of one import: CONSTANTS, then Classes, then the rest."""
    name = cst.helpers.get_full_name_for_node(alias.name) or ""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return (kind, name.lower(), name)


def _import_key(statement: cst.BaseStatement) -> tuple[int, str]:
    small = statement.body[0]  # type: ignore[attr-defined]
    name = cst.Module([]).code_for_node(small.module) if small.module else ""
    return (-len(small.relative), name)


def _after_docstring(body: Sequence[cst.BaseStatement]) -> int:
    index = 0
    if body and m.matches(body[0], m.SimpleStatementLine(body=[m.Expr(m.SimpleString() | m.ConcatenatedString())])):
        index = 1
    while index < len(body) and m.matches(
        body[index], m.SimpleStatementLine(body=[m.ImportFrom(module=m.Name("__future__"))])
    ):
        index += 1
    return index


def _imported(statements: Sequence[cst.BaseStatement]) -> set[str]:
    return {
        bound_name(alias)
        for s in statements
        for small in (s.body if isinstance(s, cst.SimpleStatementLine) else [])
        if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar)
        for alias in small.names
    }


def drop_unused_imports(before: str, after: cst.Module, path: str) -> cst.Module:
    """Remove the imports the edits left unused (pyflakes: unused now, used before)."""
    unused_before = {_unused_name(m) for m in _flakes(before, path) if isinstance(m, messages.UnusedImport)}
    now = _flakes(after.code, path)
    gone = {_unused_name(m) for m in now if isinstance(m, messages.UnusedImport)} - unused_before
    if not gone:
        return after
    return after.visit(_DropImports(gone))


def _unused_name(message: messages.Message) -> str:
    return str(message.message_args[0])


def _flakes(source: str, path: str) -> list[messages.Message]:
    """What pyflakes says of ``source``: asked of the same module's code by each drop_unused_* in turn."""
    return list(kept(("pyflakes", source, path), lambda: _flakes_now(source, path)))


def _flakes_now(source: str, path: str) -> list[messages.Message]:
    try:
        tree = ast.parse(source, path)
    except SyntaxError:
        return []
    return list(checker.Checker(tree, filename=path).messages)


class _DropImports(cst.CSTTransformer):
    """Drops import aliases by the name pyflakes reports them as (``shop.orders.jobs``, ``Jobs as OrderJobs``);
    the blank lines above a dropped import stay, on the statement after it."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        return updated.with_changes(body=self._block(updated.body))

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        return updated.with_changes(body=self._block(updated.body) or [cst.SimpleStatementLine([cst.Pass()])])

    def _block(self, body: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
        kept: list[cst.BaseStatement] = []
        spacing: Sequence[cst.EmptyLine] = ()
        for statement in body:
            small = (
                statement.body[0]
                if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                else None
            )
            if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                names = [alias for alias in small.names if _reported_as(small, alias) not in self.names]
                if not names:
                    spacing = spacing or statement.leading_lines
                    continue
                if len(names) != len(small.names):
                    names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                    changed = small.with_changes(names=names)
                    if isinstance(small, cst.ImportFrom) and len(names) == 1:
                        changed = changed.with_changes(lpar=None, rpar=None)
                    statement = statement.with_changes(body=[changed])
            if spacing and not statement.leading_lines:
                statement = statement.with_changes(leading_lines=spacing)
            spacing = ()
            kept.append(statement)
        return kept


def _reported_as(statement: cst.Import | cst.ImportFrom, alias: cst.ImportAlias) -> str:
    """The name pyflakes uses for an unused import: ``a.b``, ``x as y``, ``pkg.mod.name``."""
    name = cst.helpers.get_full_name_for_node(alias.name) or ""
    if isinstance(statement, cst.Import):
        return f"{name} as {alias.asname.name.value}" if alias.asname else name  # type: ignore[attr-defined]
    module = "." * len(statement.relative) + (
        cst.helpers.get_full_name_for_node(statement.module) or "" if statement.module else ""
    )
    full = f"{module}.{name}" if not module.endswith(".") else f"{module}{name}"
    return f"{full} as {alias.asname.name.value}" if alias.asname else full  # type: ignore[attr-defined]


def drop_unused_objects(
    before: str, after: cst.Module, path: str, is_plain_class: Callable[[cst.BaseExpression], bool]
) -> cst.Module:
    """Remove ``jobs = Jobs(app)`` lines the edits left unused, when the class only keeps what it is given."""
    unused_before = {str(m.message_args[0]) for m in _flakes(before, path) if isinstance(m, messages.UnusedVariable)}
    lines = {
        message.lineno: str(message.message_args[0])
        for message in _flakes(after.code, path)
        if isinstance(message, messages.UnusedVariable) and str(message.message_args[0]) not in unused_before
    }
    if not lines:
        return after
    wrapper = MetadataWrapper(after)
    positions = wrapper.resolve(PositionProvider)
    gone: set[cst.CSTNode] = set()
    for statement in findall(
        wrapper.module, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Call())])
    ):
        small = statement.body[0]  # type: ignore[attr-defined]
        name = small.targets[0].target.value
        if lines.get(positions[statement].start.line) == name and is_plain_class(small.value.func):
            gone.add(statement)
    if not gone:
        return after
    edits = ModuleEdits(drop=gone)
    return wrapper.module.visit(_Editor(edits))


# Context managers that only hold the jobs started in them: once those moved, their `as` name goes unused.
JOB_HOLDERS = frozenset({"TaskGroup", "ExitStack", "AsyncExitStack", "ThreadPoolExecutor"})


def drop_unused_holders(before: str, after: cst.Module, path: str) -> cst.Module:
    """Unwrap ``async with asyncio.TaskGroup() as group:`` (or an exit stack, or an executor) once the
    edits left its name unused: the jobs it held are workers now, its body stays as it was."""
    unused_before = {str(m.message_args[0]) for m in _flakes(before, path) if isinstance(m, messages.UnusedVariable)}
    lines = {
        (message.lineno, str(message.message_args[0]))
        for message in _flakes(after.code, path)
        if isinstance(message, messages.UnusedVariable) and str(message.message_args[0]) not in unused_before
    }
    if not lines:
        return after
    wrapper = MetadataWrapper(after)
    positions = wrapper.resolve(PositionProvider)
    unused: set[cst.WithItem] = set()
    for statement in findall(wrapper.module, m.With()):
        for item in statement.items:  # type: ignore[attr-defined]
            name = item.asname.name if item.asname is not None else None
            held = cst.helpers.get_full_name_for_node(item.item.func) if isinstance(item.item, cst.Call) else None
            if (
                isinstance(name, cst.Name)
                and held is not None
                and held.rsplit(".", 1)[-1] in JOB_HOLDERS
                and (positions[name].start.line, name.value) in lines
            ):
                unused.add(item)
    if not unused:
        return after
    return wrapper.module.visit(_Unwrap(unused))


class _Unwrap(cst.CSTTransformer):
    """Drops the given items of ``with`` statements; a ``with`` left with none gives way to its body."""

    def __init__(self, items: set[cst.WithItem]) -> None:
        super().__init__()
        self.items = items

    def leave_With(
        self, original: cst.With, updated: cst.With
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        kept = [new for old, new in zip(original.items, updated.items, strict=True) if old not in self.items]
        if len(kept) == len(updated.items):
            return updated
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated.with_changes(items=kept)
        body = list(updated.body.body)  # type: ignore[attr-defined]
        body[0] = body[0].with_changes(leading_lines=[*updated.leading_lines, *body[0].leading_lines])
        return cst.FlattenSentinel(body)
