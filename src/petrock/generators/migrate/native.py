"""A native worker: the class a job's loop becomes, written from the loop's own code.

One pass of the loop is ``work`` (or ``run_once``, called in a thread, for blocking
code), its sleep the ``poll_interval``, what ran before the loop goes in ``start``, and
the loop's local state becomes attributes. The arguments the job got where it was
started are read again when the app is built (they may name the app and module-level
values only). ``start`` first waits for the server's start-up (``until_served``), so
the worker runs where the job ran.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .jobs import Job
from .program import Module
from .syntax import BLANK, assigned_names, docstring_summary, findall, strip_blank, variable_names

RESERVED = {"name", "poll_interval", "jitter", "wake_on_append", "app", "start", "work", "stop", "run_once"}
BUILTINS = set(dir(builtins))


@dataclass(eq=False)
class Worker:
    """A native worker class, and what it needs from the modules its code came from."""

    job: Job
    cls: cst.ClassDef
    needs: dict[str, Module] = field(default_factory=dict)  # free name -> the module it is read from
    helpers: list[str] = field(default_factory=list)  # methods copied from the job's class
    times: bool = False  # its code calls time.monotonic() (a loop whose interval changes)
    binds: bool = False  # it runs on the object the start line hands over (bound_to)


def native_worker(job: Job, class_name: str) -> Worker | str:
    """The worker class for a native job, or why the job cannot be one after all."""
    assert job.target is not None and job.loop is not None
    target, loop = job.target, job.loop
    attributes: dict[str, str | cst.BaseExpression] = {}  # variable -> the attribute holding it, or its value
    init_lines: list[str] = []
    needs: dict[str, Module] = {}
    taken = set(RESERVED)
    helpers: list[str] = []
    copied_attributes: list[str] = []
    if target.nested_in is not None:
        closure = _closure_names(target.function, target.nested_in) - {"self"}
        apps = {p.name.value for p in target.nested_in.params.params if _is_app_parameter(p)}
        if closure - apps:
            return f"its loop uses {', '.join(sorted(closure - apps))} from the function it is defined in"
        attributes.update(dict.fromkeys(closure, "app"))  # the app the enclosing function was given
    if job.bound:
        # The worker runs the loop's body on the object that started it, which the start line hands over.
        holder = _free(_snake(target.cls.name.value if target.cls else "job"), taken)  # type: ignore[union-attr]
        attributes["self"] = holder
        taken.add(holder)
        job.holder = holder
    elif job.job_class is not None:
        moved = {target.function.name.value}
        nodes: list[cst.CSTNode] = [*loop.setup, *loop.body, *loop.before_sleep, *job.setup]
        nodes += [x for x in (loop.interval, loop.condition) if x is not None]
        found = job.job_class.helpers_of(nodes, moved)
        if isinstance(found, str):
            return found
        helpers = found
        nodes += [job.job_class.methods[name] for name in helpers]
        found_attributes = job.job_class.attributes_of(nodes)
        if isinstance(found_attributes, str):
            return found_attributes
        copied_attributes = found_attributes
        taken |= set(job.job_class.methods) | set(job.job_class.class_attributes)
        shared = job.job_class.set_elsewhere(nodes, {target.function.name.value, *helpers}, job.start_method)
        if shared:
            return (
                f"its loop reads self.{shared}, which code outside the loop sets (the worker has an object of its own)"
            )
    elif target.cls is not None and not target.static:
        # The worker keeps the object the loop ran on (``CleanupJob(app)``) and runs the loop's body on it.
        instance = target.instance
        if instance is None or not isinstance(instance, cst.Call):
            return "its loop is a method of an object petrock cannot rebuild when the app starts"
        problem = _portable(instance, job.module, job.app, needs)
        if problem:
            return f"the object its loop runs on is {problem} where it is started"
        holder = "job"
        attributes["self"] = holder
        init_lines.append(f"self.{holder} = {_code(_app_to(instance, job.app))}")
        taken.add(holder)
    parameters = _parameters(target.function, skip_self=target.cls is not None and not target.static)
    moved_code = [*loop.setup, *loop.body, *loop.before_sleep, *(x for x in (loop.interval, loop.condition) if x)]
    used = {name for node in moved_code for name in variable_names(node)}
    assigned = {name for node in moved_code for name in assigned_names(node)}
    for parameter in parameters:
        name = parameter.name.value
        if name not in used:
            continue  # only the start line used it (a chain passing itself its scheduler)
        value = target.bindings.get(name, parameter.default)
        if value is None:
            return f"its argument {name!r} has no value"
        spawn_module = job.module if name in target.bindings else target.module
        if name in target.bindings:
            value = _defined_once(job, value)
        if _is_app(value, job.app):
            attributes[name] = "app"
            continue
        element_module = job.element_module if name in target.bindings else None
        problem = _portable(value, spawn_module, job.app, needs, element_module)
        if problem:
            return f"its argument {name!r} is {problem} where it is started"
        if _simple(value) and name not in assigned:
            attributes[name] = value  # a constant or a module-level name: written in place
            continue
        attribute = _free(name, taken)
        taken.add(attribute)
        attributes[name] = attribute
        shown = _code(_app_to(value, job.app))
        init_lines.append(f"self.{attribute} = {shown}")
    for name in loop.state:
        attribute = _free(name, taken | {a for a in attributes.values() if isinstance(a, str)})
        attributes[name] = attribute
    text = _class_text(job, class_name, copied_attributes, init_lines, attributes)
    cls = cst.parse_statement(text)
    assert isinstance(cls, cst.ClassDef)
    cls = _fill(job, cls, attributes, helpers, copied_attributes)
    provided = {"self", "App", "until_served", "paced", "bound_to", *(["asyncio"] if target.threaded else [])}
    if loop.first_interval is not None or loop.early_sleeps:
        provided.add("time")
    for name in _free_names(cls) - provided:
        if name in BUILTINS:
            continue
        if name in _rebound(target.module):
            return f"it reads {name}, which a function of its module rebinds (`global {name}`)"
        if name in target.module.definitions or name in target.module.imports:
            needs.setdefault(name, target.module)
        elif name not in needs:
            return f"it uses {name!r}, which petrock cannot find"
    return Worker(job, cls, needs, helpers, times=loop.first_interval is not None or loop.early_sleeps, binds=job.bound)


def _parameters(function: cst.FunctionDef, *, skip_self: bool) -> list[cst.Param]:
    params = list(function.params.params)
    if skip_self and params and params[0].name.value == "self":
        params = params[1:]
    return [*params, *function.params.kwonly_params]


def _closure_names(function: cst.FunctionDef, outer: cst.FunctionDef) -> set[str]:
    """Names ``function`` reads from ``outer``'s scope (its parameters and locals)."""
    outer_names = {p.name.value for p in outer.params.params} | assigned_names(outer.body)
    own = {p.name.value for p in function.params.params} | assigned_names(function.body)
    return (variable_names(function.body) - own) & outer_names


