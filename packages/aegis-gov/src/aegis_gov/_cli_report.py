"""``aegis report``: a run's HTML report, from an ``--output`` file or the checkpoint store.

Also what ``aegis run`` uses to keep a run's timeline: :func:`keep_timeline` puts it on the
result (so ``--output`` writes it) and in the checkpoint store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Final

import attrs

from aegis_gov._budget import Price
from aegis_gov._checkpoint import Checkpoint, CheckpointError
from aegis_gov._cli_runs import (
    DEFAULT_CHECKPOINT,
    CheckpointUsageError,
    default_checkpoint,
    open_store,
    resume_from_store,
)
from aegis_gov._display_names import printable
from aegis_gov._events import EventHandler, RunEvent
from aegis_gov._files import AtomicOutput, read_regular_file, same_file
from aegis_gov._pipeline import PipelineError, load_pipeline
from aegis_gov._report_html import render_page
from aegis_gov._results import ResultFormatError, RunResult
from aegis_gov._timeline_recorder import TimelineRecorder

__all__ = [
    "MAX_REPORT_INPUT_BYTES",
    "ReportUsageError",
    "add_report_command",
    "both",
    "keep_timeline",
    "refuse_overwrite",
    "report_command",
]

MAX_REPORT_INPUT_BYTES: Final = 256 << 20
"""The largest result file ``aegis report`` reads: 256 MiB."""

_EXIT_OUTPUT_FAILED: Final = 3  # as the aegis command's EXIT_OUTPUT_FAILED


class ReportUsageError(CheckpointUsageError):
    """A problem with ``aegis report``'s arguments or files, reported as one line (exit 2)."""


def add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``aegis report RESULT.json|RUN_ID|last -o FILE [--pipeline FILE] [--checkpoint FILE]``."""
    report = sub.add_parser(
        "report",
        help="write a run's report as one HTML page (graph, timeline, breakers, usage)",
        description=(
            "Write a run's report as one self-contained HTML page: which tasks failed and "
            "what was skipped because of them, the task graph coloured by state, a timeline "
            "of every task, each endpoint's breaker states, and tokens and cost per agent "
            "and endpoint. The page needs no network to open."
        ),
    )
    report.add_argument(
        "run",
        metavar="RUN",
        help="a result file written by --output, or a run id in the checkpoint store ('last')",
    )
    report.add_argument(
        "-o", "--output", metavar="FILE", required=True, help="the HTML file to write"
    )
    report.add_argument(
        "--pipeline",
        metavar="FILE",
        help="the pipeline file the run ran: its graph and prices, for a result without them",
    )
    report.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=default_checkpoint(),
        help=f"the checkpoint store (default: $AEGIS_CHECKPOINT or {DEFAULT_CHECKPOINT})",
    )


@attrs.frozen
class _Loaded:
    """A run to report on, with what the page should say about how it was found."""

    result: RunResult
    source: str  # "FILE" or "run ID in STORE", for the summary line
    run_note: str = ""  # how the run ended, when the result cannot tell (killed, running)
    timeline_note: str = ""  # why the page has no timeline, when it is known
    pipeline: str | None = None  # the pipeline file the store says the run ran


def report_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``aegis report``: write the page; returns the exit status."""
    inputs = [args.run, args.checkpoint, args.pipeline]
    refuse_overwrite(args.output, [path for path in inputs if path and Path(path).exists()])
    loaded = _load_run(args.run, args.checkpoint)
    result = loaded.result
    dependencies: dict[str, list[str]] | None = None
    prices: dict[str, Price] | None = None
    pipeline_file = args.pipeline
    if pipeline_file is None and result.timeline is None and loaded.pipeline is not None:
        pipeline_file = loaded.pipeline if Path(loaded.pipeline).is_file() else None
    if pipeline_file is not None:
        try:
            pipeline = load_pipeline(pipeline_file)
        except PipelineError as exc:
            if args.pipeline is not None:
                raise ReportUsageError(str(exc)) from None
        else:
            dependencies = {task.id: list(task.depends_on) for task in pipeline.tasks}
            prices = dict(pipeline.budget.prices) if pipeline.budget is not None else None
    page = render_page(
        result,
        dependencies=dependencies,
        prices=prices,
        run_note=loaded.run_note,
        timeline_note=loaded.timeline_note,
    )
    try:
        with AtomicOutput(args.output) as output:
            output.commit(page)
    except OSError as exc:
        sys.stderr.write(f"aegis: error: cannot write {args.output}: {exc.strerror or exc}\n")
        return _EXIT_OUTPUT_FAILED
    recorded = "with its timeline" if result.timeline is not None else "no timeline recorded"
    if result.timeline is None and loaded.timeline_note:
        recorded = "no timeline: " + loaded.timeline_note.split(":")[0].rstrip(".")
    tasks = len(result) + len(result.unfinished)
    ended = f", {loaded.run_note}" if loaded.run_note else ""
    out.write(
        f"report of {printable(loaded.source, one_line=True)}: {tasks} task(s) "
        f"({recorded}{ended}) written to {args.output}\n"
    )
    return 0


