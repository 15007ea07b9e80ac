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
import libcst.helpers
import libcst.matchers as m

from .classes import JobClass, read_job_class
from .loops import Loop, read_cycle, read_loop
from .program import Module, Program, assigned_at_top
from .server import Reach, methods, shutdown_hooks
from .spawns import Spawn, rearmed_through, rearms, scheduled_by_decorator
from .syntax import bound_by, findall, variable_names, without_docstring
from .targets import Target, resolve_target

JOB_SUFFIXES = ("_task", "_worker", "_job", "_loop", "_thread", "_timer")
GENERIC_NAMES = {"run", "loop", "main", "tick", "work", "job", "worker", "_run", "_loop", "_main", "_tick", "_work"}
NATIVE, HOSTED, LEFT = "native", "hosted", "left"
DROPPED = "dropped"  # a thread that only ran a `sched` scheduler whose every job is a worker now
UNEXPECTED = (AttributeError, IndexError, KeyError, TypeError, ValueError, StopIteration)


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
    element: cst.CSTNode | None = None  # its element in the collection a start-up loop iterates (or decorator)
    element_module: Module | None = None  # where that collection is written
    collection: cst.BaseStatement | None = None  # the statement iterating the collection (a for, a comprehension)
    each: cst.BaseExpression | None = None  # in a comprehension: the element expression that starts the job
    substitute: dict[str, cst.BaseExpression] = field(default_factory=dict)
    element_imports: list[tuple[Module, str]] = field(default_factory=list)  # what the start line must import
    group: Spawn | None = None  # the task that ran the asyncio.TaskGroup this job is a task of
    group_substitute: dict[str, cst.BaseExpression] = field(default_factory=dict)  # its parameters, as started
    start_method: cst.FunctionDef | None = None  # collapsed: the start method that goes
    sites: list[Site] = field(default_factory=list)  # collapsed: the lines that called it
    setup: list[cst.BaseStatement] = field(default_factory=list)  # collapsed: what else the start method did
    app: cst.BaseExpression | None = None  # the app where the job is started, as written there
    stem: str = ""  # what its worker is named after: "cleanup"
    name: str = ""  # the worker's name: "orders/cleanup"
    class_name: str = ""  # the worker class: "CleanupWorker", or "HostedJob"
    home: str = ""  # the feature whose register.py registers it; "" for a top-level module
    interval: str = ""  # native: its worker's poll interval, as written there
    paced: bool = False  # its worker needs @paced (the app's core predates wake_on_append)
    bound: bool = False  # native, running its loop's body on the object that started it (bound_to)
    holder: str = ""  # bound: the worker's attribute holding that object
    shares: Job | None = None  # hosted within another job's worker (a scheduler's job, in the scheduler's)
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
    at_shutdown = shutdown_hooks(program)
    for spawn in spawns:
        if any(a in hosted for a in spawn.module.ancestors(spawn.call)):
            continue  # hosted by an earlier migration: its start code is an argument of run_with_server
        if _in_a_worker(program, spawn):
            continue  # a worker's own task (a call it awaits in work): the runtime runs and stops it already
        if any(a in at_shutdown for a in spawn.module.ancestors(spawn.call)):
            continue  # started when the server stops (a watchdog bounding the exit): not a background job
        runs = server.runs(spawn.module, spawn.call)
        if not runs and spawn in inside_jobs:
            continue
        for job in _grouped(program, spawn, spawns) or _expand(program, spawn, runs):
            if runs:
                try:
                    _decide(program, job, classes)
                except UNEXPECTED as error:  # a shape the reader did not expect: host the job as it is
                    job.outcome, job.target, job.loop, job.job_class = HOSTED, None, None, None
                    job.reason = f"petrock could not read it ({type(error).__name__}: {error}; please report this)"
            else:
                job.outcome, job.reason = LEFT, _why_not_started(spawn, commands)
            jobs.append(job)
    _drop_idle_schedulers(jobs)
    jobs += _scheduled_jobs(program, server, jobs)
    return jobs