def _is_app(value: cst.BaseExpression, app: cst.BaseExpression | None) -> bool:
    return app is not None and value.deep_equals(app)


def _app_to(value: cst.BaseExpression, app: cst.BaseExpression | None) -> cst.BaseExpression:
    if app is None:
        return value
    return m.replace(value, app, cst.Name("app"))  # type: ignore[return-value]


def _portable(
    value: cst.BaseExpression,
    module: Module,
    app: cst.BaseExpression | None,
    needs: dict[str, Module],
    element_module: Module | None = None,
) -> str | None:
    """Whether ``value`` can be computed again when the app is built: it names only the app,
    builtins and module-level names (of ``module``, or of the module that wrote the registry element
    the value comes from). Records the module-level names it needs."""
    value = _app_to(value, app)
    if findall(value, m.Await() | m.Lambda() | m.NamedExpr()):
        return "computed"
    for name in variable_names(value):
        if name == "app" or name in BUILTINS:
            continue
        if name in module.definitions or name in module.imports:
            needs.setdefault(name, module)
            continue
        if element_module is not None and (name in element_module.definitions or name in element_module.imports):
            needs.setdefault(name, element_module)
            continue
        return f"computed from {name!r}"
    return None


def _free(name: str, taken: set[str]) -> str:
    candidate = name
    while candidate in taken:
        candidate += "_"
    return candidate


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _class_text(
    job: Job,
    class_name: str,
    copied_attributes: list[str],
    init_lines: list[str],
    attributes: dict[str, str | cst.BaseExpression],
) -> str:
    assert job.target is not None and job.loop is not None
    target, loop = job.target, job.loop
    start_method = job.start_method
    fallback = f"The {job.stem.replace('_', ' ')} job."
    summary = docstring_summary(start_method) or docstring_summary(target.function) or fallback
    summary = summary.replace('"""', "'''")
    cycle = "run_once" if target.threaded else "work"
    comments = "".join(f"    {comment}\n" for comment in loop.sleep_comments)
    class_attributes = ""
    if job.job_class is not None:
        class_attributes = "".join(
            f"    {name} = {_code(job.job_class.class_attributes[name])}\n" for name in copied_attributes
        )
    interval = _interval(job, attributes, copied_attributes, loop.first_interval)
    job.interval = interval
    in_init = "self." in interval
    flags = ""
    if loop.exits or loop.condition is not None:
        flags += "    finished = False  # the loop ended for good: nothing more to do\n"
    if loop.first_interval is not None:
        comments += "    # The loop's interval changes: it polls at the first one and waits out the current one.\n"
        flags += "    slept = False  # a pass went to sleep: the rest of it runs once the wait is over\n"
        flags += "    due = 0.0  # when the current wait is over (time.monotonic())\n"
    elif loop.early_sleeps:
        flags += "    due = 0.0  # a pass that ended early waits out its own delay: the next runs after this\n"
    elif loop.before_sleep:
        flags += "    slept = False  # the loop slept mid-pass: the rest of a pass runs at the start of the next\n"
    init = "".join(f"        {line}\n" for line in init_lines)
    if in_init:
        init += f"        self.poll_interval = {interval}\n"
    return (
        f"class {class_name}:\n"
        f'    """{summary}\n\n'
        f"    Was ``{job.display}`` in {_short_path(job.module)}: one pass of its loop is ``{cycle}``,\n"
        f"    its sleep the poll interval. It runs once the server starts it (``run_with_server``).\n"
        f'    """\n\n'
        f"{class_attributes}"
        f'    name = "{job.name}"\n'
        f"{comments}"
        + ("" if in_init else f"    poll_interval = {interval}\n")
        + "    jitter = 0.0  # the loop slept exactly its interval\n"
        "    wake_on_append = False  # keep the loop's cadence: run on the interval only\n"
        f"{flags}\n"
        "    def __init__(self, app: App) -> None:\n"
        "        self.app = app\n"
        f"{init}\n"
        "    async def start(self, app: App) -> None:\n"
        '        """Wait until the server starts the job, where it started it by hand before."""\n'
        "        if not await until_served(app, self):\n"
        "            return\n"
        + (f"        self.{job.holder} = bound_to(app, self)  # the object that started it\n" if job.bound else "")
        + "\n"
        "    async def work(self) -> None:\n"
        + ("        await asyncio.to_thread(self.run_once)\n\n" if target.threaded else "        pass\n\n")
        + "    async def stop(self) -> None:\n"
        '        """Nothing to release: the job held no resources."""\n'
        + ("\n    def run_once(self) -> None:\n        pass\n" if target.threaded else "")
    )


