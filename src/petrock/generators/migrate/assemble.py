"""Putting it together: from the decided jobs to the files a migration writes.

Native jobs get their worker classes (``native.py``) in their home's module and a
registration; hosted jobs a ``HostedJob`` registration. Every start line becomes
``run_with_server`` (``sites.py``, ``hosting.py``); the code that moved into workers
leaves its old module; jobs left are marked. All of it lands in the migration's plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from petrock.names import pascal
from petrock.templates import templates_dir

from .edits import (
    MARK,
    ModuleEdits,
    apply_edits,
    drop_unused_holders,
    drop_unused_imports,
    drop_unused_objects,
    import_line,
)
from .homes import Home, free_module, register_in_feature, register_top_level, worker_module_text
from .hosting import after_definitions, keeping, native_when, start_code, stop_code
from .jobs import DROPPED, HOSTED, LEFT, NATIVE, UNEXPECTED, Job
from .native import native_worker
from .program import Module, Program
from .report import JobLine, Migration, StartLine
from .sites import app_expression, bindable, collapse, hosted_start_line
from .spawns import Spawn
from .syntax import DOCSTRING, callee, findall
from .tidy import tidy

CONTAINERS = {"set", "dict", "list", "tuple", "frozenset", "deque", "defaultdict", "object"}
# What makes an object without doing anything yet: a line making one is safe to drop once unused.
INERT = {
    "scheduler", "Event", "Lock", "RLock", "Queue", "ThreadPoolExecutor", "Condition", "Semaphore",
    "get_running_loop", "get_event_loop",
}  # fmt: skip


def assemble(program: Program, jobs: list[Job], migration: Migration) -> None:
    taken = _taken_names(program)
    for job in jobs:
        job.paced = program.paced
        if job.outcome == NATIVE:
            collapse(program, job)
        job.app = app_expression(program, job.module, job.spawn.call)
        if job.outcome not in (LEFT, DROPPED):
            job.home = job.owner.feature or ""
            job.name = _unique_name(job, taken)
    homes: dict[str, Home] = {}
    workers = {}
    for job in jobs:
        if job.outcome != NATIVE:
            continue
        home = _home(program, homes, job.home)
        class_name = _class_name(job, taken, home)
        try:
            worker = native_worker(job, class_name)
            if isinstance(worker, str) and bindable(program, job):
                # Not on an object of its own: on the one that started it, handed over at the start line.
                job.bound, job.start_method, job.sites, job.setup, job.job_class = True, None, [], [], None
                worker = native_worker(job, class_name)
        except UNEXPECTED as error:  # a shape the writer did not expect: host the job as it is
            worker = f"petrock could not write its worker ({type(error).__name__}: {error}; please report this)"
        if isinstance(worker, str):
            job.outcome, job.reason = HOSTED, worker
            job.start_method, job.sites, job.setup = None, [], []
            continue
        workers[job] = worker
        job.class_name = class_name
    edits: dict[Module, ModuleEdits] = {}
    wrapped: dict[cst.CSTNode, Job] = {}  # start lines hosted jobs are wrapped at
    for job in jobs:
        if job.outcome == NATIVE:
            worker = workers[job]
            home = _home(program, homes, job.home)
            home.classes.append(worker.cls)
            home.needs.update(worker.needs)
            home.threaded |= job.target.threaded  # type: ignore[union-attr]
            home.times |= worker.times
            home.binds |= worker.binds
            home.registrations.append(f"app.register_worker({job.class_name}(app))")
            _native_edits(program, job, edits)
        elif job.outcome == HOSTED and job.shares is not None:
            job.class_name, job.name = "HostedJob", job.shares.name  # runs inside that job, as it did
        elif job.outcome == HOSTED:
            job.class_name = "HostedJob"
            if _hosted_edits(program, job, edits, wrapped):
                home = _home(program, homes, job.home)
                home.hosted = True
                home.registrations.append(_hosted_registration(job))
        elif job.outcome == DROPPED:
            _edits_of(edits, job.module).drop.add(job.statement)
            continue
        else:
            _mark(job, edits)
        migration.jobs.append(_line(job))
    _drop_moved(program, jobs, edits)
    if migration.migrated:
        _write_runtime(program, migration)
    texts: dict[Path, str] = {}
    if "" in homes:
        top = homes[""]
        inside = _imports_main(program, worker_module_text(program, top))
        register_top_level(program, top.module_name, edits, import_inside=inside)
    _write_edits(program, edits, migration, texts)
    created = _write_homes(program, homes, edits, texts)
    emptied: dict[Path, set[str]] = {}
    for module, found in edits.items():
        for node in found.drop:
            cls = module.enclosing_class(node) if node in module.parents else None
            if cls is not None and module.parent(module.parent(node)) is cls:
                emptied.setdefault(module.path, set()).add(cls.name.value)
    _write_plan(program, migration, texts, created, emptied)


def _write_runtime(program: Program, migration: Migration) -> None:
    """The app's core gets ``hosted.py`` (run_with_server, until_served, HostedJob) when it has none."""
    target = program.package / "core" / "hosted.py"
    if target.exists():
        return
    source = templates_dir() / "project" / "src" / "{{project_name}}" / "core" / "hosted.py"
    migration.plan.write(target.relative_to(migration.root).as_posix(), source.read_text())


