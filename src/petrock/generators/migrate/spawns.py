"""Where the app starts a background job by hand: every task, thread, timer, executor job or schedule.

A *spawn* is the call that sets a job going: ``asyncio.create_task(loop())``,
``Thread(target=loop).start()``, ``Timer(5, tick).start()``, ``loop.call_later(5, tick)``,
``pool.submit(loop)``, ``loop.run_in_executor(None, loop)``, ``scheduler.enter(5, 1, tick)``,
``scheduler.add_job(tick, "interval", seconds=5)``. Its *target* is what then runs
(the coroutine or the function). A spawn inside its own target (a timer that re-arms
itself) is part of that job, not a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .program import Module, Program
from .syntax import findall

TASK_SPAWNERS = {"create_task", "ensure_future"}
THREAD_CLASSES = {"Thread", "Timer"}
CALLBACK_SPAWNERS = {"call_later": 1, "call_at": 1, "call_soon": 0, "call_soon_threadsafe": 0}


@dataclass(eq=False)
class Spawn:
    """One call that starts a job."""

    module: Module
    call: cst.Call  # the call that starts it (``.start()`` for a thread)
    kind: str  # task | thread | timer | callback | executor | sched | scheduler
    target: cst.BaseExpression | None  # the coroutine call (task) or the callable (others)
    args: tuple[cst.BaseExpression, ...] = ()  # positional arguments the target gets (threads, executors)
    interval: cst.BaseExpression | None = None  # a timer's or a callback's delay; a scheduler job's seconds
    construction: cst.Call | None = None  # ``Thread(...)`` / ``Timer(...)`` when the spawn is ``.start()``
    handle: cst.BaseExpression | None = None  # where the thread object is kept (``t``, ``self._thread``)
    thread_class: cst.ClassDef | None = None  # a Thread subclass whose ``run`` is the job
    keywords: dict[str, cst.BaseExpression] = field(default_factory=dict)  # keyword arguments the target gets

    @property
    def statement(self) -> cst.BaseStatement | None:
        return self.module.statement(self.call)

    @property
    def where(self) -> str:
        return self.module.where(self.call)


def callee_name(call: cst.Call) -> str | None:
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


def _keywords(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def _positional(call: cst.Call) -> list[cst.BaseExpression]:
    return [a.value for a in call.args if a.keyword is None and not a.star]


def scheduled_by_decorator(program: Program) -> list[tuple[Module, cst.FunctionDef, cst.Decorator]]:
    """``@scheduler.scheduled_job("interval", seconds=30)`` on a function: a job its scheduler runs."""
    found = []
    for module in program.modules.values():
        for function in module.all(cst.FunctionDef):
            for decorator in function.decorators:  # type: ignore[attr-defined]
                if m.matches(decorator.decorator, m.Call(func=m.Attribute(attr=m.Name("scheduled_job")))):
                    found.append((module, function, decorator))  # type: ignore[arg-type]
    return found


def find_spawns(program: Program) -> list[Spawn]:
    found: list[Spawn] = []
    for module in program.modules.values():
        thread_classes = _thread_subclasses(program, module)
        for call in module.all(cst.Call):
            spawn = _spawn(program, module, call, thread_classes)  # type: ignore[arg-type]
            if spawn is not None and not _rearms_itself(spawn):
                found.append(spawn)
    return found


def _thread_subclasses(program: Program, module: Module) -> dict[str, cst.ClassDef]:
    """Classes of the app deriving from ``threading.Thread`` (or ``Thread``), by local name."""
    classes = {}
    for other in program.modules.values():
        for statement in other.module.body:
            if isinstance(statement, cst.ClassDef) and any(
                m.matches(base.value, m.Name("Thread") | m.Attribute(attr=m.Name("Thread"))) for base in statement.bases
            ):
                classes[(other.name, statement.name.value)] = statement
    local = {}
    for (source, name), cls in classes.items():
        if source == module.name:
            local[name] = cls
        for alias, (imported_from, imported) in module.imports.items():
            if imported_from == source and imported == name:
                local[alias] = cls
    return local


def _spawn(program: Program, module: Module, call: cst.Call, thread_classes: dict[str, cst.ClassDef]) -> Spawn | None:
    name = callee_name(call)
    positional, keywords = _positional(call), _keywords(call)
    if name in TASK_SPAWNERS and isinstance(call.func, cst.Name | cst.Attribute):
        coroutine = positional[0] if positional else keywords.get("coro")
        if isinstance(coroutine, cst.Call) and callee_name(coroutine) == "to_thread":
            inner = _positional(coroutine)  # create_task(to_thread(loop, app)): a thread, as an executor runs it
            return Spawn(module, call, "executor", inner[0], tuple(inner[1:])) if inner else None
        if coroutine is not None and not _is_asyncio_future(coroutine):
            return Spawn(module, call, "task", coroutine)  # gather(a(), b()) too: one job, hosted as written
        return None
    if name == "start" and isinstance(call.func, cst.Attribute) and not call.args:
        return _thread_start(module, call, thread_classes)
    if name in CALLBACK_SPAWNERS and isinstance(call.func, cst.Attribute):
        index = CALLBACK_SPAWNERS[name]
        if len(positional) > index:
            delay = positional[0] if index else None
            return Spawn(module, call, "callback", positional[index], tuple(positional[index + 1 :]), interval=delay)
        return None
    if name == "submit" and isinstance(call.func, cst.Attribute) and positional:
        if _is_executor(module, call.func.value):
            return Spawn(module, call, "executor", positional[0], tuple(positional[1:]))
        return None
    if name == "run_in_executor" and len(positional) >= 2:
        return Spawn(module, call, "executor", positional[1], tuple(positional[2:]))
    if name in ("enter", "enterabs") and len(positional) >= 3 and isinstance(call.func, cst.Attribute):
        if _is_sched(module, call.func.value):
            arguments = positional[3] if len(positional) > 3 else keywords.get("argument")
            args = tuple(e.value for e in arguments.elements) if isinstance(arguments, cst.Tuple | cst.List) else ()
            delay = positional[0] if name == "enter" else None
            return Spawn(module, call, "sched", positional[2], args, interval=delay)
        return None
    if name == "add_job" and positional:
        if any(a.star for a in call.args) or (
            m.matches(call.func, m.Attribute(value=m.Name("self")))
            and any(f.name.value == "add_job" for f in _class_methods(module, call))
        ):
            return None  # the scheduler's own code (its decorator form passing **options on)
        seconds = _interval_of(keywords)
        arguments = keywords.get("args")
        args = tuple(e.value for e in arguments.elements) if isinstance(arguments, cst.Tuple | cst.List) else ()
        spawn = Spawn(module, call, "scheduler", positional[0], args, interval=seconds)
        named = keywords.get("kwargs")
        if isinstance(named, cst.Dict):
            spawn.keywords = {
                e.key.evaluated_value: e.value  # type: ignore[union-attr]
                for e in named.elements
                if isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString)
            }
        return spawn
    return None


def _interval_of(keywords: dict[str, cst.BaseExpression]) -> cst.BaseExpression | None:
    """A scheduler's interval trigger: ``seconds=``, ``minutes=``, ``hours=``, as one expression."""
    parts = []
    for unit, factor in (("seconds", ""), ("minutes", "60 * "), ("hours", "3600 * ")):
        if unit in keywords:
            value = cst.Module([]).code_for_node(keywords[unit])
            parts.append(
                f"{factor}{value}"
                if not factor or value.isidentifier() or value.replace(".", "").isdigit()
                else f"{factor}({value})"
            )
    return cst.parse_expression(" + ".join(parts)) if parts else None


