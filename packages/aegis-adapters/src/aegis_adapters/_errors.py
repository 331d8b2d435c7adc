# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""One error taxonomy for every adapter, and the helpers that classify provider failures."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from aegis_adapters._redact import redact_text

__all__ = [
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
    "unreadable_url_error",
]


class LLMError(Exception):
    """Base of every error an aegis adapter raises; the original exception is chained.

    Attributes:
        provider: The provider that failed (``"anthropic"``, ``"openai"``, ``"ollama"``, ...).
        status_code: The HTTP status, or ``None`` when there was no HTTP response (or the error
            arrived inside a 200 stream).
        provider_message: The provider's own error message, or a description of the failure,
            with any credentials written in a URL replaced by ``***``.
    """

    def __init__(
        self, provider: str, provider_message: str, *, status_code: int | None = None
    ) -> None:
        """Build the error; the message names the provider and the status code."""
        self.provider = provider
        self.status_code = status_code
        # Messages often quote a library's exception text, which may quote a URL.
        provider_message = redact_text(provider_message)
        self.provider_message = provider_message
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{provider}{status}: {provider_message}")

    def __reduce__(self) -> tuple[Callable[..., LLMError], tuple[object, ...], dict[str, object]]:
        """Pickle with the keyword-only attributes (exceptions cross process boundaries)."""
        args = (type(self), self.provider, self.provider_message, self.status_code)
        return (_rebuild, args, self.__dict__)


def _rebuild(
    cls: type[LLMError], provider: str, provider_message: str, status_code: int | None
) -> LLMError:
    error = cls.__new__(cls)
    LLMError.__init__(error, provider, provider_message, status_code=status_code)
    return error


class RetryableError(LLMError):
    """A transient failure: the same call may succeed later (or on another endpoint).

    Attributes:
        retry_after_s: How long the provider asked to wait, in seconds, if it said.
    """

    def __init__(
        self,
        provider: str,
        provider_message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Build the error; ``retry_after_s`` comes from the provider's headers, if any."""
        super().__init__(provider, provider_message, status_code=status_code)
        self.retry_after_s = retry_after_s


class RateLimitError(RetryableError):
    """HTTP 429 (but not a hard quota): too many requests or tokens for now."""


class ProviderUnavailableError(RetryableError):
    """The provider could not answer now.

    Raised for 5xx, Anthropic's 529 overloaded, connection refused or reset, a timeout, a
    connection dropped mid-stream, a stream that ended without its final event, and an error
    event inside a 200 stream.
    """


class PermanentError(LLMError):
    """Retrying the same call will fail the same way."""


class AuthenticationError(PermanentError):
    """HTTP 401 or 403: the key is missing, wrong, or lacks permission."""


class InvalidRequestError(PermanentError):
    """HTTP 400, 413 or 422, or a malformed response the adapter cannot read."""


class ModelNotFoundError(PermanentError):
    """HTTP 404: the model (or the endpoint) does not exist; for Ollama, it is not pulled."""


class QuotaExceededError(PermanentError):
    """A hard quota (OpenAI's 429 ``insufficient_quota``): waiting will not help."""


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Read how long to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date).

    Args:
        headers: Response headers; looked up case-insensitively.
        now: Wall clock (epoch seconds) used for HTTP dates; injectable for tests.

    Returns:
        Seconds to wait (never negative), or ``None`` when no header says or it is unreadable.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        seconds = _float_or_none(millis)
        if seconds is not None:
            return max(seconds / 1000.0, 0.0)
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _float_or_none(value)
    if seconds is not None:
        return max(seconds, 0.0)
    import email.utils  # noqa: PLC0415  # lazy: only an HTTP-date Retry-After needs it

    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now(), 0.0)


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_RATE_LIMIT_TYPES = frozenset({"rate_limit_error", "rate_limit_exceeded", "requests", "tokens"})
_QUOTA_TYPES = frozenset({"insufficient_quota", "billing_error"})
_AUTH_TYPES = frozenset({"authentication_error", "permission_error", "invalid_api_key"})
_NOT_FOUND_TYPES = frozenset({"not_found_error", "model_not_found"})
_INVALID_TYPES = frozenset({"invalid_request_error", "request_too_large"})


def classify_failure(  # noqa: PLR0911  # one return per error class reads best
    provider: str,
    message: str,
    *,
    status_code: int | None,
    error_type: str | None = None,
    error_code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> LLMError:
    """Map a provider failure to its aegis error class, by status code and error type.

    A status of ``None`` or 200 means the error arrived inside a successful stream: it is classified
    by its type and defaults to :class:`ProviderUnavailableError`.

    Args:
        provider: The provider's name.
        message: The provider's error message.
        status_code: The HTTP status, if there was one.
        error_type: The provider's error type (``"overloaded_error"``, ``"rate_limit_error"``...).
        error_code: The provider's error code (OpenAI's ``"insufficient_quota"``...).
        headers: Response headers, read for ``retry-after``.

    Returns:
        The error to raise (the caller chains the original with ``raise ... from``).
    """
    kinds = {kind for kind in (error_type, error_code) if kind}
    retry_after_s = parse_retry_after(headers) if headers is not None else None
    if status_code == 200:  # noqa: PLR2004  # the error arrived inside a successful stream
        status_code = None
    status = status_code
    if kinds & _QUOTA_TYPES:
        return QuotaExceededError(provider, message, status_code=status_code)
    if status == 429 or (status is None and kinds & _RATE_LIMIT_TYPES):  # noqa: PLR2004
        return RateLimitError(
            provider, message, status_code=status_code, retry_after_s=retry_after_s
        )
    if status in {401, 403} or (status is None and kinds & _AUTH_TYPES):
        return AuthenticationError(provider, message, status_code=status_code)
    if status == 404 or (status is None and kinds & _NOT_FOUND_TYPES):  # noqa: PLR2004
        return ModelNotFoundError(provider, message, status_code=status_code)
    if status is None and kinds & _INVALID_TYPES:
        return InvalidRequestError(provider, message, status_code=status_code)
    # 408 (request timeout) and 409 (conflict) are transient, as the SDKs also treat them.
    if status is not None and 400 <= status < 500 and status not in {408, 409}:  # noqa: PLR2004
        return InvalidRequestError(provider, message, status_code=status_code)
    return ProviderUnavailableError(
        provider, message, status_code=status_code, retry_after_s=retry_after_s
    )


def unreadable_url_error(provider: str, exc: BaseException) -> InvalidRequestError:
    """The error for an HTTP client that could not read the base URL (``InvalidURL``).

    The client's own text is not quoted: it quotes the URL, or the part of a password it
    took for a port (``Invalid port: 'pa'``), where a quote or a '/' in the password can
    keep redaction from seeing a credential.
    """
    return InvalidRequestError(
        provider,
        f"bad request configuration: the HTTP client could not read the base URL "
        f"({type(exc).__name__}; percent-encode any '/', '?', '#', '@', ':' or quote in "
        f"its user name or password)",
    )
