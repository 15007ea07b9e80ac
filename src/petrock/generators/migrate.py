"""``petrock migrate jobs``: turn legacy ``jobs.py`` loops into workers the app runs.

The legacy pattern: a feature's ``jobs.py`` holds a ``Jobs(app)`` class whose
``start_*`` methods spawn endless loops (asyncio tasks or threads that sleep),
started by hand from the app's serve code and never stopped. Each loop that
can be read safely becomes a worker in the feature's ``worker.py``: the loop
body is ``work``, the sleep is ``poll_interval``, and the worker is registered
in ``register.py``. The code moves as libcst nodes, so the user's formatting
and comments come along. What cannot be converted safely stays where it is,
marked ``# petrock: could not migrate``, and is listed in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from petrock import git
from petrock.errors import UserError
from petrock.names import kebab, pascal
from petrock.plan import Plan
from petrock.project import Manifest, require_clean

MARK = "# petrock: could not migrate"
SPAWNERS = {"create_task", "ensure_future"}
JOB_SUFFIXES = ("_task", "_worker", "_job", "_loop", "_thread")
BLANK = cst.EmptyLine(indent=False)
DOCSTRING = m.SimpleStatementLine(body=[m.Expr(m.SimpleString() | m.ConcatenatedString())])

# --- the result ---


@dataclass(frozen=True)
class Converted:
    feature: str
    method: str  # start_cleanup_task
    worker: str  # CleanupWorker
    interval: str  # the sleep's argument, now the poll interval
    threaded: bool
    slept_first: bool  # the loop slept before its first cycle; a worker works at once


@dataclass(frozen=True)
class Kept:
    """Something left in place (and marked), with the reason."""

    feature: str
    what: str
    reason: str


@dataclass(frozen=True)
class RemovedLine:
    path: str
    line: int
    code: str


@dataclass
class Migration:
    root: Path
    plan: Plan
    converted: list[Converted] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    removed: list[RemovedLine] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return sorted({c.feature for c in self.converted})

    @property
    def commit_message(self) -> str:
        return f"Migrate {', '.join(self.features)} jobs to workers"

    def report(self) -> str:
        lines = []
        if self.converted:
            lines.append("converted to workers:")
            for c in self.converted:
                how = ", in a thread as before" if c.threaded else ""
                how += "; it now runs once at start instead of after one interval" if c.slept_first else ""
                lines.append(f"  {c.feature}: Jobs.{c.method} -> {c.worker} (every {c.interval} s{how})")
        if self.removed:
            lines.append("removed hand-written start-up lines:")
            lines += [f"  {r.path}:{r.line}: {r.code}" for r in self.removed]
        if self.kept:
            lines.append(f"left in place, marked `{MARK}`; move by hand (docs/MIGRATING.md):")
            lines += [f"  {k.feature}: {k.what}: {k.reason}" for k in self.kept]
        if not self.converted:
            lines.append("nothing could be converted; nothing was changed but the marks")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.plan.to_json(),
            "converted": [asdict(c) for c in self.converted],
            "kept": [asdict(k) for k in self.kept],
            "removed_lines": [asdict(r) for r in self.removed],
        }


# --- the command ---


def plan_migration(root: Path, feature: str | None = None, *, allow_dirty: bool = False) -> Migration:
    """Read every legacy ``jobs.py`` and plan the conversion; nothing is written."""
    manifest = Manifest.load(root)
    package = manifest.package_dir(root)
    _require_worker_runtime(package)
    require_clean(root, allow_dirty=allow_dirty)
    names = sorted(path.parent.name for path in package.glob("*/jobs.py") if path.parent.name != "core")
    if feature is not None:
        if feature not in names:
            raise UserError(f"feature {feature!r} has no jobs.py", "there is nothing to migrate in it")
        names = [feature]
    if not names:
        raise UserError(f"no feature in {package.relative_to(root)} has a jobs.py", "there is nothing to migrate")

    features = {name: _read_feature(package / name, name) for name in names}
    # Only modules that mention jobs can import or start them; parsing the rest would only cost time.
    files = {
        path: _parse(path)
        for path in sorted(package.rglob("*.py"))
        if path.name != "jobs.py" and "__pycache__" not in path.parts and "jobs" in path.read_text().lower()
    }
    starts = _find_start_ups(package, manifest.project_name, files, set(features))
    for jobs in features.values():
        jobs.reconcile(starts)

    migration = Migration(root, Plan(root))
    texts: dict[Path, str] = {}
    _edit_start_ups(root, files, starts, features, migration, texts)
    for jobs in features.values():
        _plan_feature(root, jobs, migration, texts)
    for path, text in texts.items():
        migration.plan.write(path.relative_to(root).as_posix(), text, edit=True)
    return migration


def apply_migration(migration: Migration) -> str | None:
    """Write the plan and commit it; returns the commit id (None when nothing was converted or no git)."""
    migration.plan.apply()
    if not migration.converted or not git.is_repo(migration.root):
        return None
    return git.commit(migration.root, migration.commit_message, [c.path for c in migration.plan.writes])


def _require_worker_runtime(package: Path) -> None:
    app_source = package / "core" / "app.py"
    has_runtime = (package / "core" / "worker.py").is_file() and app_source.is_file()
    if not has_runtime or "def register_worker" not in app_source.read_text():
        raise UserError(
            "this app's core has no worker runtime (core/worker.py, App.register_worker)",
            "run `petrock upgrade` first to bring it in, then migrate",
        )


def _parse(path: Path) -> MetadataWrapper:
    try:
        return MetadataWrapper(cst.parse_module(path.read_text()))
    except cst.ParserSyntaxError as exc:
        raise UserError(f"{path} is not valid Python ({exc.message})", "fix it, then migrate") from None


# --- reading jobs.py ---


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
        app_attributes = _attributes_set_from(init, init.params.params[1].name.value)
        users: dict[str, list[Job]] = {}
        for job in self.convertible:
            for attribute in _job_attributes(job, self.methods) - app_attributes - set(self.methods):
                users.setdefault(attribute, []).append(job)
        for attribute, jobs in users.items():
            for job in jobs if len(jobs) > 1 else []:
                others = ", ".join(other.start for other in jobs if other is not job)
                job.problem = f"it shares self.{attribute} with {others}"


def _read_feature(folder: Path, name: str) -> FeatureJobs:
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
    if init is None or not _takes(init, 2):
        found.problem = "Jobs.__init__ must take just the app (register(app) has nothing else to give)"
    elif (folder / "worker.py").exists():
        found.problem = "the feature has a worker.py already"
    elif not _register_function(folder):
        found.problem = "the feature has no register.py with a register(app) function to add workers to"
    for method in found.methods:
        if method.startswith("start_"):
            found.jobs[method] = _read_job(found, method)
    if not found.jobs and found.problem is None:
        found.problem = "Jobs has no start_* methods"
    return found


def _takes(function: cst.FunctionDef, count: int) -> bool:
    """Whether ``function`` has exactly ``count`` plain positional parameters and nothing else."""
    params = function.params
    return (
        len(params.params) == count
        and not isinstance(params.star_arg, cst.Param | cst.ParamStar)
        and not params.kwonly_params
        and params.star_kwarg is None
        and not params.posonly_params
    )


def _register_function(folder: Path) -> cst.FunctionDef | None:
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
    statements = list(_without_docstring(method.body.body))
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
    if spawn.handle and _count_self_attribute(feature.cls, spawn.handle) > sum(
        _count_self_attribute(s, spawn.handle) for s in spawn.statements
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
    if not _takes(loop, 0 if spawn.nested else 1):
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
        handle = _self_attribute(small.targets[0].target) if isinstance(small, cst.Assign) else None
        if m.matches(value, m.Call(func=m.Attribute(attr=m.Name("start")), args=[])) and _is_thread(value.func.value):
            found.append(_thread_spawn(value.func.value, [statement], handle))
        elif isinstance(value, cst.Call) and _callee(value) in SPAWNERS:
            coroutine = value.args[0].value if len(value.args) == 1 else None
            if isinstance(coroutine, cst.Call) and not coroutine.args and (ref := _loop_reference(coroutine.func)):
                found.append(Spawn(ref[0], ref[1], False, [statement], handle))
            else:
                found.append(None)
        elif isinstance(small, cst.Assign) and _is_thread(value):
            holder = small.targets[0].target
            starts = [
                other
                for other in simple
                if m.matches(other.body[0], m.Expr(m.Call(func=m.Attribute(attr=m.Name("start")), args=[])))
                and other.body[0].value.func.value.deep_equals(holder)
            ]
            found.append(
                _thread_spawn(value, [statement, *starts], _self_attribute(holder)) if len(starts) == 1 else None
            )
    return found[0] if len(found) == 1 else None


def _thread_spawn(call: cst.Call, statements: list[cst.BaseStatement], handle: str | None) -> Spawn | None:
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    if "args" in keywords or "kwargs" in keywords or any(a.keyword is None for a in call.args):
        return None
    ref = _loop_reference(keywords["target"]) if "target" in keywords else None
    return Spawn(ref[0], ref[1], True, statements, handle) if ref else None


def _callee(call: cst.Call) -> str | None:
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


def _is_thread(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and _callee(node) == "Thread"


def _loop_reference(node: cst.BaseExpression) -> tuple[str, bool] | None:
    """``self._loop`` -> ("_loop", nested=False); ``loop`` -> ("loop", nested=True)."""
    if attribute := _self_attribute(node):
        return attribute, False
    if isinstance(node, cst.Name):
        return node.value, True
    return None


def _self_attribute(node: cst.CSTNode) -> str | None:
    if m.matches(node, m.Attribute(value=m.Name("self"))):
        return node.attr.value
    return None


def _without_docstring(statements: Sequence[cst.BaseStatement]) -> Sequence[cst.BaseStatement]:
    return statements[1:] if statements and m.matches(statements[0], DOCSTRING) else statements


def _summary(function: cst.FunctionDef | None) -> str | None:
    """The first line of a function's docstring."""
    if function is None or not function.body.body or not m.matches(function.body.body[0], DOCSTRING):
        return None
    value = function.body.body[0].body[0].value.evaluated_value
    return value.strip().splitlines()[0] if isinstance(value, str) and value.strip() else None


