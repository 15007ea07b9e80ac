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
    """One ``start_*`` method of a Jobs class and the loop it spawns."""

    start: str
    loop: cst.FunctionDef | None = None
    loop_method: str | None = None  # the loop's name when it is a method of Jobs
    threaded: bool = False
    setup: list[cst.BaseStatement] = field(default_factory=list)  # plain calls in start_* that run once
    body: list[cst.BaseStatement] = field(default_factory=list)  # the loop body without the sleep
    footer: Sequence[cst.EmptyLine] = ()
    interval: cst.BaseExpression | None = None
    sleep_comments: list[str] = field(default_factory=list)
    slept_first: bool = False
    helpers: list[str] = field(default_factory=list)  # methods of Jobs the body calls
    problem: str | None = None

    @property
    def short_name(self) -> str:
        name = self.start.removeprefix("start_")
        for suffix in JOB_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                return name.removesuffix(suffix)
        return name


@dataclass(eq=False)
class FeatureJobs:
    name: str
    folder: Path
    module: cst.Module
    cls: cst.ClassDef | None = None
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    problem: str | None = None  # why nothing in this feature can be converted

    @property
    def convertible(self) -> list[Job]:
        return [] if self.problem else [job for job in self.jobs.values() if job.problem is None]

    @property
    def kept(self) -> list[Kept]:
        if self.problem:
            return [Kept(self.name, "jobs.py", self.problem)]
        return [Kept(self.name, f"Jobs.{job.start}", job.problem) for job in self.jobs.values() if job.problem]

    def reconcile(self, starts: StartUps) -> None:
        """Only loops the app starts, in a way petrock can edit, are converted."""
        if self.problem is None and (where := starts.unfollowable.get(self.name)):
            self.problem = f"jobs.py is used in {where} in a way petrock cannot follow"
        for job in self.jobs.values():
            if job.problem is not None:
                continue
            if (self.name, job.start) in starts.uneditable:
                job.problem = f"it is started in {starts.uneditable[self.name, job.start]} in a way petrock cannot edit"
            elif not starts.sites.get((self.name, job.start)):
                job.problem = "no start-up line for it was found: it may not run today, and a worker always would"
        self._check_shared_state()

    def _check_shared_state(self) -> None:
        """Each worker gets its own instance, so jobs that shared an attribute must stay together."""
        init = self.methods["__init__"]
        app_attributes = attributes_set_from(init, init.params.params[1].name.value)
        users: dict[str, list[Job]] = {}
        for job in self.convertible:
            for attribute in _job_attributes(job, self.methods) - app_attributes - set(self.methods):
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
    classes = [s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value == "Jobs"]
    if not classes:
        found.problem = "it has no Jobs class"
        return found
    found.cls = classes[0]
    found.methods = {s.name.value: s for s in found.cls.body.body if isinstance(s, cst.FunctionDef)}
    init = found.methods.get("__init__")
    if init is None or not takes(init, 2):
        found.problem = "Jobs.__init__ must take just the app (register(app) has nothing else to give)"
    elif (folder / "worker.py").exists():
        found.problem = "the feature has a worker.py already"
    elif not register_function(folder):
        found.problem = "the feature has no register.py with a register(app) function to add workers to"
    for method in found.methods:
        if method.startswith("start_"):
            found.jobs[method] = _read_job(found, method)
    if not found.jobs and found.problem is None:
        found.problem = "Jobs has no start_* methods"
    return found


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
    ):
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
    _read_loop(job, loop)
    if job.problem is None:
        _find_helpers(job, feature)
    return job


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


def _read_loop(job: Job, loop: cst.FunctionDef) -> None:
    """Check the loop is one ``while True:`` around a body with one sleep at its start or end."""
    statements = list(without_docstring(loop.body.body))
    if len(statements) != 1 or not m.matches(statements[0], m.While(test=m.Name("True") | m.Integer("1"), orelse=None)):
        job.problem = "its loop function is more than `while True:` (state kept in local variables between cycles?)"
        return
    loop_statement = statements[0]
    body = list(loop_statement.body.body)
    sleeps = [i for i, statement in enumerate(body) if _sleep_interval(statement, job.threaded) is not None]
    if len(sleeps) != 1 or sleeps[0] not in (0, len(body) - 1) or len(body) == 1:
        job.problem = "it has no single sleep at the start or end of its loop (an interval that changes?)"
        return
    job.slept_first = sleeps[0] == 0
    sleep = body.pop(sleeps[0])
    interval = _sleep_interval(sleep, job.threaded)
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
    job.sleep_comments = [line.comment.value for line in sleep.leading_lines if line.comment is not None]
    if sleep.trailing_whitespace.comment is not None:
        job.sleep_comments.append(sleep.trailing_whitespace.comment.value)
    body[0] = body[0].with_changes(leading_lines=strip_blank(body[0].leading_lines))
    job.body = [statement.visit(_ContinueToReturn()) for statement in body]
    job.footer = loop_statement.body.footer


def _sleep_interval(statement: cst.BaseStatement, threaded: bool) -> cst.BaseExpression | None:
    """``E`` of a statement ``await asyncio.sleep(E)`` (or ``time.sleep(E)`` in a thread), else None."""
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


class _LoopExits(cst.CSTVisitor):
    """Finds what ends a legacy loop for good: ``break``, ``return`` or ``yield`` at loop level."""

    def __init__(self) -> None:
        self.loops = 0
        self.scopes = 0
        self.problem: str | None = None

    def visit_For(self, node: cst.For) -> None:
        self.loops += 1

    def leave_For(self, node: cst.For) -> None:
        self.loops -= 1

    def visit_While(self, node: cst.While) -> None:
        self.loops += 1

    def leave_While(self, node: cst.While) -> None:
        self.loops -= 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes -= 1

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scopes += 1

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.scopes -= 1

    def visit_Break(self, node: cst.Break) -> None:
        if not self.loops and not self.scopes:
            self.problem = "it can `break` out of its loop, stopping for good"

    def visit_Return(self, node: cst.Return) -> None:
        if not self.scopes:
            self.problem = "it can `return` from its loop, stopping for good"

    def visit_Yield(self, node: cst.Yield) -> None:
        if not self.scopes:
            self.problem = "its loop is a generator"


class _ContinueToReturn(cst.CSTTransformer):
    """``continue`` at loop level ends the cycle: in ``work`` that is ``return``."""

    def __init__(self) -> None:
        self.depth = 0

    def visit_For(self, node: cst.For) -> None:
        self.depth += 1

    def leave_For(self, original: cst.For, updated: cst.For) -> cst.For:
        self.depth -= 1
        return updated

    def visit_While(self, node: cst.While) -> None:
        self.depth += 1

    def leave_While(self, original: cst.While, updated: cst.While) -> cst.While:
        self.depth -= 1
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self.depth -= 1
        return updated

    def leave_Continue(self, original: cst.Continue, updated: cst.Continue) -> cst.Continue | cst.Return:
        return updated if self.depth else cst.Return(semicolon=updated.semicolon)
