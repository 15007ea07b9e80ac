"""Finding where the app starts its jobs by hand: imports, ``Jobs(app)`` lines and ``start_*`` calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider


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
