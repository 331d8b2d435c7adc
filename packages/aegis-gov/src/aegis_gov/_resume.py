"""Resuming a run: which earlier results are kept, which tasks run again, and why.

The rule is make's (and Bazel's): a task that finished DONE is kept when its own definition
(description, agent, dependencies, the agent's system prompt, model and tools) is unchanged
and everything upstream of it is kept. A task downstream of one that runs again waits for it,
and is still kept if the new upstream output comes out the same as before (its prompt digest
matches), the way Bazel cuts a rebuild short when an input's content did not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs
from aegis_graph import Task, TaskState

from aegis_gov._budget import Spent
from aegis_gov._errors import IncompatibleResumeError
from aegis_gov._prompt import build_prompt
from aegis_gov._results import RunResult, TaskResult

__all__ = [
    "ResumePlan",
    "agent_parts",
    "definition",
    "digest",
    "fingerprint",
    "plan_resume",
    "task_parts",
]

_PARTS = {
    "description": "its description changed",
    "agent": "it is given to another agent",
    "depends_on": "its dependencies changed",
    "system_prompt": "its agent's system prompt changed",
    "model": "its agent's model or endpoint changed",
    "tools": "its agent's tools changed",
    "output": "its agent's output settings changed",
}


def digest(text: str) -> str:
    """A short, stable digest of *text* (16 hex digits of BLAKE2b)."""
    import hashlib  # noqa: PLC0415  # hashlib (OpenSSL) loads with the first run, not on import

    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def fingerprint(task: Task) -> str:
    """A short digest of what a task asks for: its description, agent and dependencies.

    Kept for results written before per-part definitions (``TaskResult.definition``).
    """
    return digest(repr((task.description, task.agent, task.depends_on)))


def agent_parts(
    agent: str,
    *,
    system_prompt: str = "",
    model: str = "",
    tools: Iterable[object] = (),
    output: str = "",
) -> dict[str, str]:
    """Digests of the parts of a task's definition that come from its agent."""
    return {
        "agent": digest(agent),
        "system_prompt": digest(system_prompt),
        "model": digest(model),
        "tools": digest(repr(tuple(tools))),
        "output": digest(output),
    }


def task_parts(task: Task, agent: Mapping[str, str]) -> dict[str, str]:
    """A task's whole definition digests: its own parts and its agent's (:func:`agent_parts`)."""
    return {
        "description": digest(task.description),
        "depends_on": digest(repr(tuple(task.depends_on))),
        **agent,
    }


def definition(
    task: Task,
    *,
    system_prompt: str = "",
    model: str = "",
    tools: Iterable[object] = (),
    output: str = "",
) -> dict[str, str]:
    """Digests of each part of a task's definition, by part name (see :class:`ResumePlan`)."""
    parts = agent_parts(
        task.agent or "", system_prompt=system_prompt, model=model, tools=tools, output=output
    )
    return task_parts(task, parts)


@attrs.frozen
class ResumePlan:
    """What resuming an earlier result does, decided before any call.

    Attributes:
        kept: DONE tasks kept as they are, in declaration order.
        rerun: every other task of the new graph, with why it runs (again).
        dropped: tasks of the earlier run that the new graph no longer has.
        waiting: tasks in ``rerun`` only because something upstream runs again; each is still
            kept, without a call, if its upstream outputs come out unchanged.
        previous: the earlier results a waiting task may be kept from.
        source: the stored run the earlier results come from (None: not from a store).
        definitions: each task's definition digests the plan was made for.
        spent: what the earlier run spent (None: it recorded nothing): a run that resumes
            it with a budget goes on from there, so ``--resume`` is no fresh budget.
    """

    kept: tuple[str, ...] = ()
    rerun: Mapping[str, str] = attrs.field(factory=dict)
    dropped: tuple[str, ...] = ()
    waiting: frozenset[str] = frozenset()
    previous: Mapping[str, TaskResult] = attrs.field(factory=dict, repr=False)
    source: str | None = None
    definitions: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, repr=False)
    spent: Spent | None = None

    def explain(self) -> list[str]:
        """The plan in words, one line per decision (what ``aegis run --resume`` prints)."""
        lines = [f"keep {task_id}: unchanged" for task_id in self.kept]
        lines += [f"run  {task_id}: {why}" for task_id, why in self.rerun.items()]
        lines += [f"drop {task_id}: no longer in the pipeline" for task_id in self.dropped]
        spent = self.spent
        if spent is not None and (spent.requests or spent.tokens):
            cost = "" if spent.cost_usd is None else f", ${spent.cost_usd:.4f}"
            lines.append(
                f"spent so far: {spent.requests} request(s), {spent.tokens} token(s){cost} "
                "(a budget goes on from there)"
            )
        return lines

    def check_covers(
        self, tasks: Sequence[Task], definitions: Mapping[str, Mapping[str, str]]
    ) -> None:
        """Raise ``ValueError`` unless this plan was made for exactly these tasks, as defined now.

        A task edited after the plan was made would otherwise keep its stale result.
        """
        planned = {*self.kept, *self.rerun}
        given = {task.id for task in tasks}
        differ = sorted(given ^ planned) or sorted(
            task_id
            for task_id in given
            if dict(self.definitions.get(task_id, {})) != dict(definitions.get(task_id, {}))
        )
        if differ:
            raise ValueError(
                f"this resume plan was made for other tasks (it differs on "
                f"{', '.join(map(repr, differ[:3]))}); make it with OpenMultiAgent.plan_resume "
                "for the tasks being run"
            )

    def kept_results(self) -> dict[str, TaskResult]:
        """The results kept as they are, by task id."""
        return {task_id: self.previous[task_id] for task_id in self.kept}


