# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""``ToolMemory``, the store agents share, and the ``memory_store``/``memory_retrieve`` tools."""

from __future__ import annotations

import collections
import logging
import threading

from aegis_gov._checks import check_number
from aegis_gov._tool_errors import MemoryKeyNotFoundError, ValueTooLargeError

__all__ = ["ToolMemory", "memory_retrieve", "memory_store"]

logger = logging.getLogger(__name__)


class ToolMemory:
    """A bounded, thread-safe key-value store of strings shared by the agents of one registry.

    When full, storing a new key evicts the least recently used entry (stored or retrieved).
    A value larger than ``max_value_bytes`` (UTF-8) is refused; nothing is evicted for it.
    """

    __slots__ = ("_entries", "_lock", "max_entries", "max_value_bytes")

    def __init__(self, *, max_entries: int = 1000, max_value_bytes: int = 64_000) -> None:
        """Build an empty memory holding at most *max_entries* values of *max_value_bytes* each.

        Raises:
            ValueError: a limit is not positive.
            TypeError: a limit is not an int.
        """
        check_number("memory_max_entries", max_entries, integer=True)
        check_number("memory_max_value_bytes", max_value_bytes, integer=True)
        self.max_entries: int = max_entries
        self.max_value_bytes: int = max_value_bytes
        self._entries: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def store(self, key: str, value: str) -> None:
        """Store *value* under *key*, replacing any previous value; may evict the LRU entry.

        Raises:
            ValueError: *value* is larger than ``max_value_bytes`` in UTF-8.
        """
        size = len(value.encode("utf-8"))
        if size > self.max_value_bytes:
            raise ValueError(f"value of {size} bytes exceeds the {self.max_value_bytes}-byte limit")
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                evicted, _ = self._entries.popitem(last=False)
                logger.debug("tool memory full: evicted key %r", evicted)

    def retrieve(self, key: str) -> str:
        """Return the value under *key* and mark it recently used.

        Raises:
            KeyError: nothing is stored under *key*.
        """
        with self._lock:
            value = self._entries[key]
            self._entries.move_to_end(key)
            return value

    def keys(self) -> list[str]:
        """The stored keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """How many entries are stored."""
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether *key* is stored (does not count as a use)."""
        with self._lock:
            return key in self._entries


def memory_store(memory: ToolMemory, key: str, value: str) -> str:
    """Store *value* under *key* in the shared memory."""
    try:
        memory.store(key, value)
    except ValueError as exc:
        raise ValueTooLargeError(
            f"value for key {key!r} is over the {memory.max_value_bytes}-byte limit",
            tool_name="memory_store",
            limit_bytes=memory.max_value_bytes,
        ) from exc
    return f"stored key {key!r}"


def memory_retrieve(memory: ToolMemory, key: str) -> str:
    """Return the value stored under *key* in the shared memory."""
    try:
        return memory.retrieve(key)
    except KeyError as exc:
        raise MemoryKeyNotFoundError(
            f"nothing is stored under key {key!r}", tool_name="memory_retrieve", key=key
        ) from exc