def _short_path(module: Module) -> str:
    """``orders/jobs.py`` for ``src/shop/orders/jobs.py``."""
    return module.relative.split("/", 2)[-1]


def _interval(
    job: Job,
    attributes: dict[str, str | cst.BaseExpression],
    copied_attributes: list[str],
    first: cst.BaseExpression | None = None,
) -> str:
    assert job.loop is not None and job.loop.interval is not None
    interval = first if first is not None else job.loop.interval
    cls_name = job.target.cls.name.value if job.target and job.target.cls else None
    # self.TICK / Jobs.TICK -> TICK at class level (copied as a class attribute)
    pattern = m.Attribute(value=m.Name("self") | m.Name(cls_name or "self"), attr=m.Name())
    interval = m.replace(
        interval,
        pattern,
        lambda node, _: cst.Name(node.attr.value) if node.attr.value in copied_attributes else node,  # type: ignore[attr-defined]
    )
    interval = _renamed(interval, attributes)
    return _code(interval)


def _defined_once(job: Job, value: cst.BaseExpression) -> cst.BaseExpression:
    """``settings`` where the start line's function set ``settings = Settings.from_env()`` once:
    that value, which the worker computes again when the app is built."""
    function = job.module.enclosing_function(job.spawn.call)
    if not isinstance(value, cst.Name) or function is None:
        return value
    pattern = m.Assign(targets=[m.AssignTarget(m.Name(value.value))])
    assigned = [a for a in findall(function, pattern)]
    others = [a for a in findall(function, m.AugAssign() | m.AnnAssign()) if value.value in assigned_names(a)]
    if len(assigned) == 1 and not others and value.value not in {p.name.value for p in function.params.params}:
        return assigned[0].value  # type: ignore[attr-defined]
    return value


