"""What a spawn runs: the function behind ``create_task(loop(app))``, ``Thread(target=self._loop)``,
``partial(poll, app)``, ``lambda: tick(app)``, a Thread subclass's ``run``, or ``to_thread(f)``.

The function is found in the app's modules with the arguments it gets at the spawn
(as written there), and, for a method, the object it is called on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .program import Module, Program
from .server import returned_class
from .spawns import Spawn, callee_name
from .syntax import findall


@dataclass(eq=False)
class Target:
    """The function a job runs, and how the spawn calls it."""

    module: Module  # where the function is defined
    function: cst.FunctionDef
    cls: cst.ClassDef | None = None  # the class it is a method of
    instance: cst.BaseExpression | None = None  # the object the method is called on, as written at the spawn
    nested_in: cst.FunctionDef | None = None  # the function it is defined in (a loop inside a start method)
    bindings: dict[str, cst.BaseExpression] = field(default_factory=dict)  # parameter -> argument at the spawn
    threaded: bool = False  # runs in a thread (a thread, an executor, a timer, ``to_thread``)
    static: bool = False  # a @staticmethod

    @property
    def qualname(self) -> str:
        if self.cls is not None:
            return f"{self.cls.name.value}.{self.function.name.value}"
        if self.nested_in is not None:
            return f"{self.nested_in.name.value}.{self.function.name.value}"
        return self.function.name.value


def resolve_target(
    program: Program,
    spawn: Spawn,
    substitute: dict[str, cst.BaseExpression] | None = None,
    elsewhere: Module | None = None,
) -> Target | str:
    """The spawn's target, or why petrock cannot tell what it runs. ``substitute`` replaces a
    loop variable by one element of what it iterates (``for job in JOBS``), whose names are
    looked up in ``elsewhere`` (where the collection is written) when the spawn's module lacks them."""
    module = spawn.module
    if spawn.thread_class is not None:
        run = _method(spawn.thread_class, "run")
        if run is None:
            return f"its thread class {spawn.thread_class.name.value} has no run method"
        owner = program.module_of(spawn.thread_class)
        instance = spawn.construction if spawn.handle is None else spawn.handle
        return Target(owner, run, spawn.thread_class, instance, threaded=True)
    target = spawn.target
    if target is None:
        return "petrock cannot tell what it runs"
    target = _substituted(target, substitute or {})
    threaded = spawn.kind in ("thread", "executor", "timer", "sched")
    if spawn.kind == "task":
        if not isinstance(target, cst.Call):
            return f"it runs `{module.code(spawn.target)}`, not a call of a coroutine function"
        if callee_name(target) == "to_thread" and target.args:
            arguments = [a.value for a in target.args if a.keyword is None]
            return _callable(
                program, module, spawn, arguments[0], tuple(arguments[1:]), threaded=True, elsewhere=elsewhere
            )
        arguments = [a.value for a in target.args if a.keyword is None and not a.star]
        keywords = {a.keyword.value: a.value for a in target.args if a.keyword is not None}
        if any(a.star for a in target.args):
            return "it passes *args or **kwargs to its loop"
        return _callable(
            program,
            module,
            spawn,
            target.func,
            tuple(arguments),
            threaded=False,
            keywords=keywords,
            elsewhere=elsewhere,
        )
    threaded = threaded or spawn.kind == "scheduler"
    arguments = tuple(_substituted(a, substitute or {}) for a in spawn.args)  # Thread(target=f, args=(app, job))
    keywords = {k: _substituted(v, substitute or {}) for k, v in spawn.keywords.items()}
    return _callable(
        program, module, spawn, target, arguments, threaded=threaded, keywords=keywords, elsewhere=elsewhere
    )


def _substituted(node: cst.BaseExpression, substitute: dict[str, cst.BaseExpression]) -> cst.BaseExpression:
    if not substitute:
        return node
    return m.replace(  # type: ignore[return-value]
        node,
        m.Name(),
        lambda found, _: substitute.get(found.value, found),  # type: ignore[attr-defined]
    )