def _class_methods(module: Module, node: cst.CSTNode) -> list[cst.FunctionDef]:
    cls = module.enclosing_class(node)
    return [s for s in cls.body.body if isinstance(s, cst.FunctionDef)] if cls is not None else []


def _is_asyncio_future(node: cst.BaseExpression) -> bool:
    """``ensure_future(loop.run_in_executor(...))``: the executor spawn is the job, not this."""
    return isinstance(node, cst.Call) and callee_name(node) == "run_in_executor"


def _thread_start(module: Module, call: cst.Call, thread_classes: dict[str, cst.ClassDef]) -> Spawn | None:
    """``Thread(target=f).start()``, ``t.start()`` after ``t = Thread(...)``, a Thread subclass's ``start()``."""
    owner = call.func.value  # type: ignore[attr-defined]
    construction = owner if isinstance(owner, cst.Call) else _constructed(module, call, owner)
    if construction is None:
        return None
    handle = None if isinstance(owner, cst.Call) else owner
    cls = callee_name(construction)
    if cls in thread_classes:
        return Spawn(
            module, call, "thread", None, construction=construction, handle=handle, thread_class=thread_classes[cls]
        )
    if cls not in THREAD_CLASSES or not _from_threading(module, construction):
        return None
    positional, keywords = _positional(construction), _keywords(construction)
    if cls == "Timer":
        function = positional[1] if len(positional) > 1 else keywords.get("function")
        interval = positional[0] if positional else keywords.get("interval")
        arguments = keywords.get("args")
        args = tuple(e.value for e in arguments.elements) if isinstance(arguments, cst.Tuple | cst.List) else ()
        return Spawn(module, call, "timer", function, args, interval, construction, handle)
    target = keywords.get("target") or (positional[1] if len(positional) > 1 else None)
    arguments = keywords.get("args")
    args = tuple(e.value for e in arguments.elements) if isinstance(arguments, cst.Tuple | cst.List) else ()
    if arguments is not None and not isinstance(arguments, cst.Tuple | cst.List):
        args = (arguments,)  # args=some_tuple: not readable, but still a thread
    return Spawn(module, call, "thread", target, args, construction=construction, handle=handle)