def _scheduled_jobs(program: Program, server: Reach, jobs: list[Job]) -> list[Job]:
    """Functions a scheduler object runs (``@scheduler.scheduled_job(...)``): they run as its thread does, so
    they are hosted with the job that starts the scheduler (or left with it)."""
    found = []
    for module, function, decorator in scheduled_by_decorator(program):
        spawn = Spawn(module, decorator.decorator, "scheduler", cst.Name(function.name.value))  # type: ignore[arg-type]
        runs = server.runs(module, function)  # the decorator runs where the function is defined
        job = Job(spawn, f"{_code(decorator.decorator)} {function.name.value}", runs)
        scheduler = next((j for j in jobs if j.target is not None and _runs_a_scheduler(j)), None)
        if scheduler is None or scheduler.outcome == LEFT or not runs:
            job.outcome, job.reason = LEFT, "its scheduler is not started by the server"
        else:
            job.outcome, job.shares = HOSTED, scheduler
            job.reason = "it runs in the thread of the scheduler it is registered with, hosted as it was"
        found.append(job)
    return found


def _runs_a_scheduler(job: Job) -> bool:
    """The job starts the thread of a scheduler object (a class with ``add_job``)."""
    cls = job.target.cls if job.target is not None else None
    return cls is not None and any(isinstance(s, cst.FunctionDef) and s.name.value == "add_job" for s in cls.body.body)


def _drop_idle_schedulers(jobs: list[Job]) -> None:
    """``Thread(target=scheduler.run).start()`` runs nothing once every job of that scheduler is a worker."""
    for job in jobs:
        target = job.spawn.target
        if job.spawn.kind != "thread" or not m.matches(target, m.Attribute(attr=m.Name("run"))):
            continue
        owner = _code(target.value)  # type: ignore[union-attr]
        function = job.module.enclosing_function(job.spawn.call)
        peers = [
            j
            for j in jobs
            if j.spawn.kind == "sched"
            and j.module is job.module
            and j.module.enclosing_function(j.spawn.call) is function
            and _code(j.spawn.call.func.value) == owner  # type: ignore[attr-defined]
        ]
        if peers and all(j.outcome == NATIVE for j in peers):
            job.outcome, job.reason = DROPPED, "it ran the scheduler of jobs that are workers now"


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


WORKER_BASES = {"Worker", "CommandWorker"}


def _in_a_worker(program: Program, spawn: Spawn) -> bool:
    """Whether the spawn is in a method of a worker class: one with a ``work`` method (its own or a base's
    in the app) or deriving from the core's ``Worker``/``CommandWorker``."""
    for ancestor in spawn.module.ancestors(spawn.call):
        if not isinstance(ancestor, cst.ClassDef):
            continue
        bases = {(cst.helpers.get_full_name_for_node(base.value) or "").rsplit(".", 1)[-1] for base in ancestor.bases}
        if bases & WORKER_BASES or methods(program, spawn.module, ancestor, "work"):
            return True
    return False


def _inside_jobs(program: Program, spawns: list[Spawn], server: Reach) -> set[Spawn]:
    """Spawns in code only a running job reaches (a task per item of a loop): part of that job."""
    from .server import reach

    roots = []
    for spawn in spawns:
        try:
            target = resolve_target(program, spawn)
        except UNEXPECTED:
            continue
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
    if loop is None:
        return [base]
    elements = _elements(program, spawn.module, loop)
    if elements is None:
        return [base]
    jobs = []
    for element, given in elements:
        owner = program.module_of(element)
        value, imported = _as_written_at(spawn.module, loop.iter, owner, given)
        substitute = _unpacked(loop.target, value)
        if substitute is None:
            return [base]
        job = Job(spawn, "", runs, element=element, collection=loop.statement, element_module=owner)
        job.each = loop.each
        job.substitute = substitute
        job.element_imports = imported
        shown = _code(element.decorator) if isinstance(element, cst.Decorator) else _code(given)
        job.display = f"{_code(loop.iter)}: {shown}"
        if isinstance(element, cst.Decorator):
            function = owner.parent(element)
            job.display += f" {function.name.value}" if isinstance(function, cst.FunctionDef) else ""
        jobs.append(job)
    return jobs


