"""A class whose methods are jobs (``Jobs(app).start_cleanup_task()``): what a worker may copy from it.

A loop method moves into a worker with the helper methods it calls, the class
attributes it reads (plain values only: a list or a lock would stop being shared)
and the class's ``__init__`` (which must take just the app). Two loops that share
an instance attribute cannot move: each worker gets an instance of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .syntax import attributes_set_from, callee, findall, self_attribute, self_attributes, takes

MUTATORS = {"set", "clear", "append", "extend", "add", "update", "put", "put_nowait", "pop", "remove", "discard"}
MUTABLE_CALLS = {"list", "dict", "set", "defaultdict", "deque", "Counter", "OrderedDict", "bytearray"}


@dataclass(eq=False)
class JobClass:
    """What the migration needs to know about a class holding job loops."""

    cls: cst.ClassDef
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    class_attributes: dict[str, cst.BaseExpression] = field(default_factory=dict)
    problem: str | None = None  # why its loops cannot be copied into workers

    @property
    def name(self) -> str:
        return self.cls.name.value

    @property
    def init(self) -> cst.FunctionDef | None:
        return self.methods.get("__init__")

    def app_attributes(self) -> set[str]:
        """Attributes ``__init__`` sets straight from the app: every worker may share those."""
        init = self.init
        if init is None or len(init.params.params) < 2:
            return set()
        return attributes_set_from(init, init.params.params[1].name.value)

    def helpers_of(self, nodes: list[cst.CSTNode], moved: set[str]) -> list[str] | str:
        """The methods ``nodes`` call (transitively), to copy; or why they cannot be."""
        helpers: list[str] = []
        todo = [name for node in nodes for name in self_attributes(node)]
        while todo:
            name = todo.pop()
            if name not in self.methods or name in helpers or name == "__init__" or name in moved:
                continue
            if name.startswith("start_"):
                return f"its loop calls {name}, another job"
            helpers.append(name)
            todo += self_attributes(self.methods[name])
        order = list(self.methods)
        return sorted(helpers, key=order.index)

    def set_elsewhere(self, nodes: list[cst.CSTNode], moved: set[str], start: cst.FunctionDef | None) -> str | None:
        """An attribute the moved code reads that a method other than ``__init__`` (and the moved ones) sets:
        the worker's own copy of the object would never see it change."""
        read = {name for node in nodes for name in self_attributes(node)}
        for name, method in self.methods.items():
            if name == "__init__" or name in moved or (start is not None and method is start):
                continue
            for assign in findall(method, m.AssignTarget(m.Attribute(value=m.Name("self"))) | m.AugAssign()):
                target = assign.target  # type: ignore[attr-defined]
                attribute = self_attribute(target) if target is not None else None
                if attribute in read and attribute not in self.methods:
                    return attribute
            for call in findall(method, m.Call(func=m.Attribute(value=m.Attribute(value=m.Name("self"))))):
                owner = call.func.value.attr.value  # type: ignore[attr-defined]
                if owner in read and call.func.attr.value in MUTATORS:  # type: ignore[attr-defined]
                    return owner  # `self._stop.set()` in stop(): the loop's event is the object's
        return None

    def attributes_of(self, nodes: list[cst.CSTNode]) -> list[str] | str:
        """Class attributes the moved code reads (``self.TICK``, ``Cls.TICK``), to copy; or why not."""
        used = {name for node in nodes for name in self_attributes(node)}
        used |= {a.attr.value for node in nodes for a in findall(node, m.Attribute(value=m.Name(self.name)))}  # type: ignore[attr-defined]
        found = []
        for name in sorted(used & set(self.class_attributes), key=list(self.class_attributes).index):
            if _is_mutable(self.class_attributes[name]):
                shared = "a mutable class attribute other jobs may share: move it to module level"
                return f"it uses {self.name}.{name}, {shared}"
            found.append(name)
        return found


def read_job_class(cls: cst.ClassDef) -> JobClass:
    found = JobClass(cls)
    found.methods = {s.name.value: s for s in cls.body.body if isinstance(s, cst.FunctionDef)}
    for statement in cls.body.body:
        if m.matches(
            statement,
            m.SimpleStatementLine(
                body=[m.Assign(targets=[m.AssignTarget(m.Name())]) | m.AnnAssign(target=m.Name(), value=m.DoNotCare())]
            ),
        ):
            small = statement.body[0]  # type: ignore[attr-defined]
            target = small.targets[0].target if isinstance(small, cst.Assign) else small.target
            if small.value is not None:
                found.class_attributes[target.value] = small.value
    init = found.init
    if cls.bases:
        found.problem = f"its class {cls.name.value} derives from another class"
    elif init is not None and not (takes(init, 2) or takes(init, 1)):
        found.problem = f"{cls.name.value}.__init__ takes more than the app (register(app) has nothing else to give)"
    elif any(isinstance(s, cst.FunctionDef) and s.decorators for s in cls.body.body if _is_property(s)):
        found.problem = f"{cls.name.value} has properties"
    return found


def _is_property(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.FunctionDef) and any(
        m.matches(d.decorator, m.Name("property") | m.Attribute(attr=m.Name("setter"))) for d in statement.decorators
    )


def _is_mutable(value: cst.BaseExpression) -> bool:
    """A value each worker must not get a copy of: a container, or an instance (a lock, an event, a client)."""
    if findall(value, m.List() | m.Dict() | m.Set() | m.ListComp() | m.DictComp() | m.SetComp()):
        return True
    for call in findall(value, m.Call()):
        name = callee(call) or ""  # type: ignore[arg-type]
        if name in MUTABLE_CALLS or name[:1].isupper():
            return True
    return False
