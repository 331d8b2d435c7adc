"""The ``aegis`` command's checkpoint side: the store, ``--resume`` by run id, ``aegis runs``."""

from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path
from typing import IO, Final

from aegis_graph import TaskState

from aegis_gov._checkpoint import Checkpoint, CheckpointError, RunInfo, TimelineUnreadableError
from aegis_gov._files import AtomicOutput
from aegis_gov._progress import printable
from aegis_gov._results import RunResult
from aegis_gov._resume import ResumePlan

__all__ = [
    "DEFAULT_CHECKPOINT",
    "PRETTY_TASKS",
    "add_checkpoint_option",
    "add_runs_command",
    "default_checkpoint",
    "explain_plan",
    "open_store",
    "report_checkpoint",
    "resume_from_store",
    "runs_command",
    "write_result",
]

DEFAULT_CHECKPOINT: Final = str(Path(".aegis") / "runs.db")
"""Where ``aegis run`` commits each finished task unless told otherwise (in the working
directory); ``--checkpoint FILE`` or the ``AEGIS_CHECKPOINT`` environment variable picks
another file, ``--no-checkpoint`` turns it off."""


def default_checkpoint() -> str:
    """``AEGIS_CHECKPOINT`` if set, else :data:`DEFAULT_CHECKPOINT`."""
    return os.environ.get("AEGIS_CHECKPOINT") or DEFAULT_CHECKPOINT


_PREVIEW: Final = 60
_ID_WIDTH: Final = 20
PRETTY_TASKS: Final = 1000
"""Results of up to this many tasks are written indented, for people; larger ones compact."""


class CheckpointUsageError(Exception):
    """A checkpoint problem on the command line, reported as one line (exit 2)."""


def add_checkpoint_option(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    """``--checkpoint FILE`` (and ``--no-checkpoint`` when there is a default)."""
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=default,
        help=(
            "commit each finished task to this SQLite file"
            + (f" (default: {default})" if default else "")
        ),
    )
    if default is not None:
        parser.add_argument(
            "--no-checkpoint",
            dest="checkpoint",
            action="store_const",
            const=None,
            help="do not keep a checkpoint of the run",
        )


def add_runs_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``aegis runs [show ID | export ID --output FILE]``."""
    runs = sub.add_parser(
        "runs",
        help="list the runs in a checkpoint store, show one, or export one as JSON",
        description=(
            "List the runs in a checkpoint store (most recent first); 'show ID' prints one "
            "run's tasks; 'export ID --output FILE' writes it as --output would have."
        ),
    )
    runs.add_argument("action", nargs="?", choices=("list", "show", "export"), default="list")
    runs.add_argument("run_id", nargs="?", metavar="ID", help="a run id ('last' for the latest)")
    runs.add_argument("--output", metavar="FILE", help="with export: the JSON file to write")
    runs.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=default_checkpoint(),
        help=f"the checkpoint store (default: $AEGIS_CHECKPOINT or {DEFAULT_CHECKPOINT})",
    )


def open_store(path: str, *, label: str | None = None, create: bool) -> Checkpoint:
    """The store at *path*; a missing one is created only when *create*."""
    if not create and not Path(path).exists():
        raise CheckpointUsageError(f"{path}: no checkpoint store here (no run has used it yet)")
    if create and path == DEFAULT_CHECKPOINT:
        _make_default_directory()
    try:
        return Checkpoint(path, label=label)
    except CheckpointError as exc:
        raise CheckpointUsageError(str(exc)) from None


def _make_default_directory() -> None:
    directory = Path(DEFAULT_CHECKPOINT).parent
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        # Like .pytest_cache: the directory keeps itself out of version control.
        (directory / ".gitignore").write_text("# created by aegis\n*\n", encoding="utf-8")


def _same_pipeline(name: str, pipeline: str) -> bool:
    return os.path.realpath(name) == os.path.realpath(pipeline)


def resume_from_store(
    store: Checkpoint, run_id: str, pipeline: str | None, notes: list[str] | None = None
) -> RunResult:
    """A stored run by id (``last``: the latest run of *pipeline*, or of any pipeline).

    A stored timeline that cannot be read is left out (a resume does not need it); why is
    added to *notes*.
    """
    try:
        if run_id == "last":
            runs = [
                run
                for run in store.runs()
                if pipeline is None or _same_pipeline(run.name, pipeline)
            ]
            if not runs:
                if pipeline is None:
                    raise CheckpointUsageError(f"{store.path}: no runs yet")
                raise CheckpointUsageError(f"{store.path}: no run of {pipeline} to resume")
            run_id = runs[0].run_id
        return store.load(run_id)
    except TimelineUnreadableError as exc:
        if notes is not None:
            notes.append(str(exc))
        return exc.result
    except CheckpointError as exc:
        raise CheckpointUsageError(str(exc)) from None


def report_checkpoint(
    store: Checkpoint, result: RunResult, out: IO[str], err: IO[str], *, hint: str | None = None
) -> None:
    """Say where the run was checkpointed, or warn when the store missed some of its tasks.

    *hint* replaces the usual "(resume with --resume ID)" for a run that did not all finish.
    """
    if result.run_id is None:
        return
    try:
        recorded = len(store.load(result.run_id))
        problem = "" if recorded >= len(result) else f"{recorded} of {len(result)} tasks recorded"
    except CheckpointError as exc:
        problem = str(exc)
    if problem:
        err.write(
            f"aegis: warning: the checkpoint of run {result.run_id} in {store.path} is "
            f"incomplete ({problem}); resuming it would run the missing tasks again\n"
        )
        return
    if hint is None:
        hint = "" if result.ok else f" (resume with --resume {result.run_id})"
    out.write(f"run {result.run_id} checkpointed in {store.path}{hint}\n")


def explain_plan(out: IO[str], plan: ResumePlan, source: str) -> None:
    """Print what a resume keeps, runs again and drops, and why, before anything runs."""
    out.write(
        f"resuming {source}: keeping {len(plan.kept)}, running {len(plan.rerun)}, "
        f"dropping {len(plan.dropped)} task(s)\n"
    )
    out.writelines(f"  {printable(line, one_line=True)}\n" for line in plan.explain())


def runs_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``aegis runs``: list, show or export; returns the exit status."""
    store = open_store(args.checkpoint, create=False)
    with store:
        if args.action == "list":
            if args.run_id is not None:
                raise CheckpointUsageError("'aegis runs' takes no run id; use 'aegis runs show ID'")
            _list(out, store.runs(), store)
            return 0
        if args.run_id is None:
            raise CheckpointUsageError(f"'aegis runs {args.action}' needs a run id")
        result = resume_from_store(store, args.run_id, None)
        if args.action == "show":
            _show(out, result)
            return 0
        if args.output is None:
            raise CheckpointUsageError("'aegis runs export' needs --output FILE")
        try:
            with AtomicOutput(args.output) as output:
                output.commit_written(functools.partial(write_result, result))
        except (OSError, ValueError) as exc:
            raise CheckpointUsageError(f"cannot write {args.output}: {exc}") from None
        out.write(f"run {result.run_id} written to {args.output}\n")
        return 0


