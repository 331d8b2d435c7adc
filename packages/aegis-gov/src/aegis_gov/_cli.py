"""The ``aegis`` command: run pipeline files, show their graph, and run the demo.

Exit status: 0 when every task is done, 1 when a task failed, 2 for a bad pipeline file or
bad arguments (nothing ran), 3 when the ``--output`` file could not be written, 130 when
interrupted with SIGINT (Ctrl-C) and 143 with SIGTERM: the first signal stops the run
cleanly and the partial result is still written.

Over 400 lines on purpose: the argument parser, the three commands and the exit-status rules
read best in one place; the file, signal and display work lives in _files, _interrupt and
_progress.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import functools
import importlib
import importlib.metadata
import io
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, NoReturn, TextIO

from aegis_adapters import as_chat_adapter, redact_text
from aegis_graph import TaskState
from rich.console import Console

from aegis_gov._agents import Team
from aegis_gov._budget import BudgetMeter
from aegis_gov._caller import Route, endpoint_key
from aegis_gov._checkpoint import Checkpoint, CheckpointError
from aegis_gov._checks import endpoint_keyed, endpoint_spelling, shown_key
from aegis_gov._cli_report import (
    add_report_command,
    both,
    keep_timeline,
    refuse_overwrite,
    report_command,
)
from aegis_gov._cli_runs import (
    CheckpointUsageError,
    add_checkpoint_option,
    add_runs_command,
    default_checkpoint,
    explain_plan,
    open_store,
    report_checkpoint,
    resume_from_store,
    runs_command,
    write_result,
)
from aegis_gov._demo import (
    TAG_TASKS,
    DemoWitness,
    detect_provider,
    offline_demo,
    offline_outcome_ok,
    provider_demo,
)
from aegis_gov._errors import AegisError
from aegis_gov._facade import OpenMultiAgent
from aegis_gov._files import AtomicOutput, read_regular_file
from aegis_gov._graph_svg import GraphvizError, render_graph
from aegis_gov._interrupt import Interrupts
from aegis_gov._limits import Limits
from aegis_gov._pipeline import (
    MAX_CONCURRENT,
    PROVIDERS,
    Pipeline,
    PipelineError,
    load_pipeline,
)
from aegis_gov._progress import printable, run_with_progress
from aegis_gov._results import RunCancelledError, RunResult, TaskResult
from aegis_gov._timeline_recorder import TimelineRecorder

__all__ = [
    "CANCEL_GRACE_S",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_FAILED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "MAX_CANCEL_GRACE_S",
    "MAX_RESUME_BYTES",
    "PACKAGES",
    "UsageError",
    "console_main",
    "main",
    "version_text",
]

EXIT_OK: Final = 0
"""Every task is done."""
EXIT_FAILED: Final = 1
"""At least one task failed (or was skipped)."""
EXIT_USAGE: Final = 2
"""Bad arguments or a bad pipeline file: nothing ran."""
EXIT_OUTPUT_FAILED: Final = 3
"""The run finished but its ``--output`` file could not be written (the old one is intact)."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted with SIGINT (Ctrl-C): pending tasks were cancelled, the partial result kept."""
EXIT_TERMINATED: Final = 143
"""Stopped with SIGTERM: as :data:`EXIT_INTERRUPTED`."""
EXIT_BROKEN_PIPE: Final = 141
"""Whoever read the output closed it early (``aegis runs | head``); no traceback."""

CANCEL_GRACE_S: Final = 5.0
"""How long calls in flight may take to finish after the first SIGINT or SIGTERM, by default."""
MAX_CANCEL_GRACE_S: Final = 3600.0
"""The longest ``--cancel-grace`` accepted."""
MAX_RESUME_BYTES: Final = 64 << 20
"""The largest ``--resume`` file read: 64 MiB."""
PACKAGES: Final = ("aegis-gov", "aegis-graph", "aegis-breaker", "aegis-adapters")
"""The distributions ``aegis --version`` reports, the command's own first."""

