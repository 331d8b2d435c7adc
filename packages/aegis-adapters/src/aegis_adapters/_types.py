# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Value types shared by every adapter: messages, tool calls, usage, responses, endpoints."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

import attrs

from aegis_adapters._redact import without_credentials

__all__ = [
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
]

Role = Literal["user", "assistant", "tool"]
"""Who a :class:`Message` is from; ``"tool"`` carries a tool's result back to the model."""

StopReason = Literal["end_turn", "max_tokens", "tool_use", "content_filter", "stop_sequence"]
"""Why generation stopped, normalised across providers (see :class:`ChatResponse`)."""

STOP_REASONS: frozenset[str] = frozenset(get_args(StopReason))
"""The normalised values of :attr:`ChatResponse.stop_reason` (besides ``None``)."""


def _non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _call_tuple(value: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(value)


def _freeze_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    # A defensive copy: the caller's dict may change after the value is built.
    return dict(value)


@attrs.frozen
class Usage:
    """Token counts of one call (or the sum of several, with ``+``).

    Attributes:
        input_tokens: Tokens in the prompt, as the provider counted them.
        output_tokens: Tokens the model generated.
    """

    input_tokens: int = attrs.field(default=0, validator=_non_negative)
    output_tokens: int = attrs.field(default=0, validator=_non_negative)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        """Sum two usages, field by field."""
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@attrs.frozen
class ToolSpec:
    """A tool the model may call.

    Attributes:
        name: The tool's name, as the model will call it.
        description: What the tool does, for the model.
        input_schema: A JSON Schema (an ``object`` schema) of the tool's arguments.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    description: str
    input_schema: Mapping[str, object] = attrs.field(converter=_freeze_mapping, hash=False)


_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _schema_name(_instance: object, _attribute: object, value: str) -> None:
    if not _SCHEMA_NAME.match(value):
        raise ValueError(
            f"an output schema's name must be 1 to 64 letters, digits, '_' or '-', got {value!r}"
        )


def _object_schema(_instance: object, _attribute: object, value: Mapping[str, object]) -> None:
    if value.get("type") != "object":
        raise ValueError(
            'an output schema must describe a JSON object ("type": "object"), '
            f"got type {value.get('type')!r}"
        )


@attrs.frozen
class OutputSchema:
    """The JSON shape the answer must have, for adapters that can ask the provider for it.

    Adapters with a native mechanism (see :func:`~aegis_adapters.supports_output_schema`)
    send it the provider's way: OpenAI ``response_format`` (``json_schema``), Ollama
    ``format``, Anthropic a forced call of a tool named :attr:`name` whose input is the
    answer. Whatever the mechanism, the response's ``text`` is the answer's JSON text.

    Attributes:
        name: Names the schema (and Anthropic's answer tool): 1 to 64 of ``[A-Za-z0-9_-]``.
        schema: A JSON Schema of an ``object``: a plain dict, no pydantic needed.
        strict: Ask for OpenAI's strict mode (the schema must then meet its rules: every
            property required, ``additionalProperties: false``).
        description: What the answer is, for the model.
    """

    name: str = attrs.field(validator=[attrs.validators.instance_of(str), _schema_name])
    schema: Mapping[str, object] = attrs.field(
        converter=_freeze_mapping, validator=_object_schema, hash=False
    )
    strict: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    description: str = ""


@attrs.frozen
class ToolCall:
    """A call of a tool requested by the model.

    Attributes:
        id: The provider's id of the call, echoed back in the tool's result.
        name: The tool's name.
        arguments: The decoded JSON arguments.
    """

    id: str = attrs.field(validator=attrs.validators.instance_of(str))
    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    arguments: Mapping[str, object] = attrs.field(converter=_freeze_mapping, hash=False)


@attrs.frozen
class Message:
    """One turn of a conversation.

    Build them with :meth:`user`, :meth:`assistant` and :meth:`tool_result`. The system prompt is
    not a message: adapters take it as ``system=`` and place it where the provider expects it.

    Attributes:
        role: ``"user"``, ``"assistant"`` or ``"tool"``.
        content: The text.
        tool_calls: Tools the assistant asked to call (assistant messages only).
        tool_call_id: The id of the call this message answers (tool messages only).
        tool_name: The name of the tool that produced this result (tool messages only).
        is_error: Whether the tool failed (tool messages only).
    """

    role: Role = attrs.field(validator=attrs.validators.in_(("user", "assistant", "tool")))
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_call_tuple)
    tool_call_id: str | None = None
    tool_name: str | None = None
    is_error: bool = False

    def __attrs_post_init__(self) -> None:
        """Reject messages whose fields do not fit their role."""
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role!r}")
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")

    @classmethod
    def user(cls, text: str) -> Message:
        """A user message."""
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        """An assistant message, possibly asking for tool calls."""
        return cls("assistant", text, tool_calls=tool_calls)

    @classmethod
    def tool_result(cls, call: ToolCall, content: str, *, is_error: bool = False) -> Message:
        """The result of running *call*, to send back to the model."""
        return cls("tool", content, tool_call_id=call.id, tool_name=call.name, is_error=is_error)


def _stop_reason(_instance: object, _attribute: object, value: object) -> None:
    if value is not None and value not in STOP_REASONS:
        raise ValueError(
            f"stop_reason must be one of {sorted(STOP_REASONS)} or None, not {value!r}"
        )


@attrs.frozen
class ChatResponse:
    """A complete reply of the model.

    ``stop_reason`` is normalised across providers:

    ============== ========================== ======================== ====================
    normalised     Anthropic ``stop_reason``  OpenAI ``finish_reason`` Ollama ``done_reason``
    ============== ========================== ======================== ====================
    end_turn       end_turn, pause_turn       stop                     stop (no tool calls)
    max_tokens     max_tokens, context window length                   length
    tool_use       tool_use                   tool_calls, function_call stop with tool calls
    content_filter refusal                    content_filter           (never)
    stop_sequence  stop_sequence              (OpenAI reports stop)    (never)
    ============== ========================== ======================== ====================

    Attributes:
        text: The generated text (all text blocks joined).
        tool_calls: Tools the model asked to call.
        usage: Tokens used by this call.
        stop_reason: Why generation stopped, normalised as above; ``None`` if unknown.
        model: The model that answered, as the provider named it.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_call_tuple)
    usage: Usage = Usage()
    stop_reason: StopReason | None = attrs.field(default=None, validator=_stop_reason)
    model: str | None = None