def write_result(result: RunResult, stream: IO[str]) -> None:
    """Write a result file: indented for people to read, compact (much faster) when large.

    The text is written task by task, so a large run's JSON is never held whole in memory.
    """
    result.write_json(stream, indent=2 if len(result) <= PRETTY_TASKS else None)
    stream.write("\n")


def _status(run: RunInfo) -> str:
    if run.killed:
        return "killed"
    return run.status


def _list(out: IO[str], runs: list[RunInfo], store: Checkpoint) -> None:
    if not runs:
        out.write(f"{store.path}: no runs yet\n")
        return
    out.write(
        f"{'run id':<24} {'started (UTC)':<19} {'status':<9} {'done':>5} {'failed':>6} "
        f"{'skipped':>7} {'left':>5} {'tokens':>9} {'cost':>9}  pipeline\n"
    )
    for run in runs:
        finished = sum(run.counts.values())
        cost = "-" if run.cost_usd is None else f"${run.cost_usd:.4f}"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started_at))
        out.write(
            f"{run.run_id:<24} {started:<19} {_status(run):<9} "
            f"{run.counts.get('done', 0):>5} {run.counts.get('failed', 0):>6} "
            f"{run.counts.get('skipped', 0):>7} {run.tasks - finished:>5} "
            f"{run.input_tokens + run.output_tokens:>9} {cost:>9}  "
            f"{printable(run.name, one_line=True)}\n"
        )


def _show(out: IO[str], result: RunResult) -> None:
    counts = result.summary()
    left = f", {len(result.unfinished)} unfinished" if result.unfinished else ""
    out.write(
        f"run {result.run_id} (team {printable(result.team, one_line=True)}): "
        f"{', '.join(f'{n} {s}' for s, n in counts.items()) or 'nothing finished'}{left}"
        + (" (cancelled)" if result.cancelled else "")
        + "\n"
    )
    out.write(f"{'task':<20} {'state':<8} {'time':>8}  {'endpoint':<28} output\n")
    for task_id, task in result.items():
        if task.status is TaskState.DONE:
            shown = task.output or ""
        elif task.status is TaskState.FAILED:
            shown = f"{task.error_type}: {task.error}"
        else:
            reason = task.skip_reason.value if task.skip_reason else "skipped"
            shown = f"({reason}" + (f", because {task.blamed!r} failed)" if task.blamed else ")")
        shown = printable(shown, one_line=True)
        if len(shown) > _PREVIEW:
            shown = shown[: _PREVIEW - 3] + "..."
        endpoint = printable(task.endpoint or "-", one_line=True)
        shown_id = printable(task_id, one_line=True)
        shown_id = shown_id if len(shown_id) <= _ID_WIDTH else shown_id[: _ID_WIDTH - 3] + "..."
        out.write(
            f"{shown_id:<20} {task.status.value:<8} "
            f"{task.duration_s:>7.2f}s  {endpoint[:28]:<28} {shown}\n"
        )
    for task_id in result.unfinished:
        out.write(f"{printable(task_id, one_line=True):<20} {'unfinished':<8}\n")
