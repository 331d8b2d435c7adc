# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""aegis-adapters: typed LLM provider adapters with one error taxonomy.

Importing this package imports no provider SDK; each adapter loads its SDK on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aegis_adapters._anthropic import AnthropicAdapter
    from aegis_adapters._base import BaseChatAdapter
    from aegis_adapters._errors import (
        AuthenticationError,
        InvalidRequestError,
        LLMError,
        ModelNotFoundError,
        PermanentError,
        ProviderUnavailableError,
        QuotaExceededError,
        RateLimitError,
        RetryableError,
        classify_failure,
        parse_retry_after,
    )
    from aegis_adapters._factory import (
        PROVIDERS,
        Provider,
        adapter_from_environment,
        as_chat_adapter,
        is_chat_adapter,
        make_adapter,
    )
    from aegis_adapters._offline import (
        EchoAdapter,
        RecordedCall,
        ScriptedAdapter,
        ScriptExhaustedError,
    )
    from aegis_adapters._ollama import OllamaAdapter, ollama_base_url
    from aegis_adapters._openai import OpenAIAdapter
    from aegis_adapters._protocols import (
        ChatAdapter,
        LLMAdapter,
        StructuredChatAdapter,
        supports_output_schema,
    )
    from aegis_adapters._redact import redact_text, redact_url
    from aegis_adapters._types import (
        STOP_REASONS,
        ChatResponse,
        Endpoint,
        Message,
        OutputSchema,
        Role,
        StopReason,
        TextDelta,
        ToolCall,
        ToolSpec,
        Usage,
    )

# A library adds no handler of its own: records reach whatever the application set up, and
# nothing is printed through logging's last-resort handler in apps that set up none.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "PROVIDERS",
    "STOP_REASONS",
    "AnthropicAdapter",
    "AuthenticationError",
    "BaseChatAdapter",
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
    "Provider",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitError",
    "RecordedCall",
    "RetryableError",
    "Role",
    "ScriptExhaustedError",
    "ScriptedAdapter",
    "StopReason",
    "StructuredChatAdapter",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "adapter_from_environment",
    "as_chat_adapter",
    "classify_failure",
    "is_chat_adapter",
    "make_adapter",
    "ollama_base_url",
    "parse_retry_after",
    "redact_text",
    "redact_url",
    "supports_output_schema",
]

# Where each public name is defined. Importing the package loads none of these modules: a name's
# module loads on its first access (PEP 562 ``__getattr__``), so importing the package stays
# cheap and a program pays only for the parts it uses. The TYPE_CHECKING imports above name
# the same objects for type checkers (a test checks that the two agree).
_SOURCES: dict[str, tuple[str, ...]] = {
    "aegis_adapters._anthropic": ("AnthropicAdapter",),
    "aegis_adapters._base": ("BaseChatAdapter",),
    "aegis_adapters._errors": (
        "AuthenticationError",
        "InvalidRequestError",
        "LLMError",
        "ModelNotFoundError",
        "PermanentError",
        "ProviderUnavailableError",
        "QuotaExceededError",
        "RateLimitError",
        "RetryableError",
        "classify_failure",
        "parse_retry_after",
    ),
    "aegis_adapters._factory": (
        "PROVIDERS",
        "Provider",
        "adapter_from_environment",
        "as_chat_adapter",
        "is_chat_adapter",
        "make_adapter",
    ),
    "aegis_adapters._offline": (
        "EchoAdapter",
        "RecordedCall",
        "ScriptedAdapter",
        "ScriptExhaustedError",
    ),
    "aegis_adapters._ollama": ("OllamaAdapter", "ollama_base_url"),
    "aegis_adapters._openai": ("OpenAIAdapter",),
    "aegis_adapters._protocols": (
        "ChatAdapter",
        "LLMAdapter",
        "StructuredChatAdapter",
        "supports_output_schema",
    ),
    "aegis_adapters._redact": ("redact_text", "redact_url"),
    "aegis_adapters._types": (
        "STOP_REASONS",
        "ChatResponse",
        "Endpoint",
        "Message",
        "OutputSchema",
        "Role",
        "StopReason",
        "TextDelta",
        "ToolCall",
        "ToolSpec",
        "Usage",
    ),
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