def _read_loop(job: Job, loop: cst.FunctionDef) -> None:
    """Check the loop is one ``while True:`` around a body with one sleep at its start or end."""
    statements = list(_without_docstring(loop.body.body))
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
    used = _names(interval)
    if "self" in used or used & _assigned_names(loop_statement):
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
    body[0] = body[0].with_changes(leading_lines=_strip_blank(body[0].leading_lines))
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
    if not isinstance(call, cst.Call) or _callee(call) != "sleep" or len(call.args) != 1 or call.args[0].keyword:
        return None
    owner = call.func.value if isinstance(call.func, cst.Attribute) else None
    if owner is not None and not m.matches(owner, m.Name("time" if threaded else "asyncio")):
        return None
    return call.args[0].value


def _strip_blank(lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
    kept = list(lines)
    while kept and kept[0].comment is None:
        kept.pop(0)
    return kept


def _find_helpers(job: Job, feature: FeatureJobs) -> None:
    """The Jobs methods the loop calls (transitively): they are copied into the worker."""
    todo = [name for statement in [*job.setup, *job.body] for name in _self_attributes(statement)]
    while todo:
        name = todo.pop()
        if name not in feature.methods or name in job.helpers or name == "__init__":
            continue
        if name.startswith("start_"):
            job.problem = f"its loop calls {name}, another job"
            return
        job.helpers.append(name)
        todo += _self_attributes(feature.methods[name])
    job.helpers.sort(key=list(feature.methods).index)


def _job_attributes(job: Job, methods: dict[str, cst.FunctionDef]) -> set[str]:
    nodes = [*job.setup, *job.body, *(methods[name] for name in job.helpers)]
    return {name for node in nodes for name in _self_attributes(node)}


def _self_attributes(node: cst.CSTNode) -> list[str]:
    return [found.attr.value for found in m.findall(node, m.Attribute(value=m.Name("self")))]


def _count_self_attribute(node: cst.CSTNode | None, name: str) -> int:
    return 0 if node is None else len(m.findall(node, m.Attribute(value=m.Name("self"), attr=m.Name(name))))


def _attributes_set_from(function: cst.FunctionDef, parameter: str) -> set[str]:
    """Attributes assigned straight from a parameter (``self.app = app``): shared safely by every worker."""
    pattern = m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))], value=m.Name(parameter))
    return {found.targets[0].target.attr.value for found in m.findall(function, pattern)}


