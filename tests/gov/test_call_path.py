"""A task's success path goes one way: _facade -> _run -> _caller -> _conversation, never back.

The conversation is a generator the endpoint caller steps; it never calls into the caller (or
the facade) to have a request made. Recorded with a profile hook, so any call from a later
module into an earlier one fails the test, whatever it is named.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import pytest
from aegis_breaker import AgentPool
from aegis_gov import AgentConfig, OpenMultiAgent, ScriptedAdapter, Task

ORDER = ("aegis_gov._facade", "aegis_gov._run", "aegis_gov._caller", "aegis_gov._conversation")


@pytest.fixture
def edges() -> Iterator[dict[tuple[str, str], str]]:
    """Calls from one of ORDER's modules into another, as (caller, callee) -> function."""
    seen: dict[tuple[str, str], str] = {}
    lock = threading.Lock()

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        back = frame.f_back
        if event != "call" or back is None:
            return
        callee, caller = frame.f_globals.get("__name__"), back.f_globals.get("__name__")
        if callee in ORDER and caller in ORDER and callee != caller:
            with lock:
                seen.setdefault((str(caller), str(callee)), frame.f_code.co_name)

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def _run(driver: str) -> None:
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2), default_adapter=ScriptedAdapter(["ok"], cycle=True)
    )
    team = oma.create_team("t", AgentConfig(name="w"))
    tasks = [
        Task(id="a", description="first", agent="w"),
        Task(id="b", description="second", agent="w", depends_on=["a"]),
    ]
    if driver == "threads":
        result = oma.run_tasks(tasks, team)
    else:
        result = asyncio.run(oma.arun_tasks(tasks, team))
    oma.close()
    assert result.summary() == {"done": 2}


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_the_success_path_never_calls_back_into_an_earlier_module(
    edges: dict[tuple[str, str], str], driver: str
) -> None:
    _run(driver)
    backwards = {
        (caller, callee): name
        for (caller, callee), name in edges.items()
        if ORDER.index(callee) < ORDER.index(caller)
    }
    assert backwards == {}
    assert ("aegis_gov._caller", "aegis_gov._conversation") in edges  # it was recorded