def _grouped(program: Program, spawn: Spawn, spawns: list[Spawn]) -> list[Job]:
    """``create_task(both(app))`` where ``both`` only runs tasks in an ``asyncio.TaskGroup``: one job per task."""
    if spawn.kind != "task" or not isinstance(spawn.target, cst.Call):
        return []
    try:
        target = resolve_target(program, spawn)
    except UNEXPECTED:
        return []
    if not isinstance(target, Target) or target.cls is not None:
        return []
    body = list(without_docstring(target.function.body.body))
    pattern = m.With(
        asynchronous=m.Asynchronous(),
        items=[m.WithItem(item=m.Call(func=m.Attribute(attr=m.Name("TaskGroup")) | m.Name("TaskGroup")))],
    )
    if len(body) != 1 or not m.matches(body[0], pattern):
        return []
    block = body[0].body.body  # type: ignore[attr-defined]
    inside = [s for s in spawns if s.module is target.module and target.module.statement(s.call) in block]
    if len(inside) != len(block) or any(s.kind != "task" for s in inside):
        return []
    jobs = []
    for child in inside:
        job = Job(child, f"{target.function.name.value}: TaskGroup task {_code(child.target)}", True)
        job.group, job.group_substitute = spawn, dict(target.bindings)
        jobs.append(job)
    return jobs


def _unpacked(target: cst.BaseExpression, value: cst.BaseExpression) -> dict[str, cst.BaseExpression] | None:
    """What each loop variable gets: ``for job in``, or ``for seconds, job in`` over ``(30, job)`` elements."""
    if isinstance(target, cst.Name):
        return {target.value: value}
    if isinstance(target, cst.Tuple | cst.List) and isinstance(value, cst.Tuple | cst.List):
        if len(target.elements) != len(value.elements):
            return None
        found: dict[str, cst.BaseExpression] = {}
        for name, part in zip(target.elements, value.elements, strict=True):
            inner = _unpacked(name.value, part.value)
            if inner is None:
                return None
            found |= inner
        return found
    return None


def _as_written_at(
    site: Module, iterable: cst.BaseExpression, owner: Module, value: cst.BaseExpression
) -> tuple[cst.BaseExpression, list[tuple[Module, str]]]:
    """An element of a collection written in ``owner``, as the start line in ``site`` can name it:
    ``gamma_jobs.refresh`` when the loop reads ``gamma_jobs.JOBS``; else with the names it needs imported."""
    if owner is site:
        return value, []
    names = [n for n in findall(value, m.Name()) if n.value in owner.definitions]  # type: ignore[union-attr]
    if m.matches(iterable, m.Attribute(value=m.Name())):
        alias = iterable.value  # type: ignore[attr-defined]
        return (
            m.replace(value, m.Name(), lambda n, _: cst.Attribute(alias, n) if n.value in owner.definitions else n),  # type: ignore[return-value]
            [],
        )
    return value, [(owner, n.value) for n in names]  # type: ignore[attr-defined]


@dataclass(eq=False)
class _Iteration:
    """``for TARGET in ITER:``, or a comprehension's ``for TARGET in ITER``, and the statement it is in."""

    target: cst.BaseAssignTargetExpression
    iter: cst.BaseExpression
    statement: cst.BaseStatement
    each: cst.BaseExpression | None = None  # a comprehension's element: what starts one job


