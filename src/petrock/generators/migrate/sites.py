"""Where a job's start line is, and the app as written there.

A job is started under the runtime at the very place it was started by hand: the
spawn's own line becomes ``run_with_server(app, name)``. When the spawn is alone in a
start method of a job class (``def start_cleanup_task(self): create_task(self._loop())``)
and every call of that method is a line petrock can edit, the method goes and its
calls become that line instead (the *collapsed* form: the serve code then reads
``run_with_server(app, "orders/cleanup")``).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from .jobs import Job, Site
from .program import Module, Program
from .syntax import attributes_set_from, findall, self_attribute, without_docstring
from .targets import class_of_instance

APP_CLASS = "App"


def app_expression(program: Program, module: Module, node: cst.CSTNode) -> cst.BaseExpression | None:
    """The app at ``node``: a parameter or variable ``app`` (or typed ``App``), ``self.app`` in a method
    whose class keeps the app it was made with, or a module-level app; None when there is none."""
    for scope in [a for a in module.ancestors(node) if isinstance(a, cst.FunctionDef)]:
        for parameter in [*scope.params.params, *scope.params.kwonly_params]:
            annotation = parameter.annotation.annotation if parameter.annotation else None
            if parameter.name.value == "app" or (annotation is not None and _names_app(annotation)):
                return cst.Name(parameter.name.value)
        if findall(scope.body, m.AssignTarget(m.Name("app"))):
            return cst.Name("app")
        cls = module.enclosing_class(scope)
        parent = module.parent(scope)
        parent = module.parent(parent) if isinstance(parent, cst.IndentedBlock) else parent
        if cls is not None and parent is cls:
            attribute = _app_attribute(cls)
            if attribute is not None:
                return cst.Attribute(value=cst.Name("self"), attr=cst.Name(attribute))
    for name in ("app", "APP"):
        if name in module.definitions and isinstance(module.definitions[name], cst.SimpleStatementLine):
            return cst.Name(name)
    return None


def _names_app(annotation: cst.BaseExpression) -> bool:
    code = cst.Module([]).code_for_node(annotation).strip("\"'")
    return code == APP_CLASS or code.endswith(f".{APP_CLASS}") or code == f"{APP_CLASS} | None"


def _app_attribute(cls: cst.ClassDef) -> str | None:
    """The attribute a class's ``__init__`` keeps its app in: ``self.app = app``."""
    for member in cls.body.body:
        if isinstance(member, cst.FunctionDef) and member.name.value == "__init__":
            for parameter in member.params.params[1:]:
                annotation = parameter.annotation.annotation if parameter.annotation else None
                if parameter.name.value == "app" or (annotation is not None and _names_app(annotation)):
                    found = attributes_set_from(member, parameter.name.value)
                    return "app" if "app" in found else min(found, default=None)
    return None


def collapse(program: Program, job: Job) -> None:
    """Use the collapsed form when the job's start method only starts it and every call of it can be edited."""
    if job.job_class is None or job.element is not None or job.target is None:
        return
    module = job.module
    method = module.enclosing_function(job.spawn.call)
    cls = module.enclosing_class(job.spawn.call)
    if method is None or cls is not job.job_class.cls or method.decorators or not method.name.value.startswith("start"):
        return
    if not (job.target.cls is cls or job.target.nested_in is method):
        return
    setup = _setup_and_spawn(job, method)
    if setup is None:
        return
    sites = _sites(program, module, cls, method.name.value)
    if sites is None or not sites:
        return
    job.start_method, job.sites, job.setup = method, sites, setup


def _setup_and_spawn(job: Job, method: cst.FunctionDef) -> list[cst.BaseStatement] | None:
    """What the start method does besides starting the job: plain calls, which move to the worker's start."""
    spawn_statement = job.statement
    handle = self_attribute(job.spawn.handle) if job.spawn.handle is not None else None
    setup = []
    for statement in without_docstring(method.body.body):
        if statement is spawn_statement or statement is job.target.nested_in or statement is job.target.function:  # type: ignore[union-attr]
            continue
        if job.spawn.construction is not None and job.module.statement(job.spawn.construction) is statement:
            continue
        if not m.matches(statement, m.SimpleStatementLine(body=[m.Expr(m.Call())])):
            return None
        if findall(statement, m.Name("self")) and not findall(
            statement, m.Attribute(value=m.Name("self"), attr=m.Name("app"))
        ):
            return None
        setup.append(statement)
    if handle is not None:
        uses = len(findall(job.job_class.cls, m.Attribute(value=m.Name("self"), attr=m.Name(handle))))  # type: ignore[union-attr]
        own = len(findall(method, m.Attribute(value=m.Name("self"), attr=m.Name(handle))))
        init = job.job_class.init  # type: ignore[union-attr]
        declared = (
            len(
                findall(
                    init,
                    m.Assign(
                        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(handle)))],
                        value=m.Name("None"),
                    ),
                )
            )
            if init is not None
            else 0
        )
        if uses > own + declared:
            return None  # the thread or task it keeps is used elsewhere: start it where it is
    return setup


