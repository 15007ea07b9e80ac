"""A hosted job: its start line wrapped, so the runtime starts (and stops) the code as it was written.

``asyncio.create_task(self._poll())`` becomes
``run_with_server(self.app, "feeds/poll", lambda: asyncio.create_task(self._poll()))``: the
same code runs, later (when the worker starts, under its lease) and only where the
server started it before. What tells the job to stop (an event it waits on, a flag its
loop checks) is set when the worker stops, before the runtime cancels what is left.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from .jobs import Job
from .syntax import findall, variable_names

# What would make a hosted job native, by the problem that kept it hosted.
FIXES = (
    ("not one `while` loop", "its function were one `while True:` loop (set-up before it is fine)"),
    ("sleeps more than once", "each pass slept once, at its start or its end"),
    ("no sleep", "each pass ended with one sleep"),
    ("interval changes", "it slept a fixed interval (check the time at the top of a pass to wait longer)"),
    ("interval is computed", "its interval were a constant or a module-level value"),
    ("code runs after", "nothing ran after its loop"),
    ("`global`", "it kept its state in attributes or module-level containers instead of `global` names"),
    ("generator", "it were a plain loop, not a generator"),
    ("condition", "its loop condition only read a flag or an event"),
    ("chain", "it were a `while True:` loop that sleeps its interval"),
    ("mutable class attribute", "the class attribute it shares were a module-level value"),
    ("derives from", "its loop were a method of a plain class whose __init__ takes just the app"),
    ("__init__ takes", "its class's __init__ took just the app"),
    ("argument", "it took just the app (other values read from module level)"),
    ("not a function of the app", "it ran a function of the app (not a library's) directly"),
    ("method petrock cannot follow", "it ran a method of an object made from the app where it is started"),
    ("code outside the loop sets", "its loop read only what __init__ or the loop itself sets"),
    ("uses", "the values it uses were module-level names or attributes of the app"),
)
DEFAULT_FIX = "its loop were a `while True:` whose passes sleep once, at their start or end"


def native_when(reason: str) -> str:
    """What would make the job native, for the report and the worker's ``native_when``."""
    for key, fix in FIXES:
        if key in reason:
            return fix
    return DEFAULT_FIX


def start_code(job: Job, statement: cst.BaseStatement) -> tuple[cst.BaseExpression | None, list[cst.BaseStatement]]:
    """The start code as an expression (a lambda), or a nested function to define first and pass by name."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Expr):
            return cst.Lambda(cst.Parameters(), small.value), []
        if isinstance(small, cst.Assign | cst.AnnAssign | cst.Return) and small.value is not None:
            return cst.Lambda(cst.Parameters(), small.value), []  # what it kept is the JobHandle now
    name = f"start_{job.stem}".replace("-", "_")
    body = statement.with_changes(leading_lines=())
    definition = cst.FunctionDef(
        name=cst.Name(name),
        params=cst.Parameters(),
        body=cst.IndentedBlock([body]),
        returns=cst.Annotation(cst.Name("None")),
    )
    return None, [definition]


def keeping(
    statement: cst.BaseStatement, activation: cst.BaseStatement, call: cst.BaseExpression | None = None
) -> cst.BaseStatement:
    """``task = create_task(...)`` becomes ``task = run_with_server(...)``: the code keeping the handle
    (a status page, a stop method) gets the job's JobHandle. Where the handle goes into a collection
    (``tasks = [create_task(...)]``, ``tasks.append(create_task(...))``), the JobHandle takes its place there."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1):
        return activation
    small = statement.body[0]
    started = activation.body[0].value  # type: ignore[attr-defined]
    if isinstance(small, cst.Assign | cst.AnnAssign | cst.Return) and small.value is not None:
        value = _in_collection(small.value, call, started) if call is not None else None
        return statement.with_changes(body=[small.with_changes(value=value or started)], leading_lines=())
    if call is not None and isinstance(small, cst.Expr) and _collects(small.value, call):
        argument = small.value.args[0].with_changes(value=started)  # type: ignore[attr-defined]
        changed = small.value.with_changes(args=[argument])  # type: ignore[attr-defined]
        return statement.with_changes(body=[small.with_changes(value=changed)], leading_lines=())
    return activation


