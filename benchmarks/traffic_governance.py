"""Traffic governance under degraded providers: the four benchmarks of issue 15.

Every figure is measured against a loopback OpenAI-compatible server started by this script
(``http.server.ThreadingHTTPServer`` on 127.0.0.1, ``POST /<name>/v1/chat/completions``),
driven through the real ``OpenAIAdapter`` (the ``openai`` SDK). Each ``<name>`` is one fake
provider endpoint with its own behaviour:

* rate-limited: a token bucket of ``R`` requests/s holding at most ``BURST`` tokens; past it
  the answer is 429 with ``retry-after`` = seconds until the next token (rounded up to 10 ms);
* concurrency-capped: at most ``C`` requests in flight, 503 past that (OpenAI's "engine is
  currently overloaded", no retry-after);
* failing: always 500;
* healthy: answers after 50 ms;
* outage: 503 for the first 2 s after it is armed, then healthy.

The figures:

1. **Declared limit** -- ``N_RATE`` independent tasks with
   ``limits={model: Limits(requests_per_minute=...)}`` against the rate-limited endpoint.
   *Goodput* = 160 answers / wall time, as a share of ``R`` (target >= 95%); *429 share* =
   429 answers / all answers (target <= 1%). Run once with ``R * 60`` per minute and once
   slightly under it (``0.95 * R * 60``, whose goodput is measured against what it declared).
   Run a third time declaring ``1.2 * R * 60``, more than the server gives: shown, not
   judged (a declared rate replaces the learned one, so 429s are only retried).
   ``Limits`` spaces requests evenly by default (``burst`` 1); until it did, its bucket held
   a second's worth (``R``) against the server's ``BURST`` of 2, and every 429 came in the
   first second.
2. **Adaptive, nothing declared** -- the same load with no limits (targets: goodput >= 85% of
   ``R``, 429 share <= 15%); in the same run a naive peer: a thread pool of the same width
   whose calls retry every retryable error with exponential backoff and full jitter
   (tenacity's ``wait_random_exponential``: ``uniform(0, min(30, 0.5 * 2 ** n))``), no shared
   limit, no retry-after. Also shown, not judged: the aegis run against the same server
   with its 429s carrying no ``retry-after`` (the issue's server sends one; some
   OpenAI-compatible servers do not), where the pace is learned from the 429s alone; and
   against a slow model (``SLOW_R`` requests/s, answers after ``SLOW_S``, 429s at once, as
   hosted models behave), its makespan against the ideal. Then
   the same pair against the concurrency-capped endpoint (goodput as a share of
   ``C / latency``), and, shown, a thread pool of exactly ``C`` calling the adapter with no
   retries: what a client told the cap gets on this machine. It falls short of 100% by the
   client side of each call (the ``openai`` SDK's CPU, milliseconds a call), during which
   that slot sends nothing; a run whose capped figure misses 85% can be read against it.
   The capped trio runs twice, both judged: with answers in 50 ms (``LATENCY_S``, where the
   client's milliseconds a call are a tenth of each call) and in 250 ms
   (``CAP_SLOW_LATENCY_S``, still quicker than any hosted model answers, where they are not).
3. **Neighbour isolation** -- ``max_concurrent=4``; a healthy endpoint's tasks (50 ms each)
   alone, then in one run with tasks of an always-500 endpoint that retry per their
   ``RetryPolicy`` with real sleeps. Figure: when the healthy tasks' last one finished, with
   the failing neighbour against without (target: within 10%). Best of 5, alternating.
4. **Recovery** -- tasks at once on an endpoint that is down (503) for 2 s then healthy,
   with a retry budget that covers the outage and a breaker that opens after 3 failures and
   probes after 0.5 s. Every task must end DONE; makespan against the same tasks with no
   outage (target: at most 2 s + 120% of it). Run twice, both judged: ``N_RECOVERY_SHORT``
   tasks (0.3 s of work; the figure published before) and ``N_RECOVERY`` (2 s of work, as
   long as the outage). The target's slack is 20% of the no-outage run, so it grows with the
   work: 60 ms at 40 tasks, about 430 ms at 320. What recovery itself costs is the time the
   outage adds past its own 2 s, printed for both: the probe's phase against the 2 s (probes
   go every 0.5 s or so, so it lands up to 0.5 s late), the probe's own round trip (50 ms,
   one task) and one round trip of ramp-up (half the former limit, then all of it). At 40
   tasks that is more than 60 ms for any client that probes before it floods.

The server answers each request in one write with ``TCP_NODELAY``: before, Nagle's algorithm
held every body until the client's delayed ACK of the headers, about 40 ms, so a 50 ms answer
took 96 ms and every figure against ``LATENCY_S`` was off by that much.

Run: ``python benchmarks/traffic_governance.py`` (about 3 minutes on 2 cores; needs the ``openai``
extra of aegis-adapters). Loopback only; every loop and retry is bounded.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aegis_gov import (
    AgentConfig,
    AgentPool,
    Limits,
    Message,
    OpenAIAdapter,
    OpenMultiAgent,
    RateLimitError,
    RetryableError,
    RetryPolicy,
    RunEvent,
    Task,
    TaskState,
    TaskSucceeded,
)

R = 20.0
"""Requests per second the rate-limited endpoint allows."""
BURST = 2.0
"""Tokens its bucket holds: how many requests may go at once after an idle spell."""
N_RATE = 160
"""Tasks in benchmarks 1 and 2: 8 s of work at ``R``."""
WIDTH = 8
"""``max_concurrent`` of the pool in benchmarks 1 and 2, and the naive peer's threads."""
CAP = 4
"""Requests in flight the concurrency-capped endpoint allows."""
LATENCY_S = 0.05
"""How long a healthy endpoint takes to answer."""
N_CAP = 320
"""Tasks against the concurrency-capped endpoint: 4 s at ``CAP / LATENCY_S``."""
CAP_SLOW_LATENCY_S = 0.25
"""How long the second capped endpoint takes to answer: still fast for a model, but long
enough that the client's own milliseconds a call no longer decide the figure."""
N_CAP_SLOW = 160
"""Tasks against the second capped endpoint: 10 s at ``CAP / CAP_SLOW_LATENCY_S``."""
N_HEALTHY = 80
"""Healthy tasks in benchmark 3: 1 s of work at 4 in flight."""
N_FAILING = 8
"""Tasks of the failing neighbour in benchmark 3."""
ISOLATION_ROUNDS = 5
"""Benchmark 3 runs alone and beside the neighbour this many times each, alternating."""
OUTAGE_S = 2.0
N_RECOVERY = 320
"""Tasks in benchmark 4's long run: 2 s of work at 8 in flight, as long as the outage."""
N_RECOVERY_SHORT = 40
"""Tasks in benchmark 4's short run: 0.3 s of work."""
SLOW_R = 5.0
"""Requests per second of the slow model (benchmark 2, shown): it answers in ``SLOW_S``."""
SLOW_S = 2.0
"""How long the slow model takes to answer; its 429s come at once."""
N_SLOW = 100
"""Tasks against the slow model: 20 s of work at ``SLOW_R``."""
NAIVE_ATTEMPTS = 30
"""The naive peer gives up after this many attempts (bounds its loop)."""
RUN_TIMEOUT_S = 30.0
"""No aegis run may take longer (``run_timeout_s``): bounds the script."""


