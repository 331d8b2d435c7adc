"""The ``aegis`` command: run pipeline files, show their graph, and run the demo.

Exit status: 0 when every task is done, 1 when a task failed, 2 for a bad pipeline file or
bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aegis_graph import TaskState
from rich.console import Console

from aegis_gov._demo import (
    DemoWitness,
    detect_provider,
    offline_demo,
    offline_outcome_ok,
    provider_demo,
)
from aegis_gov._errors import AegisError
from aegis_gov._facade import OpenMultiAgent
from aegis_gov._pipeline import PROVIDERS, Pipeline, PipelineError, load_pipeline
from aegis_gov._progress import run_with_progress
from aegis_gov._results import RunResult, TaskResult
from aegis_gov._resume import reusable_results

EXIT_OK: Final = 0
"""Every task is done."""
EXIT_FAILED: Final = 1
"""At least one task failed (or was skipped)."""
EXIT_USAGE: Final = 2
"""Bad arguments or a bad pipeline file: nothing ran."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted (Ctrl-C): pending tasks were cancelled."""

_OUTPUT_PREVIEW_CHARS: Final = 600


class UsageError(Exception):
    """A problem with the command line or its files, reported as one line (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aegis",
        description="Run teams of LLM agents over a task graph, with retries and breakers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline file", description="Run a pipeline file.")
    run.add_argument("pipeline", help="the pipeline file (TOML)")
    run.add_argument(
        "--stop-on-failure",
        action="store_true",
        default=None,
        help="skip everything pending at the first failure (overrides the file)",
    )
    run.add_argument(
        "--max-concurrent",
        type=_positive_int,
        metavar="N",
        help="tasks in flight at once (overrides the file)",
    )
    run.add_argument("--output", metavar="FILE", help="write the run's result as JSON to FILE")
    run.add_argument(
        "--resume",
        metavar="FILE",
        help="keep the done tasks of an earlier --output FILE and run the rest",
    )
    run.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="run every agent on this provider instead (echo: a dry run, offline)",
    )
    run.add_argument("--model", help="with --provider: the model every agent uses")
    _display_options(run)

    graph = sub.add_parser(
        "graph",
        help="validate a pipeline file and print its task graph",
        description="Validate a pipeline file and print its task graph as text and Mermaid.",
    )
    graph.add_argument("pipeline", help="the pipeline file (TOML)")
    graph.add_argument(
        "--format", choices=("text", "mermaid", "both"), default="both", help="what to print"
    )

    demo = sub.add_parser(
        "demo",
        help="run the article's pipeline (offline unless a provider is configured)",
        description=(
            "Run the article's pipeline: on Anthropic or OpenAI when ANTHROPIC_API_KEY or "
            "OPENAI_API_KEY is set, on a reachable Ollama, otherwise on a built-in offline model."
        ),
    )
    demo.add_argument(
        "--offline",
        action="store_true",
        help="use the built-in offline model even if a provider is configured",
    )
    demo.add_argument("--output", metavar="FILE", help="write the run's result as JSON to FILE")
    _display_options(demo)
    return parser


def _display_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain", action="store_true", help="plain log lines even on a terminal (no live table)"
    )
    parser.add_argument(
        "--no-outputs", action="store_true", help="do not print the final tasks' outputs"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aegis`` command on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )
    console = Console(highlight=False, soft_wrap=True)
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "graph":
            return _graph(args, console)
        return _demo(args, console)
    except UsageError as exc:
        sys.stderr.write(f"aegis: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:  # pragma: no cover  # Ctrl-C before the run started
        sys.stderr.write("aegis: interrupted\n")
        return EXIT_INTERRUPTED


def _load(path: str) -> Pipeline:
    try:
        return load_pipeline(path)
    except PipelineError as exc:
        raise UsageError(str(exc)) from None


def _run(args: argparse.Namespace, console: Console) -> int:
    pipeline = _load(args.pipeline)
    if args.model is not None and args.provider is None:
        raise UsageError("--model needs --provider")
    if args.provider is not None:
        pipeline = pipeline.with_provider(args.provider, args.model)
    resume = _read_resume(args.resume) if args.resume else None
    try:
        kept = reusable_results(pipeline.tasks, resume) if resume is not None else {}
        team = pipeline.team()
        oma = OpenMultiAgent(
            pool=pipeline.pool(max_concurrent=args.max_concurrent),
            retry=pipeline.retry,
            tools=pipeline.tool_registry(),
        )
    except (AegisError, ValueError) as exc:
        where = f"{args.resume}: " if resume is not None else f"{args.pipeline}: "
        raise UsageError(f"{where}{exc}") from None
    stop = pipeline.stop_on_failure if args.stop_on_failure is None else args.stop_on_failure
    if kept:
        console.file.write(
            f"resuming from {args.resume}: keeping {len(kept)} done task(s): "
            f"{', '.join(kept)}; running the rest\n"
        )
    result = run_with_progress(
        oma,
        pipeline.tasks,
        team,
        console=console,
        live=_live(console, args),
        stop_on_failure=stop,
        resume=resume,
        kept=kept,
    )
    _finish(
        result, args, console, pipeline_tasks=[t.id for t in pipeline.tasks], sinks=_sinks(pipeline)
    )
    return _exit_status(result)


def _read_resume(path: str) -> RunResult:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read the result to resume: {exc.strerror or exc}"
        ) from None
    try:
        return RunResult.from_json(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not a result written by --output: {exc}") from None


def _live(console: Console, args: argparse.Namespace) -> bool:
    return console.is_terminal and not args.plain and os.environ.get("TERM") != "dumb"


def _sinks(pipeline: Pipeline) -> list[str]:
    needed = {dep for task in pipeline.tasks for dep in task.depends_on}
    return [task.id for task in pipeline.tasks if task.id not in needed]


def _finish(
    result: RunResult,
    args: argparse.Namespace,
    console: Console,
    *,
    pipeline_tasks: Sequence[str],
    sinks: Sequence[str],
) -> None:
    if args.output:
        try:
            Path(args.output).write_text(result.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"aegis: error: cannot write {args.output}: {exc.strerror or exc}\n")
    out = console.file
    counts = result.summary()
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in TaskState if s.value in counts)
    usage = result.usage
    out.write(
        f"\n{len(pipeline_tasks)} tasks: {summary}; tokens {usage.input_tokens} in / "
        f"{usage.output_tokens} out" + (" (cancelled)" if result.cancelled else "") + "\n"
    )
    for task_id in pipeline_tasks:
        task = result.get(task_id)
        if task is not None and task.status is TaskState.FAILED:
            out.write(f"  failed  {task_id}: {task.error_type}: {task.error}\n")
        elif task is not None and task.status is TaskState.SKIPPED:
            because = f" because {task.blamed!r} failed" if task.blamed else ""
            out.write(f"  skipped {task_id} ({task.skip_reason}){because}\n")
    if args.output:
        out.write(f"result written to {args.output}\n")
    if args.no_outputs:
        return
    for task_id in sinks:
        task = result.get(task_id)
        if task is not None and task.status is TaskState.DONE:
            _print_output(out, task)


def _print_output(out: object, task: TaskResult) -> None:
    text = (task.output or "").strip()
    if len(text) > _OUTPUT_PREVIEW_CHARS:
        text = text[:_OUTPUT_PREVIEW_CHARS].rstrip() + " [...] (full text: --output FILE)"
    write = getattr(out, "write")  # noqa: B009  # the console's file is any text stream
    write(f"\n--- {task.task_id} ---\n{text}\n")


def _exit_status(result: RunResult) -> int:
    if result.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def _graph(args: argparse.Namespace, console: Console) -> int:
    pipeline = _load(args.pipeline)
    queue = pipeline.queue()
    out = console.file
    if args.format in {"text", "both"}:
        agents = {task.id: task.agent for task in pipeline.tasks}
        out.write(
            f"pipeline {pipeline.name!r}: {len(pipeline.agents)} agents, "
            f"{len(pipeline.tasks)} tasks, valid\n"
        )
        for number, generation in enumerate(queue.generations(), start=1):
            together = " (in parallel)" if len(generation) > 1 else ""
            out.write(f"step {number}{together}:\n")
            for task_id in generation:
                deps = queue.dependencies(task_id)
                after = f" <- {', '.join(deps)}" if deps else ""
                out.write(f"  {task_id} [{agents[task_id]}]{after}\n")
    if args.format == "both":
        out.write("\n")
    if args.format in {"mermaid", "both"}:
        out.write(queue.to_mermaid())
    return EXIT_OK


def _demo(args: argparse.Namespace, console: Console) -> int:
    out = console.file
    detected = "--offline was given" if args.offline else detect_provider()
    if isinstance(detected, str):
        demo = offline_demo()
        out.write(
            "aegis demo: OFFLINE. No real model is used: "
            f"{detected}, so the agents run on a built-in offline model (scripted replies, no "
            "network). Set ANTHROPIC_API_KEY or OPENAI_API_KEY, or start Ollama, to see a real "
            "one.\nThe offline run is scripted to show a retry honouring Retry-After, a failure "
            "cascading into a skip, and a circuit breaker opening and recovering.\n\n"
        )
    else:
        adapter, description = detected
        demo = provider_demo(adapter, description)
        out.write(f"aegis demo: running the article's pipeline on {description}.\n\n")
    witness = DemoWitness()
    result = run_with_progress(
        demo.oma,
        demo.tasks,
        demo.team,
        console=console,
        live=_live(console, args),
        extra_handler=witness,
    )
    sinks = ["translate", "publish"] + (["headlines"] if demo.offline else [])
    _finish(result, args, console, pipeline_tasks=[t.id for t in demo.tasks], sinks=sinks)
    if not demo.offline:
        return _exit_status(result)
    out.write("\nWhat this run showed:\n")
    for line in witness.recap(result):
        out.write(f"  * {line}\n")
    if result.cancelled:
        return EXIT_INTERRUPTED
    if offline_outcome_ok(result):
        out.write(
            "\n(The failure of 'fact_check' is part of the script: the demo went as planned.)\n"
        )
        return EXIT_OK
    out.write("\nThe offline demo did not go as scripted; please report this.\n")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