def _callable(
    program: Program,
    module: Module,
    spawn: Spawn,
    node: cst.BaseExpression,
    arguments: tuple[cst.BaseExpression, ...],
    *,
    threaded: bool,
    keywords: dict[str, cst.BaseExpression] | None = None,
    elsewhere: Module | None = None,
) -> Target | str:
    keywords = dict(keywords or {})
    if isinstance(node, cst.Lambda):
        if node.params.params or not isinstance(node.body, cst.Call):
            return "its target is a lambda that does more than call one function"
        inner = node.body
        positional = tuple(a.value for a in inner.args if a.keyword is None and not a.star)
        inner_keywords = {a.keyword.value: a.value for a in inner.args if a.keyword is not None}
        return _callable(
            program,
            module,
            spawn,
            inner.func,
            positional,
            threaded=threaded,
            keywords=inner_keywords,
            elsewhere=elsewhere,
        )
    if isinstance(node, cst.Call) and callee_name(node) == "partial" and node.args:
        positional = [a.value for a in node.args if a.keyword is None and not a.star]
        bound_keywords = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        return _callable(
            program,
            module,
            spawn,
            positional[0],
            (*positional[1:], *arguments),
            threaded=threaded,
            keywords={**bound_keywords, **keywords},
            elsewhere=elsewhere,
        )
    found = _function(program, module, spawn.call, node, elsewhere)
    if isinstance(found, str):
        return found
    owner, function, cls, instance, nested_in = found
    static = any(m.matches(d.decorator, m.Name("staticmethod")) for d in function.decorators)
    parameters = [p.name.value for p in function.params.params]
    if cls is not None and not static and parameters[:1] == ["self"]:
        parameters = parameters[1:]
    star = function.params.star_arg
    if isinstance(star, cst.Param) or function.params.star_kwarg is not None:
        return f"its function {function.name.value} takes *args or **kwargs"
    if len(arguments) > len(parameters):
        return f"it passes {function.name.value} more arguments than it takes"
    bindings = dict(zip(parameters, arguments, strict=False))
    for name, value in keywords.items():
        if name not in parameters and name not in {p.name.value for p in function.params.kwonly_params}:
            return f"it passes {function.name.value} an argument {name!r} it does not take"
        bindings[name] = value
    for parameter in [*function.params.params, *function.params.kwonly_params]:
        name = parameter.name.value
        is_self = cls is not None and not static and name == function.params.params[0].name.value
        if name not in bindings and name != "self" and parameter.default is None and not is_self:
            return f"it does not pass {function.name.value} its argument {name!r}"
    return Target(owner, function, cls, instance, nested_in, bindings, threaded, static)


def _method(cls: cst.ClassDef, name: str) -> cst.FunctionDef | None:
    for member in cls.body.body:
        if isinstance(member, cst.FunctionDef) and member.name.value == name:
            return member
    return None


def _function(
    program: Program, module: Module, at: cst.CSTNode, node: cst.BaseExpression, elsewhere: Module | None = None
) -> tuple[Module, cst.FunctionDef, cst.ClassDef | None, cst.BaseExpression | None, cst.FunctionDef | None] | str:
    """The function ``node`` names at ``at``: nested, module-level, imported, or a method."""
    shown = module.code(node) if node in module.parents else cst.Module([]).code_for_node(node)
    if isinstance(node, cst.Name):
        for scope in _scopes(module, at):
            for statement in scope.body.body:
                if isinstance(statement, cst.FunctionDef) and statement.name.value == node.value:
                    return module, statement, None, None, scope
        resolved = program.resolve(module, node.value)
        if resolved is None and elsewhere is not None:
            resolved = program.resolve(elsewhere, node.value)
        if resolved and isinstance(resolved[1], cst.FunctionDef):
            return resolved[0], resolved[1], None, None, None
        return f"its target `{shown}` is not a function of the app petrock can read"
    if isinstance(node, cst.Attribute):
        owner = node.value
        name = node.attr.value
        if isinstance(owner, cst.Name) and (alias := program.module_alias(module, owner.value)) is not None:
            resolved = program.resolve(alias, name)
            if resolved and isinstance(resolved[1], cst.FunctionDef):
                return resolved[0], resolved[1], None, None, None
        cls = _class_of(program, module, at, owner)
        if cls is not None:
            class_module, class_def = cls
            found = _lookup(program, class_module, class_def, name)
            if found is not None:
                return found[0], found[1], found[2], owner, None
        return f"its target `{shown}` is not a method petrock can follow"
    return f"its target `{shown}` is not a function of the app petrock can read"


