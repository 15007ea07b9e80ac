"""Every job the app starts by hand, and what becomes of each: native worker, hosted job, or left.

The spawns (``spawns.py``) are the ground truth. A spawn the server's start-up runs
(``server.py``) is a job the migration must put under the runtime: natively when its
target reads as a loop (``loops.py``), else hosted. A spawn the server never runs is
left where it is, with the reason. A spawn inside a running job (a loop that starts
a task per item) is part of that job. A spawn inside ``for job in JOBS:`` is one job
per element of ``JOBS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .classes import JobClass, read_job_class
from .loops import Loop, read_loop
from .program import Module, Program
from .server import Reach
from .spawns import Spawn
from .targets import Target, resolve_target

JOB_SUFFIXES = ("_task", "_worker", "_job", "_loop", "_thread", "_timer")
GENERIC_NAMES = {"run", "loop", "main", "tick", "work", "job", "worker", "_run", "_loop", "_main", "_tick", "_work"}
NATIVE, HOSTED, LEFT = "native", "hosted", "left"


@dataclass(eq=False)
class Site:
    """A line that starts a collapsed start method: ``jobs.start_cleanup_task()``, or a tuple element."""

    module: Module
    node: cst.CSTNode  # the statement, or the element of a `for start in (...)` tuple
    loop: cst.For | None  # the start-up loop the element is in
    app: cst.BaseExpression | None  # the app, as written there


@dataclass(eq=False)
class Job:
    """One job: where it is started, what it runs, and what the migration makes of it."""

    spawn: Spawn
    display: str  # how the report names it: "Jobs.start_cleanup_task", "poll_feeds (thread)"
    server: bool  # the server's start-up starts it
    outcome: str = HOSTED
    reason: str = ""  # hosted: what would make it native; left: why it stays
    target: Target | None = None
    loop: Loop | None = None
    job_class: JobClass | None = None  # its loop is a method of this class, copied into the worker
    element: cst.Element | None = None  # its element in the collection a start-up loop iterates
    element_module: Module | None = None  # where that collection is written
    collection: cst.For | None = None
    substitute: dict[str, cst.BaseExpression] = field(default_factory=dict)
    element_imports: list[tuple[Module, str]] = field(default_factory=list)  # what the start line must import
    start_method: cst.FunctionDef | None = None  # collapsed: the start method that goes
    sites: list[Site] = field(default_factory=list)  # collapsed: the lines that called it
    setup: list[cst.BaseStatement] = field(default_factory=list)  # collapsed: what else the start method did
    app: cst.BaseExpression | None = None  # the app where the job is started, as written there
    stem: str = ""  # what its worker is named after: "cleanup"
    name: str = ""  # the worker's name: "orders/cleanup"
    class_name: str = ""  # the worker class: "CleanupWorker", or "HostedJob"
    home: str = ""  # the feature whose register.py registers it; "" for a top-level module
    notes: list[str] = field(default_factory=list)

    @property
    def module(self) -> Module:
        return self.spawn.module

    @property
    def where(self) -> str:
        if self.element is not None and self.element_module is not None:
            return self.element_module.where(self.element)
        return self.module.where(self.spawn.call)

    @property
    def owner(self) -> Module:
        """The module the job belongs to: where its loop is, where its collection is, or where it starts."""
        if self.target is not None:
            return self.target.module
        return self.element_module or self.module

    @property
    def statement(self) -> cst.BaseStatement:
        return self.spawn.statement  # type: ignore[return-value]


def find_jobs(program: Program, spawns: list[Spawn], server: Reach, commands: dict[str, Reach]) -> list[Job]:
    inside_jobs = _inside_jobs(program, spawns, server)
    classes: dict[cst.ClassDef, JobClass] = {}
    jobs: list[Job] = []
    hosted = _hosted_already(program)
    for spawn in spawns:
        if any(a in hosted for a in spawn.module.ancestors(spawn.call)):
            continue  # hosted by an earlier migration: its start code is an argument of run_with_server
        runs = server.runs(spawn.module, spawn.call)
        if not runs and spawn in inside_jobs:
            continue
        for job in _expand(program, spawn, runs):
            if runs:
                _decide(program, job, classes)
            else:
                job.outcome, job.reason = LEFT, _why_not_started(spawn, commands)
            jobs.append(job)
    return jobs


def _hosted_already(program: Program) -> set[cst.CSTNode]:
    """The start code of jobs an earlier migration hosted: ``run_with_server(app, name, START)``."""
    found: set[cst.CSTNode] = set()
    for module in program.modules.values():
        for call in module.all(cst.Call):
            if not m.matches(call, m.Call(func=m.Name("run_with_server"))) or len(call.args) < 3:  # type: ignore[attr-defined]
                continue
            start = call.args[2].value  # type: ignore[attr-defined]
            found.add(start)
            if isinstance(start, cst.Name):
                block = module.parent(module.statement(call))
                for statement in getattr(block, "body", ()):
                    if isinstance(statement, cst.FunctionDef) and statement.name.value == start.value:
                        found.add(statement)
    return found


def _inside_jobs(program: Program, spawns: list[Spawn], server: Reach) -> set[Spawn]:
    """Spawns in code only a running job reaches (a task per item of a loop): part of that job."""
    from .server import reach

    roots = []
    for spawn in spawns:
        target = resolve_target(program, spawn)
        if isinstance(target, Target):
            roots.append(((target.module, target.function), "job"))
    inside = reach(program, roots, [])
    return {
        spawn
        for spawn in spawns
        if (function := spawn.module.enclosing_function(spawn.call)) is not None
        and any(f in inside.functions for f in _enclosing(spawn.module, function))
        and not server.runs(spawn.module, spawn.call)
    }


def _enclosing(module: Module, function: cst.FunctionDef) -> list[cst.FunctionDef]:
    found = [function]
    found += [a for a in module.ancestors(function) if isinstance(a, cst.FunctionDef)]
    return found


def _why_not_started(spawn: Spawn, commands: dict[str, Reach]) -> str:
    starters = [how for how, reached in commands.items() if reached.runs(spawn.module, spawn.call)]
    if starters:
        return (
            f"only {', '.join(starters)} starts it, not the server: it stays as it is (a worker would run "
            "with the server); move its start into the server's start-up to have it migrated"
        )
    return (
        "nothing the server runs starts it (no call from the lifespan, a startup handler or serve reaches it): "
        "a worker would start a job that does not run today; start it from the server's start-up, or delete it"
    )


def _expand(program: Program, spawn: Spawn, runs: bool) -> list[Job]:
    """One job per spawn, or per element when the spawn starts each element of a collection."""
    base = Job(spawn, _display(spawn), runs)
    loop = _collection_loop(spawn)
    if loop is None or not isinstance(loop.target, cst.Name):
        return [base]
    elements = _elements(program, spawn.module, loop)
    if elements is None:
        return [base]
    jobs = []
    for element in elements:
        owner = program.module_of(element)
        value, imported = _as_written_at(spawn.module, loop.iter, owner, element.value)
        job = Job(spawn, "", runs, element=element, collection=loop, element_module=owner)
        job.substitute = {loop.target.value: value}
        job.element_imports = imported
        job.display = f"{_code(loop.iter)}: {_code(element.value)}"
        jobs.append(job)
    return jobs


def _as_written_at(
    site: Module, iterable: cst.BaseExpression, owner: Module, value: cst.BaseExpression
) -> tuple[cst.BaseExpression, list[tuple[Module, str]]]:
    """An element of a collection written in ``owner``, as the start line in ``site`` can name it:
    ``gamma_jobs.refresh`` when the loop reads ``gamma_jobs.JOBS``; else with the names it needs imported."""
    if owner is site:
        return value, []
    names = [n for n in m.findall(value, m.Name()) if n.value in owner.definitions]  # type: ignore[union-attr]
    if m.matches(iterable, m.Attribute(value=m.Name())):
        alias = iterable.value  # type: ignore[attr-defined]
        return (
            m.replace(value, m.Name(), lambda n, _: cst.Attribute(alias, n) if n.value in owner.definitions else n),  # type: ignore[return-value]
            [],
        )
    return value, [(owner, n.value) for n in names]  # type: ignore[attr-defined]


def _collection_loop(spawn: Spawn) -> cst.For | None:
    """``for job in JOBS: create_task(job(app))``: the for statement whose variable the spawn's target uses."""
    for ancestor in spawn.module.ancestors(spawn.call):
        if isinstance(ancestor, cst.FunctionDef):
            return None
        if isinstance(ancestor, cst.For) and isinstance(ancestor.target, cst.Name):
            used = {n.value for n in m.findall(spawn.target or spawn.call, m.Name())}  # type: ignore[union-attr]
            if ancestor.target.value in used:
                return ancestor
    return None