def _rebound(module: Module) -> set[str]:
    """Module-level names some function of the module assigns again (``global _app``): imported by value,
    a worker module would keep the first one."""
    return {name.name.value for node in module.all(cst.Global) for name in node.names}  # type: ignore[attr-defined]


def _is_app_parameter(parameter: cst.Param) -> bool:
    annotation = parameter.annotation.annotation if parameter.annotation else None
    shown = cst.Module([]).code_for_node(annotation).strip("'\"") if annotation is not None else ""
    return parameter.name.value == "app" or shown == "App" or shown.endswith(".App")


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _simple(value: cst.BaseExpression) -> bool:
    """A value that reads the same wherever it is written: a literal, or a (dotted) name."""
    if isinstance(value, cst.Integer | cst.Float | cst.Name):  # not a string: it may land in an f-string
        return not (isinstance(value, cst.Name) and value.value == "app")
    return isinstance(value, cst.Attribute) and _simple(value.value)


def _renamed(node: cst.CSTNode, attributes: dict[str, str | cst.BaseExpression]) -> cst.CSTNode:
    """Variables that are attributes now: ``cycles`` -> ``self.cycles``, ``app`` -> ``self.app``."""
    if not attributes:
        return node

    class Rename(cst.CSTTransformer):
        def __init__(self) -> None:
            super().__init__()
            self.skip: set[int] = set()
            self.shadowed: list[set[str]] = []

        def visit_Attribute(self, node: cst.Attribute) -> None:
            self.skip.add(id(node.attr))

        def visit_Arg(self, node: cst.Arg) -> None:
            if node.keyword is not None:
                self.skip.add(id(node.keyword))

        def visit_Lambda(self, node: cst.Lambda) -> None:
            self.shadowed.append({p.name.value for p in node.params.params})

        def leave_Lambda(self, original: cst.Lambda, updated: cst.Lambda) -> cst.Lambda:
            self.shadowed.pop()
            return updated

        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
            if id(original) in self.skip or any(original.value in names for names in self.shadowed):
                return updated
            if original.value in attributes:
                found = attributes[original.value]
                return cst.Attribute(cst.Name("self"), cst.Name(found)) if isinstance(found, str) else found
            return updated

    return node.visit(Rename())


