"""Writing the result: worker modules, registrations, what is left of ``jobs.py``, edited start-ups."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from petrock.names import kebab, pascal

from .analyse import FeatureJobs, Job
from .find import StartUps
from .report import MARK, Converted, Kept, Migration, RemovedLine
from .syntax import (
    BLANK,
    bound_name,
    docstring_summary,
    local_name,
    one_line,
    self_attributes,
    strip_blank,
    variable_names,
    without_docstring,
)


def edit_start_ups(
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
    loop_of = {element: loop for loop, elements in starts.loops.items() for element in elements}
    for key, sites in starts.sites.items():
        for site in sites:
            if key in converted:
                remove.add(site.node)
            elif key[0] in features and key[1] in features[key[0]].jobs:
                mark[loop_of.get(site.node, site.node)] = f"{MARK} {key[0]} Jobs.{key[1]} (see {key[0]}/jobs.py)"
    # A start-up loop goes once all its elements go.
    for loop, elements in starts.loops.items():
        if all(element in remove for element in elements):
            remove.add(loop)
            remove -= set(elements)
            mark.pop(loop, None)
    # A construction goes once every line using its variable goes; an import once every line using it goes.
    for statement, (path, variable, _) in starts.constructions.items():
        if all(user in remove for user in starts.users.get((path, variable), [])):
            remove.add(statement)
    drop_aliases = {
        alias
        for alias, (path, _) in starts.imports.items()
        if all(user in remove for user in starts.users.get((path, local_name(alias)), []))
    }
    for path, wrapper in files.items():
        positions = wrapper.resolve(PositionProvider)
        edited = wrapper.module.visit(_StartUpEditor(remove, mark, drop_aliases))
        if edited.code == wrapper.module.code:
            continue
        texts[path] = edited.code
        relative = path.relative_to(root).as_posix()
        for node in sorted((n for n in remove if n in positions), key=lambda n: positions[n].start.line):
            migration.removed.append(RemovedLine(relative, positions[node].start.line, one_line(wrapper.module, node)))


class _StartUpEditor(cst.CSTTransformer):
    def __init__(self, remove: set[cst.CSTNode], mark: dict[cst.CSTNode, str], drop: set[cst.ImportAlias]) -> None:
        super().__init__()
        self.remove, self.mark, self.drop = remove, mark, drop
        # Updated statements to drop from their block, by id; holding them keeps their ids from being reused.
        self.gone: dict[int, cst.CSTNode] = {}

    def _drop(self, updated: cst.CSTNode) -> cst.CSTNode:
        """Drop a statement at the block level, where its blank lines and comments can go to the next one."""
        self.gone[id(updated)] = updated
        return updated

    def _without_gone(self, body: Sequence[cst.BaseStatement], *, first_in_block: bool) -> list[cst.BaseStatement]:
        kept: list[cst.BaseStatement] = []
        spacing: Sequence[cst.EmptyLine] = ()
        for statement in body:
            if id(statement) in self.gone:
                ours = [
                    line for line in statement.leading_lines if line.comment and line.comment.value.startswith(MARK)
                ]
                spacing = spacing or [line for line in statement.leading_lines if line not in ours]
                continue
            if spacing and not statement.leading_lines:
                statement = statement.with_changes(leading_lines=spacing)
            spacing = ()
            kept.append(statement)
        if first_in_block and kept:
            kept[0] = kept[0].with_changes(leading_lines=strip_blank(kept[0].leading_lines))
        return kept

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        return updated.with_changes(body=self._without_gone(updated.body, first_in_block=False))

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        return updated.with_changes(body=self._without_gone(updated.body, first_in_block=True))

    def leave_For(self, original: cst.For, updated: cst.For) -> cst.CSTNode:
        if original in self.remove:
            return self._drop(updated)
        if original in self.mark and not _marked(original):
            comment = cst.EmptyLine(comment=cst.Comment(self.mark[original]))
            return updated.with_changes(leading_lines=[*updated.leading_lines, comment])
        return updated

    def leave_Tuple(self, original: cst.Tuple, updated: cst.Tuple) -> cst.Tuple:
        return updated.with_changes(elements=self._kept(original, updated, tuple_=True))

    def leave_List(self, original: cst.List, updated: cst.List) -> cst.List:
        return updated.with_changes(elements=self._kept(original, updated, tuple_=False))

    def _kept(self, original: cst.Tuple | cst.List, updated: cst.Tuple | cst.List, *, tuple_: bool) -> list:
        """The elements not removed; a one-element tuple keeps its comma."""
        kept = [new for old, new in zip(original.elements, updated.elements, strict=True) if old not in self.remove]
        if len(kept) != len(updated.elements) and kept:
            comma = cst.Comma() if tuple_ and len(kept) == 1 else cst.MaybeSentinel.DEFAULT
            kept[-1] = kept[-1].with_changes(comma=comma)
        return kept

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.CSTNode:
        if original in self.remove:
            return self._drop(updated)
        if original in self.mark and not _marked(original):
            comment = cst.EmptyLine(comment=cst.Comment(self.mark[original]))
            return updated.with_changes(leading_lines=[*updated.leading_lines, comment])
        small = original.body[0] if len(original.body) == 1 else None
        if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
            kept = [alias for alias in small.names if alias not in self.drop]
            if not kept:
                return self._drop(updated)
            if len(kept) != len(small.names):
                kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                return updated.with_changes(body=[small.with_changes(names=kept)])
        return updated


def _marked(node: cst.SimpleStatementLine | cst.BaseCompoundStatement) -> bool:
    return any(line.comment is not None and line.comment.value.startswith(MARK) for line in node.leading_lines)


def plan_feature(root: Path, jobs: FeatureJobs, migration: Migration, texts: dict[Path, str], taken: set[str]) -> None:
    """Plan the worker module, the registration and what is left of jobs.py for one feature.

    ``taken`` holds the worker names and class names already in use; the new ones are added.
    """
    migration.kept += jobs.kept
    convertible = jobs.convertible
    jobs_path = (jobs.folder / "jobs.py").relative_to(root).as_posix()
    if not convertible:
        marked = _jobs_left(jobs, [])
        if marked != jobs.module.code:
            migration.plan.write(jobs_path, marked, edit=True)
        return
    names = _worker_names(jobs, convertible, taken)
    moved = {name for job in convertible if job.kind == "method" for name in (job.start, job.loop_method) if name}
    used = {"__init__", *moved, *(helper for job in convertible for helper in job.helpers)}
    copied = {name for job in convertible for name in job.class_attributes}
    stays = (
        jobs.job_list is not None
        or bool(jobs.imported_elsewhere)
        or len(convertible) < len(jobs.jobs)
        or bool(jobs.others)
        or not set(jobs.methods) <= used
        or _other_class_members(jobs.cls, copied)
    )
    module_path = _free_worker_module(jobs.folder)
    worker_module = _worker_module(jobs, convertible, names, imports_jobs=stays)
    migration.plan.write(module_path.relative_to(root).as_posix(), worker_module)
    register = jobs.folder / "register.py"
    import_inside = "from .register import" in worker_module or (stays and "from .register import" in jobs.module.code)
    texts[register] = _register_workers(
        texts.get(register, register.read_text()),
        [names[j.start][0] for j in convertible],
        module_name=module_path.stem,
        import_inside=import_inside or f".{jobs.name}.register import" in worker_module,
    )
    for job in convertible:
        notes = tuple(f"@{one_line(jobs.module, d.decorator)} now wraps each cycle" for d in job.decorators)
        migration.converted.append(
            Converted(
                jobs.name,
                job.start,
                names[job.start][0],
                jobs.module.code_for_node(job.interval),
                job.threaded,
                job.slept_first,
                names[job.start][1],
                notes,
                job.display,
            )
        )
    if not stays:
        migration.plan.delete(jobs_path, taken_over=True)
        return
    staying = _reachable(jobs, [job.start for job in jobs.jobs.values() if job.problem])
    has_start_methods = any(job.kind == "method" for job in jobs.jobs.values())
    for name in sorted(set(jobs.methods) - used - staying):
        if has_start_methods and not name.startswith("start_"):
            migration.kept.append(Kept(jobs.name, f"Jobs.{name}", "not part of a converted job; stays in jobs.py"))
    if jobs.job_list is not None and all(job.problem is None for job in jobs.jobs.values() if job.kind == "function"):
        migration.kept.append(
            Kept(
                jobs.name,
                "JOBS",
                "every job in it is a worker now: delete it, and the loop that starts it, when you like",
            )
        )
    migration.plan.write(jobs_path, _jobs_left(jobs, convertible), edit=True)


def _free_worker_module(folder: Path) -> Path:
    """worker.py, or worker_2.py (and so on) when the feature has one already: never overwrite."""
    path, number = folder / "worker.py", 1
    while path.exists():
        number += 1
        path = folder / f"worker_{number}.py"
    return path


def taken_names(package: Path) -> set[str]:
    """Worker names and worker class names the app uses already (a new worker must not reuse one)."""
    taken: set[str] = set()
    for path in package.glob("*/worker*.py"):
        text = path.read_text()
        taken |= {f"{path.parent.name}:{name}" for name in re.findall(r"^class (\w+)", text, re.MULTILINE)}
        taken |= set(re.findall(r"^\s+name\s*=\s*[\"']([^\"']+)[\"']", text, re.MULTILINE))
    return taken


def _worker_names(jobs: FeatureJobs, convertible: list[Job], taken: set[str]) -> dict[str, tuple[str, str]]:
    """start -> (class name, worker name), unique in the app: two ``sync`` jobs get ``sync-task``, ``sync-thread``."""
    in_module = {s.name.value for s in jobs.module.body if isinstance(s, cst.ClassDef | cst.FunctionDef)}
    short = [job.short_name for job in convertible]
    names = {}
    for job in convertible:
        candidates = [job.short_name] if short.count(job.short_name) == 1 else []
        candidates += [job.long_name, *(f"{job.long_name}_{n}" for n in range(2, 100))]
        for candidate in candidates:
            class_name, worker = f"{pascal(candidate)}Worker", f"{jobs.name}/{kebab(candidate)}"
            if worker not in taken and f"{jobs.name}:{class_name}" not in taken and class_name not in in_module:
                break
        taken |= {worker, f"{jobs.name}:{class_name}"}
        names[job.start] = (class_name, worker)
    return names


def _reachable(jobs: FeatureJobs, roots: list[str]) -> set[str]:
    """The methods ``roots`` use, directly or not."""
    seen: set[str] = set()
    while roots:
        name = roots.pop()
        if name in jobs.methods and name not in seen:
            seen.add(name)
            roots += self_attributes(jobs.methods[name])
    return seen


def _other_class_members(cls: cst.ClassDef | None, copied: set[str]) -> bool:
    """Whether the Jobs class holds more than methods and the class attributes copied into workers."""
    if cls is None:
        return False
    for member in without_docstring(cls.body.body):
        if isinstance(member, cst.FunctionDef):
            continue
        small = member.body[0] if isinstance(member, cst.SimpleStatementLine) and len(member.body) == 1 else None
        target = small.targets[0].target if isinstance(small, cst.Assign) and len(small.targets) == 1 else None
        target = small.target if isinstance(small, cst.AnnAssign) else target
        if not (isinstance(target, cst.Name) and target.value in copied):
            return True
    return False


def _jobs_left(jobs: FeatureJobs, converted: list[Job]) -> str:
    """jobs.py without the converted jobs, the others marked with the reason they stayed."""
    if jobs.problem and jobs.cls is None:
        return _mark_module(jobs)
    moved = {name for job in converted if job.kind == "method" for name in (job.start, job.loop_method) if name}
    functions = {job.start for job in converted if job.kind == "function"}
    reasons = {job.start: job.problem or jobs.problem for job in jobs.jobs.values() if job.problem or jobs.problem}
    body = []
    for statement in jobs.module.body:
        if statement is jobs.cls:
            members = []
            for member in jobs.cls.body.body:
                if isinstance(member, cst.FunctionDef) and member.name.value in moved:
                    continue
                if isinstance(member, cst.FunctionDef) and (reason := reasons.get(member.name.value)):
                    member = _with_mark(member, f"{MARK} {member.name.value}: {reason}")
                members.append(member)
            statement = jobs.cls.with_changes(body=jobs.cls.body.with_changes(body=members))
        elif isinstance(statement, cst.FunctionDef) and statement.name.value in functions:
            continue
        elif isinstance(statement, cst.FunctionDef) and (reason := reasons.get(statement.name.value)):
            statement = _with_mark(statement, f"{MARK} {statement.name.value}: {reason}")
        elif statement is jobs.job_list and functions:
            small = statement.body[0]
            elements = [
                e for e in small.value.elements if not m.matches(e.value, m.Name()) or e.value.value not in functions
            ]
            if elements:
                elements[-1] = elements[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            statement = statement.with_changes(
                body=[small.with_changes(value=small.value.with_changes(elements=elements))]
            )
        body.append(statement)
    body = _prune_imports(body, body, used_before=_used_names(jobs.module.body))
    if body and jobs.module.body and body[0] is not jobs.module.body[0]:
        body[0] = body[0].with_changes(leading_lines=jobs.module.body[0].leading_lines)
    return jobs.module.with_changes(body=body).code


def _mark_module(jobs: FeatureJobs) -> str:
    comment = f"{MARK} jobs.py: {jobs.problem}"
    if comment in jobs.module.code:
        return jobs.module.code
    header = [*jobs.module.header, cst.EmptyLine(comment=cst.Comment(comment))]
    return jobs.module.with_changes(header=header).code


def _with_mark(node: cst.FunctionDef, comment: str) -> cst.FunctionDef:
    if _marked(node):
        return node
    return node.with_changes(leading_lines=[*node.leading_lines, cst.EmptyLine(comment=cst.Comment(comment))])


def _module_definitions(module: cst.Module) -> dict[str, cst.BaseStatement]:
    """Names jobs.py defines at module level (constants, functions, classes), by name."""
    found: dict[str, cst.BaseStatement] = {}
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef | cst.ClassDef):
            found[statement.name.value] = statement
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else []
                targets += [small.target] if isinstance(small, cst.AnnAssign | cst.AugAssign) else []
                for target in targets:
                    for name in variable_names(target):
                        found[name] = statement
    return found


def _worker_module(
    jobs: FeatureJobs, convertible: list[Job], names: dict[str, tuple[str, str]], *, imports_jobs: bool
) -> str:
    """The worker module: one worker class per converted job, with what it needs from jobs.py.

    When jobs.py stays (other jobs still use it), its module-level names are imported from it, never
    copied, so state the jobs share (a dict, a lock) stays one object. When jobs.py goes, what it had
    around the jobs moves here.
    """
    converted_functions = {job.start for job in convertible if job.kind == "function"}
    header = [
        s
        for s in without_docstring(jobs.module.body)
        if s is not jobs.cls
        and s is not jobs.job_list
        and not (isinstance(s, cst.FunctionDef) and s.name.value in converted_functions)
    ]
    docstring = cst.parse_statement(
        f'"""Background workers of the {jobs.name} feature, started and stopped by the app.\n\n'
        f"Migrated from jobs.py by ``petrock migrate jobs``: each loop body is a worker's\n"
        f'``work`` and its sleep the ``poll_interval``.\n"""\n'
    )
    workers = [_worker_class(jobs, job, *names[job.start]) for job in convertible]
    if imports_jobs:
        imports = [s for s in header if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))]
        used = set().union(*(variable_names(w) for w in workers))
        shared = [name for name in _module_definitions(jobs.module) if name in used]
        header = imports
        if shared:
            header = [*header, cst.parse_statement(f"from .jobs import {', '.join(sorted(shared))}\n")]
    needs_asyncio = any(job.threaded for job in convertible)
    header = _prune_imports(header, [*header, *workers])
    header = _ensure_import(header, "asyncio", cst.parse_statement("import asyncio\n")) if needs_asyncio else header
    header = _ensure_import(header, "App", cst.parse_statement("from ..core import App\n"))
    body = [docstring, *header, *(w.with_changes(leading_lines=[BLANK, BLANK]) for w in workers)]
    if header:
        body[1] = body[1].with_changes(leading_lines=[BLANK])
    return jobs.module.with_changes(header=[], body=body).code