def _elements(program: Program, module: Module, loop: cst.For) -> list[cst.Element] | None:
    """The elements of what a for statement iterates, when it is a list or tuple written in the app."""
    iterable = loop.iter
    if isinstance(iterable, cst.List | cst.Tuple):
        return list(iterable.elements)
    resolved = program.resolve_expression(module, iterable) if isinstance(iterable, cst.Name | cst.Attribute) else None
    if resolved is None and isinstance(iterable, cst.Name):
        function = module.enclosing_function(loop)
        if function is not None:
            for assign in m.findall(function, m.Assign(targets=[m.AssignTarget(m.Name(iterable.value))])):
                value = assign.value  # type: ignore[attr-defined]
                if isinstance(value, cst.List | cst.Tuple):
                    return list(value.elements)
        return None
    if resolved and isinstance(resolved[1], cst.SimpleStatementLine):
        small = resolved[1].body[0]
        value = small.value if isinstance(small, cst.Assign | cst.AnnAssign) else None
        if isinstance(value, cst.List | cst.Tuple):
            return list(value.elements)
    return None


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _display(spawn: Spawn) -> str:
    function = spawn.module.enclosing_function(spawn.call)
    cls = spawn.module.enclosing_class(spawn.call)
    if function is not None and cls is not None and function.name.value.startswith("start"):
        return f"{cls.name.value}.{function.name.value}"
    target = spawn.target if spawn.target is not None else spawn.construction
    what = _code(target) if target is not None else spawn.kind
    where = f"{function.name.value}: " if function is not None else ""
    return f"{where}{spawn.kind} {what}"


