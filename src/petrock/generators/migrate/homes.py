"""Where migrated workers live and are registered.

A job in a feature's folder gets its worker in the feature's ``worker.py`` (or
``worker_2.py``... when that exists: a module is never overwritten), registered in the
feature's ``register(app)``. A job in a top-level module (``tasks.py``, ``main.py``) gets
its worker in the package's ``workers.py``, whose ``register_workers(app)`` the app's
``build_app`` now calls. A hosted job is registered the same way, as a ``HostedJob``.
What the moved code uses from its old module is imported from there, so state the
jobs share (a dict, a lock) stays one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from petrock.errors import UserError

from .edits import LINE_LENGTH, ModuleEdits, ensure_import, import_line, member_order
from .program import Module, Program
from .syntax import BLANK


@dataclass(eq=False)
class Home:
    """The workers and hosted jobs of one feature (or of the top-level modules), and their module."""

    feature: str  # "" for the top-level modules
    folder: Path
    classes: list[cst.ClassDef] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)  # `app.register_worker(...)` lines, `app` as the name
    needs: dict[str, Module] = field(default_factory=dict)  # free name -> module it comes from
    threaded: bool = False
    times: bool = False
    binds: bool = False
    hosted: bool = False
    module_path: Path | None = None

    @property
    def module_name(self) -> str:
        assert self.module_path is not None
        return self.module_path.stem


def free_module(folder: Path, stem: str) -> Path:
    """``stem``.py, or ``stem``_2.py (and so on) when it exists: never overwrite."""
    path, number = folder / f"{stem}.py", 1
    while path.exists():
        number += 1
        path = folder / f"{stem}_{number}.py"
    return path


def worker_module_text(program: Program, home: Home) -> str:
    """The new module holding a home's worker classes (and, top-level, ``register_workers``)."""
    assert home.module_path is not None
    package = program.project
    here = _module_name(program, home.module_path)
    what = f"the {home.feature} feature" if home.feature else f"the {package} app's top-level modules"
    lines = [
        f'"""Background workers of {what}, started and stopped by the app.\n',
        "Migrated by ``petrock migrate jobs`` from jobs the app started by hand: one pass of",
        "each loop is a worker's ``work``, its sleep the ``poll_interval``. Each runs where the",
        'server started the job before (``run_with_server`` there; see core/hosted.py).\n"""\n',
        "from __future__ import annotations\n",
    ]
    absolute: set[str] = set()
    own: set[str] = set()
    if home.threaded:
        absolute.add("import asyncio")
    if home.times:
        absolute.add("import time")
    for name, module in sorted(home.needs.items()):
        line = _import_for(program, here, module, name)
        if line is not None:
            (own if line.startswith("from .") else absolute).add(line)
    core = relative(here, f"{package}.core")
    own.add(f"from {core} import App")
    if home.classes:
        names = ["bound_to"] if home.binds else []
        names += ["paced"] if program.paced else []
        own.add(f"from {core}.hosted import {', '.join([*names, 'until_served'])}")
    if home.hosted and not home.feature:
        own.add(f"from {core}.hosted import HostedJob")
    text = "\n".join(lines) + "\n"
    if absolute:
        text += "".join(f"{line}\n" for line in _sorted_imports(absolute)) + "\n"
    text += "".join(f"{line}\n" for line in _sorted_imports(own))
    module = cst.parse_module(text)
    body = list(module.body)
    for cls in home.classes:
        body.append(cls.with_changes(leading_lines=[BLANK, BLANK]))
    if not home.feature:
        register = "def register_workers(app: App) -> None:\n"
        register += '    """Register the workers of the top-level jobs, as the features do in register.py."""\n'
        register += "".join(f"    {line}\n".replace("\n", "\n    ").rstrip(" ") for line in home.registrations)
        body.append(cst.parse_statement(register).with_changes(leading_lines=[BLANK, BLANK]))
    return _wrapped(_merge_imports(module.with_changes(body=body))).code


def _sorted_imports(lines: set[str]) -> list[str]:
    def key(line: str) -> tuple[bool, int, str, str]:
        source = line.split(" import ")[0].removeprefix("from ").removeprefix("import ")
        dots = len(source) - len(source.lstrip("."))
        return (line.startswith("from"), -dots, source.lstrip("."), line)

    return sorted(lines, key=key)


def _merge_imports(module: cst.Module) -> cst.Module:
    """One ``from X import a, b`` per module X."""
    merged: dict[str, int] = {}
    body: list[cst.BaseStatement] = []
    for statement in module.body:
        small = (
            statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 else None
        )
        if (
            isinstance(small, cst.ImportFrom)
            and not isinstance(small.names, cst.ImportStar)
            and small.module is not None
        ):
            key = "." * len(small.relative) + cst.Module([]).code_for_node(small.module)
            if key in merged:
                index = merged[key]
                previous = body[index].body[0]  # type: ignore[attr-defined]
                names = [*previous.names, *small.names]
                seen: dict[str, cst.ImportAlias] = {}
                for alias in names:
                    seen.setdefault(
                        cst.Module([]).code_for_node(alias.with_changes(comma=cst.MaybeSentinel.DEFAULT)), alias
                    )
                names = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in seen.values()]
                names.sort(key=member_order)
                shown = [cst.Module([]).code_for_node(a) for a in names]
                body[index] = cst.parse_statement(import_line(key, shown) + "\n")
                continue
            merged[key] = len(body)
        body.append(statement)
    return module.with_changes(body=body)