def _in_collection(
    value: cst.BaseExpression, call: cst.BaseExpression, started: cst.BaseExpression
) -> cst.BaseExpression | None:
    """``[create_task(a)]`` (a list, tuple or set holding the start call) with ``started`` in its place."""
    if not isinstance(value, cst.List | cst.Tuple | cst.Set):
        return None
    if not any(element.value is call for element in value.elements):
        return None
    elements = [e.with_changes(value=started) if e.value is call else e for e in value.elements]
    return value.with_changes(elements=elements)


def _collects(value: cst.BaseExpression, call: cst.BaseExpression) -> bool:
    """``tasks.append(create_task(a))``: the start call is the one argument of an append or add."""
    return (
        isinstance(value, cst.Call)
        and m.matches(value.func, m.Attribute(attr=m.Name("append") | m.Name("add")))
        and len(value.args) == 1
        and value.args[0].value is call
    )


def after_definitions(statements: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """A blank line after a function defined in a block, as ruff format puts it."""
    spaced = []
    for index, statement in enumerate(statements):
        if index and isinstance(statements[index - 1], cst.FunctionDef):
            statement = statement.with_changes(leading_lines=[cst.EmptyLine(indent=False)])
        spaced.append(statement)
    return spaced


def stop_code(job: Job) -> cst.BaseExpression | None:
    """What the job's own code waits on to stop: events it checks (set them), flags its loop reads (clear them)."""
    target = job.target
    if target is None:
        return None
    actions: list[cst.BaseExpression] = []
    instance = target.instance if target.instance is not None else None
    module_names = set(job.module.definitions) | set(job.module.imports)
    for call in findall(target.function, m.Call(func=m.Attribute(attr=m.Name("is_set") | m.Name("wait")))):
        event = call.func.value  # type: ignore[attr-defined]
        if call.func.attr.value == "wait" and not _is_event(target, event):  # type: ignore[attr-defined]
            continue  # a Condition or a Barrier waits too, but only an Event can be set
        action = _on(event, instance, module_names, target.module is job.module)
        if action is not None and not any(a.deep_equals(action) for a in actions):
            actions.append(action)
    for loop in findall(target.function, m.While()):
        flag = loop.test  # type: ignore[attr-defined]
        if m.matches(flag, m.Attribute(value=m.Name("self"))) and instance is not None:
            holder = _instance_attribute(instance, flag.attr.value)  # type: ignore[attr-defined]
            if holder is not None:
                actions.append(
                    cst.parse_expression(
                        f"setattr({cst.Module([]).code_for_node(holder.value)}, {flag.attr.value!r}, False)"  # type: ignore[attr-defined]
                    )
                )
    if not actions:
        return None
    calls = [
        cst.Call(func=cst.Attribute(value=action, attr=cst.Name("set"))) if not isinstance(action, cst.Call) else action
        for action in actions
    ]
    body: cst.BaseExpression = calls[0] if len(calls) == 1 else cst.Tuple([cst.Element(c) for c in calls])
    return cst.Lambda(cst.Parameters([cst.Param(cst.Name("_"))]), body)


def _is_event(target: object, event: cst.BaseExpression) -> bool:
    """Whether ``event`` is made by ``Event()`` where the job's code or its module assigns it."""
    module = target.module  # type: ignore[attr-defined]
    scope = module.enclosing_class(target.function) or module.module  # type: ignore[attr-defined]
    for assign in findall(scope, m.Assign(value=m.Call())):
        if any(t.target.deep_equals(event) for t in assign.targets):  # type: ignore[attr-defined]
            func = assign.value.func  # type: ignore[attr-defined]
            return (func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")) == "Event"
    return False


def _on(
    event: cst.BaseExpression, instance: cst.BaseExpression | None, module_names: set[str], same_module: bool
) -> cst.BaseExpression | None:
    """``event`` as the start line can reach it: ``self._stop`` through the object, a module-level name as is."""
    if m.matches(event, m.Attribute(value=m.Name("self"), attr=m.Name())) and instance is not None:
        return _instance_attribute(instance, event.attr.value)  # type: ignore[attr-defined]
    if isinstance(event, cst.Name) and same_module and event.value in module_names:
        return event
    return None


def _instance_attribute(instance: cst.BaseExpression, attribute: str) -> cst.Attribute | None:
    if isinstance(instance, cst.Call):
        return None  # made inline: nothing else holds it
    if variable_names(instance) - {"self"} and not isinstance(instance, cst.Name | cst.Attribute):
        return None
    return cst.Attribute(value=instance, attr=cst.Name(attribute))