# -- the loopback provider ----------------------------------------------------------------


class FakeProvider:
    """One endpoint of the loopback server, with its behaviour and its answer counts."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: float = BURST,
        max_in_flight: int | None = None,
        latency_s: float = 0.0,
        fail_status: int | None = None,
        outage_s: float = 0.0,
        retry_after: bool = True,
    ) -> None:
        self.rate = rate
        self.retry_after = retry_after
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.latency_s = latency_s
        self.fail_status = fail_status
        self.outage_s = outage_s
        self._lock = threading.Lock()
        self._tokens = burst
        self._last = time.monotonic()
        self._down_until = 0.0
        self._in_flight = 0
        self._armed = self._last
        self.first_ok: float | None = None
        """Seconds from arming to the first request not answered with a failure."""
        self.counts: Counter[int] = Counter()

    def arm(self) -> None:
        """Reset the counts and the bucket; start the outage, if any, now."""
        with self._lock:
            self.counts.clear()
            self._tokens = self.burst
            self._last = time.monotonic()
            self._armed = self._last
            self.first_ok = None
            self._down_until = self._last + self.outage_s

    def admit(self) -> tuple[int, dict[str, str]]:
        """Decide the answer to one request: a status and extra headers."""
        with self._lock:
            now = time.monotonic()
            if self.first_ok is None and not (now < self._down_until or self.fail_status):
                self.first_ok = now - self._armed
            status, headers = 200, {}
            if self.fail_status is not None:
                status = self.fail_status
            elif now < self._down_until:
                status = 503
            elif self.rate is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                else:
                    wait = math.ceil((1.0 - self._tokens) / self.rate * 100) / 100
                    status = 429
                    if self.retry_after:
                        headers = {"retry-after": f"{wait:.2f}"}
            if status == 200 and self.max_in_flight is not None:
                if self._in_flight >= self.max_in_flight:
                    status = 503
                else:
                    self._in_flight += 1
            self.counts[status] += 1
            return status, headers

    def done(self) -> None:
        """A request admitted under the concurrency cap has been answered."""
        if self.max_in_flight is not None:
            with self._lock:
                self._in_flight -= 1

    @property
    def ok(self) -> int:
        return self.counts[200]

    def share(self, status: int) -> float:
        total = sum(self.counts.values())
        return self.counts[status] / total if total else 0.0


_ERRORS = {
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error", "server_error", None),
    503: ("The engine is currently overloaded", "server_error", None),
}


def _completion(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "pong"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK expects
    # Headers and body leave in one write, and at once: with Nagle's algorithm on, the body
    # waited for the client's delayed ACK of the headers, adding ~40 ms to every answer.
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: flushed once per request, after do_POST
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        name, _, rest = self.path.lstrip("/").partition("/")
        provider = self.server.providers.get(name)
        if provider is None or rest != "v1/chat/completions":
            self._reply(404, b'{"error": {"message": "no such endpoint"}}', {})
            return
        status, headers = provider.admit()
        if status != 200:
            message, kind, code = _ERRORS[status]
            error = {"message": message, "type": kind, "code": code}
            self._reply(status, json.dumps({"error": error}).encode(), headers)
            return
        try:
            if provider.latency_s:
                time.sleep(provider.latency_s)
        finally:
            provider.done()
        self._reply(200, _completion(str(body.get("model", "m"))), headers)

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # the base's name
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    providers: dict[str, FakeProvider]


@contextmanager
def loopback(**providers: FakeProvider) -> Iterator[str]:
    """Serve *providers* on 127.0.0.1; yield the server's URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.providers = providers
    thread = threading.Thread(target=server.serve_forever, name="fake-provider", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- helpers --------------------------------------------------------------------------------


def adapter(url: str, name: str, model: str = "bench-model") -> OpenAIAdapter:
    return OpenAIAdapter(model, base_url=f"{url}/{name}/v1", api_key="sk-test", timeout_s=10.0)


def tasks(prefix: str, count: int, agent: str) -> list[Task]:
    return [Task(f"{prefix}{i}", description=f"ping {i}", agent=agent) for i in range(count)]


def run(
    oma: OpenMultiAgent,
    work: Sequence[Task],
    *agents: AgentConfig,
    timeout_s: float = RUN_TIMEOUT_S,
) -> tuple[float, dict[str, int], dict[str, float], list[str]]:
    """Run *work*; return (wall time, status counts, finish time per task, failure messages)."""
    finished: dict[str, float] = {}
    start = time.perf_counter()

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskSucceeded):
            finished[event.task_id] = time.perf_counter() - start

    team = OpenMultiAgent.create_team("bench", *agents)
    result = oma.run_tasks(work, team, on_event=on_event, stream=False, run_timeout_s=timeout_s)
    elapsed = time.perf_counter() - start
    failures = [
        f"{r.task_id}: {r.error_type}: {r.error}"
        for r in result.values()
        if r.status is not TaskState.DONE
    ]
    return elapsed, result.summary(), finished, failures