def _names(node: cst.CSTNode) -> set[str]:
    """Variable names in ``node`` (not attribute names or keyword-argument names)."""
    not_variables = {id(a.attr) for a in m.findall(node, m.Attribute())}
    not_variables |= {id(a.keyword) for a in m.findall(node, m.Arg()) if a.keyword is not None}
    return {found.value for found in m.findall(node, m.Name()) if id(found) not in not_variables}


def _assigned_names(node: cst.CSTNode) -> set[str]:
    targets = [
        *(t.target for t in m.findall(node, m.AssignTarget())),
        *(a.target for a in m.findall(node, m.AugAssign() | m.AnnAssign() | m.NamedExpr())),
        *(f.target for f in m.findall(node, m.For())),
        *(a.name for a in m.findall(node, m.AsName())),
    ]
    return {name for target in targets if not isinstance(target, cst.Attribute) for name in _names(target)}


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


# --- finding and editing the hand-written start-up lines ---


@dataclass
class StartUps:
    """Where the app starts its jobs, found in every module of the package."""

    # (feature, start method) -> [(file, statement)] for lines like `jobs.start_cleanup_task()`
    sites: dict[tuple[str, str], list[tuple[Path, cst.SimpleStatementLine]]] = field(default_factory=dict)
    # statements building a Jobs instance: `order_jobs = OrderJobs(app)` -> (file, variable, feature)
    constructions: dict[cst.SimpleStatementLine, tuple[Path, str, str]] = field(default_factory=dict)
    # import aliases binding a jobs module or class -> (file, feature)
    imports: dict[cst.ImportAlias, tuple[Path, str]] = field(default_factory=dict)
    # statements using each alias or variable, to know when it is no longer needed
    users: dict[tuple[Path, str], list[cst.SimpleStatementLine]] = field(default_factory=dict)
    unfollowable: dict[str, str] = field(default_factory=dict)  # feature -> "file:line"
    uneditable: dict[tuple[str, str], str] = field(default_factory=dict)  # (feature, start method) -> "file:line"