def _worker_class(jobs: FeatureJobs, job: Job, class_name: str, worker_name: str) -> cst.ClassDef:
    start_method = jobs.methods.get(job.start) if job.kind == "method" else None
    fallback = f"The {job.short_name.replace('_', ' ')} job."
    summary = (docstring_summary(start_method) or docstring_summary(job.loop) or fallback).replace('"""', "'''")
    cycle = "run_once" if job.threaded else "work"
    was = f"``Jobs.{job.start}``" if job.kind == "method" else f"``{job.start}`` in JOBS"
    comments = "".join(f"    {comment}\n" for comment in job.sleep_comments)
    attributes = "".join(
        f"    {name} = {jobs.module.code_for_node(jobs.class_attributes[name])}\n" for name in job.class_attributes
    )
    text = (
        f"class {class_name}:\n"
        f'    """{summary}\n\n'
        f"    Was {was}: its loop body is ``{cycle}``, its sleep the poll interval.\n"
        f'    """\n\n'
        f"{attributes}"
        f'    name = "{worker_name}"\n'
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
    body = list(job.body)
    if job.intro:
        body[0] = body[0].with_changes(leading_lines=[*job.intro, *body[0].leading_lines])
    if job.docstring is not None:
        body.insert(0, job.docstring.with_changes(leading_lines=()))
    helpers = [jobs.methods[name].with_changes(leading_lines=[BLANK]) for name in job.helpers]
    setup = list(job.setup)
    if job.kind == "function" and job.app_parameter:
        body = [_app_to_self(statement, job.app_parameter) for statement in body]
    if job.class_attributes:
        body, helpers, setup = (
            [_jobs_to_self(s, set(job.class_attributes)) for s in part] for part in (body, helpers, setup)
        )
    cycle_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == cycle)
    members[cycle_index] = _with_body(members[cycle_index], body, job.footer).with_changes(decorators=job.decorators)
    start_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == "start")
    if setup:
        setup = [setup[0].with_changes(leading_lines=strip_blank(setup[0].leading_lines)), *setup[1:]]
        members[start_index] = _with_body(members[start_index], setup, ())
    init = jobs.methods.get("__init__") if job.kind == "method" else None
    if init is None:
        init = cst.parse_statement("def __init__(self, app: App) -> None:\n    self.app = app\n")
    members.insert(start_index, init.with_changes(leading_lines=[BLANK]))
    members += helpers
    return cls.with_changes(body=cls.body.with_changes(body=members))