def _collection_loop(spawn: Spawn) -> _Iteration | None:
    """``for job in JOBS: create_task(job(app))`` (or ``[create_task(run(job)) for job in JOBS]``): the
    iteration whose variable the spawn's target uses."""
    given = [spawn.target or spawn.call, *spawn.args, *spawn.keywords.values()]  # Thread(target=f, args=(job,))
    used = {n.value for node in given for n in findall(node, m.Name())}  # type: ignore[union-attr]
    for ancestor in spawn.module.ancestors(spawn.call):
        if isinstance(ancestor, cst.FunctionDef | cst.Lambda):
            return None
        if isinstance(ancestor, cst.For) and bound_by(ancestor.target) & used:
            return _Iteration(ancestor.target, ancestor.iter, ancestor)
        if (
            isinstance(ancestor, cst.ListComp | cst.GeneratorExp | cst.SetComp)
            and ancestor.for_in.inner_for_in is None
            and bound_by(ancestor.for_in.target) & used
            and (statement := spawn.module.statement(ancestor)) is not None
        ):
            return _Iteration(ancestor.for_in.target, ancestor.for_in.iter, statement, ancestor.elt)
    return None


def _elements(
    program: Program, module: Module, loop: _Iteration
) -> list[tuple[cst.CSTNode, cst.BaseExpression]] | None:
    """What a for statement iterates, element by element, when the app writes it out: a list or tuple
    (each element), or a registry a decorator fills (each decorated function, as the decorator adds it)."""
    iterable = loop.iter
    if isinstance(iterable, cst.List | cst.Tuple):
        return [(e, e.value) for e in iterable.elements]
    if m.matches(iterable, m.Call(func=m.Attribute(value=m.Name() | m.Attribute(), attr=m.Name("values")), args=[])):
        iterable = iterable.func.value  # type: ignore[attr-defined]  # a dict registry: its values are the jobs
    resolved = program.resolve_expression(module, iterable) if isinstance(iterable, cst.Name | cst.Attribute) else None
    if resolved is None and isinstance(iterable, cst.Name):
        function = module.enclosing_function(loop.statement)
        if function is not None:
            for assign in findall(function, m.Assign(targets=[m.AssignTarget(m.Name(iterable.value))])):
                value = assign.value  # type: ignore[attr-defined]
                if isinstance(value, cst.List | cst.Tuple):
                    return [(e, e.value) for e in value.elements]
        return None
    if resolved and isinstance(resolved[1], cst.SimpleStatementLine):
        small = resolved[1].body[0]
        value = small.value if isinstance(small, cst.Assign | cst.AnnAssign) else None
        if isinstance(value, cst.List | cst.Tuple) and value.elements:
            return [(e, e.value) for e in value.elements]
        if isinstance(value, cst.List | cst.Tuple | cst.Dict) or (isinstance(value, cst.Call) and not value.args):
            name = assigned_at_top(small)[0]
            return _registered(program, resolved[0], name)
    return None


def _registered(program: Program, home: Module, registry: str) -> list[tuple[cst.CSTNode, cst.BaseExpression]] | None:
    """``@every(30)`` on functions, where ``every`` appends to ``registry``: each decorator and what it adds."""
    adders = []
    for node, added in _additions(home, registry):
        decorator = home.enclosing_function(node)
        if decorator is None or not _returns_its_argument(decorator):
            return None
        factory = home.enclosing_function(decorator)
        adders.append((decorator, factory, _with_locals(decorator, node, added)))
    if not adders:
        return None
    found: list[tuple[cst.CSTNode, cst.BaseExpression]] = []
    for module in program.modules.values():
        for function in module.all(cst.FunctionDef):
            for decorator in function.decorators:  # type: ignore[attr-defined]
                for adder, factory, added in adders:
                    value = _added(program, module, decorator, function, home, adder, factory, added)
                    if value is not None:
                        found.append((decorator, value))
    if not found and all(_only_declared(program, factory or adder) for adder, factory, _ in adders):
        return []  # nothing registers into it (a migration moved every function): the loop starts nothing
    return found or None


def _only_declared(program: Program, function: cst.FunctionDef) -> bool:
    """Whether ``function`` is only defined, imported or used as a decorator: never called to register."""
    name = function.name.value
    for module in program.modules.values():
        for reference in module.names.get(name, []):
            if reference is function.name:
                continue
            if not any(isinstance(a, cst.Decorator | cst.Import | cst.ImportFrom) for a in module.ancestors(reference)):
                return False
    return True