def _find_start_ups(package: Path, project: str, files: dict[Path, MetadataWrapper], features: set[str]) -> StartUps:
    starts = StartUps()
    for path, wrapper in files.items():
        module_parts = path.relative_to(package.parent).with_suffix("").parts
        finder = _StartUpFinder(starts, path, package.parent, module_parts, project, features)
        wrapper.visit(finder)
    return starts


class _StartUpFinder(cst.CSTVisitor):
    """Collects the jobs imports, Jobs constructions and ``start_*`` calls of one module."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(
        self, starts: StartUps, path: Path, src: Path, module: tuple[str, ...], project: str, features: set[str]
    ) -> None:
        super().__init__()
        self.starts, self.path, self.src, self.module = starts, path, src, module
        self.project, self.features = project, features
        self.classes: dict[str, str] = {}  # local name of a Jobs class -> feature
        self.modules: dict[str, str] = {}  # local name of a jobs module -> feature
        self.instances: dict[str, str] = {}  # variable holding a Jobs instance -> feature
        self.recognised: set[cst.CSTNode] = set()

    def where(self, node: cst.CSTNode) -> str:
        line = self.get_metadata(PositionProvider, node).start.line
        return f"{self.path.relative_to(self.src.parent).as_posix()}:{line}"

    def _absolute(self, node: cst.ImportFrom) -> str:
        dots = len(node.relative)
        name = cst.helpers.get_full_name_for_node(node.module) if node.module else ""
        if not dots:
            return name or ""
        base = self.module[: len(self.module) - dots]
        return ".".join([*base, *([name] if name else [])])

    def _jobs_feature(self, module: str) -> str | None:
        parts = module.split(".")
        if len(parts) == 3 and parts[0] == self.project and parts[2] == "jobs" and parts[1] in self.features:
            return parts[1]
        return None

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            if feature := self._jobs_feature(name):
                self.starts.unfollowable.setdefault(feature, self.where(node))

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = self._absolute(node)
        if isinstance(node.names, cst.ImportStar):
            if feature := self._jobs_feature(module):
                self.starts.unfollowable.setdefault(feature, self.where(node))
            return
        for alias in node.names:
            imported = alias.name.value if isinstance(alias.name, cst.Name) else ""
            local = alias.asname.name.value if alias.asname else imported
            if (feature := self._jobs_feature(module)) and imported == "Jobs":
                self.classes[local] = feature
            elif feature:
                self.starts.unfollowable.setdefault(feature, self.where(node))
                continue
            elif (feature := self._jobs_feature(f"{module}.{imported}")) is not None:
                self.modules[local] = feature
            else:
                continue
            self.starts.imports[alias] = (self.path, feature)

    def _jobs_class_feature(self, node: cst.BaseExpression) -> str | None:
        """The feature of ``Jobs``, ``OrderJobs`` or ``orders_jobs.Jobs`` as written here."""
        if isinstance(node, cst.Name):
            return self.classes.get(node.value)
        if m.matches(node, m.Attribute(value=m.Name(), attr=m.Name("Jobs"))):
            return self.modules.get(node.value.value)
        return None

    def _binding(self, node: cst.BaseExpression) -> str:
        return node.value if isinstance(node, cst.Name) else node.value.value

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if len(node.body) != 1:
            return
        small = node.body[0]
        if m.matches(small, m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Call())):
            feature = self._jobs_class_feature(small.value.func)
            if feature is not None:
                variable = small.targets[0].target.value
                self.instances[variable] = feature
                self.starts.constructions[node] = (self.path, variable, feature)
                self.starts.users.setdefault((self.path, self._binding(small.value.func)), []).append(node)
                self.recognised.add(node)
        elif m.matches(small, m.Expr(m.Call(func=m.Attribute(), args=[]))):
            owner, method = small.value.func.value, small.value.func.attr.value
            if isinstance(owner, cst.Name) and owner.value in self.instances:
                feature, binding = self.instances[owner.value], owner.value
            elif isinstance(owner, cst.Call) and (feature := self._jobs_class_feature(owner.func)) is not None:
                binding = self._binding(owner.func)
            else:
                return
            self.starts.sites.setdefault((feature, method), []).append((self.path, node))
            self.starts.users.setdefault((self.path, binding), []).append(node)
            self.recognised.add(node)

    def visit_Name(self, node: cst.Name) -> None:
        self._check_use(node)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if isinstance(node.value, cst.Name) and node.value.value in self.instances and not self._inside_recognised:
            feature = self.instances[node.value.value]
            if node.attr.value.startswith("start_"):
                self.starts.uneditable.setdefault((feature, node.attr.value), self.where(node))
            else:
                self.starts.unfollowable.setdefault(feature, self.where(node))
            return False
        return True

    _inside_recognised = False

    def on_visit(self, node: cst.CSTNode) -> bool:
        descend = super().on_visit(node)
        if node in self.recognised or isinstance(node, cst.Import | cst.ImportFrom):
            self._inside_recognised = True
        return descend

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)
        if original_node in self.recognised or isinstance(original_node, cst.Import | cst.ImportFrom):
            self._inside_recognised = False

    def _check_use(self, node: cst.Name) -> None:
        if self._inside_recognised:
            return
        feature = self.classes.get(node.value) or self.modules.get(node.value) or self.instances.get(node.value)
        if feature is not None:
            self.starts.unfollowable.setdefault(feature, self.where(node))


def _edit_start_ups(
    root: Path,
    files: dict[Path, MetadataWrapper],
    starts: StartUps,
    features: dict[str, FeatureJobs],
    migration: Migration,
    texts: dict[Path, str],
) -> None:
    """Remove the start-up lines of converted jobs (and what only they used); mark the others."""
    converted = {(name, job.start) for name, jobs in features.items() for job in jobs.convertible}
    remove: set[cst.CSTNode] = set()
    mark: dict[cst.CSTNode, str] = {}
    for key, sites in starts.sites.items():
        for _, statement in sites:
            if key in converted:
                remove.add(statement)
            elif key[0] in features and key[1] in features[key[0]].jobs:
                mark[statement] = f"{MARK} {key[0]} Jobs.{key[1]} (see {key[0]}/jobs.py)"
    # A construction goes once every line using its variable goes; an import once every line using it goes.
    for statement, (path, variable, _) in starts.constructions.items():
        if all(user in remove for user in starts.users.get((path, variable), [])):
            remove.add(statement)
    drop_aliases = {
        alias
        for alias, (path, _) in starts.imports.items()
        if all(user in remove for user in starts.users.get((path, _local_name(alias)), []))
    }
    for path, wrapper in files.items():
        positions = wrapper.resolve(PositionProvider)
        edited = wrapper.module.visit(_StartUpEditor(remove, mark, drop_aliases))
        if edited.code == wrapper.module.code:
            continue
        texts[path] = edited.code
        relative = path.relative_to(root).as_posix()
        for node in sorted((n for n in remove if n in positions), key=lambda n: positions[n].start.line):
            migration.removed.append(RemovedLine(relative, positions[node].start.line, _one_line(wrapper.module, node)))


def _local_name(alias: cst.ImportAlias) -> str:
    return alias.asname.name.value if alias.asname else alias.name.value


def _one_line(module: cst.Module, node: cst.CSTNode) -> str:
    code = module.code_for_node(node.with_changes(leading_lines=()) if hasattr(node, "leading_lines") else node)
    return code.strip()


class _StartUpEditor(cst.CSTTransformer):
    def __init__(self, remove: set[cst.CSTNode], mark: dict[cst.CSTNode, str], drop: set[cst.ImportAlias]) -> None:
        super().__init__()
        self.remove, self.mark, self.drop = remove, mark, drop

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        if original in self.remove:
            return cst.RemoveFromParent()
        if original in self.mark and not any(
            line.comment is not None and line.comment.value.startswith(MARK) for line in original.leading_lines
        ):
            comment = cst.EmptyLine(comment=cst.Comment(self.mark[original]))
            return updated.with_changes(leading_lines=[*updated.leading_lines, comment])
        small = original.body[0] if len(original.body) == 1 else None
        if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
            kept = [alias for alias in small.names if alias not in self.drop]
            if not kept:
                return cst.RemoveFromParent()
            if len(kept) != len(small.names):
                kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                return updated.with_changes(body=[small.with_changes(names=kept)])
        return updated


# --- writing worker.py, register.py and what is left of jobs.py ---


def _plan_feature(root: Path, jobs: FeatureJobs, migration: Migration, texts: dict[Path, str]) -> None:
    migration.kept += jobs.kept
    convertible = jobs.convertible
    jobs_path = (jobs.folder / "jobs.py").relative_to(root).as_posix()
    if not convertible:
        marked = _jobs_left(jobs, set())
        if marked != jobs.module.code:
            migration.plan.write(jobs_path, marked, edit=True)
        return
    classes = _class_names(jobs, convertible)
    worker_module = _worker_module(jobs, convertible, classes)
    migration.plan.write((jobs.folder / "worker.py").relative_to(root).as_posix(), worker_module)
    register = jobs.folder / "register.py"
    texts[register] = _register_workers(
        texts.get(register, register.read_text()),
        [classes[j.start] for j in convertible],
        import_inside="from .register import" in worker_module or f".{jobs.name}.register import" in worker_module,
    )
    for job in convertible:
        migration.converted.append(
            Converted(
                jobs.name,
                job.start,
                classes[job.start],
                jobs.module.code_for_node(job.interval),
                job.threaded,
                job.slept_first,
            )
        )
    moved = {name for job in convertible for name in (job.start, job.loop_method) if name}
    used = {"__init__", *moved, *(helper for job in convertible for helper in job.helpers)}
    if set(jobs.methods) <= used and not _other_class_members(jobs.cls):
        migration.plan.delete(jobs_path, taken_over=True)
        return
    staying = _reachable(jobs, [job.start for job in jobs.jobs.values() if job.problem])
    for name in sorted(set(jobs.methods) - used - staying):
        if not name.startswith("start_"):
            migration.kept.append(Kept(jobs.name, f"Jobs.{name}", "not part of a converted job; stays in jobs.py"))
    migration.plan.write(jobs_path, _jobs_left(jobs, moved), edit=True)


def _reachable(jobs: FeatureJobs, roots: list[str]) -> set[str]:
    """The methods ``roots`` use, directly or not."""
    seen: set[str] = set()
    while roots:
        name = roots.pop()
        if name in jobs.methods and name not in seen:
            seen.add(name)
            roots += _self_attributes(jobs.methods[name])
    return seen


def _other_class_members(cls: cst.ClassDef) -> bool:
    members = _without_docstring(cls.body.body)
    return any(not isinstance(member, cst.FunctionDef) for member in members)


def _jobs_left(jobs: FeatureJobs, moved: set[str]) -> str:
    """jobs.py without the converted methods, the others marked with the reason they stayed."""
    if jobs.cls is None:
        return _mark_module(jobs)
    reasons = {job.start: job.problem or jobs.problem for job in jobs.jobs.values() if job.problem or jobs.problem}
    body = []
    for member in jobs.cls.body.body:
        if isinstance(member, cst.FunctionDef) and member.name.value in moved:
            continue
        if isinstance(member, cst.FunctionDef) and (reason := reasons.get(member.name.value)):
            member = _with_mark(member, f"{MARK} {member.name.value}: {reason}")
        body.append(member)
    cls = jobs.cls.with_changes(body=jobs.cls.body.with_changes(body=body))
    return jobs.module.with_changes(body=[cls if s is jobs.cls else s for s in jobs.module.body]).code


def _mark_module(jobs: FeatureJobs) -> str:
    comment = f"{MARK} jobs.py: {jobs.problem}"
    if comment in jobs.module.code:
        return jobs.module.code
    header = [*jobs.module.header, cst.EmptyLine(comment=cst.Comment(comment))]
    return jobs.module.with_changes(header=header).code


def _with_mark(node: cst.FunctionDef, comment: str) -> cst.FunctionDef:
    if any(line.comment is not None and line.comment.value.startswith(MARK) for line in node.leading_lines):
        return node
    return node.with_changes(leading_lines=[*node.leading_lines, cst.EmptyLine(comment=cst.Comment(comment))])


def _class_names(jobs: FeatureJobs, convertible: list[Job]) -> dict[str, str]:
    taken = {s.name.value for s in jobs.module.body if isinstance(s, cst.ClassDef | cst.FunctionDef)}
    names = {}
    for job in convertible:
        name = f"{pascal(job.short_name)}Worker"
        while name in taken:
            name = f"{pascal(jobs.name)}{name}"
        taken.add(name)
        names[job.start] = name
    return names


def _worker_module(jobs: FeatureJobs, convertible: list[Job], classes: dict[str, str]) -> str:
    """worker.py: what jobs.py had around the Jobs class, then one worker class per converted job."""
    header = [s for s in _without_docstring(jobs.module.body) if s is not jobs.cls]
    docstring = cst.parse_statement(
        f'"""Background workers of the {jobs.name} feature, started and stopped by the app.\n\n'
        f"Migrated from jobs.py by ``petrock migrate jobs``: each loop body is a worker's\n"
        f'``work`` and its sleep the ``poll_interval``.\n"""\n'
    )
    workers = [_worker_class(jobs, job, classes[job.start]) for job in convertible]
    needs_asyncio = any(job.threaded for job in convertible)
    header = _prune_imports(header, [*header, *workers])
    header = _ensure_import(header, "asyncio", cst.parse_statement("import asyncio\n")) if needs_asyncio else header
    header = _ensure_import(header, "App", cst.parse_statement("from ..core import App\n"))
    body = [docstring, *header, *(w.with_changes(leading_lines=[BLANK, BLANK]) for w in workers)]
    if header:
        body[1] = body[1].with_changes(leading_lines=[BLANK])
    return jobs.module.with_changes(header=[], body=body).code