def _sites(program: Program, home: Module, cls: cst.ClassDef, method: str) -> list[Site] | None:
    """Every call of ``cls.method`` in the app, when each is a line petrock can replace; else None."""
    sites: list[Site] = []
    for module in program.modules.values():
        for attribute in module.attributes.get(method, []):
            owner = attribute.value  # type: ignore[attr-defined]
            if m.matches(owner, m.Name("self")) and module.enclosing_class(attribute) is cls:
                return None  # the class calls its own start method
            found = class_of_instance(program, module, attribute, owner)
            if found is None or found[1] is not cls:
                continue
            site = _site(program, module, attribute, owner)
            if site is None:
                return None
            sites.append(site)
    return sites


def _site(program: Program, module: Module, attribute: cst.Attribute, owner: cst.BaseExpression) -> Site | None:
    parent = module.parent(attribute)
    app = _constructed_with(module, attribute, owner) or app_expression(program, module, attribute)
    if isinstance(parent, cst.Call) and not parent.args:
        statement = module.parent(module.parent(parent))  # Expr -> SimpleStatementLine
        expression = module.parent(parent)
        if (
            isinstance(expression, cst.Expr)
            and isinstance(statement, cst.SimpleStatementLine)
            and len(statement.body) == 1
        ):
            return Site(module, statement, None, app)
        return None
    if isinstance(parent, cst.Element):
        sequence = module.parent(parent)
        loop = module.parent(sequence)
        if isinstance(loop, cst.For) and loop.iter is sequence and _calls_each(loop):
            return Site(module, parent, loop, app)
    return None


def _calls_each(loop: cst.For) -> bool:
    """``for start in (a.start_x, a.start_y): start()``."""
    if not isinstance(loop.target, cst.Name) or not isinstance(loop.body, cst.IndentedBlock):
        return False
    calls = m.SimpleStatementLine(body=[m.Expr(m.Call(func=m.Name(loop.target.value), args=[]))])
    return len(loop.body.body) == 1 and m.matches(loop.body.body[0], calls)


def _constructed_with(module: Module, at: cst.CSTNode, owner: cst.BaseExpression) -> cst.BaseExpression | None:
    """The app an instance was made with: ``Jobs(app)`` inline, or ``jobs = Jobs(app)`` before."""
    call = owner if isinstance(owner, cst.Call) else None
    if call is None and isinstance(owner, cst.Name):
        scope = module.enclosing_function(at) or module.module
        for assign in findall(scope, m.Assign(targets=[m.AssignTarget(m.Name(owner.value))], value=m.Call())):
            call = assign.value  # type: ignore[attr-defined]
    if call is not None and len(call.args) == 1 and call.args[0].keyword is None:
        return call.args[0].value
    return None


def hosted_start_line(program: Program, job: Job) -> tuple[Module, cst.BaseStatement, cst.BaseExpression | None]:
    """Where to wrap a hosted job's start code: its start line, or the loop around it (one wrapper for
    every job the loop starts), or, where no app is at hand, the one line calling its function."""
    module, statement = job.module, job.statement
    for _ in range(4):
        statement = _outermost_loop(module, statement)
        app = app_expression(program, module, statement)
        if app is not None:
            return module, statement, app
        function = module.enclosing_function(statement)
        caller = _only_caller(program, module, function) if function is not None else None
        if caller is None:
            return module, statement, None
        module, statement = caller
    return module, statement, app_expression(program, module, statement)


def _outermost_loop(module: Module, statement: cst.BaseStatement) -> cst.BaseStatement:
    found = statement
    for ancestor in module.ancestors(statement):
        if isinstance(ancestor, cst.FunctionDef | cst.ClassDef | cst.Lambda):
            break
        if isinstance(ancestor, cst.For | cst.While):
            found = ancestor
    return found


def _only_caller(program: Program, home: Module, function: cst.FunctionDef) -> tuple[Module, cst.BaseStatement] | None:
    """The one statement that calls ``function`` (``SCHEDULER.start()``, ``start_jobs()``), if it is alone."""
    name = function.name.value
    cls = home.enclosing_class(function)
    found: list[tuple[Module, cst.BaseStatement]] = []
    for module in program.modules.values():
        references = module.attributes.get(name, []) if cls is not None else module.names.get(name, [])
        for reference in references:
            if reference is function.name or function in set(module.ancestors(reference)):
                continue
            if cls is not None:
                owner = class_of_instance(program, module, reference, reference.value)  # type: ignore[attr-defined]
                if owner is None or owner[1] is not cls:
                    continue  # another class's method of the same name
            node = reference
            call = module.parent(node)
            statement = module.statement(node)
            if not (
                isinstance(call, cst.Call)
                and call.func is node
                and isinstance(statement, cst.SimpleStatementLine)
                and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Expr)
                and statement.body[0].value is call
            ):
                return None
            found.append((module, statement))
    return found[0] if len(found) == 1 else None


def bindable(program: Program, job: Job) -> bool:
    """Whether a method's loop can run on the object that started it: started in place (``self`` at a
    start method of the object's class), by one call that is not in a loop (one object)."""
    target = job.target
    if target is None or target.cls is None or target.static or not m.matches(target.instance, m.Name("self")):
        return False
    if job.element is not None or job.group is not None:
        return False
    starter = job.module.enclosing_function(job.spawn.call)
    if starter is None or job.module.enclosing_class(starter) is None:
        return False
    caller = _only_caller(program, job.module, starter)
    if caller is None:
        return False
    module, statement = caller
    return not any(isinstance(a, cst.For | cst.While | cst.CompFor) for a in module.ancestors(statement))