@attrs.frozen
class TextDelta:
    """A chunk of text from a stream.

    Attributes:
        text: The new text.
    """

    text: str


_DEFAULT_PORTS = {"http": 80, "https": 443}
# "[userinfo@]host[:port]": a name or dotted address, or a bracketed IPv6 (or future)
# address; a port of up to five digits, below 65536 (checked where used).
_AUTHORITY = re.compile(
    r"(?P<userinfo>[^@\[\]]*@)?(?P<host>\[[0-9A-Za-z:.%_~-]+\]|[^:@\[\]]*)"
    r"(?::(?P<port>[0-9]{0,5}))?"
)


def _redacted_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"base_url must be a string, got {value!r}")
    # Redacting and respelling a malformed URL can expose a new match for either (an empty
    # fragment dropped, a userinfo found): repeat until nothing changes, so an endpoint's
    # URL read back (from a key, a result) gives the same endpoint.
    # Credentials are dropped, not shown as "***": they say who calls, not where, so one
    # server reached with a key in its URL and without (or with another key) is one
    # endpoint, with one breaker and one limit. The same goes for a credential in the query
    # (Gemini's "?key=", an Azure SAS "sig="): kept as "?key=***" it would split the URL
    # with the key in a header from the same URL with the key in the query.
    for _ in range(8):
        spelled = _canonical_url(without_credentials(value))
        if spelled == value:
            break
        value = spelled
    return value


def _canonical_url(url: str) -> str:
    """*url* in one spelling: ``HTTP://Host:80/v1/`` and ``http://host/v1`` are one endpoint.

    For ``http`` and ``https``: the scheme and a host name are lower-cased, a default port
    (80, 443) and trailing slashes of the path dropped; SDKs treat these spellings alike,
    so two adapters written either way share one breaker, one limit and one declared rate.
    Any other URL (``scripted://Name``, a custom adapter's), or one whose authority is not
    plainly ``[userinfo@]host[:port]``, is kept as written.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "http://[::1" and the like
        return url
    scheme = parts.scheme.lower()
    found = _AUTHORITY.fullmatch(parts.netloc) if scheme in _DEFAULT_PORTS else None
    if found is None or not found["host"]:
        return url
    host = found["host"]
    if not host.startswith("["):  # a bracketed address keeps its case (zone ids)
        host = host.lower()
    port = found["port"]
    if port and int(port) != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{int(port)}"  # "host:" and a default port are plain "host"
    netloc = f"{found['userinfo'] or ''}{host}"
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


@attrs.frozen
class Endpoint:
    """Where an adapter sends its calls: hashable, so callers can keep one breaker per endpoint.

    Attributes:
        provider: ``"anthropic"``, ``"openai"``, ``"ollama"``, ``"scripted"``, ...
        base_url: The provider's base URL without the credentials in it (userinfo, a
            credential-like query parameter such as ``api_key=``; anything else that looks
            like one is redacted as by :func:`redact_url`): an endpoint goes into breaker
            names, messages, logs and results, so it never carries a secret, and credentials
            are not part of it, so ``http://user:key@host/v1`` and ``http://host/v1`` are one
            endpoint. Adapters keep the real URL to themselves. It is kept in one spelling
            (scheme and host lower-cased, a default port and trailing slashes dropped), so
            ``http://host/v1/`` and ``HTTP://Host:80/v1`` are one endpoint, with one breaker
            and one limit.
        model: The model name.
    """

    provider: str
    base_url: str = attrs.field(converter=_redacted_url)
    model: str

    @property
    def key(self) -> str:
        """``"provider|base_url|model"``: a stable string key, for breakers and logs."""
        return f"{self.provider}|{self.base_url}|{self.model}"

    def __str__(self) -> str:
        """Same as :attr:`key`."""
        return self.key
