"""RunResult JSON at 100,000 tasks: compact, streamed, against the old indented whole-tree form.

"before" is what ``to_json`` did until 0.1 (``json.dumps(result.to_dict(), indent=2)``) and
reading the whole text at once (``json.loads`` then ``from_dict``). "after" is ``to_json()``
(compact, one task encoded at a time) and ``from_json`` (streamed, one task's dict alive at a
time). Targets (issue 19): round trip >= 2x faster; peak memory <= 2x the result's size.

Times are CPU seconds of this process (steadier than wall time on a shared machine), best and
median of 5 interleaved rounds; peaks are measured in a separate pass with tracemalloc.
``to_json`` returns the whole text, so it holds it (once: on CPython the text grows in place);
``write_json`` writes the same text to a file task by task, and the CLI's ``--output`` writes
its atomic file that way (compact above 1,000 tasks): their peaks are those of one task.

Run: ``python benchmarks/result_json.py [N]``.
"""

from __future__ import annotations

import functools
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from aegis_adapters import Usage
from aegis_gov import RunResult, TaskResult, TaskState
from aegis_gov._cli_runs import write_result
from aegis_gov._files import AtomicOutput


def build(n: int) -> RunResult:
    definition = dict.fromkeys(("description", "depends_on", "agent", "model"), "0" * 16)
    return RunResult(
        results={
            f"t{i}": TaskResult(
                task_id=f"t{i}",
                status=TaskState.DONE,
                agent="writer",
                output=f"answer {i}: " + "some output text " * 4,
                usage=Usage(30, 10),
                attempts=1,
                duration_s=0.01,
                endpoint="openai|http://localhost:1234/v1|gpt-4o-mini",
                definition=definition,
                input_digest="0" * 16,
            )
            for i in range(n)
        },
        team="bench",
    )


def before(result: RunResult) -> RunResult:
    text = json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
    return RunResult.from_dict(json.loads(text))


def after(result: RunResult) -> RunResult:
    return RunResult.from_json(result.to_json())


def cpu(fn: object, result: RunResult) -> float:
    start = time.process_time()
    back = fn(result)  # type: ignore[operator]
    elapsed = time.process_time() - start
    assert back == result
    return elapsed


def peak(fn: object, result: RunResult) -> int:
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    back = fn(result)  # type: ignore[operator]
    top = tracemalloc.get_traced_memory()[1] - base
    del back
    return top


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    result = build(n)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(5):
        times["before"].append(cpu(before, result))
        times["after"].append(cpu(after, result))
    print(f"RunResult JSON round trip, {n} tasks (CPU seconds; best / median of 5, interleaved)")
    for name, values in times.items():
        print(f"  {name:6} {min(values):6.2f} / {statistics.median(values):6.2f}")
    speedup = statistics.median(times["before"]) / statistics.median(times["after"])
    print(f"  speed-up (median): {speedup:.2f}x (target >= 2x)")

    del result
    gc.collect()
    tracemalloc.start()
    result = build(n)
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    for name, fn in (("before", before), ("after", after)):
        top = peak(fn, result)
        print(
            f"  {name:6} peak {top / 1e6:6.0f} MB above the result's {size / 1e6:.0f} MB "
            f"({top / size:.2f}x; target <= 2x)"
        )
    encoded = result.to_json()
    text_mb = len(encoded) / 1e6
    del encoded
    top = peak(lambda r: r.to_json(), result)
    print(
        f"  to_json alone: peak {top / 1e6:.0f} MB for {text_mb:.0f} MB of text "
        f"({top / size:.2f}x the result)"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "result.json"
        writers = {"write_json": _write, "CLI --output": _cli_output}
        for name, write in writers.items():
            top = peak(functools.partial(write, path=path), result)
            print(
                f"  {name} to a file: peak {top / 1e6:.1f} MB ({top / size:.3f}x the result; "
                "target <= 2x)"
            )
            assert RunResult.from_json(path.read_bytes()) == result


def _write(result: RunResult, path: Path) -> None:
    with path.open("w", encoding="utf-8") as stream:
        result.write_json(stream)


def _cli_output(result: RunResult, path: Path) -> None:
    with AtomicOutput(path) as output:
        output.commit_written(functools.partial(write_result, result))


if __name__ == "__main__":
    main()