_OUTPUT_PREVIEW_CHARS: Final = 600


class UsageError(Exception):
    """A problem with the command line or its files, reported as one line (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aegis",
        description="Run teams of LLM agents over a task graph, with retries and breakers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the versions of aegis-gov and the three packages it builds on, and exit",
    )
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
        type=_concurrency,
        metavar="N",
        help=f"tasks in flight at once, 1 to {MAX_CONCURRENT} (overrides the file)",
    )
    _output_options(run)
    run.add_argument(
        "--resume",
        metavar="RUN",
        help=(
            "resume an earlier run: an --output FILE, a run id from the checkpoint store, or "
            "'last' (this pipeline's latest run); unchanged done tasks are kept"
        ),
    )
    add_checkpoint_option(run, default=default_checkpoint())
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
        description=(
            "Validate a pipeline file and print its task graph as text and Mermaid, or draw it "
            "as SVG or PNG with Graphviz."
        ),
    )
    graph.add_argument("pipeline", help="the pipeline file (TOML)")
    graph.add_argument(
        "--format",
        choices=("text", "mermaid", "both", "svg", "png"),
        default="both",
        help="what to print (svg and png are drawn by Graphviz's dot; png needs -o)",
    )
    graph.add_argument(
        "-o", "--output", metavar="FILE", help="write it to FILE instead of standard output"
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
    _output_options(demo)
    _display_options(demo)
    add_checkpoint_option(demo, default=default_checkpoint())
    add_runs_command(sub)
    add_report_command(sub)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the versions are looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        help_text = kwargs.get("help")
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help=help_text if isinstance(help_text, str) else None,
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,  # noqa: ARG002  # argparse's signature
        values: object,  # noqa: ARG002
        option_string: str | None = None,  # noqa: ARG002
    ) -> NoReturn:
        sys.stdout.write(version_text())
        parser.exit()


def version_text() -> str:
    """What ``aegis --version`` prints: one ``name version`` line per package of the stack."""
    lines = []
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"
        lines.append(f"{name} {version}\n")
    return "".join(lines)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write the run's result as JSON to FILE (replaced all at once; checked first)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=_grace,
        default=CANCEL_GRACE_S,
        metavar="SECONDS",
        help=(
            "after Ctrl-C or SIGTERM, how long calls in flight may take to finish "
            f"(default {CANCEL_GRACE_S:g}; a second signal stops at once)"
        ),
    )


def _display_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain", action="store_true", help="plain log lines even on a terminal (no live table)"
    )
    parser.add_argument(
        "--no-outputs", action="store_true", help="do not print the final tasks' outputs"
    )


def _concurrency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_CONCURRENT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CONCURRENT}, got {value}")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_CANCEL_GRACE_S):
        raise argparse.ArgumentTypeError(
            f"must be from 0 to {MAX_CANCEL_GRACE_S:g} seconds, got {text}"
        )
    return value


class _Redacting(logging.Filter):
    """Passes aegis's INFO (``-v``) and others' WARNING; hides credentials written in URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record if loud enough; render its message once, redacted."""
        ours = record.name.split(".", 1)[0] in _PACKAGES
        threshold = (
            (logging.INFO if ours else logging.WARNING) if self.verbose else logging.CRITICAL
        )
        if record.levelno < threshold:
            return False
        record.msg, record.args = redact_text(record.getMessage()), None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, not the one it was made with."""

    @property
    def stream(self) -> TextIO:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


_PACKAGES: Final = frozenset({"aegis_graph", "aegis_breaker", "aegis_adapters", "aegis_gov"})


