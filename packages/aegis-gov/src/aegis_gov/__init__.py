"""aegis-gov: coordinate teams of LLM agents over a task graph, with breakers and retries.

This package re-exports the public API of aegis-graph, aegis-breaker and aegis-adapters, so
``from aegis_gov import Task, AgentPool, AnthropicAdapter`` works, and adds the orchestration:
:class:`OpenMultiAgent`, :class:`AgentConfig`, teams, runs, events and tools.

Over 400 lines because the public API is written out three times, on purpose: the imports
under ``TYPE_CHECKING`` (what type checkers see), ``__all__``, and the table of which module
each name loads from on first access (PEP 562), which keeps ``import aegis_gov`` fast.
``tests/gov/test_import_time.py`` checks that the three agree.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aegis_adapters import (
        AnthropicAdapter,
        AuthenticationError,
        ChatAdapter,
        ChatResponse,
        EchoAdapter,
        Endpoint,
        InvalidRequestError,
        LLMAdapter,
        LLMError,
        Message,
        ModelNotFoundError,
        OllamaAdapter,
        OpenAIAdapter,
        OutputSchema,
        PermanentError,
        ProviderUnavailableError,
        QuotaExceededError,
        RateLimitError,
        RetryableError,
        ScriptedAdapter,
        ToolCall,
        ToolSpec,
        Usage,
    )
    from aegis_breaker import (
        AgentPool,
        BreakerError,
        BreakerStatus,
        Bulkhead,
        BulkheadFullError,
        CircuitBreaker,
        CircuitOpenError,
        CircuitState,
        PoolStatus,
        RateLimitExceededError,
        RedisCircuitBreaker,
        connect_redis,
        redis_agent_pool,
    )
    from aegis_graph import (
        CyclicDependencyError,
        DuplicateTaskError,
        GraphError,
        SkipReason,
        Task,
        TaskQueue,
        TaskState,
        UnknownDependencyError,
    )

    from aegis_gov._adaptive import AdaptiveStatus
    from aegis_gov._agents import AgentConfig, Team
    from aegis_gov._budget import Budget, BudgetSpentError, Price, Spent
    from aegis_gov._checkpoint import (
        Checkpoint,
        CheckpointError,
        CheckpointStore,
        RunInfo,
        RunStatus,
        UnknownRunError,
    )
    from aegis_gov._checkpoint_redis import RedisCheckpoint
    from aegis_gov._dask import DaskClient, DaskExecutor, dask_executor
    from aegis_gov._errors import (
        AegisError,
        CircuitWaitTooLongError,
        DeadlineExceededError,
        DuplicateAgentError,
        EndpointBusyError,
        IncompatibleResumeError,
        RetryAfterTooLongError,
        RunCancelledTaskError,
        StreamInterruptedError,
        ToolLoopError,
        UnknownAgentError,
    )
    from aegis_gov._events import (
        CircuitStateChanged,
        EventHandler,
        FellBack,
        RunEvent,
        TaskFailed,
        TaskOutputDelta,
        TaskRetrying,
        TaskSkipped,
        TaskStarted,
        TaskSucceeded,
        ToolCalled,
    )
    from aegis_gov._facade import OpenMultiAgent, adapter_from_environment, endpoint_key
    from aegis_gov._graph_svg import GraphvizError, GraphvizNotFoundError, graph_dot, render_graph
    from aegis_gov._limits import Limits, RedisRateStore
    from aegis_gov._mcp import MCPConnectionError
    from aegis_gov._memory import ToolMemory
    from aegis_gov._output import OutputValidationError
    from aegis_gov._report_html import render_report
    from aegis_gov._results import (
        AgentResult,
        ResultFormatError,
        RunCancelledError,
        RunOutputs,
        RunResult,
        TaskResult,
        ToolCallRecord,
    )
    from aegis_gov._resume import ResumePlan
    from aegis_gov._retry import RetryPolicy
    from aegis_gov._status import EndpointStatus, Status
    from aegis_gov._timeline import Timeline, TimelineEntry, TimelineKind
    from aegis_gov._timeline_recorder import TimelineRecorder
    from aegis_gov._tool import Tool, ToolOutcome
    from aegis_gov._tool_errors import (
        BlockedAddressError,
        CommandFailedError,
        CommandNotAllowedError,
        DuplicateToolError,
        ForbiddenShellSyntaxError,
        HTTPStatusError,
        InvalidToolArgumentsError,
        InvalidToolNameError,
        InvalidToolSchemaError,
        MemoryKeyNotFoundError,
        OutputTooLargeError,
        PathOutsideRootError,
        SandboxUnavailableError,
        ShellDisabledError,
        ToolCallLimitError,
        ToolError,
        ToolExecutionError,
        ToolNotOfferedError,
        ToolRefusedError,
        ToolTimeoutError,
        UnknownToolError,
        URLNotAllowedError,
        ValueTooLargeError,
    )
    from aegis_gov._tools import ToolRegistry
    from aegis_gov._tracing import Tracing

# A library adds no handler of its own: records reach whatever the application set up, and
# nothing is printed through logging's last-resort handler in apps that set up none.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AdaptiveStatus",
    "AegisError",
    "AgentConfig",
    "AgentPool",
    "AgentResult",
    "AnthropicAdapter",
    "AuthenticationError",
    "BlockedAddressError",
    "BreakerError",
    "BreakerStatus",
    "Budget",
    "BudgetSpentError",
    "Bulkhead",
    "BulkheadFullError",
    "ChatAdapter",
    "ChatResponse",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "CircuitStateChanged",
    "CircuitWaitTooLongError",
    "CommandFailedError",
    "CommandNotAllowedError",
    "CyclicDependencyError",
    "DaskClient",
    "DaskExecutor",
    "DeadlineExceededError",
    "DuplicateAgentError",
    "DuplicateTaskError",
    "DuplicateToolError",
    "EchoAdapter",
    "Endpoint",
    "EndpointBusyError",
    "EndpointStatus",
    "EventHandler",
    "FellBack",
    "ForbiddenShellSyntaxError",
    "GraphError",
    "GraphvizError",
    "GraphvizNotFoundError",
    "HTTPStatusError",
    "IncompatibleResumeError",
    "InvalidRequestError",
    "InvalidToolArgumentsError",
    "InvalidToolNameError",
    "InvalidToolSchemaError",
    "LLMAdapter",
    "LLMError",
    "Limits",
    "MCPConnectionError",
    "MemoryKeyNotFoundError",
    "Message",
    "ModelNotFoundError",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenMultiAgent",
    "OutputSchema",
    "OutputTooLargeError",
    "OutputValidationError",
    "PathOutsideRootError",
    "PermanentError",
    "PoolStatus",
    "Price",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimitExceededError",
    "RedisCheckpoint",
    "RedisCircuitBreaker",
    "RedisRateStore",
    "ResultFormatError",
    "ResumePlan",
    "RetryAfterTooLongError",
    "RetryPolicy",
    "RetryableError",
    "RunCancelledError",
    "RunCancelledTaskError",
    "RunEvent",
    "RunInfo",
    "RunOutputs",
    "RunResult",
    "RunStatus",
    "SandboxUnavailableError",
    "ScriptedAdapter",
    "ShellDisabledError",
    "SkipReason",
    "Spent",
    "Status",
    "StreamInterruptedError",
    "Task",
    "TaskFailed",
    "TaskOutputDelta",
    "TaskQueue",
    "TaskResult",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskState",
    "TaskSucceeded",
    "Team",
    "Timeline",
    "TimelineEntry",
    "TimelineKind",
    "TimelineRecorder",
    "Tool",
    "ToolCall",
    "ToolCallLimitError",
    "ToolCallRecord",
    "ToolCalled",
    "ToolError",
    "ToolExecutionError",
    "ToolLoopError",
    "ToolMemory",
    "ToolNotOfferedError",
    "ToolOutcome",
    "ToolRefusedError",
    "ToolRegistry",
    "ToolSpec",
    "ToolTimeoutError",
    "Tracing",
    "URLNotAllowedError",
    "UnknownAgentError",
    "UnknownDependencyError",
    "UnknownRunError",
    "UnknownToolError",
    "Usage",
    "ValueTooLargeError",
    "adapter_from_environment",
    "connect_redis",
    "dask_executor",
    "endpoint_key",
    "graph_dot",
    "redis_agent_pool",
    "render_graph",
    "render_report",
]

# Where each public name is defined. Importing the package loads none of these modules: a name's
# module loads on its first access (PEP 562 ``__getattr__``), so importing the package stays
# cheap and a program pays only for the parts it uses. The TYPE_CHECKING imports above name
# the same objects for type checkers (a test checks that the two agree).
_SOURCES: dict[str, tuple[str, ...]] = {
    "aegis_adapters": (
        "AnthropicAdapter",
        "AuthenticationError",
        "ChatAdapter",
        "ChatResponse",
        "EchoAdapter",
        "Endpoint",
        "InvalidRequestError",
        "LLMAdapter",
        "LLMError",
        "Message",
        "ModelNotFoundError",
        "OllamaAdapter",
        "OpenAIAdapter",
        "OutputSchema",
        "PermanentError",
        "ProviderUnavailableError",
        "QuotaExceededError",
        "RateLimitError",
        "RetryableError",
        "ScriptedAdapter",
        "ToolCall",
        "ToolSpec",
        "Usage",
    ),
    "aegis_breaker": (
        "AgentPool",
        "BreakerError",
        "BreakerStatus",
        "Bulkhead",
        "BulkheadFullError",
        "CircuitBreaker",
        "CircuitOpenError",
        "CircuitState",
        "PoolStatus",
        "RateLimitExceededError",
        "RedisCircuitBreaker",
        "connect_redis",
        "redis_agent_pool",
    ),
    "aegis_graph": (
        "CyclicDependencyError",
        "DuplicateTaskError",
        "GraphError",
        "SkipReason",
        "Task",
        "TaskQueue",
        "TaskState",
        "UnknownDependencyError",
    ),
    "aegis_gov._adaptive": ("AdaptiveStatus",),
    "aegis_gov._agents": ("AgentConfig", "Team"),
    "aegis_gov._budget": ("Budget", "BudgetSpentError", "Price", "Spent"),
    "aegis_gov._checkpoint": (
        "Checkpoint",
        "CheckpointError",
        "CheckpointStore",
        "RunInfo",
        "RunStatus",
        "UnknownRunError",
    ),
    "aegis_gov._checkpoint_redis": ("RedisCheckpoint",),
    "aegis_gov._dask": ("DaskClient", "DaskExecutor", "dask_executor"),
    "aegis_gov._errors": (
        "AegisError",
        "CircuitWaitTooLongError",
        "DeadlineExceededError",
        "DuplicateAgentError",
        "EndpointBusyError",
        "IncompatibleResumeError",
        "RetryAfterTooLongError",
        "RunCancelledTaskError",
        "StreamInterruptedError",
        "ToolLoopError",
        "UnknownAgentError",
    ),
    "aegis_gov._events": (
        "CircuitStateChanged",
        "EventHandler",
        "FellBack",
        "RunEvent",
        "TaskFailed",
        "TaskOutputDelta",
        "TaskRetrying",
        "TaskSkipped",
        "TaskStarted",
        "TaskSucceeded",
        "ToolCalled",
    ),
    "aegis_gov._facade": ("OpenMultiAgent", "adapter_from_environment", "endpoint_key"),
    "aegis_gov._graph_svg": (
        "GraphvizError",
        "GraphvizNotFoundError",
        "graph_dot",
        "render_graph",
    ),
    "aegis_gov._limits": ("Limits", "RedisRateStore"),
    "aegis_gov._mcp": ("MCPConnectionError",),
    "aegis_gov._memory": ("ToolMemory",),
    "aegis_gov._output": ("OutputValidationError",),
    "aegis_gov._report_html": ("render_report",),
    "aegis_gov._results": (
        "AgentResult",
        "ResultFormatError",
        "RunCancelledError",
        "RunOutputs",
        "RunResult",
        "TaskResult",
        "ToolCallRecord",
    ),
    "aegis_gov._resume": ("ResumePlan",),
    "aegis_gov._retry": ("RetryPolicy",),
    "aegis_gov._status": ("EndpointStatus", "Status"),
    "aegis_gov._timeline": ("Timeline", "TimelineEntry", "TimelineKind"),
    "aegis_gov._timeline_recorder": ("TimelineRecorder",),
    "aegis_gov._tool": ("Tool", "ToolOutcome"),
    "aegis_gov._tool_errors": (
        "BlockedAddressError",
        "CommandFailedError",
        "CommandNotAllowedError",
        "DuplicateToolError",
        "ForbiddenShellSyntaxError",
        "HTTPStatusError",
        "InvalidToolArgumentsError",
        "InvalidToolNameError",
        "InvalidToolSchemaError",
        "MemoryKeyNotFoundError",
        "OutputTooLargeError",
        "PathOutsideRootError",
        "SandboxUnavailableError",
        "ShellDisabledError",
        "ToolCallLimitError",
        "ToolError",
        "ToolExecutionError",
        "ToolNotOfferedError",
        "ToolRefusedError",
        "ToolTimeoutError",
        "UnknownToolError",
        "URLNotAllowedError",
        "ValueTooLargeError",
    ),
    "aegis_gov._tools": ("ToolRegistry",),
    "aegis_gov._tracing": ("Tracing",),
}
_MODULE_OF: dict[str, str] = {
    public: module for module, names in _SOURCES.items() for public in names
}

if not TYPE_CHECKING:  # hidden from type checkers, which would type unknown names as object

    def __getattr__(name: str) -> object:
        """Import the module that defines the public *name* on first access; cache the value."""
        try:
            module = _MODULE_OF[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        try:
            value = getattr(importlib.import_module(module), name)
        except AttributeError as exc:  # from the module's own code: not a missing name
            raise ImportError(f"importing {module} (for {name}) failed: {exc}") from exc
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        """The module's attributes, the public names not loaded yet included."""
        return sorted(set(globals()) | set(__all__))