def _changed_parts(task: Task, result: TaskResult, parts: Mapping[str, str]) -> list[str]:
    """Why *result* no longer fits *task* (empty when it still does)."""
    if result.definition:
        return [why for part, why in _PARTS.items() if result.definition.get(part) != parts[part]]
    if result.fingerprint is not None and result.fingerprint != fingerprint(task):
        return ["its description, agent or dependencies changed"]
    return []


def plan_resume(
    tasks: Sequence[Task],
    previous: RunResult,
    definitions: Mapping[str, Mapping[str, str]],
) -> ResumePlan:
    """Decide, per task, whether *previous*'s result is kept (see the module docstring).

    ``definitions`` maps each task id to :func:`definition`'s digests for the new run.

    Raises:
        IncompatibleResumeError: *previous* records a DONE task with no output, which
            nothing downstream could be given; the message names every such task.
    """
    broken = [
        task_id
        for task_id, result in previous.items()
        if result.status is TaskState.DONE and result.output is None
    ]
    if broken:
        raise IncompatibleResumeError(
            [f"task {task_id!r} is recorded DONE but has no output" for task_id in broken]
        )
    by_id = {task.id: task for task in tasks}
    rerun: dict[str, str] = {}
    waiting: set[str] = set()
    kept: list[str] = []
    for task in _upstream_first(tasks):
        result = previous.get(task.id)
        if result is None:
            unfinished = task.id in previous.unfinished
            rerun[task.id] = "it had not finished" if unfinished else "new task"
            continue
        if result.status is not TaskState.DONE:
            rerun[task.id] = _not_done(result)
            continue
        changed = _changed_parts(task, result, definitions[task.id])
        if changed:
            rerun[task.id] = "; ".join(changed)
            continue
        again = [dep for dep in task.depends_on if dep in rerun]
        if not again and not _same_inputs(task, result, previous):
            rerun[task.id] = (
                "the outputs it was given differ from the ones recorded now "
                "(an upstream result was edited)"
            )
            continue
        if again:
            rerun[task.id] = (
                f"upstream {', '.join(map(repr, again))} runs again "
                "(kept without a call if its output comes out the same)"
            )
            waiting.add(task.id)
            continue
        kept.append(task.id)
    order = {task.id: i for i, task in enumerate(tasks)}
    return ResumePlan(
        kept=tuple(sorted(kept, key=order.__getitem__)),
        rerun={task_id: rerun[task_id] for task_id in sorted(rerun, key=order.__getitem__)},
        dropped=tuple(task_id for task_id in previous if task_id not in by_id),
        waiting=frozenset(waiting),
        previous=dict(previous.items()),
        source=previous.run_id,
        definitions=definitions,
        spent=spent_before(previous),
    )


def spent_before(previous: RunResult) -> Spent | None:
    """What *previous* spent: as it recorded, else (a run killed before it could) its results.

    From results, tokens are their usage and requests their attempts; cost is not known.
    """
    if previous.spent is not None:
        return previous.spent
    results = list(previous.values())
    if not results:
        return None
    return Spent(
        tokens=sum(r.usage.input_tokens + r.usage.output_tokens for r in results),
        requests=sum(r.attempts for r in results),
    )


def _same_inputs(task: Task, result: TaskResult, previous: RunResult) -> bool:
    """Whether *task* would get the prompt it ran with, from the outputs recorded upstream."""
    if result.input_digest is None:  # recorded before prompts were digested: trust it
        return True
    outputs = {dep: previous[dep].output or "" for dep in task.depends_on if dep in previous}
    return digest(build_prompt(task, outputs)) == result.input_digest


def _not_done(result: TaskResult) -> str:
    if result.status is TaskState.FAILED:
        return f"it failed before ({result.error_type or 'error'})"
    reason = result.skip_reason.value if result.skip_reason is not None else "skipped"
    return f"it was skipped before ({reason})"


def _upstream_first(tasks: Sequence[Task]) -> list[Task]:
    """The tasks with every task after the ones it depends on (the graph is acyclic)."""
    by_id = {task.id: task for task in tasks}
    entered: set[str] = set()  # also ends the walk on a cycle (the queue reports it)
    ordered: list[Task] = []
    for root in tasks:
        stack: list[tuple[Task, bool]] = [(root, False)]
        while stack:
            task, expanded = stack.pop()
            if expanded:
                ordered.append(task)
                continue
            if task.id in entered:
                continue
            entered.add(task.id)
            stack.append((task, True))
            stack.extend(
                (by_id[dep], False)
                for dep in reversed(task.depends_on)
                if dep in by_id and dep not in entered
            )
    return ordered