def _app_to_self(statement: cst.BaseStatement, parameter: str) -> cst.BaseStatement:
    """A module-level job's ``app`` parameter is the worker's ``self.app``."""
    not_variables = {id(a.attr) for a in m.findall(statement, m.Attribute())}
    not_variables |= {id(a.keyword) for a in m.findall(statement, m.Arg()) if a.keyword is not None}

    class AppToSelf(cst.CSTTransformer):
        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
            if original.value == parameter and id(original) not in not_variables:
                return cst.Attribute(value=cst.Name("self"), attr=cst.Name("app"))
            return updated

    return statement.visit(AppToSelf())


def _jobs_to_self(statement: cst.CSTNode, attributes: set[str]) -> cst.CSTNode:
    """``Jobs.TICK`` in moved code reads the worker's copy: ``self.TICK``."""
    pattern = m.Attribute(value=m.Name("Jobs"), attr=m.Name())
    return m.replace(
        statement,
        pattern,
        lambda node, _: node.with_changes(value=cst.Name("self")) if node.attr.value in attributes else node,
    )


def _with_body(
    function: cst.FunctionDef, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
) -> cst.FunctionDef:
    """``function`` with its placeholder body replaced by moved statements."""
    return function.with_changes(body=function.body.with_changes(body=list(body), footer=footer))