def _from_threading(module: Module, construction: cst.Call) -> bool:
    func = construction.func
    if m.matches(func, m.Attribute(value=m.Name())):
        return module.imports.get(func.value.value, ("", None))[0] == "threading"  # type: ignore[attr-defined]
    if isinstance(func, cst.Name):
        return module.imports.get(func.value, ("", None))[0] == "threading"
    return False


def _constructed(module: Module, at: cst.CSTNode, holder: cst.BaseExpression) -> cst.Call | None:
    """The ``Thread(...)``-like call assigned to ``holder`` (``t`` or ``self._t``) in the same function or class."""
    scope: cst.CSTNode | None = module.enclosing_function(at)
    if scope is not None and m.matches(holder, m.Attribute(value=m.Name("self"))):
        scope = module.enclosing_class(scope) or scope
    scope = scope or module.module
    for assign in findall(scope, m.Assign()):
        for target in assign.targets:  # type: ignore[attr-defined]
            if target.target.deep_equals(holder) and isinstance(assign.value, cst.Call):  # type: ignore[attr-defined]
                return assign.value  # type: ignore[attr-defined]
    if isinstance(holder, cst.Name) and scope is module.module:
        return None
    if isinstance(holder, cst.Name):  # a module-level thread object
        definition = module.definitions.get(holder.value)
        if isinstance(definition, cst.SimpleStatementLine):
            small = definition.body[0]
            if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call):
                return small.value
    return None


def _is_executor(module: Module, owner: cst.BaseExpression) -> bool:
    return _made_by(module, owner, ("ThreadPoolExecutor", "ProcessPoolExecutor"))


def _is_sched(module: Module, owner: cst.BaseExpression) -> bool:
    return _made_by(module, owner, ("scheduler",))


def _made_by(module: Module, owner: cst.BaseExpression, classes: tuple[str, ...]) -> bool:
    """Whether ``owner`` holds an object made by one of ``classes`` (assigned, or bound by ``with ... as``)."""
    if isinstance(owner, cst.Call):
        return callee_name(owner) in classes
    for assign in module.all(cst.Assign):
        for target in assign.targets:  # type: ignore[attr-defined]
            value = assign.value  # type: ignore[attr-defined]
            if target.target.deep_equals(owner) and isinstance(value, cst.Call) and callee_name(value) in classes:
                return True
    for item in module.all(cst.WithItem):
        value = item.item  # type: ignore[attr-defined]
        alias = item.asname  # type: ignore[attr-defined]
        if alias is not None and alias.name.deep_equals(owner) and isinstance(value, cst.Call):
            return callee_name(value) in classes
    return False


def rearms(program: Program, module: Module, function: cst.FunctionDef) -> list[Spawn]:
    """The calls in ``function`` that schedule ``function`` again (a timer, callback or ``sched`` chain)."""
    found = []
    for call in findall(function, m.Call()):
        spawn = _spawn(program, module, call, {})  # type: ignore[arg-type]
        if spawn is not None and _rearms_itself(spawn):
            found.append(spawn)
    return found


def rearmed_through(program: Program, module: Module, function: cst.FunctionDef) -> list[tuple[cst.Call, Spawn]]:
    """Calls in ``function`` of a function of its module that arms a timer or callback running ``function``
    again (``finally: schedule(app)``, where ``schedule`` keeps ``Timer(N, check, ...)`` in a global)."""
    found = []
    for call in findall(function, m.Call(func=m.Name())):
        helper = module.definitions.get(call.func.value)  # type: ignore[attr-defined]
        if not isinstance(helper, cst.FunctionDef) or helper is function:
            continue
        for inner in findall(helper, m.Call()):
            spawn = _spawn(program, module, inner, {})  # type: ignore[arg-type]
            armed = spawn is not None and spawn.kind in ("timer", "callback") and spawn.target is not None
            if armed and _named(spawn.target) == function.name.value:  # type: ignore[union-attr,arg-type]
                found.append((call, spawn))  # type: ignore[arg-type]
    return found


def _rearms_itself(spawn: Spawn) -> bool:
    """A timer, callback or ``sched`` call scheduled from inside its own target: the job re-arming."""
    if spawn.kind not in ("timer", "callback", "sched") or spawn.target is None:
        return False
    name = _named(spawn.target)
    function = spawn.module.enclosing_function(spawn.call)
    return function is not None and name == function.name.value


def _named(node: cst.BaseExpression) -> str | None:
    """The function a callable names: ``tick``, ``self._tick``, ``partial(tick, app)``, ``lambda: tick(app)``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, cst.Call) and callee_name(node) == "partial" and node.args:
        return _named(node.args[0].value)
    if isinstance(node, cst.Lambda) and isinstance(node.body, cst.Call):
        return _named(node.body.func)
    return None