def _worker_class(jobs: FeatureJobs, job: Job, class_name: str) -> cst.ClassDef:
    summary = (_summary(jobs.methods[job.start]) or _summary(job.loop) or f"The {job.short_name} job.").replace(
        '"""', "'''"
    )
    cycle = "run_once" if job.threaded else "work"
    comments = "".join(f"    {comment}\n" for comment in job.sleep_comments)
    text = (
        f"class {class_name}:\n"
        f'    """{summary}\n\n'
        f"    Was ``Jobs.{job.start}``: its loop body is ``{cycle}``, its sleep the poll interval.\n"
        f'    """\n\n'
        f'    name = "{jobs.name}/{kebab(job.short_name)}"\n'
        f"{comments}"
        f"    poll_interval = {jobs.module.code_for_node(job.interval)}\n"
        f"    jitter = 0.0  # the loop slept exactly its interval\n"
        f"    wake_on_append = False  # keep the loop's cadence: run on the interval only\n\n"
        f"    async def start(self, app: App) -> None:\n"
        f'        """Nothing to load: the job kept no state in the log."""\n\n'
        f"    async def work(self) -> None:\n"
        + ("        await asyncio.to_thread(self.run_once)\n\n" if job.threaded else "        pass\n\n")
        + "    async def stop(self) -> None:\n"
        '        """Nothing to release: the job held no resources."""\n'
        + ("\n    def run_once(self) -> None:\n        pass\n" if job.threaded else "")
    )
    cls = cst.parse_statement(text)
    assert isinstance(cls, cst.ClassDef)
    members = list(cls.body.body)
    cycle_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == cycle)
    members[cycle_index] = _with_body(members[cycle_index], job.body, job.footer)
    start_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == "start")
    if job.setup:
        setup = [job.setup[0].with_changes(leading_lines=_strip_blank(job.setup[0].leading_lines)), *job.setup[1:]]
        members[start_index] = _with_body(members[start_index], setup, ())
    init = jobs.methods["__init__"].with_changes(leading_lines=[BLANK])
    members.insert(start_index, init)
    members += [jobs.methods[name].with_changes(leading_lines=[BLANK]) for name in job.helpers]
    return cls.with_changes(body=cls.body.with_changes(body=members))


