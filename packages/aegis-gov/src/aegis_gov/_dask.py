"""Run the provider requests of a task graph on a dask.distributed cluster."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from typing import ParamSpec, Protocol, TypeVar, cast

__all__ = ["DaskClient", "DaskExecutor", "dask_executor"]

P = ParamSpec("P")
T = TypeVar("T")


class DaskClient(Protocol):
    """What `DaskExecutor` needs of a ``distributed.Client``."""

    def get_executor(self, **kwargs: object) -> Executor:
        """A ``concurrent.futures.Executor`` that submits to the cluster."""
        ...


class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` on a dask.distributed cluster, safe for LLM calls.

    Pass it as ``run_tasks(..., executor=...)``: the coordinator keeps the task queue, the
    retries, the breakers and the tools, and only each provider request runs on a worker.

    Every call is submitted with ``pure=False`` (Dask's default, ``pure=True``, gives identical
    calls one key and runs them once: two tasks with the same prompt would share one answer) and
    ``retries=0`` (aegis retries, through its breakers; Dask retrying too would multiply calls).
    Only plain values are submitted, never Dask futures, so Dask never cascades a failure on its
    own. Results come back through ``concurrent.futures.Future`` objects. Keyword arguments of
    the function are bound before submission, so they never clash with Dask's own (``key``,
    ``workers``...). The function and its arguments must pickle (cloudpickle): aegis adapters
    do, and create their SDK clients lazily on the worker.

    Args:
        client: A ``distributed.Client``.
        workers: Restrict calls to these workers (addresses or names).
        resources: Worker resources each call needs, e.g. ``{"llm": 1}``.
    """

    def __init__(
        self,
        client: DaskClient,
        *,
        workers: Iterable[str] | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        """Wrap *client*; nothing is submitted until `submit`."""
        options: dict[str, object] = {"pure": False, "retries": 0}
        if workers is not None:
            options["workers"] = list(workers)
        if resources is not None:
            options["resources"] = dict(resources)
        self._inner = client.get_executor(**options)
        self._client = client
        self._shutdown = False

    @property
    def client(self) -> DaskClient:
        """The client calls are submitted through."""
        return self._client

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker; the result comes back through the future.

        Raises:
            TypeError: When an argument is a Dask future (its failures would cascade in Dask).
            RuntimeError: After `shutdown`.
        """
        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor after shutdown")
        for value in (*args, *kwargs.values()):
            if _is_dask_future(value):
                raise TypeError(
                    f"DaskExecutor.submit({_name(fn)}): argument {value!r} is a Dask future; "
                    "pass plain values (aegis keeps the task graph on the coordinator)"
                )
        call: Callable[..., T] = functools.partial(fn, **kwargs) if kwargs else fn
        return cast("Future[T]", self._inner.submit(call, *args))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: FBT001, FBT002  # Executor's signature
        """Stop accepting calls; *wait* for those in flight, or cancel them. The client stays open.

        Safe to call more than once.
        """
        self._shutdown = True
        if cancel_futures:
            self._inner.shutdown(wait=False)  # Dask's executor cancels on wait=False
        elif wait:
            self._inner.shutdown(wait=True)


def dask_executor(
    client: DaskClient,
    *,
    workers: Iterable[str] | None = None,
    resources: Mapping[str, float] | None = None,
) -> DaskExecutor:
    """A `DaskExecutor` on *client*: ``run_tasks(..., executor=dask_executor(client))``."""
    return DaskExecutor(client, workers=workers, resources=resources)


def _is_dask_future(value: object) -> bool:
    cls = type(value)
    return cls.__name__ == "Future" and cls.__module__.startswith("distributed")


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", repr(fn))