def _configure_logging(*, verbose: bool) -> None:
    """``-v``: aegis's own INFO lines, other libraries' warnings; URLs redacted.

    Sets no library logger's level, so an application calling :func:`main` keeps its own.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_Redacting())
        root.addHandler(handler)
    for found in handler.filters:
        if isinstance(found, _Redacting):
            found.verbose = verbose
    if verbose and root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)


# The [limits] keys of the file a command loaded, as written: a warning quoting one shows
# it as errors do (see _warning_text). Set for the command by _warnings_as_lines.
_LIMITS_KEYS: Final[contextvars.ContextVar[set[str] | None]] = contextvars.ContextVar(
    "aegis_cli_limits_keys", default=None
)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show aegis's own ``UserWarning`` warnings as ``aegis: warning: ...`` lines on stderr.

    Python shows a warning with the file, line and source line that raised it, which mean
    nothing to a user of the command (``_progress.py:397: UserWarning: limits['mm'] ...``);
    every other message of the command is one ``aegis: ...`` line. Other warnings keep
    Python's form. Only for the command: the previous ``warnings.showwarning`` (and filters)
    come back when it ends.
    """
    keys: set[str] = set()
    token = _LIMITS_KEYS.set(keys)
    try:
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(  # noqa: PLR0917  # warnings.showwarning's signature
                message: Warning | str,
                category: type[Warning],
                filename: str,
                lineno: int,
                file: TextIO | None = None,
                line: str | None = None,
            ) -> None:
                if issubclass(category, UserWarning) and _is_ours(filename):
                    text = printable(_warning_text(str(message), keys), one_line=True)
                    sys.stderr.write(f"aegis: warning: {text}\n")
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            yield
    finally:
        _LIMITS_KEYS.reset(token)


def _warning_text(message: str, keys: Iterable[str]) -> str:
    """*message* with the credentials of every key of *keys* it quotes hidden, as errors do.

    A warning quotes a key as the facade holds it (an endpoint key spelled as endpoints
    are, any other key as written), and free-text redaction ends a URL's userinfo at the
    first ``@``, quote or space, where a careless password may go on: each key is shown
    as :func:`shown_key` shows it in errors.
    """
    for written in sorted(keys, key=len, reverse=True):
        for key in dict.fromkeys((written, endpoint_spelling(written))):
            hidden = shown_key(key)
            if hidden != key:
                message = message.replace(repr(key), repr(hidden)).replace(key, hidden)
    return redact_text(message)


def _is_ours(filename: str) -> bool:
    """Whether *filename* is a module of aegis's own packages (where they are installed).

    Not a match on a folder's name: a user's ``projects/aegis_gov/tool.py`` is not aegis's.
    """
    try:
        path = os.path.normcase(os.path.realpath(filename))
    except (OSError, ValueError):
        return False
    for home in _package_homes():
        with contextlib.suppress(ValueError):  # on another drive
            if os.path.commonpath((home, path)) == home:
                return True
    return False


