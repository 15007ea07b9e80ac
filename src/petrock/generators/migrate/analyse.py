"""Reading a legacy ``jobs.py``: which loops can become workers, and why the others cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from petrock.errors import UserError

from .find import StartUps
from .report import Kept
from .syntax import (
    DOCSTRING,
    assigned_names,
    attributes_set_from,
    callee,
    count_self_attribute,
    is_thread,
    self_attribute,
    self_attributes,
    strip_blank,
    takes,
    variable_names,
    without_docstring,
)

SPAWNERS = {"create_task", "ensure_future"}
JOB_SUFFIXES = ("_task", "_worker", "_job", "_loop", "_thread")


@dataclass(eq=False)
class Job:
    """One job: a ``start_*`` method of a Jobs class and the loop it spawns, or a coroutine in ``JOBS``."""

    start: str  # the start method, or the module-level coroutine function
    kind: str = "method"  # "method" of the Jobs class, or module-level "function" listed in JOBS
    loop: cst.FunctionDef | None = None
    loop_method: str | None = None  # the loop's name when it is a method of Jobs
    app_parameter: str | None = None  # a module-level job's parameter holding the app
    threaded: bool = False
    setup: list[cst.BaseStatement] = field(default_factory=list)  # plain calls in start_* that run once
    body: list[cst.BaseStatement] = field(default_factory=list)  # the loop body without the sleep
    footer: Sequence[cst.EmptyLine] = ()
    interval: cst.BaseExpression | None = None
    sleep_comments: list[str] = field(default_factory=list)
    intro: list[cst.EmptyLine] = field(default_factory=list)  # comments above and on `while True:`
    slept_first: bool = False
    helpers: list[str] = field(default_factory=list)  # methods of Jobs the body calls
    class_attributes: list[str] = field(default_factory=list)  # Jobs class attributes it reads
    decorators: Sequence[cst.Decorator] = ()  # the loop's, now on each cycle
    docstring: cst.BaseStatement | None = None  # the loop's
    problem: str | None = None

    @property
    def display(self) -> str:
        return f"Jobs.{self.start}" if self.kind == "method" else f"JOBS: {self.start}"

    @property
    def short_name(self) -> str:
        name = self.start.removeprefix("start_").strip("_")
        for suffix in JOB_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                return name.removesuffix(suffix)
        return name

    @property
    def long_name(self) -> str:
        """The name without its suffix stripped: tells two jobs apart when their short names collide."""
        return self.start.removeprefix("start_").strip("_")


@dataclass(eq=False)
class FeatureJobs:
    name: str
    folder: Path
    module: cst.Module
    cls: cst.ClassDef | None = None
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    class_attributes: dict[str, cst.BaseExpression] = field(default_factory=dict)  # NAME = value in Jobs
    jobs: dict[str, Job] = field(default_factory=dict)
    job_list: cst.SimpleStatementLine | None = None  # `JOBS = [refresh, prune]`
    problem: str | None = None  # why nothing in this feature can be converted
    others: list[Kept] = field(default_factory=list)  # things in jobs.py that are not jobs petrock can read
    imported_elsewhere: dict[str, str] = field(default_factory=dict)  # name -> where another module imports it

    @property
    def convertible(self) -> list[Job]:
        return [] if self.problem else [job for job in self.jobs.values() if job.problem is None]

    @property
    def kept(self) -> list[Kept]:
        if self.problem:
            return [Kept(self.name, "jobs.py", self.problem)]
        return [Kept(self.name, job.display, job.problem) for job in self.jobs.values() if job.problem] + self.others

    def reconcile(self, starts: StartUps) -> None:
        """Only loops the app starts with the server, in a way petrock can edit, are converted."""
        if self.problem is None and (where := starts.unfollowable.get(self.name)):
            self.problem = f"jobs.py is used in {where} in a way petrock cannot follow"
        self.imported_elsewhere = starts.imported_names.get(self.name, {})
        for job in self.jobs.values():
            if job.problem is None and job.start in self.imported_elsewhere:
                job.problem = f"it is imported in {self.imported_elsewhere[job.start]}, which would lose it"
            if job.problem is not None:
                continue
            sites = (
                starts.sites.get((self.name, job.start), [])
                if job.kind == "method"
                else starts.job_lists.get(self.name, [])
            )
            if job.kind == "method" and (self.name, job.start) in starts.uneditable:
                job.problem = f"it is started in {starts.uneditable[self.name, job.start]} in a way petrock cannot edit"
            elif not sites:
                job.problem = "no start-up line for it was found: it may not run today, and a worker always would"
            elif outside := [site.where for site in sites if not site.with_server]:
                job.problem = (
                    f"it is started in {', '.join(outside)}, outside the server's start-up: as a worker it would "
                    "run wherever the app starts its workers (its tests too)"
                )
        self._check_shared_state()

    def _check_shared_state(self) -> None:
        """Each worker gets its own instance, so jobs that shared an attribute must stay together."""
        init = self.methods.get("__init__")
        takes_app = init is not None and len(init.params.params) > 1
        app_attributes = attributes_set_from(init, init.params.params[1].name.value) if takes_app else set()
        users: dict[str, list[Job]] = {}
        for job in self.convertible:
            if job.kind != "method":
                continue
            for attribute in (
                _job_attributes(job, self.methods) - app_attributes - set(self.methods) - set(self.class_attributes)
            ):
                users.setdefault(attribute, []).append(job)
        for attribute, jobs in users.items():
            for job in jobs if len(jobs) > 1 else []:
                others = ", ".join(other.start for other in jobs if other is not job)
                job.problem = f"it shares self.{attribute} with {others}"


def read_feature(folder: Path, name: str) -> FeatureJobs:
    path = folder / "jobs.py"
    try:
        module = cst.parse_module(path.read_text())
    except cst.ParserSyntaxError as exc:
        raise UserError(f"{path} is not valid Python ({exc.message})", "fix it, then migrate") from None
    found = FeatureJobs(name, folder, module)
    if not register_function(folder):
        found.problem = "the feature has no register.py with a register(app) function to add workers to"
    classes = [s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value == "Jobs"]
    if classes:
        _read_class(found, classes[0])
    _read_job_list(found)
    if not found.jobs and found.problem is None:
        found.problem = "it has no Jobs class with start_* methods and no JOBS list of coroutines"
    return found


def _read_class(found: FeatureJobs, cls: cst.ClassDef) -> None:
    found.cls = cls
    found.methods = {s.name.value: s for s in cls.body.body if isinstance(s, cst.FunctionDef)}
    for statement in cls.body.body:
        if m.matches(
            statement,
            m.SimpleStatementLine(
                body=[m.Assign(targets=[m.AssignTarget(m.Name())]) | m.AnnAssign(target=m.Name(), value=m.DoNotCare())]
            ),
        ):
            small = statement.body[0]
            target = small.targets[0].target if isinstance(small, cst.Assign) else small.target
            if small.value is not None:
                found.class_attributes[target.value] = small.value
    init = found.methods.get("__init__")
    problem = None
    if init is not None and not takes(init, 2):
        problem = "Jobs.__init__ must take just the app (register(app) has nothing else to give)"
    starts = [method for method in found.methods if method.startswith("start_")]
    for method in starts:
        found.jobs[method] = Job(method, problem=problem) if problem else _read_job(found, method)
    if not starts:
        others = ", ".join(found.methods) or "nothing"
        found.others.append(
            Kept(
                found.name,
                "Jobs",
                f"it has no start_* methods ({others}): a class with its own start and stop is "
                "a worker in all but name; register it by hand (docs/MIGRATING.md)",
            )
        )


def _read_job_list(found: FeatureJobs) -> None:
    """``JOBS = [refresh, prune]``: module-level coroutines ``async def refresh(app)``, each a loop."""
    functions = {s.name.value: s for s in found.module.body if isinstance(s, cst.FunctionDef)}
    for statement in found.module.body:
        pattern = m.SimpleStatementLine(
            body=[m.Assign(targets=[m.AssignTarget(m.Name("JOBS"))]) | m.AnnAssign(target=m.Name("JOBS"))]
        )
        if not m.matches(statement, pattern):
            continue
        value = statement.body[0].value
        if not isinstance(value, cst.List | cst.Tuple):
            found.others.append(Kept(found.name, "JOBS", "it is not a plain list or tuple of functions"))
            return
        found.job_list = statement
        for element in value.elements:
            function = functions.get(element.value.value) if isinstance(element.value, cst.Name) else None
            if function is None:
                what = found.module.code_for_node(element.value)
                found.others.append(Kept(found.name, f"JOBS: {what}", "it is not a function defined in jobs.py"))
                continue
            found.jobs[function.name.value] = _read_function_job(function)


def _read_function_job(function: cst.FunctionDef) -> Job:
    job = Job(function.name.value, kind="function")
    if function.asynchronous is None:
        job.problem = "it is not a coroutine function (async def)"
    elif not takes(function, 1):
        job.problem = "it must take just the app (register(app) has nothing else to give)"
    if job.problem:
        return job
    job.loop, job.app_parameter = function, function.params.params[0].name.value
    _read_loop(job, function)
    if job.problem is None and job.interval is not None and job.app_parameter in variable_names(job.interval):
        job.problem = "its interval is computed from the app"
    return job


def register_function(folder: Path) -> cst.FunctionDef | None:
    path = folder / "register.py"
    if not path.is_file():
        return None
    functions = [
        s
        for s in cst.parse_module(path.read_text()).body
        if isinstance(s, cst.FunctionDef) and s.name.value == "register" and s.params.params
    ]
    return functions[0] if functions else None


def _read_job(feature: FeatureJobs, start: str) -> Job:
    job = Job(start)
    method = feature.methods[start]
    if method.decorators:
        job.problem = "its start method is decorated, and the decorator would have nothing left to wrap"
        return job
    statements = list(without_docstring(method.body.body))
    spawn = _find_spawn(statements)
    if spawn is None:
        job.problem = "it does not start exactly one asyncio task or thread"
        return job
    job.threaded = spawn.threaded
    for statement in statements:
        if statement in spawn.statements or statement is spawn.nested_in(statements):
            continue
        if not m.matches(statement, m.SimpleStatementLine(body=[m.Expr()])):
            job.problem = "its start method does more than start the loop (only plain calls such as logging can move)"
            return job
        job.setup.append(statement)
    if spawn.handle and count_self_attribute(feature.cls, spawn.handle) > sum(
        count_self_attribute(s, spawn.handle) for s in spawn.statements
    ) + _set_to_none(feature.methods.get("__init__"), spawn.handle):
        job.problem = f"the task or thread it keeps in self.{spawn.handle} is used elsewhere"
        return job
    loop = spawn.nested_in(statements) if spawn.nested else feature.methods.get(spawn.target)
    if loop is None:
        job.problem = f"its loop {spawn.target} is neither a method of Jobs nor a function inside {start}"
        return job
    job.loop, job.loop_method = loop, None if spawn.nested else spawn.target
    if (loop.asynchronous is not None) == spawn.threaded:
        job.problem = "a thread's target must be a plain function" if spawn.threaded else "its loop is not async"
        return job
    if not takes(loop, 0 if spawn.nested else 1):
        job.problem = "its loop function takes arguments"
        return job
    _read_loop(job, loop, feature.class_attributes)
    if job.problem is None:
        _find_helpers(job, feature)
    if job.problem is None:
        _find_class_attributes(job, feature)
    return job


def _set_to_none(init: cst.FunctionDef | None, attribute: str) -> int:
    """How often ``__init__`` only declares ``self.attribute = None`` (not a use of the task or thread)."""
    if init is None:
        return 0
    target = m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attribute)))
    return len(m.findall(init, m.Assign(targets=[target], value=m.Name("None"))))


MUTABLE_CALLS = {"list", "dict", "set", "defaultdict", "deque", "Counter", "OrderedDict", "bytearray"}


def _is_mutable(value: cst.BaseExpression) -> bool:
    """A value each worker must not get a copy of: a container, or an instance (a lock, an event, a client)."""
    if m.findall(value, m.List() | m.Dict() | m.Set() | m.ListComp() | m.DictComp() | m.SetComp()):
        return True
    for call in m.findall(value, m.Call()):
        name = callee(call) or ""
        if name in MUTABLE_CALLS or name[:1].isupper():
            return True
    return False


def _find_class_attributes(job: Job, feature: FeatureJobs) -> None:
    """Class attributes the moved code reads (``self.TICK``, ``Jobs.TICK``): copied into the worker class
    when they are plain values; shared state (a dict, a lock) keeps the job where it is."""
    nodes = [*job.setup, *job.body, *(feature.methods[name] for name in job.helpers)]
    if job.interval is not None:
        nodes.append(job.interval)
    used = {name for node in nodes for name in self_attributes(node)}
    used |= {a.attr.value for node in nodes for a in m.findall(node, m.Attribute(value=m.Name("Jobs")))}
    for name in sorted(used & set(feature.class_attributes), key=list(feature.class_attributes).index):
        if _is_mutable(feature.class_attributes[name]):
            job.problem = (
                f"it uses Jobs.{name}, a mutable class attribute other jobs may share: move it to module level"
            )
            return
        if name not in job.class_attributes:
            job.class_attributes.append(name)


@dataclass
class Spawn:
    target: str
    nested: bool
    threaded: bool
    statements: list[cst.BaseStatement]
    handle: str | None  # the self attribute the task or thread is kept in

    def nested_in(self, statements: Sequence[cst.BaseStatement]) -> cst.FunctionDef | None:
        if not self.nested:
            return None
        found = [s for s in statements if isinstance(s, cst.FunctionDef) and s.name.value == self.target]
        return found[0] if found else None


def _find_spawn(statements: list[cst.BaseStatement]) -> Spawn | None:
    """The one task (``create_task(loop())``) or thread (``Thread(target=loop).start()``) a start method makes."""
    found: list[Spawn | None] = []
    simple = [s for s in statements if isinstance(s, cst.SimpleStatementLine) and len(s.body) == 1]
    for statement in simple:
        small = statement.body[0]
        if not isinstance(small, cst.Expr | cst.Assign) or (isinstance(small, cst.Assign) and len(small.targets) != 1):
            continue
        value = small.value
        handle = self_attribute(small.targets[0].target) if isinstance(small, cst.Assign) else None
        if m.matches(value, m.Call(func=m.Attribute(attr=m.Name("start")), args=[])) and is_thread(value.func.value):
            found.append(_thread_spawn(value.func.value, [statement], handle))
        elif isinstance(value, cst.Call) and callee(value) in SPAWNERS:
            coroutine = value.args[0].value if len(value.args) == 1 else None
            if isinstance(coroutine, cst.Call) and not coroutine.args and (ref := _loop_reference(coroutine.func)):
                found.append(Spawn(ref[0], ref[1], False, [statement], handle))
            else:
                found.append(None)
        elif isinstance(small, cst.Assign) and is_thread(value):
            holder = small.targets[0].target
            starts = [
                other
                for other in simple
                if m.matches(other.body[0], m.Expr(m.Call(func=m.Attribute(attr=m.Name("start")), args=[])))
                and other.body[0].value.func.value.deep_equals(holder)
            ]
            found.append(
                _thread_spawn(value, [statement, *starts], self_attribute(holder)) if len(starts) == 1 else None
            )
    return found[0] if len(found) == 1 else None


def _thread_spawn(call: cst.Call, statements: list[cst.BaseStatement], handle: str | None) -> Spawn | None:
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    if "args" in keywords or "kwargs" in keywords or any(a.keyword is None for a in call.args):
        return None
    ref = _loop_reference(keywords["target"]) if "target" in keywords else None
    return Spawn(ref[0], ref[1], True, statements, handle) if ref else None


def _loop_reference(node: cst.BaseExpression) -> tuple[str, bool] | None:
    """``self._loop`` -> ("_loop", nested=False); ``loop`` -> ("loop", nested=True)."""
    if attribute := self_attribute(node):
        return attribute, False
    if isinstance(node, cst.Name):
        return node.value, True
    return None


def _read_loop(job: Job, loop: cst.FunctionDef, class_attributes: dict[str, cst.BaseExpression] | None = None) -> None:
    """Check the loop is one ``while True:`` around a body with one sleep at its start or end
    (or, in a thread, ``while not event.wait(interval):`` around the body)."""
    statements = list(without_docstring(loop.body.body))
    job.docstring = loop.body.body[0] if loop.body.body and m.matches(loop.body.body[0], DOCSTRING) else None
    job.decorators = loop.decorators
    waits = m.UnaryOperation(
        operator=m.Not(),
        expression=m.Call(
            func=m.Attribute(attr=m.Name("wait")), args=[m.Arg(keyword=None) | m.Arg(keyword=m.Name("timeout"))]
        ),
    )
    endless = m.Name("True") | m.Integer("1")
    test = endless | waits if job.threaded else endless
    if len(statements) != 1 or not m.matches(statements[0], m.While(test=test, orelse=None)):
        job.problem = "its loop function is more than `while True:` (state kept in local variables between cycles?)"
        return
    loop_statement = statements[0]
    body = list(loop_statement.body.body)
    if m.matches(loop_statement.test, waits):
        job.slept_first = True
        interval = loop_statement.test.expression.args[0].value
        sleep_comments: list[str] = []
    else:
        sleeps = [i for i, statement in enumerate(body) if _sleep_interval(statement, job.threaded) is not None]
        if len(sleeps) != 1 or sleeps[0] not in (0, len(body) - 1) or len(body) == 1:
            job.problem = "it has no single sleep at the start or end of its loop (an interval that changes?)"
            return
        job.slept_first = sleeps[0] == 0
        sleep = body.pop(sleeps[0])
        interval = _sleep_interval(sleep, job.threaded)
        sleep_comments = [line.comment.value for line in sleep.leading_lines if line.comment is not None]
        if isinstance(sleep, cst.SimpleStatementLine) and sleep.trailing_whitespace.comment is not None:
            sleep_comments.append(sleep.trailing_whitespace.comment.value)
    interval = _class_level(interval, set(class_attributes or {}), job)
    used = variable_names(interval)
    if "self" in used or used & assigned_names(loop_statement):
        job.problem = "its interval is computed inside the loop or kept on self"
        return
    checker = _LoopExits()
    for statement in body:
        statement.visit(checker)
    if checker.problem:
        job.problem = checker.problem
        return
    job.interval = interval
    job.sleep_comments = sleep_comments
    job.intro = [line for line in loop_statement.leading_lines if line.comment is not None]
    if loop_statement.body.header.comment is not None:
        job.intro.append(cst.EmptyLine(comment=loop_statement.body.header.comment))
    body[0] = body[0].with_changes(leading_lines=strip_blank(body[0].leading_lines))
    job.body = [statement.visit(_ContinueToReturn()) for statement in body]
    job.footer = loop_statement.body.footer


def _class_level(interval: cst.BaseExpression, class_attributes: set[str], job: Job) -> cst.BaseExpression:
    """``self.TICK`` or ``Jobs.TICK`` in the interval, as the bare ``TICK`` a class body can read."""
    pattern = m.Attribute(value=m.Name("self") | m.Name("Jobs"), attr=m.Name())
    names = [a.attr.value for a in m.findall(interval, pattern) if a.attr.value in class_attributes]
    job.class_attributes += [name for name in names if name not in job.class_attributes]
    return m.replace(
        interval, pattern, lambda node, _: cst.Name(node.attr.value) if node.attr.value in class_attributes else node
    )


def _sleep_interval(statement: cst.BaseStatement, threaded: bool) -> cst.BaseExpression | None:
    """``E`` of a statement ``await asyncio.sleep(E)`` (or ``time.sleep(E)`` in a thread), else None.

    ``try: await asyncio.wait_for(event.wait(), timeout=E) except TimeoutError: pass`` sleeps too.
    """
    if not threaded and isinstance(statement, cst.Try):
        return _wait_for_timeout(statement)
    if not m.matches(statement, m.SimpleStatementLine(body=[m.Expr()])):
        return None
    call = statement.body[0].value
    if not threaded:
        if not isinstance(call, cst.Await):
            return None
        call = call.expression
    if not isinstance(call, cst.Call) or callee(call) != "sleep" or len(call.args) != 1 or call.args[0].keyword:
        return None
    owner = call.func.value if isinstance(call.func, cst.Attribute) else None
    if owner is not None and not m.matches(owner, m.Name("time" if threaded else "asyncio")):
        return None
    return call.args[0].value


def _wait_for_timeout(statement: cst.Try) -> cst.BaseExpression | None:
    timeout_error = m.Name("TimeoutError") | m.Attribute(value=m.Name("asyncio"), attr=m.Name("TimeoutError"))
    waits = m.SimpleStatementLine(
        body=[m.Expr(m.Await(m.Call(func=m.Name("wait_for") | m.Attribute(attr=m.Name("wait_for")))))]
    )
    handler = m.ExceptHandler(
        type=timeout_error, name=None, body=m.IndentedBlock(body=[m.SimpleStatementLine(body=[m.Pass()])])
    )
    if statement.orelse or statement.finalbody or len(statement.handlers) != 1 or len(statement.body.body) != 1:
        return None
    if not m.matches(statement.body.body[0], waits) or not m.matches(statement.handlers[0], handler):
        return None
    call = statement.body.body[0].body[0].value.expression
    if not m.matches(call.args[0].value, m.Call(func=m.Attribute(attr=m.Name("wait")), args=[])):
        return None
    timeout = [a.value for a in call.args[1:] if a.keyword is None or a.keyword.value == "timeout"]
    return timeout[0] if len(timeout) == 1 else None


def _find_helpers(job: Job, feature: FeatureJobs) -> None:
    """The Jobs methods the loop calls (transitively): they are copied into the worker."""
    todo = [name for statement in [*job.setup, *job.body] for name in self_attributes(statement)]
    while todo:
        name = todo.pop()
        if name not in feature.methods or name in job.helpers or name == "__init__":
            continue
        if name.startswith("start_"):
            job.problem = f"its loop calls {name}, another job"
            return
        job.helpers.append(name)
        todo += self_attributes(feature.methods[name])
    job.helpers.sort(key=list(feature.methods).index)


def _job_attributes(job: Job, methods: dict[str, cst.FunctionDef]) -> set[str]:
    nodes = [*job.setup, *job.body, *(methods[name] for name in job.helpers)]
    return {name for node in nodes for name in self_attributes(node)}


class _LoopDepth:
    """Tracks how deep a visit is in loops of the moved body: only a loop's body counts, not its
    ``else:`` (a ``continue`` there belongs to the outer ``while True:``), and a nested function or
    class is a scope of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.loops = 0
        self.scopes = 0

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if isinstance(node, cst.For | cst.While) and attribute == "body":
            self.loops += 1
        super().on_visit_attribute(node, attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        if isinstance(original_node, cst.For | cst.While) and attribute == "body":
            self.loops -= 1
        super().on_leave_attribute(original_node, attribute)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes += 1

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scopes += 1

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self.scopes += 1

    def on_leave(self, original_node: cst.CSTNode, *args: object) -> object:
        if isinstance(original_node, cst.FunctionDef | cst.ClassDef | cst.Lambda):
            self.scopes -= 1
        return super().on_leave(original_node, *args)  # type: ignore[misc]

    @property
    def at_loop_level(self) -> bool:
        return not self.loops and not self.scopes


class _LoopExits(_LoopDepth, cst.CSTVisitor):
    """Finds what ends a legacy loop for good: ``break``, ``return`` or ``yield`` at loop level."""

    def __init__(self) -> None:
        super().__init__()
        self.problem: str | None = None

    def visit_Break(self, node: cst.Break) -> None:
        if self.at_loop_level:
            self.problem = "it can `break` out of its loop, stopping for good"

    def visit_Return(self, node: cst.Return) -> None:
        if not self.scopes:
            self.problem = "it can `return` from its loop, stopping for good"

    def visit_Yield(self, node: cst.Yield) -> None:
        if not self.scopes:
            self.problem = "its loop is a generator"


class _ContinueToReturn(_LoopDepth, cst.CSTTransformer):
    """``continue`` at loop level ends the cycle: in ``work`` that is ``return``."""

    def leave_Continue(self, original: cst.Continue, updated: cst.Continue) -> cst.Continue | cst.Return:
        return cst.Return(semicolon=updated.semicolon) if self.at_loop_level else updated