def _lookup(
    program: Program, module: Module, cls: cst.ClassDef, name: str
) -> tuple[Module, cst.FunctionDef, cst.ClassDef] | None:
    method = _method(cls, name)
    if method is not None:
        return module, method, cls
    for base in cls.bases:
        resolved = program.resolve_expression(module, base.value)
        if resolved and isinstance(resolved[1], cst.ClassDef):
            found = _lookup(program, resolved[0], resolved[1], name)
            if found is not None:
                return found
    return None


def _scopes(module: Module, at: cst.CSTNode) -> list[cst.FunctionDef]:
    return [a for a in module.ancestors(at) if isinstance(a, cst.FunctionDef)]


def class_of_instance(
    program: Program, module: Module, at: cst.CSTNode, owner: cst.BaseExpression
) -> tuple[Module, cst.ClassDef] | None:
    return _class_of(program, module, at, owner)


def _class_of(
    program: Program, module: Module, at: cst.CSTNode, owner: cst.BaseExpression
) -> tuple[Module, cst.ClassDef] | None:
    """The app class of ``owner``: ``self`` in a method, ``Cls(...)``, ``Cls``, or a local ``x = Cls(...)``."""
    if m.matches(owner, m.Name("self")):
        cls = module.enclosing_class(at)
        return (module, cls) if cls is not None else None
    if isinstance(owner, cst.Call):
        resolved = program.resolve_expression(module, owner.func)
        return resolved if resolved and isinstance(resolved[1], cst.ClassDef) else None  # type: ignore[return-value]
    resolved = program.resolve_expression(module, owner) if isinstance(owner, cst.Name | cst.Attribute) else None
    if resolved and isinstance(resolved[1], cst.ClassDef):
        return resolved  # type: ignore[return-value]
    if isinstance(owner, cst.Name):
        for scope in [*_scopes(module, at), module.module]:
            body = scope if isinstance(scope, cst.Module) else scope.body
            for assign in findall(body, m.Assign(value=m.Call())):
                if any(m.matches(t.target, m.Name(owner.value)) for t in assign.targets):  # type: ignore[attr-defined]
                    resolved = returned_class(program, module, assign.value)  # type: ignore[attr-defined]
                    if resolved:
                        return resolved
            for loop in findall(body, m.For(target=m.Name(owner.value), iter=m.Call())):
                resolved = returned_class(program, module, loop.iter, element=True)  # type: ignore[attr-defined]
                if resolved:
                    return resolved
        for scope in _scopes(module, at):
            for parameter in scope.params.params:
                if parameter.name.value == owner.value and parameter.annotation is not None:
                    resolved = program.resolve_expression(module, parameter.annotation.annotation)
                    if resolved and isinstance(resolved[1], cst.ClassDef):
                        return resolved  # type: ignore[return-value]
    if m.matches(owner, m.Attribute(value=m.Name("self"))):
        cls = module.enclosing_class(at)
        if cls is not None:
            attribute = owner.attr.value  # type: ignore[attr-defined]
            pattern = m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attribute)))])
            for assign in findall(cls, pattern):
                value = assign.value  # type: ignore[attr-defined]
                if isinstance(value, cst.Call):
                    resolved = program.resolve_expression(module, value.func)
                    if resolved and isinstance(resolved[1], cst.ClassDef):
                        return resolved  # type: ignore[return-value]
    return None
