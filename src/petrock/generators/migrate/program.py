"""The app's own modules, parsed once: what each defines and imports, and where a name leads.

Every step of the migration reads the app through this: finding where the server
starts, following a call across modules, telling a feature's module from a
top-level one. Only the app's package is read (never ``core/``, the runtime).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from petrock.errors import UserError

from .syntax import findall, parents_of

Definition = cst.FunctionDef | cst.ClassDef | cst.SimpleStatementLine


@dataclass(eq=False)
class Module:
    """One parsed module of the app's package."""

    name: str  # "shop.orders.jobs"
    path: Path
    relative: str  # "src/shop/orders/jobs.py", for messages
    wrapper: MetadataWrapper
    feature: str | None  # the feature folder it is in ("orders"), None for a top-level module
    positions: dict[cst.CSTNode, object] = field(default_factory=dict)
    parents: dict[cst.CSTNode, cst.CSTNode] = field(default_factory=dict)
    definitions: dict[str, Definition] = field(default_factory=dict)  # module-level names
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local -> (module, name or None)
    nodes: dict[type, list[cst.CSTNode]] = field(default_factory=dict)  # every node, by type (one walk)
    names: dict[str, list[cst.Name]] = field(default_factory=dict)  # every Name node, by its value
    attributes: dict[str, list[cst.Attribute]] = field(default_factory=dict)  # every a.b, by b

    def all(self, kind: type[cst.CSTNode]) -> list[cst.CSTNode]:
        """Every node of the module of this type, in order (found once, when the module was read)."""
        return self.nodes.get(kind, [])

    @property
    def module(self) -> cst.Module:
        return self.wrapper.module

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line  # type: ignore[attr-defined]

    def where(self, node: cst.CSTNode) -> str:
        return f"{self.relative}:{self.line(node)}"

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parents.get(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        while (node := self.parents.get(node)) is not None:  # type: ignore[assignment]
            yield node

    def qualname(self, node: cst.FunctionDef | cst.ClassDef) -> str:
        """``src/shop/orders/jobs.py:Jobs._loop``: where a function is, as a reader names it."""
        names = [node.name.value]
        names += [a.name.value for a in self.ancestors(node) if isinstance(a, cst.FunctionDef | cst.ClassDef)]
        return f"{self.relative}:{'.'.join(reversed(names))}"

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        return next((a for a in self.ancestors(node) if isinstance(a, cst.FunctionDef)), None)

    def enclosing_class(self, node: cst.CSTNode) -> cst.ClassDef | None:
        """The class ``node`` is a method (or in a method) of, if it is directly in one."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.ClassDef):
                return ancestor
        return None

    def statement(self, node: cst.CSTNode) -> cst.BaseStatement | None:
        """The statement ``node`` is part of (a simple line, or the compound statement itself)."""
        current: cst.CSTNode | None = node
        while current is not None and not isinstance(current, cst.SimpleStatementLine | cst.BaseCompoundStatement):
            current = self.parents.get(current)
        return current  # type: ignore[return-value]


@dataclass(eq=False)
class Program:
    """Every module of the app's package except the core runtime."""

    package: Path
    project: str
    modules: dict[str, Module] = field(default_factory=dict)
    paced: bool = False  # the core wakes every worker on each append (it predates wake_on_append)
    # What each body uses (server.py), by spawn targets skipped: the server's and every command's reach
    # walk mostly the same functions, and the trees never change once read.
    uses: dict[object, dict[object, list]] = field(default_factory=dict)

    def by_path(self, path: Path) -> Module | None:
        return next((module for module in self.modules.values() if module.path == path), None)

    def module_of(self, node: cst.CSTNode) -> Module:
        for module in self.modules.values():
            if node in module.parents or node is module.module:
                return module
        raise KeyError(node)

    def resolve(self, module: Module, name: str) -> tuple[Module, Definition] | None:
        """Where a module-level ``name`` of ``module`` is defined in the app, following imports."""
        for _ in range(10):  # re-exports, at most a few deep
            if name in module.definitions:
                return module, module.definitions[name]
            if name not in module.imports:
                return None
            source, imported = module.imports[name]
            if imported is None or source not in self.modules:
                return None
            module, name = self.modules[source], imported
        return None

    def module_alias(self, module: Module, name: str) -> Module | None:
        """The app module bound to ``name`` by ``import`` or ``from . import name``."""
        if name not in module.imports:
            return None
        source, imported = module.imports[name]
        target = source if imported is None else f"{source}.{imported}"
        return self.modules.get(target)

    def resolve_expression(self, module: Module, node: cst.BaseExpression) -> tuple[Module, Definition] | None:
        """``name`` or ``module_alias.name`` as a definition in the app."""
        if isinstance(node, cst.Name):
            return self.resolve(module, node.value)
        if m.matches(node, m.Attribute(value=m.Name())) and (alias := self.module_alias(module, node.value.value)):
            return self.resolve(alias, node.attr.value)
        return None


def read_program(package: Path, project: str) -> Program:
    program = Program(package, project)
    supervisor = package / "core" / "supervisor.py"
    program.paced = supervisor.is_file() and "wake_on_append" not in supervisor.read_text()
    root = package.parent.parent
    features = {p.parent.name for p in package.glob("*/register.py")}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if "__pycache__" in path.parts or (len(parts) > 1 and parts[1] == "core"):
            continue
        try:
            # Fresh from the parser, so no node is in it twice: the wrapper need not copy it (a deep copy).
            wrapper = MetadataWrapper(cst.parse_module(path.read_text()), unsafe_skip_copy=True)
        except cst.ParserSyntaxError as exc:
            raise UserError(f"{path} is not valid Python ({exc.message})", "fix it, then migrate") from None
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        feature = parts[1] if len(parts) > 2 and parts[1] in features else None
        module = Module(name, path, path.relative_to(root).as_posix(), wrapper, feature)
        module.positions = dict(wrapper.resolve(PositionProvider))
        module.parents = parents_of(module.module)
        for node in module.positions:
            module.nodes.setdefault(type(node), []).append(node)
            if isinstance(node, cst.Name):
                module.names.setdefault(node.value, []).append(node)
            elif isinstance(node, cst.Attribute):
                module.attributes.setdefault(node.attr.value, []).append(node)
        _read_top_level(module, is_package=parts[-1] == "__init__")
        program.modules[name] = module
    return program


def _read_top_level(module: Module, *, is_package: bool) -> None:
    for statement in module.module.body:
        if isinstance(statement, cst.FunctionDef | cst.ClassDef):
            module.definitions[statement.name.value] = statement
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        full = cst.helpers.get_full_name_for_node(alias.name) or ""
                        local = alias.asname.name.value if alias.asname else full.split(".")[0]
                        module.imports[local] = (full if alias.asname else full.split(".")[0], None)
                elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                    source = absolute_module(module.name, small, is_package=is_package)
                    for alias in small.names:
                        imported = cst.helpers.get_full_name_for_node(alias.name) or ""
                        local = alias.asname.name.value if alias.asname else imported
                        module.imports[local] = (source, imported)
                else:
                    for name in assigned_at_top(small):
                        module.definitions[name] = statement
        elif isinstance(statement, cst.If | cst.Try | cst.With):
            for found in findall(statement, m.FunctionDef() | m.ClassDef()):
                module.definitions.setdefault(found.name.value, found)  # type: ignore[union-attr]


def assigned_at_top(small: cst.BaseSmallStatement) -> list[str]:
    targets: list[cst.BaseExpression] = []
    if isinstance(small, cst.Assign):
        targets = [t.target for t in small.targets]
    elif isinstance(small, cst.AnnAssign | cst.AugAssign):
        targets = [small.target]
    names = []
    for target in targets:
        for found in findall(target, m.Name()):
            names.append(found.value)  # type: ignore[union-attr]
    return names


def absolute_module(module: str, node: cst.ImportFrom, *, is_package: bool = False) -> str:
    dots = len(node.relative)
    name = cst.helpers.get_full_name_for_node(node.module) if node.module else ""
    if not dots:
        return name or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (dots - 1)] if dots > 1 else base
    return ".".join([*base, *([name] if name else [])])