def _taken_names(program: Program) -> set[str]:
    """Worker names and worker class names the app uses already."""
    taken: set[str] = set()
    for path in program.package.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text()
        if "name" not in text:
            continue
        folder = path.parent.name
        taken |= {f"{folder}:{name}" for name in re.findall(r"^class (\w+)", text, re.MULTILINE)}
        taken |= set(re.findall(r"^\s+name\s*=\s*[\"']([^\"']+)[\"']", text, re.MULTILINE))
        taken |= set(re.findall(r"CommandWorker\(\s*[\"']([^\"']+)[\"']", text))
    return taken


def _prefix(job: Job) -> str:
    module = job.owner
    return module.feature or module.stem


def _unique_name(job: Job, taken: set[str]) -> str:
    prefix = _prefix(job)
    stem = job.stem.replace("_", "-")
    candidates = [stem, f"{stem}-{job.spawn.kind}", *(f"{stem}-{n}" for n in range(2, 100))]
    for candidate in candidates:
        name = f"{prefix}/{candidate}"
        if name not in taken:
            taken.add(name)
            return name
    raise AssertionError("no free worker name")


def _class_name(job: Job, taken: set[str], home: Home) -> str:
    base = pascal(job.name.split("/", 1)[1].replace("-", "_"))
    folder = home.folder.name
    defined = {name for module_name in [job.target.module] for name in module_name.definitions} if job.target else set()
    for candidate in [f"{base}Worker", *(f"{base}{n}Worker" for n in range(2, 100))]:
        if f"{folder}:{candidate}" not in taken and candidate not in defined:
            taken.add(f"{folder}:{candidate}")
            return candidate
    raise AssertionError("no free class name")


def _home(program: Program, homes: dict[str, Home], feature: str) -> Home:
    if feature not in homes:
        folder = program.package / feature if feature else program.package
        home = Home(feature, folder)
        home.module_path = free_module(folder, "worker" if feature else "workers")
        homes[feature] = home
    return homes[feature]


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _activation(
    app: cst.BaseExpression | None,
    name: str,
    start: cst.BaseExpression | None = None,
    stop: cst.BaseExpression | None = None,
    bound: cst.BaseExpression | None = None,
) -> cst.SimpleStatementLine:
    """``run_with_server(app, "name"[, start][, stop=stop])``, built as a node (start code may span lines)."""
    arguments = [cst.Arg(app if app is not None else cst.Name("None")), cst.Arg(cst.SimpleString(_string(name)))]
    if start is not None:
        arguments.append(cst.Arg(start))
    if stop is not None:
        arguments.append(
            cst.Arg(
                stop,
                keyword=cst.Name("stop"),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
                ),
            )
        )
    if bound is not None:
        arguments.append(
            cst.Arg(
                bound,
                keyword=cst.Name("bound"),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
                ),
            )
        )
    call = cst.Call(cst.Name("run_with_server"), arguments)
    return cst.SimpleStatementLine([cst.Expr(call)])


