"""The text a `RedisStore` keeps a breaker's `Machine` as: exact, compact, versionless."""

from __future__ import annotations

from typing import Final

from aegis_breaker._events import CircuitState
from aegis_breaker._machine import Machine
from aegis_breaker._windows import CountState, HalfState, TimeState, WindowState

__all__ = ["CODES", "STATES", "decode", "encode"]

STATES: Final = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.FORCED_OPEN,
    CircuitState.DISABLED,
)
"""States by their code in the encoding and in published events."""
CODES: Final = {state: code for code, state in enumerate(STATES)}

_TO_DIGITS: Final = bytes.maketrans(bytes(range(5)), b"01234")
_FROM_DIGITS: Final = bytes.maketrans(b"01234", bytes(range(5)))


def _encode_window(window: WindowState | None) -> str:
    if window is None:
        return ""
    if isinstance(window, CountState):
        ring = window.ring.translate(_TO_DIGITS).decode()
        return f"c{window.i}:{window.calls}:{window.failed}:{window.slow}:{ring}"
    head = "" if window.head is None else window.head
    warm = "" if window.warm is None else window.warm
    buckets = ";".join(f"{slot}/{c}/{f}/{s}" for slot, (c, f, s) in enumerate(window.buckets) if c)
    totals = f"{window.calls}:{window.failed}:{window.slow}"
    return f"t{head}:{warm}:{totals}:{len(window.buckets)}:{buckets}"


def _decode_window(text: str) -> WindowState | None:
    if not text:
        return None
    if text[0] == "c":
        i, calls, failed, slow, ring = text[1:].split(":")
        return CountState(
            ring.encode().translate(_FROM_DIGITS), int(i), int(calls), int(failed), int(slow)
        )
    head, warm, calls, failed, slow, size, packed = text[1:].split(":")
    buckets = [(0, 0, 0)] * int(size)
    for cell in packed.split(";") if packed else ():
        slot, c, f, s = (int(x) for x in cell.split("/"))
        buckets[slot] = (c, f, s)
    return TimeState(
        int(head) if head else None,
        tuple(buckets),
        int(calls),
        int(failed),
        int(slow),
        int(warm) if warm else None,
    )


def encode(m: Machine) -> str:
    """*m* as text: fields split by ``|``; times as exact float reprs."""
    probes = ",".join(f"{seq}@{at!r}" for seq, at in m.probes)
    half = "" if m.half is None else f"{m.half.calls},{m.half.failed},{m.half.slow}"
    return (
        f"{CODES[m.state]}|{m.generation}|{m.failures}|{m.successes}|{m.open_until!r}|"
        f"{m.probe_seq}|{probes}|{_encode_window(m.window)}|{half}"
    )


def decode(text: str) -> Machine:
    """The `Machine` *text* encodes (see `encode`).

    Raises:
        ValueError: When *text* is not an encoded `Machine`.
    """
    try:
        state, gen, failures, successes, until, seq, probes, window, half = text.split("|")
        pairs = tuple((int(s), float(a)) for s, a in (p.split("@") for p in probes.split(",") if p))
        counts = tuple(int(x) for x in half.split(",")) if half else None
        return Machine(
            STATES[int(state)],
            int(gen),
            int(failures),
            int(successes),
            float(until),
            int(seq),
            pairs,
            _decode_window(window),
            None if counts is None else HalfState(*counts),
        )
    except (ValueError, IndexError, TypeError) as exc:
        raise ValueError(f"not an encoded breaker state: {text!r}") from exc