def _wrapped(module: cst.Module) -> cst.Module:
    """Long ``from X import a, b, ...`` lines, one name a line."""
    body = []
    for statement in module.body:
        small = (
            statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 else None
        )
        code = module.code_for_node(statement).strip()
        if isinstance(small, cst.ImportFrom) and "\n" not in code and len(code) > LINE_LENGTH:
            source = "." * len(small.relative) + (module.code_for_node(small.module) if small.module else "")
            names = [module.code_for_node(a.with_changes(comma=cst.MaybeSentinel.DEFAULT)) for a in small.names]  # type: ignore[union-attr]
            statement = cst.parse_statement(import_line(source, names) + "\n").with_changes(
                leading_lines=statement.leading_lines
            )
        body.append(statement)
    return module.with_changes(body=body)


def _module_name(program: Program, path: Path) -> str:
    parts = path.relative_to(program.package.parent).with_suffix("").parts
    return ".".join(parts)


def relative(here: str, target: str) -> str:
    """``target`` as a relative module name from module ``here`` (both absolute, same package)."""
    base = here.split(".")[:-1]
    parts = target.split(".")
    common = 0
    while common < min(len(base), len(parts)) and base[common] == parts[common]:
        common += 1
    if common == 0:
        return target
    dots = "." * (len(base) - common + 1)
    return dots + ".".join(parts[common:])


def _import_for(program: Program, here: str, source: Module, name: str) -> str | None:
    """The import that makes ``name`` of module ``source`` available in module ``here``."""
    if name in source.definitions:
        return f"from {relative(here, source.name)} import {name}"
    if name not in source.imports:
        return None
    module, imported = source.imports[name]
    if imported is None:
        return f"import {module} as {name}" if module.split(".")[0] != name and module != name else f"import {module}"
    where = relative(here, module) if module.startswith(program.project + ".") or module == program.project else module
    return f"from {where} import {imported}" + (f" as {name}" if imported != name else "")


def register_in_feature(source: str, lines: list[str], imports: list[str], *, import_inside: bool) -> str:
    """register.py with ``lines`` at the end of ``register(app)`` and the imports they need.

    When the worker module imports from register.py (as jobs.py did), the import of the
    workers goes inside the function, where it cannot be circular.
    """
    module = cst.parse_module(source)
    body = list(module.body)
    index = next((i for i, s in enumerate(body) if isinstance(s, cst.FunctionDef) and s.name.value == "register"), None)
    if index is None:
        raise UserError("a feature's register.py has no register(app) function", "add one, then migrate")
    function: cst.FunctionDef = body[index]  # type: ignore[assignment]
    app = function.params.params[0].name.value
    statements = [_statement(line, app) for line in lines]
    if import_inside:
        comment = cst.EmptyLine(comment=cst.Comment("# Imported here: the worker module imports from this one."))
        inside = [cst.parse_statement(line + "\n") for line in imports]
        inside[0] = inside[0].with_changes(leading_lines=[comment])
        statements = [*inside, *statements]
    function = function.with_changes(body=function.body.with_changes(body=[*function.body.body, *statements]))
    body[index] = function
    module = module.with_changes(body=body)
    if not import_inside:
        for line in imports:
            module = ensure_import(module, line)
    return module.code


def _statement(line: str, app: str) -> cst.BaseStatement:
    """A registration line, with the app named as ``register``'s parameter is."""
    if app != "app":
        line = line.replace("app.register_worker(", f"{app}.register_worker(").replace("(app))", f"({app}))")
    return cst.parse_statement(line + "\n")


def register_top_level(
    program: Program, module_name: str, edits: dict[Module, ModuleEdits], *, import_inside: bool
) -> None:
    """Make ``build_app`` call ``register_workers(app)`` right after it registers the features."""
    for module in program.modules.values():
        for call in [n for n in module.all(cst.Call) if m.matches(n, m.Call(func=m.Name("register_features")))]:
            statement = module.statement(call)
            function = module.enclosing_function(call)
            if statement is None or function is None or not call.args:  # type: ignore[attr-defined]
                continue
            app = cst.Module([]).code_for_node(call.args[0].value)  # type: ignore[attr-defined]
            found = edits.setdefault(module, ModuleEdits())
            importing = f"from {relative(module.name, f'{program.project}.{module_name}')} import register_workers"
            lines = [cst.parse_statement(f"register_workers({app})\n")]
            if import_inside:
                lines.insert(0, cst.parse_statement(importing + "  # here: the workers import from this module\n"))
            else:
                found.imports.append(importing)
            found.replace[statement] = [statement, *lines]
            return
    raise UserError(
        "the app registers its features nowhere petrock can find (no register_features(app) call)",
        "jobs outside the features need build_app to call register_features(app); add it, then migrate",
    )