def _with_body(
    function: cst.FunctionDef, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
) -> cst.FunctionDef:
    """``function`` with its placeholder body replaced by moved statements."""
    return function.with_changes(body=function.body.with_changes(body=list(body), footer=footer))


def _prune_imports(header: list[cst.BaseStatement], module: Sequence[cst.CSTNode]) -> list[cst.BaseStatement]:
    """Drop imported names nothing uses any more (``threading`` once the thread is gone)."""
    used: set[str] = set()
    for node in module:
        if not m.matches(node, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()])):
            used |= _names(node) | {a.value.value for a in m.findall(node, m.Attribute(value=m.Name()))}
    kept: list[cst.BaseStatement] = []
    spacing: Sequence[cst.EmptyLine] = ()  # the blank lines of a dropped import go to the next statement
    for statement in header:
        small = (
            statement.body[0] if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 else None
        )
        if (
            isinstance(small, cst.Import | cst.ImportFrom)
            and not isinstance(small.names, cst.ImportStar)
            and not m.matches(small, m.ImportFrom(module=m.Name("__future__")))
        ):
            names = [alias for alias in small.names if _bound_name(alias) in used]
            if not names:
                spacing = spacing or statement.leading_lines
                continue
            if len(names) != len(small.names):
                names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                statement = statement.with_changes(body=[small.with_changes(names=names)])
        if spacing and not statement.leading_lines:
            statement = statement.with_changes(leading_lines=spacing)
        spacing = ()
        kept.append(statement)
    return kept