def _additions(home: Module, registry: str) -> list[tuple[cst.CSTNode, cst.BaseExpression]]:
    """Where ``registry`` gets its elements: ``REGISTRY.append(x)`` or ``REGISTRY[key] = x`` (a dict of jobs)."""
    found: list[tuple[cst.CSTNode, cst.BaseExpression]] = []
    for call in home.all(cst.Call):
        if m.matches(call, m.Call(func=m.Attribute(value=m.Name(registry), attr=m.Name("append")), args=[m.Arg()])):
            found.append((call, call.args[0].value))  # type: ignore[attr-defined]
    for assign in home.all(cst.Assign):
        target = m.AssignTarget(m.Subscript(value=m.Name(registry)))
        if m.matches(assign, m.Assign(targets=[target])):
            found.append((assign, assign.value))  # type: ignore[attr-defined]
    return found


def _with_locals(decorator: cst.FunctionDef, node: cst.CSTNode, added: cst.BaseExpression) -> cst.BaseExpression:
    """What the decorator adds, with the locals it computed first written out (``name = function.__name__``)."""
    values: dict[str, cst.BaseExpression] = {}
    for statement in decorator.body.body:
        if findall(statement, m.MatchIfTrue(lambda found: found is node)):
            break
        if m.matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
            small = statement.body[0]  # type: ignore[attr-defined]
            values[small.targets[0].target.value] = _with_values(small.value, values)
    return _with_values(added, values) if values else added


def _returns_its_argument(function: cst.FunctionDef) -> bool:
    params = function.params.params
    returns = findall(function, m.Return())
    return (
        len(params) == 1
        and bool(returns)
        and all(m.matches(r, m.Return(value=m.Name(params[0].name.value))) for r in returns)
    )


def _added(
    program: Program,
    module: Module,
    decorator: cst.Decorator,
    function: cst.CSTNode,
    home: Module,
    adder: cst.FunctionDef,
    factory: cst.FunctionDef | None,
    added: cst.BaseExpression,
) -> cst.BaseExpression | None:
    """What ``@decorator`` on ``function`` adds to the registry, written with the decorator's arguments
    (``@every(minutes=5)`` on ``purge`` adds ``(purge, 0 + 60 * 5)``, folded to ``(purge, 60 * 5)``)."""
    used = decorator.decorator
    values: dict[str, cst.BaseExpression] = {}
    if factory is not None:
        if not isinstance(used, cst.Call) or any(a.star for a in used.args):
            return None
        arguments = _bound_arguments(factory, used)
        if arguments is None:
            return None
        values = arguments
        for statement in factory.body.body:  # locals the factory computes from its arguments
            if statement is adder or isinstance(statement, cst.FunctionDef):
                break
            if m.matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
                small = statement.body[0]  # type: ignore[attr-defined]
                values[small.targets[0].target.value] = _with_values(small.value, values)
        used = used.func
    resolved = program.resolve_expression(module, used) if isinstance(used, cst.Name | cst.Attribute) else None
    if resolved is None or resolved[1] is not (factory or adder):
        return None
    values[adder.params.params[0].name.value] = cst.Name(function.name.value)  # type: ignore[attr-defined]
    return _folded(_with_values(added, values))


def _bound_arguments(function: cst.FunctionDef, call: cst.Call) -> dict[str, cst.BaseExpression] | None:
    """The value of each parameter of ``function`` in ``call``: given, or its default."""
    positional = [*function.params.posonly_params, *function.params.params]
    values: dict[str, cst.BaseExpression] = {}
    given = [a for a in call.args if a.keyword is None]
    if len(given) > len(positional):
        return None
    for parameter, argument in zip(positional, given, strict=False):
        values[parameter.name.value] = argument.value
    names = {p.name.value for p in [*positional, *function.params.kwonly_params]}
    for argument in call.args:
        if argument.keyword is not None:
            if argument.keyword.value not in names:
                return None
            values[argument.keyword.value] = argument.value
    for parameter in [*positional, *function.params.kwonly_params]:
        if parameter.name.value not in values:
            if parameter.default is None:
                return None
            values[parameter.name.value] = parameter.default
    return values


