"""Finding where the app starts its jobs by hand: imports, ``Jobs(app)`` lines and ``start_*`` calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider


@dataclass(frozen=True)
class Site:
    """One place a job is started, and whether it runs wherever the app's workers run."""

    path: Path
    node: cst.CSTNode  # the statement, or the element of a start-up loop's tuple
    where: str  # "src/shop/main.py:42"
    with_server: bool  # in the server's start-up (an async lifespan or startup handler, or called from one)


@dataclass
class StartUps:
    """Where the app starts its jobs, found in every module of the package."""

    # (feature, start method) -> sites: lines like `jobs.start_cleanup_task()`, or `jobs.start_x` in
    # `for start in (jobs.start_x, ...): start()`
    sites: dict[tuple[str, str], list[Site]] = field(default_factory=dict)
    # `for start in (jobs.start_a, jobs.start_b): start()` -> its elements, to drop it once all are gone
    loops: dict[cst.For, list[cst.Element]] = field(default_factory=dict)
    # feature -> where its JOBS list of module-level jobs is started
    job_lists: dict[str, list[Site]] = field(default_factory=dict)
    # statements building a Jobs instance: `order_jobs = OrderJobs(app)` -> (file, variable, feature)
    constructions: dict[cst.SimpleStatementLine, tuple[Path, str, str]] = field(default_factory=dict)
    # import aliases binding a jobs module or class -> (file, feature)
    imports: dict[cst.ImportAlias, tuple[Path, str]] = field(default_factory=dict)
    # statements using each alias or variable, to know when it is no longer needed
    users: dict[tuple[Path, str], list[cst.CSTNode]] = field(default_factory=dict)
    unfollowable: dict[str, str] = field(default_factory=dict)  # feature -> "file:line"
    # feature -> {name imported from its jobs.py elsewhere -> "file:line"}: jobs.py must stay
    imported_names: dict[str, dict[str, str]] = field(default_factory=dict)
    uneditable: dict[tuple[str, str], str] = field(default_factory=dict)  # (feature, start method) -> "file:line"


def find_start_ups(package: Path, project: str, files: dict[Path, MetadataWrapper], features: set[str]) -> StartUps:
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
        self.lists: dict[str, str] = {}  # local name of a feature's JOBS list -> feature
        self.functions: list[cst.FunctionDef] = []  # the functions the visit is inside
        self.server_functions: set[str] = set()  # names of functions that run with the server

    def visit_Module(self, node: cst.Module) -> None:
        """Functions the server's start-up calls: async ones (lifespan, startup handlers) and what they call."""
        for function in m.findall(node, m.FunctionDef(asynchronous=m.Asynchronous())):
            self.server_functions |= {call.func.value for call in m.findall(function, m.Call(func=m.Name()))}
        for argument in m.findall(node, m.Arg(keyword=m.Name("on_startup") | m.Name("lifespan"))):
            self.server_functions |= {name.value for name in m.findall(argument, m.Name())}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.pop()

    def _with_server(self) -> bool:
        return any(
            f.asynchronous is not None
            or f.name.value in self.server_functions
            or any(
                m.matches(d.decorator, m.Name("asynccontextmanager") | m.Attribute(attr=m.Name("asynccontextmanager")))
                for d in f.decorators
            )
            for f in self.functions
        )

    def _site(self, node: cst.CSTNode, at: cst.CSTNode | None = None) -> Site:
        return Site(self.path, node, self.where(at or node), self._with_server())

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
            elif feature and imported == "JOBS":
                self.lists[local] = feature
                continue
            elif feature:  # a constant or function of jobs.py: fine while jobs.py stays
                self.starts.imported_names.setdefault(feature, {}).setdefault(imported, self.where(node))
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
            self.starts.sites.setdefault((feature, method), []).append(self._site(node))
            self.starts.users.setdefault((self.path, binding), []).append(node)
            self.recognised.add(node)

    def visit_For(self, node: cst.For) -> None:
        """``for start in (jobs.start_a, jobs.start_b): start()``: each element is a start-up site."""
        if not isinstance(node.iter, cst.Tuple | cst.List) or not isinstance(node.target, cst.Name):
            return
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        calls_target = m.SimpleStatementLine(body=[m.Expr(m.Call(func=m.Name(node.target.value), args=[]))])
        if len(body) != 1 or not m.matches(body[0], calls_target) or not node.iter.elements:
            return
        found = []
        for element in node.iter.elements:
            value = element.value
            if not (
                isinstance(value, cst.Attribute)
                and isinstance(value.value, cst.Name)
                and value.value.value in self.instances
                and value.attr.value.startswith("start_")
            ):
                return
            found.append((self.instances[value.value.value], value.attr.value, value.value.value, element))
        for feature, method, binding, element in found:
            self.starts.sites.setdefault((feature, method), []).append(self._site(element))
            self.starts.users.setdefault((self.path, binding), []).append(node)
        self.starts.loops[node] = [element for *_, element in found]
        self.recognised.add(node.iter)

    def _job_list(self, feature: str, node: cst.CSTNode) -> None:
        """A use of a feature's JOBS list (``for job in JOBS: create_task(job(app))``): where its jobs start."""
        self.starts.job_lists.setdefault(feature, []).append(self._site(node))

    def visit_Name(self, node: cst.Name) -> None:
        self._check_use(node)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if m.matches(node, m.Attribute(value=m.Name(), attr=m.Name("JOBS"))) and node.value.value in self.modules:
            self._job_list(self.modules[node.value.value], node)
            self.starts.users.setdefault((self.path, node.value.value), []).append(node)  # keeps the import
            return False
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
        if node.value in self.lists:
            self._job_list(self.lists[node.value], node)
            return
        feature = self.classes.get(node.value) or self.modules.get(node.value) or self.instances.get(node.value)
        if feature is not None:
            self.starts.unfollowable.setdefault(feature, self.where(node))