def _bound_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None:
        return alias.asname.name.value
    name = cst.helpers.get_full_name_for_node(alias.name) or ""
    return name.split(".")[0]


def _ensure_import(header: list[cst.BaseStatement], name: str, statement: cst.BaseStatement) -> list[cst.BaseStatement]:
    bound = {
        _bound_name(alias)
        for s in header
        for small in (s.body if isinstance(s, cst.SimpleStatementLine) else [])
        if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar)
        for alias in small.names
    }
    if name in bound:
        return header
    imports = [
        i for i, s in enumerate(header) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))
    ]
    position = imports[-1] + 1 if imports else 0
    return [*header[:position], statement, *header[position:]]


def _register_workers(source: str, classes: list[str], *, import_inside: bool) -> str:
    """register.py with the workers imported and registered at the end of ``register(app)``.

    When worker.py imports from register.py (as jobs.py did), the import goes
    inside the function, where it cannot be circular.
    """
    module = cst.parse_module(source)
    body = list(module.body)
    index = next(i for i, s in enumerate(body) if isinstance(s, cst.FunctionDef) and s.name.value == "register")
    function = body[index]
    app = function.params.params[0].name.value
    lines = [cst.parse_statement(f"{app}.register_worker({name}({app}))\n") for name in classes]
    importing = cst.parse_statement(f"from .worker import {', '.join(classes)}\n")
    if import_inside:
        comment = cst.EmptyLine(comment=cst.Comment("# Imported here: worker.py imports from this module."))
        lines.insert(0, importing.with_changes(leading_lines=[comment]))
    function = function.with_changes(body=function.body.with_changes(body=[*function.body.body, *lines]))
    body[index] = function
    imports = [i for i, s in enumerate(body) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))]
    position = imports[-1] + 1 if imports else 0
    if not import_inside:
        body.insert(position, importing)
    return module.with_changes(body=body).code