def _relative_module(here: str, target: str) -> str:
    from .homes import relative

    return relative(here, target)


def _hosted_import(program: Program, module: Module) -> str:
    parts = module.name.split(".")
    depth = len(parts) - 1 if module.path.name != "__init__.py" else len(parts)
    dots = "." * depth
    return f"from {dots}core.hosted import run_with_server"


def _edits_of(edits: dict[Module, ModuleEdits], module: Module) -> ModuleEdits:
    return edits.setdefault(module, ModuleEdits())


def _native_edits(program: Program, job: Job, edits: dict[Module, ModuleEdits]) -> None:
    """The start line (or the collapsed start method's calls) now lets the worker run; its loop leaves."""
    target = job.target
    assert target is not None
    if job.group is not None:
        outer = job.group.statement
        found = _edits_of(edits, job.group.module)
        found.replace.setdefault(outer, []).append(
            _activation(app_expression(program, job.group.module, outer), job.name)
        )
        found.imports.append(_hosted_import(program, job.group.module))
    elif job.sites:
        for site in job.sites:
            found = _edits_of(edits, site.module)
            line = _activation(site.app, job.name)
            if site.loop is None:
                found.replace[site.node] = [line]
            else:
                found.drop_elements.add(site.node)
                found.before.setdefault(site.loop, []).append(line)
                elements = site.loop.iter.elements  # type: ignore[attr-defined]
                if all(e in found.drop_elements for e in elements):
                    found.drop.add(site.loop)
            found.imports.append(_hosted_import(program, site.module))
        _edits_of(edits, job.module).drop.add(job.start_method)  # type: ignore[arg-type]
    elif job.collection is not None:
        found = _edits_of(edits, job.module)
        found.before.setdefault(job.collection, []).append(_activation(job.app, job.name))
        _drop_element(program, job, edits)
        found.imports.append(_hosted_import(program, job.module))
    else:
        found = _edits_of(edits, job.module)
        statement = job.statement
        activation = _activation(job.app, job.name, bound=job.target.instance if job.bound else None)
        built = job.module.statement(job.spawn.construction) if job.spawn.construction is not None else None
        if built is not None and built is not statement and job.spawn.handle is not None:
            # `self._thread = Thread(...)` then `self._thread.start()`: what kept the thread keeps a JobHandle.
            found.replace[built] = [keeping(built, activation, job.spawn.construction)]
            found.drop.add(statement)
        else:
            found.replace[statement] = [keeping(statement, activation, job.spawn.call)]
        found.imports.append(_hosted_import(program, job.module))


def _drop_element(program: Program, job: Job, edits: dict[Module, ModuleEdits]) -> None:
    element = job.element
    assert element is not None and job.collection is not None
    owner = program.module_of(element)
    _edits_of(edits, owner).drop_elements.add(element)


def _drop_moved(program: Program, jobs: list[Job], edits: dict[Module, ModuleEdits]) -> None:
    """A loop function (or method) now lives in its workers: it leaves its module once nothing else uses it
    (the start lines that named it are gone)."""
    gone: set[cst.CSTNode] = set()
    for found in edits.values():
        gone |= set(found.replace) | found.drop | found.drop_elements
    moved: dict[cst.FunctionDef, Module] = {}
    for job in jobs:
        if job.outcome == NATIVE and job.target is not None:
            moved[job.target.function] = job.target.module
        if job.group is not None and all(j.outcome == NATIVE for j in jobs if j.group is job.group):
            group = job.group.module.enclosing_function(job.spawn.call)
            if group is not None:
                moved[group] = job.spawn.module  # the TaskGroup's function started nothing else
    dropped = True
    while dropped:  # a function dropped takes its references along (a TaskGroup's tasks)
        dropped = False
        for function, module in list(moved.items()):
            if not _used_elsewhere(program, function, module, gone):
                _edits_of(edits, module).drop.add(function)
                gone.add(function)
                del moved[function]
                dropped = True