def _used_names(module: Sequence[cst.CSTNode]) -> set[str]:
    used: set[str] = set()
    for node in module:
        if not m.matches(node, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()])):
            used |= variable_names(node) | {a.value.value for a in m.findall(node, m.Attribute(value=m.Name()))}
    return used


def _prune_imports(
    header: list[cst.BaseStatement], module: Sequence[cst.CSTNode], *, used_before: set[str] | None = None
) -> list[cst.BaseStatement]:
    """Drop imported names nothing uses any more (``threading`` once the thread is gone); with
    ``used_before``, only those the code used before (an import kept for its side effects stays)."""
    used = _used_names(module)
    if used_before is not None:
        used |= {name for name in _imported_names(header) if name not in used_before}
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
            names = [alias for alias in small.names if bound_name(alias) in used]
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


def _imported_names(statements: Sequence[cst.BaseStatement]) -> set[str]:
    return {
        bound_name(alias)
        for s in statements
        for small in (s.body if isinstance(s, cst.SimpleStatementLine) else [])
        if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar)
        for alias in small.names
    }


def _ensure_import(header: list[cst.BaseStatement], name: str, statement: cst.BaseStatement) -> list[cst.BaseStatement]:
    if name in _imported_names(header):
        return header
    imports = [
        i for i, s in enumerate(header) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))
    ]
    position = imports[-1] + 1 if imports else 0
    relative = m.SimpleStatementLine(body=[m.ImportFrom(relative=[m.AtLeastN(n=1)])])
    if imports and m.matches(statement, relative) and not m.matches(header[imports[-1]], relative):
        statement = statement.with_changes(leading_lines=[BLANK])  # the app's own imports come in a group
    return [*header[:position], statement, *header[position:]]


def _register_workers(source: str, classes: list[str], *, module_name: str, import_inside: bool) -> str:
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
    importing = cst.parse_statement(f"from .{module_name} import {', '.join(classes)}\n")
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
