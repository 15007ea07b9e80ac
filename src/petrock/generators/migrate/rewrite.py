"""Writing the result: worker modules, registrations, what is left of ``jobs.py``, edited start-ups."""

from __future__ import annotations

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
    for key, sites in starts.sites.items():
        for _, statement in sites:
            if key in converted:
                remove.add(statement)
            elif key[0] in features and key[1] in features[key[0]].jobs:
                mark[statement] = f"{MARK} {key[0]} Jobs.{key[1]} (see {key[0]}/jobs.py)"
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

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        if original in self.remove:
            return cst.RemoveFromParent()
        if original in self.mark and not any(
            line.comment is not None and line.comment.value.startswith(MARK) for line in original.leading_lines
        ):
            comment = cst.EmptyLine(comment=cst.Comment(self.mark[original]))
            return updated.with_changes(leading_lines=[*updated.leading_lines, comment])
        small = original.body[0] if len(original.body) == 1 else None
        if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
            kept = [alias for alias in small.names if alias not in self.drop]
            if not kept:
                return cst.RemoveFromParent()
            if len(kept) != len(small.names):
                kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                return updated.with_changes(body=[small.with_changes(names=kept)])
        return updated


def plan_feature(root: Path, jobs: FeatureJobs, migration: Migration, texts: dict[Path, str]) -> None:
    migration.kept += jobs.kept
    convertible = jobs.convertible
    jobs_path = (jobs.folder / "jobs.py").relative_to(root).as_posix()
    if not convertible:
        marked = _jobs_left(jobs, set())
        if marked != jobs.module.code:
            migration.plan.write(jobs_path, marked, edit=True)
        return
    classes = _class_names(jobs, convertible)
    worker_module = _worker_module(jobs, convertible, classes)
    migration.plan.write((jobs.folder / "worker.py").relative_to(root).as_posix(), worker_module)
    register = jobs.folder / "register.py"
    texts[register] = _register_workers(
        texts.get(register, register.read_text()),
        [classes[j.start] for j in convertible],
        import_inside="from .register import" in worker_module or f".{jobs.name}.register import" in worker_module,
    )
    for job in convertible:
        migration.converted.append(
            Converted(
                jobs.name,
                job.start,
                classes[job.start],
                jobs.module.code_for_node(job.interval),
                job.threaded,
                job.slept_first,
                f"{jobs.name}/{kebab(job.short_name)}",
            )
        )
    moved = {name for job in convertible for name in (job.start, job.loop_method) if name}
    used = {"__init__", *moved, *(helper for job in convertible for helper in job.helpers)}
    if set(jobs.methods) <= used and not _other_class_members(jobs.cls):
        migration.plan.delete(jobs_path, taken_over=True)
        return
    staying = _reachable(jobs, [job.start for job in jobs.jobs.values() if job.problem])
    for name in sorted(set(jobs.methods) - used - staying):
        if not name.startswith("start_"):
            migration.kept.append(Kept(jobs.name, f"Jobs.{name}", "not part of a converted job; stays in jobs.py"))
    migration.plan.write(jobs_path, _jobs_left(jobs, moved), edit=True)


def _reachable(jobs: FeatureJobs, roots: list[str]) -> set[str]:
    """The methods ``roots`` use, directly or not."""
    seen: set[str] = set()
    while roots:
        name = roots.pop()
        if name in jobs.methods and name not in seen:
            seen.add(name)
            roots += self_attributes(jobs.methods[name])
    return seen


def _other_class_members(cls: cst.ClassDef) -> bool:
    members = without_docstring(cls.body.body)
    return any(not isinstance(member, cst.FunctionDef) for member in members)


def _jobs_left(jobs: FeatureJobs, moved: set[str]) -> str:
    """jobs.py without the converted methods, the others marked with the reason they stayed."""
    if jobs.cls is None:
        return _mark_module(jobs)
    reasons = {job.start: job.problem or jobs.problem for job in jobs.jobs.values() if job.problem or jobs.problem}
    body = []
    for member in jobs.cls.body.body:
        if isinstance(member, cst.FunctionDef) and member.name.value in moved:
            continue
        if isinstance(member, cst.FunctionDef) and (reason := reasons.get(member.name.value)):
            member = _with_mark(member, f"{MARK} {member.name.value}: {reason}")
        body.append(member)
    cls = jobs.cls.with_changes(body=jobs.cls.body.with_changes(body=body))
    return jobs.module.with_changes(body=[cls if s is jobs.cls else s for s in jobs.module.body]).code


def _mark_module(jobs: FeatureJobs) -> str:
    comment = f"{MARK} jobs.py: {jobs.problem}"
    if comment in jobs.module.code:
        return jobs.module.code
    header = [*jobs.module.header, cst.EmptyLine(comment=cst.Comment(comment))]
    return jobs.module.with_changes(header=header).code