def exact_pool(chat: OpenAIAdapter, count: int, width: int) -> float:
    """*count* calls from a thread pool of *width*, no retries; return the wall time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=width) as pool:
        for _ in pool.map(lambda i: chat.chat([Message.user(f"ping {i}")]), range(count)):
            pass
    return time.perf_counter() - start


def naive_peer(chat: OpenAIAdapter, count: int, width: int, seed: int = 1) -> tuple[float, int]:
    """A thread pool of *width* retrying with exponential backoff and full jitter.

    Returns (wall time, calls that gave up).
    """
    rng = random.Random(seed)  # jitter, not cryptography
    lock = threading.Lock()

    def jitter(attempt: int) -> float:
        with lock:
            return rng.uniform(0.0, min(30.0, 0.5 * 2.0 ** (attempt - 1)))

    def once(i: int) -> bool:
        try:
            chat.chat([Message.user(f"ping {i}")])
        except RetryableError:
            return False
        return True

    def call(i: int) -> bool:
        for attempt in range(1, NAIVE_ATTEMPTS + 1):
            if once(i):
                return True
            if attempt < NAIVE_ATTEMPTS:
                time.sleep(jitter(attempt))
        return False

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=width) as pool:
        answered = list(pool.map(call, range(count)))
    return time.perf_counter() - start, answered.count(False)


def _pct(value: float) -> str:
    return f"{value * 100:5.1f}%"


ROWS: list[tuple[str, str, str, str]] = []


def report(name: str, figure: str, target: str, *, met: bool | None) -> None:
    verdict = "-" if met is None else ("met" if met else "MISSED")
    ROWS.append((name, figure, target, verdict))
    print(f"  {name}: {figure}   [target {target}: {verdict}]")


def warm_up(url: str) -> None:
    """Import the SDK and open a connection once, outside every timing."""
    adapter(url, "warm").chat([Message.user("hi")])


# -- 1 and 2: rate limits -----------------------------------------------------------------


def rate_limits_do_not_trip(exc: BaseException) -> bool:
    """An ``is_failure`` a user might pass so that 429s never open the circuit.

    The default rule leaves every 429 out too, so this run differs from the default one only
    in what a pool's own rule also decides: refusals ("one call too many") count by it.
    """
    return isinstance(exc, RetryableError) and not isinstance(exc, RateLimitError)


def aegis_load(
    url: str,
    provider: FakeProvider,
    name: str,
    count: int,
    pool: AgentPool,
    *,
    limits: dict[str, Limits] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> float:
    """Run *count* tasks on the endpoint *name*; print what happened; return the wall time."""
    oma = OpenMultiAgent(
        pool, retry=RetryPolicy(max_attempts=20, max_total_delay_s=60.0), limits=limits
    )
    chat = adapter(url, name)
    provider.arm()
    elapsed, summary, _, failures = run(
        oma, tasks("t", count, "w"), AgentConfig("w", adapter=chat), timeout_s=timeout_s
    )
    status = oma.get_status().endpoints.get(chat.endpoint.key)
    seen = ""
    if status is not None and status.adaptive is not None:
        seen = (
            f"; circuit {status.state.name.lower()}, adaptive limit "
            f"{status.adaptive.limit}/{status.adaptive.max_limit}, "
            f"{status.adaptive.overloads} overloads seen"
        )
    print(
        f"    aegis: {summary}, {elapsed:.2f} s, {provider.ok} x 200, "
        f"{provider.counts[429]} x 429, {provider.counts[503]} x 503{seen}"
    )
    for failure in failures[:2]:
        print(f"      e.g. {failure[:150]}")
    return elapsed


def naive_load(url: str, provider: FakeProvider, name: str, count: int, width: int) -> float:
    provider.arm()
    elapsed, gave_up = naive_peer(adapter(url, name), count, width)
    print(
        f"    naive: {elapsed:.2f} s, {provider.ok} x 200, {provider.counts[429]} x 429, "
        f"{provider.counts[503]} x 503, {gave_up} gave up"
    )
    return elapsed


def rate_figures(
    label: str,
    provider: FakeProvider,
    elapsed: float,
    targets: tuple[float, float] | None,
    *,
    capacity: float = R,
    status: int = 429,
    of: str | None = None,
    unjudged: str = "peer",
) -> None:
    put = provider.ok / elapsed
    of = of or ("R" if status == 429 else "C/latency")
    low, high = targets or (0.0, 1.0)
    report(
        f"{label}: goodput",
        f"{put:5.1f}/s = {_pct(put / capacity)} of {of}",
        f">= {low:.0%}" if targets else unjudged,
        met=put >= low * capacity if targets else None,
    )
    share = provider.share(status)
    report(
        f"{label}: {status} share",
        _pct(share),
        f"<= {high:.0%}" if targets else unjudged,
        met=share <= high if targets else None,
    )


def bench_declared(url: str, providers: dict[str, FakeProvider]) -> None:
    print(
        f"\n1. Declared limit: {N_RATE} tasks, server {R:g} req/s (burst {BURST:g}), "
        f"max_concurrent {WIDTH}"
    )
    for label, name, rpm, of in (
        ("declared R*60/min", "declared", R * 60, "R"),
        ("declared 0.95*R*60/min", "declared95", 0.95 * R * 60, "0.95*R declared"),
        ("declared 1.2*R*60/min (too high)", "declared120", 1.2 * R * 60, "R"),
    ):
        provider = providers[name]
        limits = {"bench-model": Limits(requests_per_minute=rpm)}
        elapsed = aegis_load(
            url, provider, name, N_RATE, AgentPool(max_concurrent=WIDTH), limits=limits
        )
        if rpm > R * 60:  # declared over what the server gives: shown, not judged
            rate_figures(label, provider, elapsed, None, unjudged="shown")
        else:
            rate_figures(label, provider, elapsed, (0.95, 0.01), capacity=rpm / 60, of=of)


def bench_adaptive(url: str, providers: dict[str, FakeProvider]) -> None:
    print(
        f"\n2. Adaptive, nothing declared: {N_RATE} tasks, server {R:g} req/s "
        f"(burst {BURST:g}), max_concurrent {WIDTH}; naive peer {WIDTH} threads"
    )
    elapsed = aegis_load(
        url, providers["adaptive"], "adaptive", N_RATE, AgentPool(max_concurrent=WIDTH)
    )
    rate_figures("adaptive", providers["adaptive"], elapsed, (0.85, 0.15))
    elapsed = naive_load(url, providers["naive"], "naive", N_RATE, WIDTH)
    rate_figures("naive backoff peer", providers["naive"], elapsed, None)
    print("   the same aegis run with a pool given its own is_failure leaving 429s out")
    elapsed = aegis_load(
        url,
        providers["no_429_failures"],
        "no_429_failures",
        N_RATE,
        AgentPool(max_concurrent=WIDTH, is_failure=rate_limits_do_not_trip),
    )
    rate_figures(
        "adaptive, 429s not breaker failures", providers["no_429_failures"], elapsed, (0.85, 0.15)
    )
    print("   the same aegis run against a server whose 429s carry no Retry-After (shown)")
    elapsed = aegis_load(
        url, providers["bare_429"], "bare_429", N_RATE, AgentPool(max_concurrent=WIDTH)
    )
    rate_figures(
        "adaptive, 429s without Retry-After", providers["bare_429"], elapsed, None, unjudged="shown"
    )
    print(
        f"   a slow model (shown): {N_SLOW} tasks, server {SLOW_R:g} req/s (burst {BURST:g}) "
        f"answering in {SLOW_S:g} s, its 429s at once; max_concurrent 32 (ideal "
        f"{N_SLOW / SLOW_R + SLOW_S:g} s: the last answer comes {SLOW_S:g} s after its request)"
    )
    elapsed = aegis_load(
        url, providers["slow"], "slow", N_SLOW, AgentPool(max_concurrent=32), timeout_s=120.0
    )
    ideal = N_SLOW / SLOW_R + SLOW_S
    report(
        "adaptive, slow model: makespan / ideal",
        f"{elapsed:.1f} s / {ideal:g} s = {elapsed / ideal:.2f}x",
        "shown",
        met=None,
    )

    for latency_s, count in ((LATENCY_S, N_CAP), (CAP_SLOW_LATENCY_S, N_CAP_SLOW)):
        bench_capped(url, providers, latency_s, count)


def bench_capped(
    url: str, providers: dict[str, FakeProvider], latency_s: float, count: int
) -> None:
    """The adaptive pair (and the exact-C reference) against the concurrency-capped endpoint."""
    capacity = CAP / latency_s
    ms = f"{latency_s * 1e3:.0f} ms"
    print(
        f"   concurrency cap: {count} tasks, server {CAP} in flight x {ms} "
        f"(= {capacity:g}/s), 503 past it; max_concurrent 16, "
        "recovery_timeout_s 1; naive peer 16 threads"
    )
    names = [
        f"capped{'' if latency_s == LATENCY_S else '_slow'}{kind}"
        for kind in ("", "_naive", "_exact")
    ]
    pool = AgentPool(max_concurrent=16, recovery_timeout_s=1.0)
    elapsed = aegis_load(url, providers[names[0]], names[0], count, pool)
    rate_figures(
        f"capped {ms}, adaptive",
        providers[names[0]],
        elapsed,
        (0.85, 0.15),
        capacity=capacity,
        status=503,
    )
    elapsed = naive_load(url, providers[names[1]], names[1], count, 16)
    rate_figures(
        f"capped {ms}, naive peer",
        providers[names[1]],
        elapsed,
        None,
        capacity=capacity,
        status=503,
    )
    print(
        f"   reference (shown): a thread pool of exactly {CAP} calling the adapter, as a client "
        "told the cap would; what this machine's client side allows"
    )
    provider = providers[names[2]]
    provider.arm()
    elapsed = exact_pool(adapter(url, names[2]), count, CAP)
    print(f"    exact: {elapsed:.2f} s, {provider.ok} x 200, {provider.counts[503]} x 503")
    rate_figures(
        f"capped {ms}, exactly {CAP} threads",
        provider,
        elapsed,
        None,
        capacity=capacity,
        status=503,
        unjudged="shown",
    )


# -- 3: neighbour isolation ---------------------------------------------------------------


def bench_isolation(url: str, providers: dict[str, FakeProvider]) -> None:
    print(
        f"\n3. Neighbour isolation: max_concurrent 4, {N_HEALTHY} healthy tasks x "
        f"{LATENCY_S * 1e3:.0f} ms; neighbour: {N_FAILING} tasks on an always-500 endpoint"
    )
    retry = RetryPolicy(max_attempts=4, initial_delay_s=0.5, max_total_delay_s=30.0)
    alone: list[float] = []
    beside: list[float] = []
    for _ in range(ISOLATION_ROUNDS):
        for crowded in (False, True):
            # The breaker never opens: the failing tasks retry with real sleeps throughout.
            pool = AgentPool(max_concurrent=4, consecutive_failure_limit=1000)
            oma = OpenMultiAgent(pool, retry=retry)
            good = AgentConfig("good", adapter=adapter(url, "healthy"))
            bad = AgentConfig("bad", adapter=adapter(url, "failing"))
            work = tasks("g", N_HEALTHY, "good")
            if crowded:
                work = tasks("b", N_FAILING, "bad") + work
            providers["failing"].arm()
            elapsed, summary, finished, _ = run(oma, work, good, bad)
            healthy_done = max(t for k, t in finished.items() if k.startswith("g"))
            (beside if crowded else alone).append(healthy_done)
            print(
                f"    {'with' if crowded else 'without'} neighbour: {summary}, healthy done "
                f"{healthy_done:.3f} s, run {elapsed:.2f} s, "
                f"{providers['failing'].counts[500]} x 500"
            )
    ratio = min(beside) / min(alone)
    report(
        "isolation: healthy tasks, with / without failing neighbour",
        f"{min(beside):.3f} s / {min(alone):.3f} s = {ratio:.3f}x",
        "<= 1.10x",
        met=ratio <= 1.10,
    )


# -- 4: recovery ----------------------------------------------------------------------------


def bench_recovery(url: str, providers: dict[str, FakeProvider]) -> None:
    for count in (N_RECOVERY_SHORT, N_RECOVERY):
        recovery_run(url, providers, count)


def recovery_run(url: str, providers: dict[str, FakeProvider], count: int) -> None:
    print(
        f"\n4. Recovery: {count} tasks at once, endpoint down (503) for "
        f"{OUTAGE_S:g} s then healthy ({LATENCY_S * 1e3:.0f} ms), max_concurrent 8, breaker "
        "opens after 3 failures, recovery_timeout_s 0.5"
    )
    retry = RetryPolicy(max_attempts=10, max_total_delay_s=30.0)
    makespans: dict[str, float] = {}
    label = f"recovery, {count} tasks"
    for name in ("steady", "outage"):
        pool = AgentPool(max_concurrent=8, consecutive_failure_limit=3, recovery_timeout_s=0.5)
        oma = OpenMultiAgent(pool, retry=retry)
        provider = providers[name]
        provider.arm()
        elapsed, summary, _, failures = run(
            oma, tasks("r", count, "w"), AgentConfig("w", adapter=adapter(url, name))
        )
        makespans[name] = elapsed
        first = provider.first_ok or 0.0
        print(
            f"    {name}: {summary}, makespan {elapsed:.2f} s, {provider.ok} x 200, "
            f"{provider.counts[503]} x 503; first answer at {first:.2f} s, "
            f"{elapsed - first:.2f} s from it to the end"
        )
        for failure in failures[:5]:
            print(f"      failed {failure}")
        if name == "outage":
            report(
                f"{label}: tasks done",
                f"{summary.get('done', 0)}/{count}",
                "all, none failed",
                met=summary == {"done": count},
            )
    allowed = OUTAGE_S + 1.2 * makespans["steady"]
    added = makespans["outage"] - OUTAGE_S - makespans["steady"]
    report(
        f"{label}: makespan with outage",
        f"{makespans['outage']:.2f} s (no outage {makespans['steady']:.2f} s; "
        f"{added * 1e3:.0f} ms added past the 2 s)",
        f"<= {allowed:.2f} s",
        met=makespans["outage"] <= allowed,
    )


def main() -> None:
    providers = {
        "warm": FakeProvider(),
        "declared": FakeProvider(rate=R),
        "declared95": FakeProvider(rate=R),
        "declared120": FakeProvider(rate=R),
        "adaptive": FakeProvider(rate=R),
        "naive": FakeProvider(rate=R),
        "no_429_failures": FakeProvider(rate=R),
        "bare_429": FakeProvider(rate=R, retry_after=False),
        "slow": FakeProvider(rate=SLOW_R, latency_s=SLOW_S),
        "capped": FakeProvider(max_in_flight=CAP, latency_s=LATENCY_S),
        "capped_naive": FakeProvider(max_in_flight=CAP, latency_s=LATENCY_S),
        "capped_exact": FakeProvider(max_in_flight=CAP, latency_s=LATENCY_S),
        "capped_slow": FakeProvider(max_in_flight=CAP, latency_s=CAP_SLOW_LATENCY_S),
        "capped_slow_naive": FakeProvider(max_in_flight=CAP, latency_s=CAP_SLOW_LATENCY_S),
        "capped_slow_exact": FakeProvider(max_in_flight=CAP, latency_s=CAP_SLOW_LATENCY_S),
        "healthy": FakeProvider(latency_s=LATENCY_S),
        "failing": FakeProvider(fail_status=500),
        "steady": FakeProvider(latency_s=LATENCY_S),
        "outage": FakeProvider(latency_s=LATENCY_S, outage_s=OUTAGE_S),
    }
    started = time.perf_counter()
    with loopback(**providers) as url:
        warm_up(url)
        steps: list[Callable[[str, dict[str, FakeProvider]], None]] = [
            bench_declared,
            bench_adaptive,
            bench_isolation,
            bench_recovery,
        ]
        for step in steps:
            step(url, providers)
    print(f"\nSummary ({time.perf_counter() - started:.0f} s in all)")
    widths = [max(len(row[i]) for row in ROWS) for i in range(4)]
    header = ("figure", "measured", "target", "")
    for row in (header, *ROWS):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
