"""Reading a job's loop: one pass of it becomes a worker's ``work``, its sleep the poll interval.

A loop reads when its function is some set-up, then one ``while`` whose body sleeps
once at its top level (at the start, the end, or the middle), then nothing. The
set-up's local variables are the worker's state (attributes), a ``break`` ends the
job for good (the worker then idles), and the ``while`` condition is checked before
each pass. Anything else is explained in ``problem``, and the job is hosted instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .syntax import DOCSTRING, assigned_names, bound_by, callee, findall, strip_blank, variable_names, without_docstring

ENDLESS = m.Name("True") | m.Integer("1")
EVENT_WAIT = m.Call(
    func=m.Attribute(attr=m.Name("wait")), args=[m.Arg(keyword=None) | m.Arg(keyword=m.Name("timeout"))]
)


@dataclass(eq=False)
class Loop:
    """A loop function, read: what runs once, what runs each pass, and how long it waits between passes."""

    function: cst.FunctionDef
    threaded: bool  # blocking code: run in a thread (``asyncio.to_thread``), as before
    setup: list[cst.BaseStatement] = field(default_factory=list)  # before the loop: runs once, in ``start``
    body: list[cst.BaseStatement] = field(default_factory=list)  # one pass, without the sleep
    before_sleep: list[cst.BaseStatement] = field(default_factory=list)  # a sleep in the middle: the first half
    interval: cst.BaseExpression | None = None
    condition: cst.BaseExpression | None = None  # the loop goes on while this holds (None: forever)
    slept_first: bool = False
    sleep_index: int = -1  # where the sleep was in a pass (0: first)
    first_interval: cst.BaseExpression | None = None  # the interval lives in a variable: its first value
    early_sleeps: bool = False  # a pass that ends early sleeps a delay of its own: the worker waits it out
    exits: bool = False  # a `break` or `return` ends it for good
    state: list[str] = field(default_factory=list)  # local variables kept between passes: attributes now
    intro: list[cst.EmptyLine] = field(default_factory=list)  # comments above and on the `while`
    sleep_comments: list[str] = field(default_factory=list)
    footer: Sequence[cst.EmptyLine] = ()
    docstring: cst.BaseStatement | None = None
    decorators: Sequence[cst.Decorator] = ()
    problem: str | None = None


def read_loop(function: cst.FunctionDef, *, threaded: bool) -> Loop:
    """Read ``function`` as a loop; ``threaded`` when it ran in a thread (its sleep is ``time.sleep``)."""
    loop = Loop(function, threaded)
    loop.docstring = (
        function.body.body[0] if function.body.body and m.matches(function.body.body[0], DOCSTRING) else None
    )
    loop.decorators = [d for d in function.decorators if not m.matches(d.decorator, m.Name("staticmethod"))]
    statements = list(without_docstring(function.body.body))
    whiles = [i for i, s in enumerate(statements) if isinstance(s, cst.While)]
    if len(whiles) != 1:
        loop.problem = "its function is not one `while` loop (with set-up before it)"
        return loop
    index = whiles[0]
    loop.setup, after = statements[:index], statements[index + 1 :]
    statement: cst.While = statements[index]  # type: ignore[assignment]
    if after:
        loop.problem = "code runs after its loop ends"
        return loop
    if statement.orelse is not None:
        loop.problem = "its loop has an `else:`"
        return loop
    if findall(function, m.Global() | m.Nonlocal()):
        loop.problem = "it assigns names outside itself (`global` or `nonlocal`)"
        return loop
    if findall(function, m.Yield()):
        loop.problem = "it is a generator"
        return loop
    if any(findall(s, m.FunctionDef() | m.ClassDef()) for s in loop.setup):
        loop.problem = "its set-up defines functions or classes"
        return loop
    body = list(statement.body.body)
    _read_condition(loop, statement.test)
    if loop.problem or not _read_sleep(loop, body):
        return loop
    exits = _LoopExits()
    for part in body:
        part.visit(exits)
    if exits.problem:
        loop.problem = exits.problem
        return loop
    loop.exits = exits.exits
    if loop.before_sleep and (exits.exits or exits.continues):
        loop.problem = "it sleeps in the middle of its loop and can skip the sleep (`continue` or `break`)"
        return loop
    state = _state(loop, statement)
    if loop.problem:
        return loop
    loop.state = state
    loop.intro = [line for line in statement.leading_lines if line.comment is not None]
    if statement.body.header.comment is not None:
        loop.intro.append(cst.EmptyLine(comment=statement.body.header.comment))
    loop.footer = statement.body.footer
    return loop


def read_cycle(
    function: cst.FunctionDef,
    *,
    threaded: bool,
    interval: cst.BaseExpression | None,
    rearms: list[cst.BaseStatement],
    handles: set[str],
) -> Loop:
    """Read a function that runs once per cycle (a timer or callback that re-arms itself, a scheduler's
    job): its body, without the lines that re-arm it, is one pass; the re-arm's delay is the interval."""
    loop = Loop(function, threaded)
    statements = list(without_docstring(function.body.body))
    loop.docstring = (
        function.body.body[0] if function.body.body and m.matches(function.body.body[0], DOCSTRING) else None
    )
    loop.decorators = [d for d in function.decorators if not m.matches(d.decorator, m.Name("staticmethod"))]
    if interval is None:
        loop.problem = "petrock cannot tell how often it runs"
        return loop
    loop.interval = interval
    loop.slept_first = True  # a timer (or a scheduler) waits its interval before the first run
    globals_ = [s for s in statements if m.matches(s, m.SimpleStatementLine(body=[m.Global()]))]
    declared = {n.name.value for s in globals_ for n in s.body[0].names}  # type: ignore[attr-defined]
    kept = [s for s in statements if s not in rearms and s not in globals_]
    if declared - handles or any(variable_names(s) & handles for s in kept):
        loop.problem = (
            "it assigns names outside itself (`global` or `nonlocal`)"
            if declared - handles
            else ("it uses its own timer handle besides re-arming it")
        )
        return loop
    if findall(function, m.Yield() | m.Nonlocal()):
        loop.problem = "it is a generator" if findall(function, m.Yield()) else "it assigns names outside itself"
        return loop
    if any(findall(s, m.Return(value=m.DoNotCare())) for s in kept):
        loop.problem = "it returns a value"
        return loop
    loop.body = _moved_cycle(kept)
    return loop


