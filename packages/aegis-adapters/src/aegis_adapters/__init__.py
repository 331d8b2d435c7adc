# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""aegis-adapters: typed LLM provider adapters with one error taxonomy.

Importing this package imports no provider SDK; each adapter loads its SDK on first use.
"""

from __future__ import annotations

import logging

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
from aegis_adapters._offline import EchoAdapter, RecordedCall, ScriptedAdapter, ScriptExhaustedError
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