def refuse_overwrite(output: str, inputs: list[str]) -> None:
    """Refuse (a usage error) an *output* that is one of the *inputs*: it would be replaced."""
    for path in inputs:
        if same_file(output, path):
            raise ReportUsageError(
                f"-o {output} is the input {path}: writing would replace it; "
                "choose another output file"
            )


def _looks_like_a_file(source: str) -> bool:
    return os.sep in source or source.endswith(".json")


def _load_run(source: str, checkpoint: str | None) -> _Loaded:
    """The run *source* names: a run id (or ``last``) in the store, else a result file.

    A *source* with no ``/`` that does not end in ``.json`` is looked up in the store first
    (when there is one and it has that run), so a file named ``last`` cannot hide the latest
    run; otherwise *source* is read as a result file.
    """
    have_store = bool(checkpoint) and Path(checkpoint or "").exists()
    if not _looks_like_a_file(source) and have_store and checkpoint:
        try:
            with open_store(checkpoint, create=False) as store:
                return _from_store(store, source)
        except CheckpointUsageError:
            if not Path(source).exists():
                raise
    if Path(source).exists() or _looks_like_a_file(source):
        return _from_file(source)
    where = f"no checkpoint store at {checkpoint}" if checkpoint else "no checkpoint store"
    raise ReportUsageError(
        f"{source}: no such result file, and {where} to look it up in as a run id"
    )


def _from_file(source: str) -> _Loaded:
    try:
        data = read_regular_file(source, max_bytes=MAX_REPORT_INPUT_BYTES)
    except OSError as exc:
        raise ReportUsageError(f"{source}: cannot read the result: {exc.strerror or exc}") from None
    try:
        return _Loaded(RunResult.from_json(data), source)
    except ResultFormatError as exc:
        if not (exc.field or "").startswith("timeline"):
            raise ReportUsageError(f"{source}: not a result written by --output: {exc}") from None
        problem = str(exc)
    except ValueError as exc:
        raise ReportUsageError(f"{source}: not a result written by --output: {exc}") from None
    # Only the timeline is bad: report the run without it (its tasks are still checked).
    document = json.loads(data)
    document.pop("timeline", None)
    try:
        result = RunResult.from_dict(document)
    except ValueError as exc:
        raise ReportUsageError(f"{source}: not a result written by --output: {exc}") from None
    note = f"The recorded timeline could not be read, so it is left out: {problem}."
    return _Loaded(result, source, timeline_note=note)


def _from_store(store: Checkpoint, source: str) -> _Loaded:
    notes: list[str] = []
    result = resume_from_store(store, source, None, notes)
    where = f"run {result.run_id} in {store.path}"
    info = next((run for run in store.runs() if run.run_id == result.run_id), None)
    pipeline = info.name if info is not None else None
    if notes:
        note = f"The recorded timeline could not be read, so it is left out: {notes[0]}."
        return _Loaded(result, where, timeline_note=note, pipeline=pipeline)
    if info is None or info.status != "running" or result.timeline is not None:
        return _Loaded(result, where, pipeline=pipeline)
    if info.killed:
        run_note = "killed: its process ended before the run did"
        timeline_note = (
            "The run was killed before it finished: aegis saves a run's timeline when the "
            "run ends, so this one has none. The states, blame and usage below come from "
            "the tasks it checkpointed."
        )
    else:
        run_note = "still running when this report was written (or killed on another host)"
        timeline_note = (
            "The run had not finished when this report was written: its timeline is saved "
            "when it ends. The states and usage below are of the tasks finished so far."
        )
    return _Loaded(result, where, run_note, timeline_note, pipeline=info.name)


def both(first: EventHandler, second: EventHandler) -> EventHandler:
    """An event handler that gives each event to *first*, then to *second*."""

    def handle(event: RunEvent) -> None:
        first(event)
        second(event)

    return handle


def keep_timeline(
    recorder: TimelineRecorder, result: RunResult, store: Checkpoint | None, err: IO[str]
) -> RunResult:
    """*result* with *recorder*'s timeline, which is also saved in *store* (if it ran there)."""
    result = recorder.attach(result)
    if store is not None and result.run_id is not None and result.timeline is not None:
        try:
            store.save_timeline(result.run_id, result.timeline)
        except CheckpointError as exc:
            err.write(f"aegis: warning: the run's timeline was not checkpointed: {exc}\n")
    return result
