"""What runs when the app serves: its start-up code, followed across modules.

The roots are the server's start-up: lifespans and startup handlers, the functions
that build the server (they call ``create_http_app`` or ``Starlette``), and the
``serve`` command. From there every function they call (or hand on, as a callback)
runs with the server, as do the module-level statements of every module the server
imports. A function that is only the target of a spawn (the loop a task runs) does
not count: it runs as the job, not at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .program import Module, Program
from .spawns import Spawn
from .syntax import find, findall, subtree_size, walk

Function = tuple[Module, cst.FunctionDef]
SERVER_BUILDERS = {"create_http_app", "Starlette"}
STARTUP_KEYWORDS = {"lifespan", "on_startup"}


@dataclass
class Reach:
    """The functions (and modules, at import time) that run when some entry point runs."""

    functions: dict[cst.FunctionDef, str] = field(default_factory=dict)  # function -> how it is reached
    modules: set[str] = field(default_factory=set)  # imported, so their module-level code runs

    def runs(self, module: Module, node: cst.CSTNode) -> bool:
        """Whether ``node`` runs: its function is reached, or it is module-level code of an imported module."""
        function = module.enclosing_function(node)
        if function is not None:
            return function in self.functions
        return module.name in self.modules


def server_roots(program: Program) -> list[tuple[Function, str]]:
    """The server's start-up code: where the search for jobs begins."""
    roots: list[tuple[Function, str]] = []
    for module in program.modules.values():
        functions = {f.name.value: f for f in module.all(cst.FunctionDef)}  # type: ignore[union-attr]
        for function in functions.values():
            decorators = [cst.helpers.get_full_name_for_node(d.decorator) or "" for d in function.decorators]
            calls = {callee for callee in _callees(function)}
            if calls & SERVER_BUILDERS:
                roots.append(((module, function), f"builds the server ({module.where(function)})"))
            elif function.name.value == "serve" and any(d.endswith("command") for d in decorators):
                roots.append(((module, function), "the serve command"))
            elif any(d.endswith(("on_event", "on_startup")) for d in decorators):
                roots.append(((module, function), "a startup handler"))
        for argument in [a for a in module.all(cst.Arg) if a.keyword is not None]:  # type: ignore[attr-defined]
            if argument.keyword.value in STARTUP_KEYWORDS:  # type: ignore[attr-defined]
                for name in findall(argument.value, m.Name()):  # type: ignore[attr-defined]
                    if name.value in functions:  # type: ignore[attr-defined]
                        roots.append(((module, functions[name.value]), "the server's lifespan"))  # type: ignore[attr-defined]
        pattern = m.Assign(targets=[m.AssignTarget(m.Attribute(attr=m.Name("lifespan_context")))])
        for assign in [a for a in module.all(cst.Assign) if m.matches(a, pattern)]:
            value = assign.value  # type: ignore[attr-defined]
            if isinstance(value, cst.Name) and value.value in functions:
                roots.append(((module, functions[value.value]), "the server's lifespan"))
    return roots


def _callees(function: cst.FunctionDef) -> set[str]:
    names = set()
    for call in find(function.body, cst.Call):
        func = call.func  # type: ignore[attr-defined]
        if isinstance(func, cst.Name):
            names.add(func.value)
        elif isinstance(func, cst.Attribute):
            names.add(func.attr.value)
    return names


def command_roots(program: Program) -> list[tuple[Function, str]]:
    """The app's other commands (``python -m APP NAME``): code that runs, but not with the server."""
    roots = []
    for module in program.modules.values():
        for function in module.all(cst.FunctionDef):
            decorators = [cst.helpers.get_full_name_for_node(d.decorator) or "" for d in function.decorators]  # type: ignore[attr-defined]
            if any(d.endswith("command") for d in decorators) and function.name.value != "serve":  # type: ignore[attr-defined]
                roots.append(((module, function), f"`{function.name.value}` command ({module.where(function)})"))  # type: ignore[attr-defined]
    return roots