def _used_elsewhere(program: Program, function: cst.FunctionDef, home: Module, gone: set[cst.CSTNode]) -> bool:
    name = function.name.value
    method = home.enclosing_class(function) is not None and home.enclosing_function(function) is None
    nested = home.enclosing_function(function) is not None
    for module in program.modules.values():
        if nested and module is not home:
            continue
        references = module.attributes.get(name, []) if method else module.names.get(name, [])
        for reference in references:
            ancestors = set(module.ancestors(reference))
            if function in ancestors or reference is function.name or ancestors & gone:
                continue
            return True
    return False


def _hosted_registration(job: Job) -> str:
    was = f"{job.module.relative.split('/', 2)[-1]}: {job.display}"
    native = native_when(job.reason)
    return (
        "app.register_worker(\n"
        "    HostedJob(\n"
        f"        {_string(job.name)},\n"
        f"        was={_string(was)},\n"
        f"        native_when={_string(native)},\n"
        "    )\n"
        ")"
    )


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hosted_edits(
    program: Program, job: Job, edits: dict[Module, ModuleEdits], wrapped: dict[cst.CSTNode, Job]
) -> bool:
    """The start line is wrapped: the runtime runs it when the worker starts, and stops what it started.
    False when the line is wrapped already for another job (a loop starting several): they share its worker."""
    stop = stop_code(job)
    if job.group is not None:  # a task of a TaskGroup: started by itself where the group was
        outer = job.group.statement
        found = _edits_of(edits, job.group.module)
        statement = _substituted(job.statement, job.group_substitute)
        expression, definitions = start_code(job, statement)
        start = expression if expression is not None else definitions[0].name  # type: ignore[attr-defined]
        app = app_expression(program, job.group.module, outer)
        found.replace.setdefault(outer, []).extend(after_definitions([*definitions, _activation(app, job.name, start)]))
        found.imports.append(_hosted_import(program, job.group.module))
        return True
    if job.collection is not None:
        found = _edits_of(edits, job.module)
        if job.each is not None:  # one element of a comprehension: its expression starts the job
            expression, definitions = (
                cst.Lambda(cst.Parameters(), _substituted_expression(job.each, job.substitute)),
                [],
            )
        else:
            expression, definitions = start_code(job, _substituted(job.statement, job.substitute))
        start = expression if expression is not None else definitions[0].name  # type: ignore[attr-defined]
        found.before.setdefault(job.collection, []).extend(
            after_definitions([*definitions, _activation(job.app, job.name, start, stop)])
        )
        _drop_element(program, job, edits)
        for owner, name in job.element_imports:
            found.imports.append(f"from {_relative_module(job.module.name, owner.name)} import {name}")
        found.imports.append(_hosted_import(program, job.module))
        return True
    module, statement, app = hosted_start_line(program, job)
    if statement in wrapped:
        job.name = wrapped[statement].name
        job.notes.append(f"hosted with {job.name}, started by the same line")
        return False
    wrapped[statement] = job
    if statement is not job.statement:
        stop = None  # its stop code names what only the start line could reach
    found = _edits_of(edits, module)
    expression, definitions = start_code(job, statement)
    start = expression if expression is not None else definitions[0].name  # type: ignore[attr-defined]
    activation = _activation(app, job.name, start, stop)
    if expression is not None:
        activation = keeping(statement, activation)
    found.replace[statement] = after_definitions([*definitions, activation])
    found.imports.append(_hosted_import(program, module))
    return True


def _substituted_expression(node: cst.BaseExpression, substitute: dict[str, cst.BaseExpression]) -> cst.BaseExpression:
    return m.replace(node, m.Name(), lambda found, _: substitute.get(found.value, found))  # type: ignore[return-value]