def _with_mark(node: cst.FunctionDef, comment: str) -> cst.FunctionDef:
    if any(line.comment is not None and line.comment.value.startswith(MARK) for line in node.leading_lines):
        return node
    return node.with_changes(leading_lines=[*node.leading_lines, cst.EmptyLine(comment=cst.Comment(comment))])


def _class_names(jobs: FeatureJobs, convertible: list[Job]) -> dict[str, str]:
    taken = {s.name.value for s in jobs.module.body if isinstance(s, cst.ClassDef | cst.FunctionDef)}
    names = {}
    for job in convertible:
        name = f"{pascal(job.short_name)}Worker"
        while name in taken:
            name = f"{pascal(jobs.name)}{name}"
        taken.add(name)
        names[job.start] = name
    return names


def _worker_module(jobs: FeatureJobs, convertible: list[Job], classes: dict[str, str]) -> str:
    """worker.py: what jobs.py had around the Jobs class, then one worker class per converted job."""
    header = [s for s in without_docstring(jobs.module.body) if s is not jobs.cls]
    docstring = cst.parse_statement(
        f'"""Background workers of the {jobs.name} feature, started and stopped by the app.\n\n'
        f"Migrated from jobs.py by ``petrock migrate jobs``: each loop body is a worker's\n"
        f'``work`` and its sleep the ``poll_interval``.\n"""\n'
    )
    workers = [_worker_class(jobs, job, classes[job.start]) for job in convertible]
    needs_asyncio = any(job.threaded for job in convertible)
    header = _prune_imports(header, [*header, *workers])
    header = _ensure_import(header, "asyncio", cst.parse_statement("import asyncio\n")) if needs_asyncio else header
    header = _ensure_import(header, "App", cst.parse_statement("from ..core import App\n"))
    body = [docstring, *header, *(w.with_changes(leading_lines=[BLANK, BLANK]) for w in workers)]
    if header:
        body[1] = body[1].with_changes(leading_lines=[BLANK])
    return jobs.module.with_changes(header=[], body=body).code


def _worker_class(jobs: FeatureJobs, job: Job, class_name: str) -> cst.ClassDef:
    summary = (
        docstring_summary(jobs.methods[job.start]) or docstring_summary(job.loop) or f"The {job.short_name} job."
    ).replace('"""', "'''")
    cycle = "run_once" if job.threaded else "work"
    comments = "".join(f"    {comment}\n" for comment in job.sleep_comments)
    text = (
        f"class {class_name}:\n"
        f'    """{summary}\n\n'
        f"    Was ``Jobs.{job.start}``: its loop body is ``{cycle}``, its sleep the poll interval.\n"
        f'    """\n\n'
        f'    name = "{jobs.name}/{kebab(job.short_name)}"\n'
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
    cycle_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == cycle)
    members[cycle_index] = _with_body(members[cycle_index], job.body, job.footer)
    start_index = next(i for i, s in enumerate(members) if isinstance(s, cst.FunctionDef) and s.name.value == "start")
    if job.setup:
        setup = [job.setup[0].with_changes(leading_lines=strip_blank(job.setup[0].leading_lines)), *job.setup[1:]]
        members[start_index] = _with_body(members[start_index], setup, ())
    init = jobs.methods["__init__"].with_changes(leading_lines=[BLANK])
    members.insert(start_index, init)
    members += [jobs.methods[name].with_changes(leading_lines=[BLANK]) for name in job.helpers]
    return cls.with_changes(body=cls.body.with_changes(body=members))


def _with_body(
    function: cst.FunctionDef, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
) -> cst.FunctionDef:
    """``function`` with its placeholder body replaced by moved statements."""
    return function.with_changes(body=function.body.with_changes(body=list(body), footer=footer))


def _prune_imports(header: list[cst.BaseStatement], module: Sequence[cst.CSTNode]) -> list[cst.BaseStatement]:
    """Drop imported names nothing uses any more (``threading`` once the thread is gone)."""
    used: set[str] = set()
    for node in module:
        if not m.matches(node, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()])):
            used |= variable_names(node) | {a.value.value for a in m.findall(node, m.Attribute(value=m.Name()))}
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


def _ensure_import(header: list[cst.BaseStatement], name: str, statement: cst.BaseStatement) -> list[cst.BaseStatement]:
    bound = {
        bound_name(alias)
        for s in header
        for small in (s.body if isinstance(s, cst.SimpleStatementLine) else [])
        if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar)
        for alias in small.names
    }
    if name in bound:
        return header
    imports = [
        i for i, s in enumerate(header) if m.matches(s, m.SimpleStatementLine(body=[m.Import() | m.ImportFrom()]))
    ]
    position = imports[-1] + 1 if imports else 0
    return [*header[:position], statement, *header[position:]]


def _register_workers(source: str, classes: list[str], *, import_inside: bool) -> str:
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
    importing = cst.parse_statement(f"from .worker import {', '.join(classes)}\n")
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