def reach(program: Program, roots: list[tuple[Function, str]], spawns: list[Spawn]) -> Reach:
    """Everything the roots run, directly or through the functions and classes they use."""
    targets = _spawn_target_nodes(spawns)
    found = Reach()
    todo = list(roots)
    while todo:
        (module, function), how = todo.pop()
        if function in found.functions:
            continue
        found.functions[function] = how
        for used, _ in _uses(program, module, function, targets):
            if used[1] not in found.functions:
                todo.append((used, how))
        _import(program, found, (module.name, None), todo, how, targets)
    return found


def _import(
    program: Program,
    found: Reach,
    imported: tuple[str, str | None],
    todo: list,
    how: str,
    targets: set[cst.CSTNode],
) -> None:
    """A module the reached code imports: its module-level code runs, and so do the modules it imports."""
    source, name = imported
    for candidate in (source, f"{source}.{name}" if name else source):
        module = program.modules.get(candidate)
        if module is None or module.name in found.modules:
            continue
        found.modules.add(module.name)
        for statement in module.module.body:
            if isinstance(statement, cst.SimpleStatementLine | cst.If | cst.Try | cst.With | cst.For):
                for used, _ in _uses_in(program, module, statement, None, targets):
                    todo.append((used, f"{how}, at import of {module.relative}"))
        for other in module.imports.values():
            _import(program, found, other, todo, how, targets)


def _spawn_target_nodes(spawns: list[Spawn]) -> set[cst.CSTNode]:
    nodes: set[cst.CSTNode] = set()
    for spawn in spawns:
        if spawn.target is not None:
            nodes.add(spawn.target)
    return nodes


def _uses(
    program: Program, module: Module, function: cst.FunctionDef, targets: set[cst.CSTNode]
) -> list[tuple[Function, str]]:
    cls = _method_class(module, function)
    return _uses_in(program, module, function.body, cls, targets, scope=function)


def _method_class(module: Module, function: cst.FunctionDef) -> cst.ClassDef | None:
    parent = module.parent(function)
    parent = module.parent(parent) if isinstance(parent, cst.IndentedBlock) else parent
    return parent if isinstance(parent, cst.ClassDef) else None


class _References:
    """Names and attributes used in a body, skipping spawn targets and nested function bodies (a nested
    function's decorators count): what a visitor that stops at those would meet, from ``walk``."""

    def __init__(self, targets: set[cst.CSTNode]) -> None:
        self.targets = targets
        self.names: list[cst.Name] = []
        self.attributes: list[cst.Attribute] = []
        self.nested: list[cst.FunctionDef] = []

    def read(self, body: cst.CSTNode) -> None:
        nodes = walk(body)
        at = 0
        while at < len(nodes):
            node = nodes[at]
            if node in self.targets or _shutdown_hook(node):
                at += subtree_size(node)
                continue
            if isinstance(node, cst.FunctionDef):
                self.nested.append(node)
                for decorator in node.decorators:
                    self.read(decorator)
                at += subtree_size(node)
                continue
            if isinstance(node, cst.Name):
                self.names.append(node)
            elif isinstance(node, cst.Attribute):
                self.attributes.append(node)
            at += 1


SHUTDOWN_WORDS = ("close", "shutdown", "stop", "exit", "teardown")
ATEXIT_REGISTER = m.Call(func=m.Attribute(value=m.Name("atexit"), attr=m.Name("register")))


def _shutdown_hook(node: cst.CSTNode) -> bool:
    """A callback the start-up hands on to run when the server stops (``on_closed=f``, ``on_shutdown=[f]``,
    ``atexit.register(f)``): what it starts is not started with the server."""
    if isinstance(node, cst.Arg) and node.keyword is not None:
        return any(word in node.keyword.value.lower() for word in SHUTDOWN_WORDS)
    return isinstance(node, cst.Call) and m.matches(node, ATEXIT_REGISTER)