@functools.cache
def _package_homes() -> tuple[str, ...]:
    """The folders aegis's packages are loaded from."""
    return tuple(
        os.path.normcase(os.path.realpath(folder))
        for name in sorted(_PACKAGES)
        for folder in importlib.import_module(name).__path__
    )


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911  # one per command
    """Run the ``aegis`` command on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    _configure_logging(verbose=args.verbose)
    console = Console(highlight=False, soft_wrap=True)
    interrupts = Interrupts()
    with interrupts.installed(), _warnings_as_lines():
        try:
            if args.command == "run":
                return _run(args, console, interrupts)
            if args.command == "graph":
                return _graph(args, console)
            if args.command == "runs":
                return runs_command(args, console.file)
            if args.command == "report":
                return report_command(args, console.file)
            return _demo(args, console, interrupts)
        except (UsageError, CheckpointUsageError) as exc:
            sys.stderr.write(f"aegis: error: {exc}\n")
            return EXIT_USAGE
        except KeyboardInterrupt:  # a signal before the run started: nothing to keep
            sys.stderr.write("aegis: interrupted\n")
            return interrupts.exit_status or EXIT_INTERRUPTED


def console_main() -> NoReturn:
    """The ``aegis`` console script: :func:`main` on the command line, then exit."""
    try:
        status = main()
    except BrokenPipeError:
        # The reader went away (``aegis runs | head``): stop quietly, as Unix tools do, and
        # keep the interpreter from failing again while flushing stdout at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        status = EXIT_BROKEN_PIPE
    if status in {EXIT_INTERRUPTED, EXIT_TERMINATED}:
        # Calls given up on after the grace period still occupy worker threads, which the
        # interpreter would wait for at exit. The result is written and flushed: leave now.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)
    sys.exit(status)


def _load(path: str) -> Pipeline:
    try:
        pipeline = load_pipeline(path)
    except PipelineError as exc:
        raise UsageError(str(exc)) from None
    keys = _LIMITS_KEYS.get()
    if keys is not None:  # for the warnings that quote them
        keys.update(pipeline.limits)
    return pipeline


def _run(args: argparse.Namespace, console: Console, interrupts: Interrupts) -> int:
    pipeline = _load(args.pipeline)
    if args.model is not None and args.provider is None:
        raise UsageError("--model needs --provider")
    if args.provider is not None:
        pipeline = pipeline.with_provider(args.provider, args.model)
    store = (
        open_store(args.checkpoint, label=os.path.realpath(args.pipeline), create=True)
        if args.checkpoint
        else None
    )
    with contextlib.ExitStack() as stack:
        if store is not None:
            stack.enter_context(store)
        return _run_pipeline(args, console, interrupts, pipeline, store)


def _run_pipeline(
    args: argparse.Namespace,
    console: Console,
    interrupts: Interrupts,
    pipeline: Pipeline,
    store: Checkpoint | None,
) -> int:
    resume = _resume_source(args, store) if args.resume else None
    try:
        team, oma = _preflight(pipeline, max_concurrent=args.max_concurrent)
        plan = oma.plan_resume(pipeline.tasks, team, resume) if resume is not None else None
    except PipelineError as exc:  # names the file already
        raise UsageError(str(exc)) from None
    except (AegisError, ValueError) as exc:
        where = f"{args.resume}: " if resume is not None else f"{args.pipeline}: "
        raise UsageError(f"{where}{exc}") from None
    stop = pipeline.stop_on_failure if args.stop_on_failure is None else args.stop_on_failure
    with _open_output(args.output) as output, contextlib.closing(oma.tools):
        if plan is not None:
            explain_plan(console.file, plan, args.resume)
        interrupts.graceful(_stop_notice(args.cancel_grace))
        prices = pipeline.budget.prices if pipeline.budget is not None else None
        recorder = TimelineRecorder(pipeline.tasks, clock=oma.clock, prices=prices)
        try:
            result = run_with_progress(
                oma,
                pipeline.tasks,
                team,
                console=console,
                live=_live(console, args),
                stop_on_failure=stop,
                resume=plan,
                kept=plan.kept_results() if plan is not None else None,
                cancel=interrupts.cancel,
                cancel_grace_s=args.cancel_grace,
                budget=pipeline.budget,
                checkpoint=store,
                limits=pipeline.limits,
                extra_handler=recorder,
            )
        except RunCancelledError as exc:  # a second signal: what finished is in the error
            result = exc.result
        except CheckpointError as exc:  # the store refused the run's start: nothing ran
            raise UsageError(str(exc)) from None
        result = keep_timeline(recorder, result, store, sys.stderr)
        interrupts.defer()
        written = _finish(
            result,
            args,
            console,
            output=output,
            pipeline_tasks=[t.id for t in pipeline.tasks],
            sinks=_sinks(pipeline),
        )
        if store is not None:
            report_checkpoint(store, result, console.file, sys.stderr)
    return _exit_status(result, interrupts, written=written)


def _resume_source(args: argparse.Namespace, store: Checkpoint | None) -> RunResult:
    """``--resume``: an --output file if one is there, else a run in the checkpoint store."""
    if Path(args.resume).exists() or store is None:
        return _read_resume(args.resume)
    if os.sep in args.resume or args.resume.endswith(".json"):
        return _read_resume(args.resume)  # meant as a file: say it is missing
    return resume_from_store(store, args.resume, args.pipeline)


def _stop_notice(grace_s: float) -> str:
    return (
        "\naegis: stopping: nothing new starts, calls in flight get "
        f"{grace_s:g} s to finish; signal again to stop at once (the result is still written)\n"
    )


@contextlib.contextmanager
def _open_output(path: str | None, what: str = "the result") -> Iterator[AtomicOutput | None]:
    """The ``--output`` file, checked before anything runs (a bad path is a usage error)."""
    if not path:
        yield None
        return
    try:
        output = AtomicOutput(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write {what} there: {_reason(exc)}") from None
    with output:
        yield output


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def _read_resume(path: str) -> RunResult:
    try:
        data = read_regular_file(path, max_bytes=MAX_RESUME_BYTES)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the result to resume: {_reason(exc)}") from None
    try:
        return RunResult.from_json(data)
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
    output: AtomicOutput | None,
    pipeline_tasks: Sequence[str],
    sinks: Sequence[str],
) -> bool:
    """Write the ``--output`` file and print the summary; False if the file was not written."""
    written = output is None
    if output is not None:
        try:
            output.commit_written(functools.partial(write_result, result))
            written = True
        except (OSError, ValueError, TypeError) as exc:
            sys.stderr.write(f"aegis: error: cannot write {output.path}: {_reason(exc)}\n")
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
            reason = task.skip_reason.value if task.skip_reason else "skipped"
            out.write(f"  skipped {task_id} ({reason}){because}\n")
    if output is not None and written:
        out.write(f"result written to {output.path}\n")
    if not args.no_outputs:
        for task_id in sinks:
            task = result.get(task_id)
            if task is not None and task.status is TaskState.DONE:
                _print_output(out, task)
    return written


def _print_output(out: object, task: TaskResult) -> None:
    # A lone surrogate (from a model or a resumed file) cannot be encoded: show its escape.
    text = (task.output or "").strip().encode("utf-8", "backslashreplace").decode("utf-8")
    text = printable(text)  # a model's escape sequences are shown, not obeyed
    if len(text) > _OUTPUT_PREVIEW_CHARS:
        text = text[:_OUTPUT_PREVIEW_CHARS].rstrip() + " [...] (full text: --output FILE)"
    write = getattr(out, "write")  # noqa: B009  # the console's file is any text stream
    write(f"\n--- {printable(task.task_id, one_line=True)} ---\n{text}\n")


def _exit_status(result: RunResult, interrupts: Interrupts, *, written: bool) -> int:
    if not written:
        return EXIT_OUTPUT_FAILED
    if interrupts.exit_status is not None:
        return interrupts.exit_status
    if result.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def _preflight(
    pipeline: Pipeline, *, max_concurrent: int | None = None, tools: bool = True
) -> tuple[Team, OpenMultiAgent]:
    """The team and facade of *pipeline*, after the checks a run makes before it starts.

    With *tools*, the facade's registry is connected to the file's MCP servers (the caller
    closes it); without, nothing is started (``aegis graph`` only checks).

    Raises:
        AegisError: an agent's key variable is unset; an MCP server cannot be used.
        ValueError: a cost budget over a model with no price; a fallback that is the agent's
            own endpoint.
    """
    team = pipeline.team()
    oma = OpenMultiAgent(
        pool=pipeline.pool(max_concurrent=max_concurrent),
        retry=pipeline.retry,
        tools=pipeline.tool_registry() if tools else None,
        limits=pipeline.limits,
    )
    try:
        for agent in team.values():
            Route.resolve(agent, oma.adapter_for(agent), ())  # a fallback equal to its primary
        if pipeline.budget is not None:  # a cost budget needs every model's price, up front
            BudgetMeter(pipeline.budget).check_prices(
                (
                    (chat.endpoint, endpoint_key(adapter))
                    for agent in team.values()
                    for adapter in (oma.adapter_for(agent), *agent.fallbacks)
                    for chat in (as_chat_adapter(adapter),)
                ),
                warn=False,  # the run checks again, and warns then: once
            )
    except BaseException:
        oma.tools.close()  # end the MCP servers' sessions the registry opened
        raise
    return team, oma


def _graph(args: argparse.Namespace, console: Console) -> int:
    if args.format == "png" and not args.output:
        raise UsageError("--format png needs -o FILE (a PNG is not written to a terminal)")
    if args.output:
        refuse_overwrite(args.output, [args.pipeline])
    pipeline = _load(args.pipeline)
    if pipeline.budget is not None and pipeline.budget.max_cost_usd is not None:
        try:  # what `aegis run` would refuse before starting, `aegis graph` refuses too
            _preflight(pipeline, tools=False)
        except PipelineError as exc:  # names the file itself
            raise UsageError(str(exc)) from None
        except (AegisError, ValueError) as exc:
            raise UsageError(f"{args.pipeline}: {exc}") from None
    _check_limits(pipeline, args.pipeline)
    with _open_output(args.output, "the graph") as output:  # a bad -o is found before drawing
        if args.format in {"svg", "png"}:
            try:
                data = render_graph(
                    pipeline.tasks,
                    fmt=args.format,
                    titles={t.id: f"[{t.agent}]" for t in pipeline.tasks if t.agent},
                )
            except GraphvizError as exc:  # dot missing, failed or too slow: one line
                raise UsageError(str(exc)) from None
        else:
            text = io.StringIO()
            _print_graph(args.format, pipeline, text)
            data = text.getvalue().encode("utf-8")
        if output is None:
            return _to_stdout(data, console)
        try:
            output.commit(data)
        except OSError as exc:  # as a result that cannot be written: exit 3
            sys.stderr.write(
                f"aegis: error: {args.output}: cannot write the graph: {_reason(exc)}\n"
            )
            return EXIT_OUTPUT_FAILED
    return EXIT_OK


def _check_limits(pipeline: Pipeline, path: str) -> None:
    """Check ``[limits]`` as ``aegis run`` does at its start.

    Two keys naming one endpoint with different values (a URL written with and without
    credentials) are an error, as in ``aegis run``. A key that matches no model of the run
    (a typo), or keys naming one model with different values, are warnings: the file is
    still valid. Those are skipped when the agents cannot be made (an unset key variable, a
    fallback equal to its agent): ``aegis run`` reports those.

    Raises:
        UsageError: two keys name one endpoint with different values.
    """
    if not pipeline.limits:
        return
    try:
        endpoint_keyed("limits", pipeline.limits, Limits)  # what OpenMultiAgent refuses
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    used = {task.agent for task in pipeline.tasks}
    try:
        team, oma = _preflight(pipeline, tools=False)
        routes = [
            Route.resolve(agent, oma.adapter_for(agent), ())
            for agent in team.values()
            if agent.name in used
        ]
    except (AegisError, ValueError):
        return
    oma._caller.check_limits(routes)  # noqa: SLF001  # the check run_tasks makes, without a run


def _to_stdout(data: bytes, console: Console) -> int:
    """Write ``aegis graph``'s text or SVG to standard output; a failed write is one line."""
    try:
        console.file.write(data.decode("utf-8"))
        console.file.flush()
    except BrokenPipeError:
        raise  # the reader went away: console_main ends quietly
    except OSError as exc:  # a full disk behind `> file`, say: as a failed -o write
        sys.stderr.write(
            f"aegis: error: cannot write the graph to standard output: {_reason(exc)}\n"
        )
        return EXIT_OUTPUT_FAILED
    return EXIT_OK