def _with_values(node: cst.BaseExpression, values: dict[str, cst.BaseExpression]) -> cst.BaseExpression:
    def replace(found: cst.CSTNode, _: object) -> cst.CSTNode:
        value = values.get(found.value)  # type: ignore[attr-defined]
        if value is None:
            return found
        return (
            value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            if isinstance(value, cst.BinaryOperation)
            else value
        )

    return m.replace(node, m.Name(), replace)  # type: ignore[return-value]


def _folded(node: cst.BaseExpression) -> cst.BaseExpression:
    """Arithmetic with zero taken out: ``(s) + 60 * 0`` is ``s``, as a reader would write it."""

    class Fold(cst.CSTTransformer):
        def leave_BinaryOperation(
            self, original: cst.BinaryOperation, updated: cst.BinaryOperation
        ) -> cst.BaseExpression:
            left, right = updated.left, updated.right
            if isinstance(updated.operator, cst.Multiply) and (_zero(left) or _zero(right)):
                return cst.Integer("0")
            if isinstance(updated.operator, cst.Add) and _zero(right):
                return _bare(left, updated)
            if isinstance(updated.operator, cst.Add) and _zero(left):
                return _bare(right, updated)
            return updated

    return node.visit(Fold())  # type: ignore[return-value]


def _zero(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer | cst.Float) and float(node.value) == 0.0 and not node.lpar


def _bare(node: cst.BaseExpression, around: cst.BinaryOperation) -> cst.BaseExpression:
    """What is left of ``x + 0``, keeping the parentheses of the whole and dropping its own if they were only for it."""
    if around.lpar:
        return node.with_changes(lpar=around.lpar, rpar=around.rpar)
    if isinstance(node, cst.Name | cst.Attribute | cst.Call | cst.Integer | cst.Float) and node.lpar:
        return node.with_changes(lpar=[], rpar=[])
    return node


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
        if job_class.problem and (target.instance is None or target.nested_in is not None) and owner is not target.cls:
            job.reason = f"{job_class.problem}: a plain class whose __init__ takes just the app would be native"
            return
        if not job_class.problem:
            job.job_class = job_class  # its loop and helpers move into the worker
        # else the worker keeps an instance of the class and runs its loop's body on it
    if job.spawn.kind in ("timer", "callback", "sched", "scheduler"):
        loop = _read_chain(program, job, target)
    else:
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
    if target.function.asynchronous is None and not target.threaded and job.spawn.kind != "callback":
        job.reason = "its loop blocks the event loop (a plain function run as a task)"
        return
    job.outcome = NATIVE


def _read_chain(program: Program, job: Job, target: Target) -> Loop:
    """A timer, callback or ``sched`` job that re-arms itself, or a scheduler's job: one call is one pass."""
    function = target.function
    again = rearms(program, target.module, function) if job.spawn.kind != "scheduler" else []
    statements = list(function.body.body)
    rearming: list[cst.BaseStatement] = []
    handles: set[str] = set()
    for spawn in again:
        for node in (spawn.call, spawn.construction):
            statement = target.module.statement(node) if node is not None else None
            if statement is not None and statement not in rearming:
                rearming.append(statement)
        if isinstance(spawn.handle, cst.Name):
            handles.add(spawn.handle.value)
    rearming += [
        s
        for s in statements
        if s not in rearming
        and variable_names(s) & handles
        and not m.matches(s, m.SimpleStatementLine(body=[m.Global()]))
    ]
    through = rearmed_through(program, target.module, function) if not again and job.spawn.kind != "scheduler" else []
    if through:
        # Re-armed by a helper it calls on every pass (its last statement, or in a `finally:`).
        calls = [target.module.statement(call) for call, _ in through]
        every_pass = _without(function, [c for c in calls if c is not None])
        if every_pass is not None and len(calls) == len(through):
            cycle = read_cycle(
                every_pass, threaded=target.threaded, interval=through[0][1].interval, rearms=[], handles=set()
            )
            cycle.function = function
            return cycle
    if job.spawn.kind != "scheduler" and (not again or any(s not in statements for s in rearming)):
        loop = Loop(function, target.threaded)
        loop.problem = "it runs once (nothing re-arms it)" if not again else "it re-arms itself only on some passes"
        return loop
    interval = again[0].interval if again else job.spawn.interval
    if again and again[0].kind == "timer" and again[0].construction is not None:
        interval = again[0].interval
    return read_cycle(function, threaded=target.threaded, interval=interval, rearms=rearming, handles=handles)