def _fill(
    job: Job, cls: cst.ClassDef, attributes: dict[str, str | cst.BaseExpression], helpers: list[str], copied: list[str]
) -> cst.ClassDef:
    """Put the loop's code into the worker's methods."""
    assert job.target is not None and job.loop is not None
    loop, target = job.loop, job.target
    members = list(cls.body.body)

    def index(name: str) -> int:
        return next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == name)

    def moved(statements: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
        result = [_renamed(s, attributes) for s in statements]
        if job.job_class is not None and copied:
            result = [_class_to_self(s, job.job_class.name, set(copied)) for s in result]
        return result  # type: ignore[return-value]

    body = moved(loop.body)
    before = moved(loop.before_sleep)
    cycle: list[cst.BaseStatement] = []
    if loop.exits or loop.condition is not None:
        cycle.append(cst.parse_statement("if self.finished:\n    return\n"))
    if loop.condition is not None:
        condition = _renamed(loop.condition, attributes)
        check = cst.parse_statement(f"if {_negated(condition)}:\n    self.finished = True\n    return\n")
        cycle.append(check)
    if loop.first_interval is not None:
        # A pass: what came after the sleep (once the wait is over), then what came before it, then sleep.
        if before:
            first, then = before, body
        elif loop.sleep_index == 0:
            first, then = [], body
        else:
            first, then = body, []
        waiting = cst.parse_statement("if self.slept:\n    if time.monotonic() < self.due:\n        return\n")
        waiting = waiting.with_changes(body=waiting.body.with_changes(body=[*waiting.body.body, *then]))  # type: ignore[attr-defined]
        sleep = _code(_renamed(loop.interval, attributes))  # type: ignore[arg-type]
        cycle += [waiting, *first, cst.parse_statement(f"self.due = time.monotonic() + {sleep}\n")]
        cycle.append(cst.parse_statement("self.slept = True\n"))
    elif loop.early_sleeps:
        cycle += [cst.parse_statement("if time.monotonic() < self.due:\n    return\n"), *body]
    elif before:
        after = cst.parse_statement("if self.slept:\n    pass\n")
        after = after.with_changes(body=after.body.with_changes(body=body))  # type: ignore[attr-defined]
        cycle += [after, *before, cst.parse_statement("self.slept = True\n")]
    else:
        cycle += body
    if loop.intro and cycle:
        cycle[0] = cycle[0].with_changes(leading_lines=[*loop.intro, *cycle[0].leading_lines])
    if loop.docstring is not None:
        cycle.insert(0, loop.docstring.with_changes(leading_lines=()))
    name = "run_once" if target.threaded else "work"
    members[index(name)] = _with_body(members[index(name)], cycle, loop.footer).with_changes(decorators=loop.decorators)
    if job.paced:  # this app's core wakes every worker after each append: keep the loop's cadence
        work = members[index("work")]
        members[index("work")] = work.with_changes(decorators=[cst.Decorator(cst.Name("paced")), *work.decorators])
    start = members[index("start")]
    setup = [*moved(job.setup), *moved(loop.setup)]
    if setup:
        setup[0] = setup[0].with_changes(leading_lines=strip_blank(setup[0].leading_lines))
        start = _with_body(start, [*start.body.body, *setup], ())  # type: ignore[attr-defined]
        members[index("start")] = start
    if job.job_class is not None:
        init = job.job_class.init
        if init is not None:
            extra = [s for s in members[index("__init__")].body.body[1:]]  # type: ignore[attr-defined]
            init = init if takes_app(init) else _with_app(init)
            members[index("__init__")] = _with_body(init, [*init.body.body, *extra], init.body.footer).with_changes(
                leading_lines=[BLANK]
            )
        for helper in helpers:
            method = job.job_class.methods[helper]
            if copied:
                method = _class_to_self(method, job.job_class.name, set(copied))
            members.append(method.with_changes(leading_lines=[BLANK]))
    return cls.with_changes(body=cls.body.with_changes(body=members))


def takes_app(init: cst.FunctionDef) -> bool:
    return len(init.params.params) == 2


def _with_app(init: cst.FunctionDef) -> cst.FunctionDef:
    """``def __init__(self)`` of a class built without the app: the worker still takes it."""
    app = cst.Param(cst.Name("app"), annotation=cst.Annotation(cst.Name("App")))
    body = [cst.parse_statement("self.app = app\n"), *init.body.body]
    return init.with_changes(params=init.params.with_changes(params=[*init.params.params, app])).with_changes(
        body=init.body.with_changes(body=body)
    )


def _negated(condition: cst.BaseExpression) -> str:
    if isinstance(condition, cst.UnaryOperation) and isinstance(condition.operator, cst.Not):
        return _code(condition.expression)
    code = _code(condition)
    return f"not {code}" if isinstance(condition, cst.Name | cst.Attribute | cst.Call) else f"not ({code})"


def _class_to_self(node: cst.CSTNode, class_name: str, attributes: set[str]) -> cst.CSTNode:
    """``Jobs.TICK`` in moved code reads the worker's copy: ``self.TICK``."""
    pattern = m.Attribute(value=m.Name(class_name), attr=m.Name())
    return m.replace(
        node,
        pattern,
        lambda found, _: found.with_changes(value=cst.Name("self")) if found.attr.value in attributes else found,  # type: ignore[attr-defined]
    )


def _with_body(
    function: cst.FunctionDef, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
) -> cst.FunctionDef:
    return function.with_changes(
        body=function.body.with_changes(body=list(body) or [cst.parse_statement("pass\n")], footer=footer)
    )


def _free_names(cls: cst.ClassDef) -> set[str]:
    """Names the class's code reads that it does not define: they come from the module."""
    free: set[str] = set()
    class_level: set[str] = set()
    for member in cls.body.body:
        if isinstance(member, cst.FunctionDef):
            free |= function_free_names(member)
        elif isinstance(member, cst.SimpleStatementLine):
            targets = {
                t.target.value
                for small in member.body
                if isinstance(small, cst.Assign)
                for t in small.targets
                if isinstance(t.target, cst.Name)
            }
            free |= variable_names(member) - targets - class_level
            class_level |= targets
    return free


def function_free_names(function: cst.FunctionDef) -> set[str]:
    """Names a function reads that neither its parameters nor its own statements bind."""
    own = {p.name.value for p in [*function.params.params, *function.params.kwonly_params]}
    for star in (function.params.star_arg, function.params.star_kwarg):
        if isinstance(star, cst.Param):
            own.add(star.name.value)
    own |= assigned_names(function.body)
    own |= {f.name.value for f in findall(function.body, m.FunctionDef() | m.ClassDef())}  # type: ignore[union-attr]
    for inner in findall(function.body, m.FunctionDef() | m.Lambda()):
        own |= {p.name.value for p in inner.params.params}  # type: ignore[union-attr]
    for comprehension in findall(function.body, m.CompFor()):
        own |= variable_names(comprehension.target)  # type: ignore[attr-defined]
    for handler in findall(function.body, m.ExceptHandler()):
        if handler.name is not None:  # type: ignore[attr-defined]
            own |= variable_names(handler.name.name)  # type: ignore[attr-defined]
    for imported in findall(function.body, m.ImportAlias()):
        own.add(
            imported.asname.name.value
            if imported.asname
            else imported.name.value.split(".")[0]
            if isinstance(imported.name, cst.Name)
            else cst.helpers.get_full_name_for_node(imported.name).split(".")[0]
        )  # type: ignore[attr-defined]
    free = variable_names(function.body) - own
    free |= {name for d in function.decorators for name in variable_names(d)}
    free |= {name for p in function.params.params if p.default is not None for name in variable_names(p.default)}
    return free