def _substituted(statement: cst.BaseStatement, substitute: dict[str, cst.BaseExpression]) -> cst.BaseStatement:
    return m.replace(  # type: ignore[return-value]
        statement,
        m.Name(),
        lambda found, _: substitute.get(found.value, found),  # type: ignore[attr-defined]
    )


def _mark(job: Job, edits: dict[Module, ModuleEdits]) -> None:
    found = _edits_of(edits, job.module)
    reason = job.reason.split(":")[0].split(";")[0]
    found.marks[job.statement] = f"{MARK} {job.display}: {reason}"


def _line(job: Job) -> JobLine:
    module = job.owner if job.outcome != LEFT else job.module
    place = module.feature or module.relative.split("/", 2)[-1]
    interval = ""
    notes: list[str] = list(job.notes)
    if job.outcome == NATIVE and job.loop is not None and job.loop.interval is not None:
        interval = job.interval or _code(job.loop.interval)
        if job.target and job.target.threaded:
            notes.append("in a thread as before")
        if job.loop.slept_first:
            notes.append("it now runs once at start instead of after one interval")
        notes += [f"@{_code(d.decorator)} now wraps each pass" for d in job.loop.decorators]
        if job.loop.state:
            notes.append(f"its local state ({', '.join(job.loop.state)}) is kept in attributes")
        if job.loop.exits:
            notes.append("once its loop would have ended it idles")
    return JobLine(
        code=_locations(job),
        guarded=_guard(job),
        place=place,
        job=job.display,
        where=job.where,
        outcome=job.outcome,
        worker=job.name,
        worker_class=job.class_name,
        interval=interval,
        reason=job.reason.split(";")[0] if job.outcome == HOSTED else job.reason,
        native_when=native_when(job.reason) if job.outcome == HOSTED else "",
        notes=tuple(notes),
    )


def _locations(job: Job) -> tuple[str, ...]:
    """The functions the job is made of: its loop (or cycle), its element's function, and what starts it."""
    found: list[str] = []
    if job.target is not None:
        found.append(job.target.module.qualname(job.target.function))
    if job.element is not None and job.element_module is not None:
        owner = job.element_module
        function = owner.parent(job.element) if isinstance(job.element, cst.Decorator) else None
        if isinstance(function, cst.FunctionDef):
            found.append(owner.qualname(function))
        for name in findall(job.element, m.Name()):
            definition = owner.definitions.get(name.value)  # type: ignore[attr-defined]
            if isinstance(definition, cst.FunctionDef | cst.ClassDef):
                found.append(owner.qualname(definition))
    starter = job.module.enclosing_function(job.spawn.call)
    if starter is not None:
        found.append(job.module.qualname(starter))
    return tuple(dict.fromkeys(found))


def _guard(job: Job) -> str:
    """The condition the job's start line runs under in its function (an env gate), or ""."""
    if job.outcome == LEFT:
        return ""
    module = job.sites[0].module if job.sites else job.module
    node = job.sites[0].node if job.sites else (job.collection or job.statement)
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.FunctionDef):
            for statement in findall(ancestor.body, m.If()):
                returns = findall(statement.body, m.Return())  # type: ignore[attr-defined]
                if returns and module.line(statement) < module.line(node):
                    return f"if {_code(statement.test)}: return"  # type: ignore[attr-defined]
            return ""
        if isinstance(ancestor, cst.If):
            return f"if {_code(ancestor.test)}"
    return ""


def _write_homes(
    program: Program, homes: dict[str, Home], edits: dict[Module, ModuleEdits], texts: dict[Path, str]
) -> dict[Path, str]:
    """The new worker modules (returned) and the registrations (into ``texts``)."""
    created: dict[Path, str] = {}
    for feature, home in homes.items():
        assert home.module_path is not None
        text = worker_module_text(program, home)
        if home.classes or not feature:
            created[home.module_path] = text
        if feature:
            register = home.folder / "register.py"
            imports = []
            if home.classes:
                imports.append(import_line(f".{home.module_name}", sorted(cls.name.value for cls in home.classes)))
            if home.hosted:
                imports.append("from ..core.hosted import HostedJob")
            inside = _imports_register(program, home, text)
            texts[register] = register_in_feature(
                texts.get(register, register.read_text()), home.registrations, imports, import_inside=inside
            )
    return created