def _without(function: cst.FunctionDef, statements: list[cst.BaseStatement]) -> cst.FunctionDef | None:
    """``function`` without ``statements``, when each runs on every pass: at its top level, or in the
    ``finally:`` of a ``try`` at its top level; else None."""
    body: list[cst.BaseStatement] = []
    left = set(statements)
    for statement in function.body.body:
        if statement in left:
            left.discard(statement)
            continue
        if isinstance(statement, cst.Try) and statement.finalbody is not None:
            final = [s for s in statement.finalbody.body.body if s not in left]
            if len(final) != len(statement.finalbody.body.body):
                left -= set(statement.finalbody.body.body)
                if final:
                    statement = statement.with_changes(
                        finalbody=statement.finalbody.with_changes(
                            body=statement.finalbody.body.with_changes(body=final)
                        )
                    )
                elif statement.handlers:
                    statement = statement.with_changes(finalbody=None)
                else:
                    body += list(statement.body.body)
                    continue
        body.append(statement)
    if left or not body:
        return (
            None
            if left
            else function.with_changes(body=function.body.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])]))
        )
    return function.with_changes(body=function.body.with_changes(body=body))


def _stem(job: Job, target: Target | None) -> str:
    """What the job's worker is named after: its start method, its loop function, or its class."""
    function = job.module.enclosing_function(job.spawn.call)
    cls = job.module.enclosing_class(job.spawn.call)
    if job.element is None and function is not None and cls is not None and function.name.value.startswith("start_"):
        return _short(function.name.value)
    if job.element is not None and job.element_module is not None:
        if isinstance(job.element, cst.Decorator):
            function = job.element_module.parent(job.element)
            if isinstance(function, cst.FunctionDef):
                return _short(function.name.value)
        names = [n.value for value in job.substitute.values() for n in findall(value, m.Name())]  # type: ignore[attr-defined]
        defined = [
            n for n in names if isinstance(job.element_module.definitions.get(n), cst.FunctionDef | cst.ClassDef)
        ]
        if defined or names:
            return _short((defined or names)[0])
    if target is not None and isinstance(target.instance, cst.Call) and isinstance(target.instance.func, cst.Name):
        return _short(target.instance.func.value)  # `CleanupJob(app).loop()`: named after the object's class
    if target is not None:
        name = target.function.name.value
        if name in GENERIC_NAMES and target.cls is not None:
            return _short(target.cls.name.value)
        if name in GENERIC_NAMES and target.nested_in is not None:
            return _short(target.nested_in.name.value)
        return _short(name)
    named = _target_name(job.spawn.target) if job.spawn.target is not None else None
    if named:
        return _short(named)
    return _short(function.name.value) if function is not None else job.spawn.kind


def _target_name(node: cst.BaseExpression) -> str | None:
    """The function a spawn's target names: ``poll``, ``self._poll``, ``poll(app)``, ``partial(poll, app)``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, cst.Call):
        if isinstance(node.func, cst.Name | cst.Attribute) and _target_name(node.func) == "partial" and node.args:
            return _target_name(node.args[0].value)
        return _target_name(node.func)
    if isinstance(node, cst.Lambda):
        return _target_name(node.body)
    return None


def _short(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    name = name.removeprefix("start_").strip("_")
    for suffix in JOB_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name or "job"