def _moved_cycle(statements: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """A cycle function's own statements: a bare ``return`` still ends just this pass."""
    if not statements:
        return [cst.SimpleStatementLine([cst.Pass()])]
    first = statements[0].with_changes(leading_lines=strip_blank(statements[0].leading_lines))
    return [first, *statements[1:]]


def _read_condition(loop: Loop, test: cst.BaseExpression) -> None:
    """``while True``, ``while not stop.wait(T)`` (sleeps first), or any condition checked each pass."""
    if m.matches(test, ENDLESS):
        return
    if loop.threaded and m.matches(test, m.UnaryOperation(operator=m.Not(), expression=EVENT_WAIT)):
        event = test.expression.func.value  # type: ignore[attr-defined]
        loop.interval = test.expression.args[0].value  # type: ignore[attr-defined]
        loop.slept_first = True
        loop.condition = cst.UnaryOperation(
            cst.Not(), cst.Call(func=cst.Attribute(value=event, attr=cst.Name("is_set")))
        )
        return
    if findall(test, m.Await() | m.NamedExpr()) or any(
        callee(call) not in ("is_set", "get", "is_alive")
        for call in findall(test, m.Call())  # type: ignore[arg-type]
    ):
        loop.problem = "its loop condition does more than read a flag or an event"
        return
    loop.condition = test


def _read_sleep(loop: Loop, body: list[cst.BaseStatement]) -> bool:
    """Find the one sleep of each pass; False (with ``problem``) when there is not exactly one."""
    if loop.interval is not None:  # `while not stop.wait(T):` sleeps in its condition
        if any(_sleep_interval(s, loop.threaded) is not None for s in body):
            loop.problem = "it sleeps in its condition and in its body"
            return False
        loop.body = _moved(body)
        return True
    sleeps = [i for i, statement in enumerate(body) if _sleep_interval(statement, loop.threaded) is not None]
    nested = [s for s in body if s not in [body[i] for i in sleeps] and _sleeps_inside(s, loop.threaded)]
    if nested and sleeps in ([], [len(body) - 1]):
        return _read_early_sleeps(loop, body, bool(sleeps))
    if len(sleeps) != 1 or nested or len(body) == 1:
        loop.problem = (
            "it sleeps more than once in a pass, or inside an `if` (an interval that changes?)"
            if len(sleeps) > 1 or nested
            else "it has no sleep between its passes"
        )
        return False
    index = sleeps[0]
    sleep = body[index]
    loop.interval = _sleep_interval(sleep, loop.threaded)
    loop.sleep_comments = [line.comment.value for line in sleep.leading_lines if line.comment is not None]
    if isinstance(sleep, cst.SimpleStatementLine) and sleep.trailing_whitespace.comment is not None:
        loop.sleep_comments.append(sleep.trailing_whitespace.comment.value)
    loop.slept_first = index == 0
    if 0 < index < len(body) - 1:
        loop.before_sleep, loop.body = _moved(body[:index]), _moved(body[index + 1 :])
    else:
        loop.body = _moved(body[:index] + body[index + 1 :])
    loop.sleep_index = index
    return True


def _read_early_sleeps(loop: Loop, body: list[cst.BaseStatement], ends_asleep: bool) -> bool:
    """A pass that can end early and sleep a delay of its own (a backoff: ``sleep(delay); continue`` in an
    ``except``), or whose last statement sleeps in each branch of an ``if``. Each such sleep sets when the
    next pass is due; the worker polls at the interval of its last sleep (else at the shortest fixed one)."""
    early = _tail_sleeps(body[:-1] if ends_asleep else body, loop.threaded, at_end=not ends_asleep)
    if early is None:
        loop.problem = "it sleeps more than once in a pass, or inside an `if`, and goes on after that sleep"
        return False
    local = {name for statement in loop.function.body.body for name in assigned_names(statement)}
    if ends_asleep:
        loop.interval = _sleep_interval(body[-1], loop.threaded)
    else:
        fixed: list[cst.BaseExpression] = []
        for statement in early:
            interval = _sleep_interval(statement, loop.threaded)
            fixed_delay = interval is not None and not variable_names(interval) & local
            if fixed_delay and not any(interval.deep_equals(f) for f in fixed):  # type: ignore[union-attr]
                fixed.append(interval)  # type: ignore[arg-type]
        if not fixed:
            loop.problem = "each of its sleeps waits a delay computed in the pass (how often to poll?)"
            return False
        loop.interval = fixed[0] if len(fixed) == 1 else cst.Call(cst.Name("min"), [cst.Arg(f) for f in fixed])
    due = _DueInstead(set(early), loop.threaded)
    loop.body = _moved([statement.visit(due) for statement in (body[:-1] if ends_asleep else body)])  # type: ignore[misc]
    loop.early_sleeps = True
    loop.sleep_index = len(body) - 1
    return True


def _tail_sleeps(
    statements: Sequence[cst.BaseStatement], threaded: bool, *, at_end: bool
) -> list[cst.BaseStatement] | None:
    """The sleeps after which nothing more of the pass runs (``continue`` follows, or the pass ends);
    None when a sleep has more of the pass after it."""
    found: list[cst.BaseStatement] = []
    for index, statement in enumerate(statements):
        last = index == len(statements) - 1
        if _sleep_interval(statement, threaded) is not None:
            then = statements[index + 1] if not last else None
            continues = then is not None and m.matches(then, m.SimpleStatementLine(body=[m.Continue()]))
            if not ((last and at_end) or continues):
                return None
            found.append(statement)
            continue
        if isinstance(statement, cst.For | cst.While | cst.FunctionDef | cst.ClassDef):
            continue  # a sleep in an inner loop paces that loop, not the job
        blocks: list[tuple[Sequence[cst.BaseStatement], bool]] = []
        ends = last and at_end
        if isinstance(statement, cst.If):
            branch: cst.If | cst.Else | None = statement
            while branch is not None:
                blocks.append((branch.body.body, ends))  # type: ignore[arg-type]
                branch = branch.orelse if isinstance(branch, cst.If) else None  # type: ignore[assignment]
        elif isinstance(statement, cst.Try):
            clean = statement.finalbody is None
            blocks.append((statement.body.body, ends and clean and statement.orelse is None))  # type: ignore[arg-type]
            blocks += [(h.body.body, ends and clean) for h in statement.handlers]  # type: ignore[misc]
            if statement.orelse is not None:
                blocks.append((statement.orelse.body.body, ends and clean))  # type: ignore[arg-type]
            if statement.finalbody is not None:
                blocks.append((statement.finalbody.body.body, False))  # type: ignore[arg-type]
        elif isinstance(statement, cst.With):
            blocks.append((statement.body.body, ends))  # type: ignore[arg-type]
        for block, block_ends in blocks:
            inner = _tail_sleeps(block, threaded, at_end=block_ends)
            if inner is None:
                return None
            found += inner
    return found


class _DueInstead(cst.CSTTransformer):
    """An early sleep becomes ``self.due = time.monotonic() + delay``: the next pass waits until then."""

    def __init__(self, sleeps: set[cst.BaseStatement], threaded: bool) -> None:
        super().__init__()
        self.sleeps = sleeps
        self.threaded = threaded

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        if original_node not in self.sleeps:
            return updated_node
        delay = _sleep_interval(original_node, self.threaded)  # type: ignore[arg-type]
        assert delay is not None
        due = cst.parse_statement(f"self.due = time.monotonic() + {cst.Module([]).code_for_node(delay)}\n")
        return due.with_changes(leading_lines=original_node.leading_lines)  # type: ignore[attr-defined]


def _moved(statements: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    if not statements:
        return []
    first = statements[0].with_changes(leading_lines=strip_blank(statements[0].leading_lines))
    moved: list[cst.BaseStatement] = []
    for part in [first, *statements[1:]]:
        # Exits first: a `return` that `continue` becomes must not end the job.
        ended = cst.Module([part]).visit(ExitsToFinish()).visit(_ContinueToReturn())
        moved += ended.body
    return moved


def _sleeps_inside(statement: cst.BaseStatement, threaded: bool) -> bool:
    """A sleep nested in an ``if`` or ``try`` of the pass: the wait between passes is not one sleep."""
    if isinstance(statement, cst.For | cst.While):
        return False  # a sleep inside an inner loop paces that loop, not the job
    for inner in findall(statement, m.SimpleStatementLine() | m.Try()):
        if inner is not statement and _sleep_interval(inner, threaded) is not None:  # type: ignore[arg-type]
            return True
    return False


def _state(loop: Loop, statement: cst.While) -> list[str]:
    """Local variables the set-up assigns and the loop reads: kept between passes, so attributes now."""
    assigned = {name for part in loop.setup for name in assigned_names(part)}
    for part in loop.setup:
        if findall(part, m.Return()):
            loop.problem = "its set-up can return before the loop"
            return []
    used = variable_names(statement)
    state = sorted(assigned & used)
    interval_names = variable_names(loop.interval) if loop.interval is not None else set()
    changing = assigned_names(statement)
    if interval_names & (changing | assigned):
        first = _first_value(loop.setup, loop.interval)
        if first is None or variable_names(first) & (changing | assigned):
            loop.problem = (
                "its interval changes from pass to pass"
                if interval_names & changing
                else "its interval is computed when it starts"
            )
            return []
        loop.first_interval = first  # an interval kept in a variable: waited out at the top of each pass
    if "self" in interval_names and not m.matches(loop.interval, m.Attribute(value=m.Name("self"))):
        loop.problem = "its interval is computed from the object's state"
        return []
    if (changing - assigned) & _read_before_assigned(statement):
        loop.problem = "it keeps state between passes in variables it first sets inside the loop"
        return []
    return state


def _first_value(setup: list[cst.BaseStatement], interval: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """The value a variable interval starts with: ``delay = INTERVAL`` before the loop, assigned once."""
    if not isinstance(interval, cst.Name):
        return None
    values = [
        small.value
        for part in setup
        if isinstance(part, cst.SimpleStatementLine)
        for small in part.body
        if isinstance(small, cst.Assign | cst.AnnAssign) and interval.value in assigned_names(part)
    ]
    others = [
        part
        for part in setup
        if interval.value in assigned_names(part) and not isinstance(part, cst.SimpleStatementLine)
    ]
    return values[0] if len(values) == 1 and not others and values[0] is not None else None


def _read_before_assigned(statement: cst.While) -> set[str]:
    """Names a pass reads before it assigns them (so their value came from the pass before)."""
    seen: set[str] = set()
    early: set[str] = set()
    for part in statement.body.body:
        scoped = {n for c in findall(part, m.CompFor()) for n in bound_by(c.target)}  # type: ignore[attr-defined]
        scoped |= {p.name.value for f in findall(part, m.Lambda()) for p in f.params.params}  # type: ignore[attr-defined]
        early |= variable_names(part) - assigned_names(part) - seen - scoped
        seen |= assigned_names(part)
    return early


def _sleep_interval(statement: cst.BaseStatement, threaded: bool) -> cst.BaseExpression | None:
    """``E`` of a statement that only waits ``E`` seconds: ``await asyncio.sleep(E)``, ``time.sleep(E)``
    or ``stop.wait(E)`` in a thread, ``try: await asyncio.wait_for(event.wait(), timeout=E) except
    TimeoutError: pass``; else None."""
    if not threaded and isinstance(statement, cst.Try):
        return _wait_for_timeout(statement)
    if not m.matches(statement, m.SimpleStatementLine(body=[m.Expr()])):
        return None
    call = statement.body[0].value  # type: ignore[attr-defined]
    if not threaded:
        if not isinstance(call, cst.Await):
            return None
        call = call.expression
    if not isinstance(call, cst.Call) or len(call.args) != 1:
        return None
    if threaded and m.matches(call, EVENT_WAIT):
        return call.args[0].value
    if callee(call) != "sleep" or call.args[0].keyword:
        return None
    owner = call.func.value if isinstance(call.func, cst.Attribute) else None
    if owner is not None and not m.matches(owner, m.Name("time" if threaded else "asyncio")):
        return None
    return call.args[0].value


def _wait_for_timeout(statement: cst.Try) -> cst.BaseExpression | None:
    timeout_error = m.Name("TimeoutError") | m.Attribute(value=m.Name("asyncio"), attr=m.Name("TimeoutError"))
    waits = m.SimpleStatementLine(
        body=[m.Expr(m.Await(m.Call(func=m.Name("wait_for") | m.Attribute(attr=m.Name("wait_for")))))]
    )
    handler = m.ExceptHandler(
        type=timeout_error, name=None, body=m.IndentedBlock(body=[m.SimpleStatementLine(body=[m.Pass()])])
    )
    if statement.orelse or statement.finalbody or len(statement.handlers) != 1 or len(statement.body.body) != 1:
        return None
    if not m.matches(statement.body.body[0], waits) or not m.matches(statement.handlers[0], handler):
        return None
    call = statement.body.body[0].body[0].value.expression  # type: ignore[attr-defined]
    if not m.matches(call.args[0].value, m.Call(func=m.Attribute(attr=m.Name("wait")), args=[])):
        return None
    timeout = [a.value for a in call.args[1:] if a.keyword is None or a.keyword.value == "timeout"]
    return timeout[0] if len(timeout) == 1 else None


class _LoopDepth:
    """Tracks how deep a visit is in loops of the moved body: only a loop's body counts, not its
    ``else:`` (a ``continue`` there belongs to the outer ``while``), and a nested function or
    class is a scope of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.loops = 0
        self.scopes = 0

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if isinstance(node, cst.For | cst.While) and attribute == "body":
            self.loops += 1
        super().on_visit_attribute(node, attribute)  # type: ignore[misc]

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        if isinstance(original_node, cst.For | cst.While) and attribute == "body":
            self.loops -= 1
        super().on_leave_attribute(original_node, attribute)  # type: ignore[misc]

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes += 1

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scopes += 1

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self.scopes += 1

    def on_leave(self, original_node: cst.CSTNode, *args: object) -> object:
        if isinstance(original_node, cst.FunctionDef | cst.ClassDef | cst.Lambda):
            self.scopes -= 1
        return super().on_leave(original_node, *args)  # type: ignore[misc]

    @property
    def at_loop_level(self) -> bool:
        return not self.loops and not self.scopes


class _LoopExits(_LoopDepth, cst.CSTVisitor):
    """Finds what ends a legacy loop for good (``break``, ``return``) and what skips to the next pass."""

    def __init__(self) -> None:
        super().__init__()
        self.problem: str | None = None
        self.exits = False
        self.continues = False

    def visit_Break(self, node: cst.Break) -> None:
        if self.at_loop_level:
            self.exits = True

    def visit_Continue(self, node: cst.Continue) -> None:
        if self.at_loop_level:
            self.continues = True

    def visit_Return(self, node: cst.Return) -> None:
        if not self.scopes:
            if node.value is not None:
                self.problem = "it returns a value from its loop"
            self.exits = True


class _ContinueToReturn(_LoopDepth, cst.CSTTransformer):
    """``continue`` at loop level ends the pass: in ``work`` that is ``return``."""

    def leave_Continue(self, original: cst.Continue, updated: cst.Continue) -> cst.Continue | cst.Return:
        return cst.Return(semicolon=updated.semicolon) if self.at_loop_level else updated


class ExitsToFinish(_LoopDepth, cst.CSTTransformer):
    """``break`` (or ``return``) at loop level ends the job for good: ``self.finished = True``, then ``return``."""

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        if len(updated.body) != 1 or not self._ends(updated.body[0]):
            return updated
        ending = updated.body[0] if isinstance(updated.body[0], cst.Return) else cst.Return()
        return cst.FlattenSentinel(
            [
                cst.SimpleStatementLine([_FINISHED], leading_lines=updated.leading_lines),
                cst.SimpleStatementLine([ending], trailing_whitespace=updated.trailing_whitespace),
            ]
        )

    def leave_SimpleStatementSuite(
        self, original: cst.SimpleStatementSuite, updated: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        """``if done: break`` on one line stays on one line."""
        body: list[cst.BaseSmallStatement] = []
        for small in updated.body:
            if self._ends(small):
                body += [_FINISHED, small if isinstance(small, cst.Return) else cst.Return()]
            else:
                body.append(small)
        return updated.with_changes(body=body)

    def _ends(self, small: cst.BaseSmallStatement) -> bool:
        if isinstance(small, cst.Break):
            return self.at_loop_level
        return isinstance(small, cst.Return) and not self.scopes


_FINISHED = cst.Assign(
    targets=[cst.AssignTarget(cst.Attribute(value=cst.Name("self"), attr=cst.Name("finished")))],
    value=cst.Name("True"),
)
