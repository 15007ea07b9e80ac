"""Tidying up after the jobs moved: empty job classes go, and a jobs module left with nothing of
its own moves into the worker module that uses it.

A job class left with only its ``__init__`` (every start method collapsed) goes once
nothing names it. A module that then holds only what its workers import from it (a
constant, a helper, shared state) is folded into that one worker module and deleted,
as long as nothing else in the package imports it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from .edits import drop_unused_imports
from .program import Program, absolute_module
from .syntax import BLANK, DOCSTRING, find, findall

Tree = Callable[[], cst.Module]  # a module's tree, parsed when asked for
KEEP = {"main", "cli", "register", "features", "__init__", "__main__", "worker", "workers"}


def tidy(program: Program, texts: dict[Path, str], emptied: dict[Path, set[str]], new: dict[Path, str]) -> set[Path]:
    """Edit ``texts`` (edited modules) and ``new`` (new worker modules) in place; return the modules to delete.

    ``emptied`` maps a module to the classes some of whose members moved out.
    """
    deleted: set[Path] = set()
    trees = _Trees(program)
    for path, classes in emptied.items():
        if path not in texts or path.stem in KEEP:
            continue
        module = trees.parsed_tree(path, texts[path])
        module = _without_empty_classes(program, path, module, classes, trees.of({**texts, **new}))
        original = program.by_path(path)
        if original is not None:  # the class's imports may be unused now
            module = drop_unused_imports(original.module.code, module, path.name)
        texts[path] = module.code
    for path in list(texts):
        if path.stem in KEEP or path.name == "__init__.py":
            continue
        importers = _importers(program, path, trees.of({**texts, **new}), deleted, trees.imports)
        if len(importers) != 1 or importers[0] not in new:
            continue
        module = trees.parsed_tree(path, texts[path])
        if any(isinstance(s, cst.ClassDef) for s in module.body):
            continue
        worker = importers[0]
        new[worker] = _fold(program, path, module, worker, cst.parse_module(new[worker]))
        deleted.add(path)
    return deleted


class _Trees:
    """Every module of the package as it will be, parsed once (unchanged ones come from the program)."""

    def __init__(self, program: Program) -> None:
        self.parsed: dict[tuple[Path, str], cst.Module] = {}
        self.original = {module.path: module.module for module in program.modules.values()}
        self.original_code: dict[Path, str] = {}  # a module's code is rebuilt from its tree on each ask: once
        self.paths = sorted(p for p in program.package.rglob("*.py") if "__pycache__" not in p.parts)
        self.found_imports: dict[int, tuple[cst.Module, list[cst.CSTNode]]] = {}  # by id; the tree kept alive

    def of(self, texts: dict[Path, str]) -> dict[Path, tuple[str, Tree]]:
        """Each module's text as it will be, and its tree (parsed when first asked for: most are only searched
        for a name, and an edited text is parsed once)."""
        found: dict[Path, tuple[str, Tree]] = {}
        for path in {*self.paths, *texts}:
            if path in texts:
                found[path] = (texts[path], functools.partial(self.parsed_tree, path, texts[path]))
            elif path in self.original:
                if path not in self.original_code:
                    self.original_code[path] = self.original[path].code
                found[path] = (self.original_code[path], functools.partial(_as_is, self.original[path]))
        return found

    def parsed_tree(self, path: Path, text: str) -> cst.Module:
        if (path, text) not in self.parsed:
            self.parsed[path, text] = cst.parse_module(text)
        return self.parsed[path, text]

    def imports(self, tree: cst.Module) -> list[cst.CSTNode]:
        """Every import statement in ``tree`` (nested ones too), in order: walked once per tree, not once
        per module whose importers are looked for."""
        if id(tree) not in self.found_imports:
            self.found_imports[id(tree)] = (tree, find(tree, (cst.ImportFrom, cst.Import)))
        return self.found_imports[id(tree)][1]


def _as_is(tree: cst.Module) -> cst.Module:
    return tree


def _module_name(program: Program, path: Path) -> str:
    parts = path.relative_to(program.package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _without_empty_classes(
    program: Program, path: Path, module: cst.Module, classes: set[str], texts: dict[Path, tuple[str, Tree]]
) -> cst.Module:
    name = _module_name(program, path)
    body = []
    spacing: list[cst.EmptyLine] = []
    for statement in module.body:
        if (
            isinstance(statement, cst.ClassDef)
            and statement.name.value in classes
            and _holds_nothing(statement)
            and not _named_elsewhere(program, name, statement.name.value, path, texts, module, statement)
        ):
            spacing = list(statement.leading_lines)
            continue
        if spacing and not statement.leading_lines:
            statement = statement.with_changes(leading_lines=spacing)
        spacing = []
        body.append(statement)
    return module.with_changes(body=body)


def _holds_nothing(cls: cst.ClassDef) -> bool:
    """Only a docstring, ``__init__`` and class attributes are left, and nothing but those uses the rest."""
    methods = [s for s in cls.body.body if isinstance(s, cst.FunctionDef)]
    others = [s for s in methods if s.name.value != "__init__"]
    for method in others:
        uses = findall(cls, m.Attribute(value=m.Name("self"), attr=m.Name(method.name.value)))
        if uses:
            return False
    return not others or all(not findall(cls, m.Attribute(attr=m.Name(o.name.value))) for o in others)


def _named_elsewhere(
    program: Program,
    module_name: str,
    name: str,
    path: Path,
    texts: dict[Path, tuple[str, Tree]],
    module: cst.Module,
    cls: cst.ClassDef,
) -> bool:
    """Whether anything besides the class itself names it: in its module, or imported elsewhere."""
    own = findall(module, m.Name(name))
    inside = set(map(id, findall(cls, m.Name(name))))
    if any(id(n) not in inside for n in own):
        return True
    for other, (text, parsed) in texts.items():
        if other == path or name not in text:
            continue
        tree = parsed()
        other_name = _module_name(program, other)
        aliases = set()
        for statement in find(tree, cst.ImportFrom):
            source = absolute_module(other_name, statement, is_package=other.name == "__init__.py")  # type: ignore[arg-type]
            names = statement.names  # type: ignore[attr-defined]
            if isinstance(names, cst.ImportStar):
                continue
            for alias in names:
                imported = cst.helpers.get_full_name_for_node(alias.name)
                bound = alias.asname.name.value if alias.asname else imported
                if source == module_name and imported == name:
                    return True
                if f"{source}.{imported}" == module_name:
                    aliases.add(bound)  # `from . import jobs as alpha_jobs`
        for statement in find(tree, cst.Import):
            for alias in statement.names:  # type: ignore[attr-defined]
                if cst.helpers.get_full_name_for_node(alias.name) == module_name:
                    aliases.add(alias.asname.name.value if alias.asname else module_name)
        for attribute in findall(tree, m.Attribute(attr=m.Name(name))):
            owner = cst.helpers.get_full_name_for_node(attribute.value)  # type: ignore[attr-defined]
            if owner in aliases:
                return True
    return False


def _importers(
    program: Program,
    path: Path,
    texts: dict[Path, tuple[str, Tree]],
    deleted: set[Path],
    imports: Callable[[cst.Module], list[cst.CSTNode]],
) -> list[Path]:
    """The modules of the package (as they will be) that import the module at ``path``."""
    target = _module_name(program, path)
    stem = target.rsplit(".", 1)[-1]
    found = []
    for other, (text, parsed) in texts.items():
        if other == path or other in deleted or stem not in text:
            continue
        tree = parsed()
        other_name = _module_name(program, other)
        for statement in imports(tree):
            if isinstance(statement, cst.Import):
                if any((cst.helpers.get_full_name_for_node(a.name) or "").startswith(target) for a in statement.names):
                    found.append(other)
                continue
            source = absolute_module(other_name, statement, is_package=other.name == "__init__.py")  # type: ignore[arg-type]
            names = statement.names  # type: ignore[attr-defined]
            imported = (
                [] if isinstance(names, cst.ImportStar) else [cst.helpers.get_full_name_for_node(a.name) for a in names]
            )
            if source == target or any(f"{source}.{n}" == target for n in imported):
                found.append(other)
    return sorted(set(found))


def _fold(program: Program, path: Path, module: cst.Module, worker_path: Path, worker: cst.Module) -> str:
    """The worker module with what the old module held put in, and the import of it gone."""
    target = _module_name(program, path)
    worker_name = _module_name(program, worker_path)
    imports = [s for s in module.body if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))]
    imports = [
        s for s in imports if not m.matches(s, m.SimpleStatementLine(body=[m.ImportFrom(module=m.Name("__future__"))]))
    ]
    held = [
        s
        for s in module.body
        if s not in imports
        and not m.matches(s, DOCSTRING)
        and not m.matches(s, m.SimpleStatementLine(body=[m.ImportFrom(module=m.Name("__future__"))]))
    ]
    body = []
    for statement in worker.body:
        small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and statement.body else None
        if isinstance(small, cst.ImportFrom) and absolute_module(worker_name, small) == target:
            continue
        body.append(statement)
    last_import = max(
        (i for i, s in enumerate(body) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))),
        default=0,
    )
    moved_imports = [_same_import(s, path, worker_path) for s in imports]
    existing = {cst.Module([]).code_for_node(s.with_changes(leading_lines=())) for s in body}
    moved_imports = [
        s for s in moved_imports if cst.Module([]).code_for_node(s.with_changes(leading_lines=())) not in existing
    ]
    if held:
        held[0] = held[0].with_changes(leading_lines=[BLANK])
    body = [
        *body[: last_import + 1],
        *[s.with_changes(leading_lines=()) for s in moved_imports],
        *held,
        *body[last_import + 1 :],
    ]
    folded = worker.with_changes(body=body)
    folded = drop_unused_imports(
        worker.code + "\n" + "".join(cst.Module([]).code_for_node(s) for s in moved_imports), folded, worker_path.name
    )
    return _sorted_imports(folded, program.project).code


def _same_import(statement: cst.BaseStatement, source: Path, destination: Path) -> cst.BaseStatement:
    """An import of the old module, as the worker module (in the same folder) writes it."""
    del source, destination  # both live in the same folder: relative imports read the same
    return statement


def _section(program_name: str, name: str) -> int:
    """isort's sections: the standard library, third-party packages, the app's own package."""
    top = name.split(".")[0]
    if top in sys.stdlib_module_names:
        return 0
    return 2 if top == program_name else 1


def _sorted_imports(module: cst.Module, program_name: str = "") -> cst.Module:
    """Put the import block back in order: standard and third-party first, then the app's own."""
    body = list(module.body)
    indices = [i for i, s in enumerate(body) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))]
    future = [
        i
        for i in indices
        if m.matches(body[i], m.SimpleStatementLine(body=[m.ImportFrom(module=m.Name("__future__"))]))
    ]
    block = [i for i in indices if i not in future]
    if not block or block != list(range(block[0], block[-1] + 1)):
        return module
    statements = [body[i] for i in block]

    def key(statement: cst.BaseStatement) -> tuple[int, int, int, str]:
        small = statement.body[0]  # type: ignore[attr-defined]
        if isinstance(small, cst.Import):
            name = cst.helpers.get_full_name_for_node(small.names[0].name) or ""
            return (_section(program_name, name), 0, 0, name)
        dots = len(small.relative)
        name = (cst.helpers.get_full_name_for_node(small.module) if small.module else "") or ""
        return (3 if dots else _section(program_name, name), 1, -dots, name)

    ordered = sorted(statements, key=key)
    result = []
    previous = None
    for statement in ordered:
        group = key(statement)[0]
        lines = [BLANK] if previous is not None and group != previous else []
        if previous is None:
            lines = [BLANK] if future else list(body[block[0]].leading_lines)
        result.append(statement.with_changes(leading_lines=lines))
        previous = group
    body[block[0] : block[-1] + 1] = result
    return module.with_changes(body=body)