def _print_graph(fmt: str, pipeline: Pipeline, out: TextIO) -> None:
    """``aegis graph``'s text: the steps (``text``), the Mermaid flowchart, or ``both``."""
    queue = pipeline.queue()
    if fmt in {"text", "both"}:
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
    if fmt == "both":
        out.write("\n")
    if fmt in {"mermaid", "both"}:
        out.write(queue.to_mermaid())


def _demo(args: argparse.Namespace, console: Console, interrupts: Interrupts) -> int:
    store = (
        open_store(args.checkpoint, label="aegis demo", create=True) if args.checkpoint else None
    )
    with contextlib.ExitStack() as stack:
        if store is not None:
            stack.enter_context(store)
        output = stack.enter_context(_open_output(args.output))
        return _run_demo(args, console, interrupts, output, store)


def _run_demo(
    args: argparse.Namespace,
    console: Console,
    interrupts: Interrupts,
    output: AtomicOutput | None,
    store: Checkpoint | None,
) -> int:
    out = console.file
    detected = "--offline was given" if args.offline else detect_provider()
    if isinstance(detected, str):
        demo = offline_demo()
        out.write(
            "aegis demo: OFFLINE. No real model is used: "
            f"{detected}, so the agents run on a built-in offline model (scripted replies, no "
            "network). Set ANTHROPIC_API_KEY or OPENAI_API_KEY, or start Ollama, to see a real "
            "one.\nThe offline run is scripted to show a retry honouring Retry-After, a failure "
            "cascading into a skip, a circuit breaker opening and recovering, a fallback, and "
            "a declared rate limit pacing requests.\n\n"
        )
    else:
        adapter, description = detected
        demo = provider_demo(adapter, description)
        out.write(f"aegis demo: running the article's pipeline on {description}.\n\n")
    witness = DemoWitness()
    recorder = TimelineRecorder(demo.tasks, clock=demo.oma.clock)
    interrupts.graceful(_stop_notice(args.cancel_grace))
    try:
        result = run_with_progress(
            demo.oma,
            demo.tasks,
            demo.team,
            console=console,
            live=_live(console, args),
            extra_handler=both(witness, recorder),
            cancel=interrupts.cancel,
            cancel_grace_s=args.cancel_grace,
            checkpoint=store,
            limits=demo.limits,
        )
    except RunCancelledError as exc:  # a second signal: what finished is in the error
        result = exc.result
    except CheckpointError as exc:  # the store refused the run's start: nothing ran
        raise UsageError(str(exc)) from None
    result = keep_timeline(recorder, result, store, sys.stderr)
    interrupts.defer()
    sinks = ["translate", "publish"] + (
        ["headlines", "summary", *TAG_TASKS] if demo.offline else []
    )
    written = _finish(
        result,
        args,
        console,
        output=output,
        pipeline_tasks=[t.id for t in demo.tasks],
        sinks=sinks,
    )
    if store is not None and result.run_id is not None:
        hint = f": aegis report {result.run_id} -o report.html draws it"
        report_checkpoint(store, result, out, sys.stderr, hint=hint)
    status = _exit_status(result, interrupts, written=written)
    if not demo.offline:
        return status
    out.write("\nWhat this run showed:\n")
    for line in witness.recap(result):
        out.write(f"  * {line}\n")
    if status not in {EXIT_OK, EXIT_FAILED}:  # interrupted, or the output not written
        return status
    if offline_outcome_ok(result):
        out.write(
            "\n(The failure of 'fact_check' is part of the script: the demo went as planned.)\n"
        )
        return EXIT_OK
    out.write("\nThe offline demo did not go as scripted; please report this.\n")
    return EXIT_FAILED


if __name__ == "__main__":
    console_main()