def _imports_register(program: Program, home: Home, text: str) -> bool:
    """Whether the worker module imports register.py, directly or through a module of the feature that
    does (jobs.py importing its commands): then register.py imports the workers inside register()."""
    register = f"{program.project}.{home.feature}.register"
    for imported in re.findall(r"^from \.(\w+) import", text, re.MULTILINE):
        if imported == "register":
            return True
        module = program.modules.get(f"{program.project}.{home.feature}.{imported}")
        if module is not None and any(
            source == register or f"{source}.{name}" == register for source, name in module.imports.values()
        ):
            return True
    return False


def _imports_main(program: Program, text: str) -> bool:
    """Whether the top-level worker module imports from the module that calls ``register_features``."""
    return "from .main import" in text


def _write_edits(
    program: Program, edits: dict[Module, ModuleEdits], migration: Migration, texts: dict[Path, str]
) -> None:
    for module, found in edits.items():
        if not found:
            continue
        edited = apply_edits(module.module, found)
        edited = drop_unused_objects(module.module.code, edited, module.relative, _plain_class(program, module))
        edited = drop_unused_holders(module.module.code, edited, module.relative)
        edited = drop_unused_imports(module.module.code, edited, module.relative)
        if edited.code == module.module.code:
            continue
        for node, replacement in found.replace.items():
            if node in module.positions and replacement and "run_with_server" in _code(replacement[-1]):
                migration.start_lines.append(
                    StartLine(
                        module.relative, module.line(node), _first_line(module, node), _code(replacement[-1]).strip()
                    )
                )
        texts[module.path] = edited.code


def _write_plan(
    program: Program,
    migration: Migration,
    texts: dict[Path, str],
    created: dict[Path, str],
    emptied: dict[Path, set[str]],
) -> None:
    deleted = tidy(program, texts, emptied, created)
    root = migration.root
    for path, text in created.items():
        migration.plan.write(path.relative_to(root).as_posix(), text)
    for path, text in texts.items():
        if path not in deleted and text != path.read_text():
            migration.plan.write(path.relative_to(root).as_posix(), text, edit=True)
    for path in sorted(deleted):
        migration.plan.delete(path.relative_to(root).as_posix(), taken_over=True)


def _plain_class(program: Program, module: Module) -> Callable[[cst.BaseExpression], bool]:
    """Whether a call makes an instance of an app class whose ``__init__`` only keeps its arguments."""

    def plain(func: cst.BaseExpression) -> bool:
        if (func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")) in INERT:
            return True
        resolved = program.resolve_expression(module, func)
        if resolved is None or not isinstance(resolved[1], cst.ClassDef):
            return False
        for member in resolved[1].body.body:
            if isinstance(member, cst.FunctionDef) and member.name.value == "__init__":
                return all(_keeps_only(statement) for statement in member.body.body)
        return True

    return plain


def _keeps_only(statement: cst.BaseStatement) -> bool:
    """A line of ``__init__`` that only stores values (``self.app = app``, ``self._stop = threading.Event()``)."""
    if m.matches(statement, DOCSTRING):
        return True
    if not m.matches(statement, m.SimpleStatementLine(body=[m.Assign() | m.AnnAssign()])):
        return False
    calls = [callee(call) or "" for call in findall(statement, m.Call())]  # type: ignore[arg-type]
    return all(name[:1].isupper() or name in CONTAINERS for name in calls)


def _first_line(module: Module, node: cst.CSTNode) -> str:
    code = module.code(node.with_changes(leading_lines=()) if hasattr(node, "leading_lines") else node)
    return code.strip().splitlines()[0]


def spawn_of(job: Job) -> Spawn:
    return job.spawn