def shutdown_hooks(program: Program) -> set[cst.FunctionDef]:
    """The app's functions handed on to run when the server stops: what they start is no background job."""
    found: set[cst.FunctionDef] = set()
    for module in program.modules.values():
        for node in module.all(cst.Arg):
            values: list[cst.CSTNode] = []
            if _shutdown_hook(node):
                values = [node.value]  # type: ignore[attr-defined]
            for value in values + [e.value for v in values if isinstance(v, cst.List) for e in v.elements]:
                if isinstance(value, cst.Name):
                    resolved = program.resolve(module, value.value)
                    if resolved is not None and isinstance(resolved[1], cst.FunctionDef):
                        found.add(resolved[1])
        for call in module.all(cst.Call):
            if _shutdown_hook(call) and call.args:  # type: ignore[attr-defined]
                first = call.args[0].value  # type: ignore[attr-defined]
                resolved = program.resolve(module, first.value) if isinstance(first, cst.Name) else None
                if resolved is not None and isinstance(resolved[1], cst.FunctionDef):
                    found.add(resolved[1])
    return found


def _uses_in(
    program: Program,
    module: Module,
    body: cst.CSTNode,
    cls: cst.ClassDef | None,
    targets: set[cst.CSTNode],
    scope: cst.FunctionDef | None = None,
) -> list[tuple[Function, str]]:
    known = program.uses.setdefault(frozenset(targets), {})
    if (body, cls) not in known:
        known[body, cls] = _find_uses(program, module, body, cls, targets)
    return known[body, cls]


def _find_uses(
    program: Program, module: Module, body: cst.CSTNode, cls: cst.ClassDef | None, targets: set[cst.CSTNode]
) -> list[tuple[Function, str]]:
    visitor = _References(targets)
    visitor.read(body)
    used: list[tuple[Function, str]] = []
    nested = {f.name.value: f for f in visitor.nested}
    instances = _instances(program, module, body, cls)
    for name in visitor.names:
        if name.value in nested:
            used.append(((module, nested[name.value]), "nested"))
            continue
        resolved = program.resolve(module, name.value)
        used += _definition_functions(program, resolved)
    for attribute in visitor.attributes:
        owner = attribute.value
        method = attribute.attr.value
        classes: list[tuple[Module, cst.ClassDef]] = []
        if m.matches(owner, m.Name("self")) and cls is not None:
            classes = [(module, cls)]
        elif isinstance(owner, cst.Name) and owner.value in instances:
            classes = [instances[owner.value]]
        elif m.matches(owner, m.Attribute(value=m.Name("self"))) and cls is not None:
            made = _attribute_class(program, module, cls, owner.attr.value)  # type: ignore[attr-defined]
            classes = [made] if made else []
        elif isinstance(owner, cst.Call):
            resolved = program.resolve_expression(module, owner.func)
            if resolved and isinstance(resolved[1], cst.ClassDef):
                classes = [resolved]  # type: ignore[list-item]
        elif isinstance(owner, cst.Name | cst.Attribute):
            resolved = program.resolve_expression(module, owner)
            if resolved and isinstance(resolved[1], cst.ClassDef):
                classes = [resolved]  # type: ignore[list-item]
            elif resolved and isinstance(resolved[1], cst.SimpleStatementLine):
                made = _instance_class(program, resolved[0], resolved[1])
                classes = [made] if made else []
            elif (
                alias := program.module_alias(module, owner.value if isinstance(owner, cst.Name) else "")
            ) is not None:
                used += _definition_functions(program, program.resolve(alias, method))
        for class_module, found in classes:
            for method_module, function in methods(program, class_module, found, method):
                used.append(((method_module, function), "method"))
    return used


def _definition_functions(program: Program, resolved: tuple[Module, object] | None) -> list[tuple[Function, str]]:
    if resolved is None:
        return []
    module, definition = resolved
    if isinstance(definition, cst.FunctionDef):
        return [((module, definition), "function")]
    if isinstance(definition, cst.ClassDef):
        found = []
        for name in ("__init__", "__post_init__", "__aenter__", "__enter__"):  # `async with Cls(app):` runs these
            found += [((owner, f), "constructor") for owner, f in methods(program, module, definition, name)]
        return found
    return []