def _decide(program: Program, job: Job, classes: dict[cst.ClassDef, JobClass]) -> None:
    """Native when its target reads as a loop the worker can run; else hosted, with what would make it native."""
    target = resolve_target(program, job.spawn, job.substitute, job.element_module)
    job.stem = _stem(job, target if isinstance(target, Target) else None)
    if isinstance(target, str):
        job.reason = f"{target}; a loop function of the app, started with the app, would be native"
        return
    job.target = target
    owner = target.cls if target.cls is not None and not target.static else None
    if owner is None and target.nested_in is not None:
        owner = target.module.enclosing_class(target.nested_in)  # a loop defined inside a start method
    if owner is not None:
        job_class = classes.get(owner) or classes.setdefault(owner, read_job_class(owner))
        if job_class.problem:
            job.reason = f"{job_class.problem}: a plain class whose __init__ takes just the app would be native"
            return
        job.job_class = job_class
    if (handle := _handle_used_elsewhere(job)) is not None:
        job.reason = f"the task or thread it keeps in {handle} is used elsewhere"
        return
    if job.spawn.kind in ("timer", "callback", "sched", "scheduler"):
        job.reason = f"it is a {job.spawn.kind} chain; petrock reads only loops so far"
        return
    loop = read_loop(target.function, threaded=target.threaded)
    job.loop = loop
    if loop.problem:
        job.reason = (
            f"{loop.problem}; a `while True:` loop whose passes sleep once, at their start or end, would be native"
        )
        return
    if target.function.asynchronous is not None and target.threaded:
        job.reason = "it runs a coroutine function in a thread"
        return
    if target.function.asynchronous is None and not target.threaded:
        job.reason = "its loop blocks the event loop (a plain function run as a task)"
        return
    job.outcome = NATIVE


def _handle_used_elsewhere(job: Job) -> str | None:
    """``self._task = create_task(...)`` read elsewhere (to cancel it): the code needs the real task."""
    statement = job.statement
    holder: cst.BaseExpression | None = job.spawn.handle
    if holder is None and m.matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget()])])):
        holder = statement.body[0].targets[0].target  # type: ignore[attr-defined]
    if holder is None:
        return None
    shown = _code(holder)
    if m.matches(holder, m.Attribute(value=m.Name("self"))):
        cls = job.module.enclosing_class(job.spawn.call)
        scope: cst.CSTNode = cls if cls is not None else job.module.module
        pattern = m.Attribute(value=m.Name("self"), attr=m.Name(holder.attr.value))  # type: ignore[attr-defined]
        uses = [
            found
            for found in m.findall(scope, pattern)
            if job.module.statement(found) is not statement
            and not m.matches(job.module.statement(found), m.SimpleStatementLine(body=[m.Assign(value=m.Name("None"))]))
            and (
                job.spawn.construction is None
                or job.module.statement(found) is not job.module.statement(job.spawn.construction)
            )
        ]
        return shown if uses else None
    if isinstance(holder, cst.Name):
        function = job.module.enclosing_function(job.spawn.call)
        scope = function if function is not None else job.module.module
        others = [
            found
            for found in m.findall(scope, m.Name(holder.value))
            if job.module.statement(found)
            not in (statement, job.module.statement(job.spawn.construction) if job.spawn.construction else None)
        ]
        return shown if others else None
    return shown


def _stem(job: Job, target: Target | None) -> str:
    """What the job's worker is named after: its start method, its loop function, or its class."""
    function = job.module.enclosing_function(job.spawn.call)
    cls = job.module.enclosing_class(job.spawn.call)
    if job.element is None and function is not None and cls is not None and function.name.value.startswith("start_"):
        return _short(function.name.value)
    if job.element is not None:
        names = m.findall(job.element.value, m.Name())
        if names:
            return _short(names[0].value)  # type: ignore[attr-defined]
    if target is not None:
        name = target.function.name.value
        if name in GENERIC_NAMES and target.cls is not None:
            return _short(target.cls.name.value)
        if name in GENERIC_NAMES and target.nested_in is not None:
            return _short(target.nested_in.name.value)
        return _short(name)
    return _short(function.name.value) if function is not None else job.spawn.kind


def _short(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    name = name.removeprefix("start_").strip("_")
    for suffix in JOB_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name or "job"
