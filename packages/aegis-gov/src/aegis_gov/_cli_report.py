"""``aegis report``: a run's HTML report, from an ``--output`` file or the checkpoint store.

Also what ``aegis run`` uses to keep a run's timeline: :func:`keep_timeline` puts it on the
result (so ``--output`` writes it) and in the checkpoint store.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import IO, Final

from aegis_gov._budget import Price
from aegis_gov._checkpoint import Checkpoint, CheckpointError
from aegis_gov._cli_runs import (
    DEFAULT_CHECKPOINT,
    CheckpointUsageError,
    default_checkpoint,
    open_store,
    resume_from_store,
)
from aegis_gov._events import EventHandler, RunEvent
from aegis_gov._files import AtomicOutput, read_regular_file, same_file
from aegis_gov._pipeline import PipelineError, load_pipeline
from aegis_gov._report_html import render_report
from aegis_gov._results import RunResult
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


def report_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``aegis report``: write the page; returns the exit status."""
    inputs = [args.run, args.checkpoint, args.pipeline]
    refuse_overwrite(args.output, [path for path in inputs if path and Path(path).exists()])
    result = _load_run(args.run, args.checkpoint)
    dependencies: dict[str, list[str]] | None = None
    prices: dict[str, Price] | None = None
    if args.pipeline is not None:
        try:
            pipeline = load_pipeline(args.pipeline)
        except PipelineError as exc:
            raise ReportUsageError(str(exc)) from None
        dependencies = {task.id: list(task.depends_on) for task in pipeline.tasks}
        prices = dict(pipeline.budget.prices) if pipeline.budget is not None else None
    page = render_report(result, dependencies=dependencies, prices=prices)
    try:
        with AtomicOutput(args.output) as output:
            output.commit(page)
    except OSError as exc:
        sys.stderr.write(f"aegis: error: cannot write {args.output}: {exc.strerror or exc}\n")
        return _EXIT_OUTPUT_FAILED
    recorded = "with its timeline" if result.timeline is not None else "no timeline recorded"
    out.write(f"report of {len(result)} task(s) ({recorded}) written to {args.output}\n")
    return 0


def refuse_overwrite(output: str, inputs: list[str]) -> None:
    """Refuse (a usage error) an *output* that is one of the *inputs*: it would be replaced."""
    for path in inputs:
        if same_file(output, path):
            raise ReportUsageError(
                f"-o {output} is the input {path}: writing would replace it; "
                "choose another output file"
            )


def _load_run(source: str, checkpoint: str | None) -> RunResult:
    """A result file if *source* names one, else a run id (or ``last``) in the store."""
    as_file = Path(source).exists() or os.sep in source or source.endswith(".json")
    if as_file:
        try:
            data = read_regular_file(source, max_bytes=MAX_REPORT_INPUT_BYTES)
        except OSError as exc:
            raise ReportUsageError(
                f"{source}: cannot read the result: {exc.strerror or exc}"
            ) from None
        try:
            return RunResult.from_json(data)
        except ValueError as exc:
            raise ReportUsageError(f"{source}: not a result written by --output: {exc}") from None
    if not checkpoint or not Path(checkpoint).exists():
        where = f"no checkpoint store at {checkpoint}" if checkpoint else "no checkpoint store"
        raise ReportUsageError(
            f"{source}: no such result file, and {where} to look it up in as a run id"
        )
    with open_store(checkpoint, create=False) as store:
        return resume_from_store(store, source, None)


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
