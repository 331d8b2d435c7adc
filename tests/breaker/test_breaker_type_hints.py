"""aegis_breaker's public annotations resolve at runtime, not only for type checkers."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping

import aegis_breaker
import attrs
from aegis_breaker import AgentPool, BreakerSettings, CircuitBreaker, RateLimiter

from tests.public_annotations import DEFERRED, public_attrs_classes, public_targets, unresolved


def test_every_public_annotation_resolves_at_runtime() -> None:
    assert unresolved(aegis_breaker) == {}
    assert [label for label in DEFERRED if label.startswith("aegis_breaker.")] == []


def test_the_check_covers_the_redis_and_rate_limit_api() -> None:
    labels = {label for label, _ in public_targets(aegis_breaker)}
    assert {
        "aegis_breaker.AgentPool.arun",
        "aegis_breaker.CircuitBreaker.__call__",
        "aegis_breaker.RateLimiter.__init__",
        "aegis_breaker.RedisCircuitBreaker.__init__",
        "aegis_breaker.connect_redis",
        "aegis_breaker.redis_agent_pool",
    } <= labels


def test_resolved_annotations_are_the_real_types() -> None:
    assert (
        typing.get_type_hints(vars(AgentPool)["breakers"].fget)["return"]
        == Mapping[str, CircuitBreaker]
    )
    fn = typing.get_type_hints(CircuitBreaker.acall)["fn"]
    assert typing.get_origin(fn) is Callable
    assert typing.get_origin(typing.get_args(fn)[-1]) is Awaitable
    assert typing.get_type_hints(RateLimiter.__init__)["clock"] == Callable[[], float]


def test_attrs_resolves_every_public_attrs_class() -> None:
    classes = public_attrs_classes(aegis_breaker)
    assert BreakerSettings in classes
    assert len(classes) >= 10
    for cls in classes:
        attrs.resolve_types(cls)
        assert [f.name for f in attrs.fields(cls) if isinstance(f.type, str)] == [], cls
