"""TaskQueue.ready(limit): the first ``limit`` ready tasks, as ready()[:limit] would give."""

from __future__ import annotations

from aegis_graph import Task, TaskQueue
from hypothesis import given
from hypothesis import strategies as st


@given(
    width=st.integers(min_value=0, max_value=40),
    done=st.integers(min_value=0, max_value=40),
    limit=st.integers(min_value=-1, max_value=50),
)
def test_ready_with_a_limit_is_a_prefix_of_ready(width: int, done: int, limit: int) -> None:
    tasks = [Task(id=f"t{i}", depends_on=["root"] if i % 3 else []) for i in range(width)]
    queue = TaskQueue([Task(id="root"), *tasks])
    for task in queue.ready()[:done]:
        queue.complete(task.id)
    everything = queue.ready()
    assert queue.ready(limit) == everything[: max(limit, 0)]
    assert queue.ready(None) == everything