def methods(program: Program, module: Module, cls: cst.ClassDef, name: str) -> list[Function]:
    """``cls.name``, looked up in the class and then its bases in the app."""
    for member in cls.body.body:
        if isinstance(member, cst.FunctionDef) and member.name.value == name:
            return [(module, member)]
    for base in cls.bases:
        resolved = program.resolve_expression(module, base.value)
        if resolved and isinstance(resolved[1], cst.ClassDef):
            return methods(program, resolved[0], resolved[1], name)
    return []


def _instances(
    program: Program, module: Module, body: cst.CSTNode, cls: cst.ClassDef | None
) -> dict[str, tuple[Module, cst.ClassDef]]:
    """Local names holding an instance of one of the app's classes: ``jobs = Jobs(app)``, ``jobs = CURRENT =
    Jobs(app)``, ``scheduler = make_scheduler()`` (its return annotation), ``for job in periodic_jobs(app)``
    (``-> list[PeriodicJob]``)."""
    found: dict[str, tuple[Module, cst.ClassDef]] = {}
    for assign in findall(body, m.Assign(value=m.Call())):
        resolved = returned_class(program, module, assign.value)  # type: ignore[attr-defined]
        for target in assign.targets:  # type: ignore[attr-defined]
            if resolved and isinstance(target.target, cst.Name):
                found[target.target.value] = resolved
    for loop in findall(body, m.For(target=m.Name(), iter=m.Call())):
        resolved = returned_class(program, module, loop.iter, element=True)  # type: ignore[attr-defined]
        if resolved:
            found[loop.target.value] = resolved  # type: ignore[attr-defined]
    for item in findall(body, m.WithItem(item=m.Call(), asname=m.AsName(name=m.Name()))):
        resolved = program.resolve_expression(module, item.item.func)  # type: ignore[attr-defined]
        if resolved and isinstance(resolved[1], cst.ClassDef):
            found[item.asname.name.value] = resolved  # type: ignore[attr-defined]
    return found


def _attribute_class(
    program: Program, module: Module, cls: cst.ClassDef, attribute: str
) -> tuple[Module, cst.ClassDef] | None:
    """The app class of ``self.attribute``, from ``self.attribute = Cls(...)`` in the class."""
    pattern = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attribute)))], value=m.Call()
    )
    for assign in findall(cls, pattern):
        made = returned_class(program, module, assign.value)  # type: ignore[attr-defined]
        if made is not None:
            return made
    return None


def returned_class(
    program: Program, module: Module, call: cst.Call, *, element: bool = False
) -> tuple[Module, cst.ClassDef] | None:
    """The app class a call makes: ``Jobs(app)``, or a function annotated ``-> Jobs`` (``-> list[Jobs]``
    for the elements of what it returns, with ``element``)."""
    resolved = program.resolve_expression(module, call.func)
    if resolved and isinstance(resolved[1], cst.ClassDef) and not element:
        return resolved  # type: ignore[return-value]
    if not resolved or not isinstance(resolved[1], cst.FunctionDef) or resolved[1].returns is None:
        return None
    annotation = resolved[1].returns.annotation
    if element:
        if not isinstance(annotation, cst.Subscript) or len(annotation.slice) != 1:
            return None
        inner = annotation.slice[0].slice
        annotation = inner.value if isinstance(inner, cst.Index) else annotation
    if isinstance(annotation, cst.SimpleString):
        annotation = cst.parse_expression(annotation.evaluated_value)  # type: ignore[arg-type]
    named = (
        program.resolve_expression(resolved[0], annotation)
        if isinstance(annotation, cst.Name | cst.Attribute)
        else None
    )
    return named if named and isinstance(named[1], cst.ClassDef) else None  # type: ignore[return-value]


def _instance_class(
    program: Program, module: Module, statement: cst.SimpleStatementLine
) -> tuple[Module, cst.ClassDef] | None:
    """The class of a module-level instance: ``SCHEDULER = Scheduler()``."""
    small = statement.body[0]
    if isinstance(small, cst.Assign | cst.AnnAssign) and isinstance(small.value, cst.Call):
        resolved = program.resolve_expression(module, small.value.func)
        if resolved and isinstance(resolved[1], cst.ClassDef):
            return resolved  # type: ignore[return-value]
    return None
