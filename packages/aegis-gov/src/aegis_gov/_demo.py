"""``aegis demo``: the article's pipeline, on a real provider or on a built-in offline model.

The offline scenario is scripted so that one short run shows everything aegis does: the
parallel branch (translate and publish), a failure cascading into a skip while the other
branches finish, a retry that honours a 429's Retry-After, a circuit breaker opening on a
flaky endpoint and closing again after a successful probe, a fallback to a backup model, and
a declared rate limit pacing a model's requests.

Over 400 lines on purpose: the offline script, its expected outcome and the witness that
checks it belong together; provider detection is the rest.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs
from aegis_adapters import (
    LLMAdapter,
    Message,
    ModelNotFoundError,
    OllamaAdapter,
    OpenAIAdapter,
    ProviderUnavailableError,
    RateLimitError,
    ScriptedAdapter,
    make_adapter,
    ollama_base_url,
    redact_url,
)
from aegis_breaker import AgentPool
from aegis_graph import Task, TaskState

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._caller import counts_against_breaker
from aegis_gov._display_names import endpoint_display_name
from aegis_gov._events import (
    CircuitStateChanged,
    FellBack,
    RunEvent,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
)
from aegis_gov._facade import OpenMultiAgent
from aegis_gov._limits import Limits
from aegis_gov._results import RunResult
from aegis_gov._retry import RetryPolicy

__all__ = [
    "ARTICLE_TASKS",
    "OFFLINE_DELAY_S",
    "OFFLINE_EXPECTED",
    "OFFLINE_EXTRA_TASKS",
    "OLLAMA_PROBE_TIMEOUT_S",
    "RETRY_AFTER_S",
    "TAGGER_MODEL",
    "TAGGER_PER_MINUTE",
    "TAG_TASKS",
    "Demo",
    "DemoWitness",
    "detect_provider",
    "offline_demo",
    "offline_outcome_ok",
    "ollama_url",
    "probe_ollama",
    "provider_demo",
]

OLLAMA_PROBE_TIMEOUT_S: Final = 0.5
"""How long ``aegis demo`` waits for Ollama's ``/api/tags`` before deciding it is not there."""

RETRY_AFTER_S: Final = 1.0
"""The Retry-After of the offline model's simulated 429."""

OFFLINE_DELAY_S: Final = 0.25
"""How long each offline model call takes, so the progress can be watched."""

TAGGER_MODEL: Final = "offline-tagger"
"""The offline model with a declared rate limit."""

TAGGER_PER_MINUTE: Final = 240.0
"""Its declared limit: 240 requests a minute, one every 0.25 s."""

_ARTICLE_AGENTS: Final = (
    ("researcher", "Research topics thoroughly."),
    ("writer", "Write clear reports."),
    ("translator", "Translate to Japanese."),
    ("publisher", "Format output as Markdown."),
)

ARTICLE_TASKS: Final = (
    Task(id="research", description="Research AI trends", agent="researcher"),
    Task(id="draft", description="Write a report draft", agent="writer", depends_on=["research"]),
    Task(
        id="translate",
        description="Translate to Japanese",
        agent="translator",
        depends_on=["draft"],
    ),
    Task(id="publish", description="Format as Markdown", agent="publisher", depends_on=["draft"]),
)
"""The article's four tasks: research, then draft, then translate and publish in parallel."""

OFFLINE_EXTRA_TASKS: Final = (
    # First, so the three start together and wait their turns in the declared pace.
    *(
        Task(id=f"tags_{topic}", description=f"Tag the findings on {words}", agent="tagger")
        for topic, words in (
            ("agents", "agent teams"),
            ("models", "local and hosted models"),
            ("reliability", "reliability"),
        )
    ),
    Task(id="fact_check", description="Check every claim in the findings", agent="fact_checker"),
    Task(
        id="cite_sources",
        description="List the sources behind the checked claims",
        agent="fact_checker",
        depends_on=["fact_check"],
    ),
    Task(id="headlines", description="Suggest three headlines on AI trends", agent="editor"),
    Task(
        id="summary",
        description="Sum the draft up in one line",
        agent="summarizer",
        depends_on=["draft"],
    ),
)
"""Branches the offline demo adds: a failure cascade, a breaker recovering, a fallback, and
three tasks paced by a declared rate limit."""

TAG_TASKS: Final = tuple(t.id for t in OFFLINE_EXTRA_TASKS if t.agent == "tagger")

_FINDINGS = """Findings on AI trends (offline model):
- Multi-agent systems move from demos to production pipelines.
- Small local models handle routine steps; large hosted models the hard ones.
- Reliability work (retries, breakers, budgets) is now where the effort goes."""

_DRAFT = """# AI trends: a short report

Teams now split LLM work across several agents, each with one job. Routine steps run on
small local models and hard ones on hosted models, and the engineering effort has moved to
keeping such pipelines alive when a provider slows down or fails."""

_TRANSLATION = """# AIのトレンド: 短いレポート

チームはLLMの作業を複数のエージェントに分担させています。日常的な処理は小さなローカルモデルで、
難しい処理はホスト型モデルで実行し、プロバイダーが遅延・障害を起こしてもパイプラインを
動かし続けることに技術的な努力が向けられています。"""

_PUBLISHED = """## AI trends

* **Agents with one job each** now form production pipelines.
* **Local and hosted models** share the work by difficulty.
* **Reliability** (retries, circuit breakers, budgets) is where the effort goes."""

_HEADLINES = """1. Many agents, one pipeline
2. When the model provider says 429
3. Keeping AI pipelines alive"""

_SUMMARY = "In short: agent teams, local models and reliability engineering lead AI in 2026."


@attrs.frozen
class Demo:
    """A ready-to-run demo: the facade, the team, the tasks and what the run is on."""

    oma: OpenMultiAgent
    team: Team
    tasks: tuple[Task, ...]
    provider: str
    offline: bool
    limits: Mapping[str, Limits] = attrs.field(factory=dict)
    """The limits declared on ``oma``, for the live table to show."""


def offline_demo(*, delay_s: float = OFFLINE_DELAY_S, seed: int | None = 7) -> Demo:
    """The article's pipeline plus two branches, on scripted offline models.

    * ``research`` gets a 429 with ``Retry-After: 1`` first: the task waits at least that long
      (and the endpoint's breaker holds every caller back meanwhile), then succeeds.
    * ``fact_check`` asks for a model that does not exist (a 404, permanent): it fails at
      once and ``cite_sources`` is skipped, blaming it, while the other branches finish.
    * ``headlines`` runs on a flaky endpoint that answers 500 twice: its breaker (limit 2,
      recovery 1 s) opens, rejects, lets one probe through after a second and closes (a
      circuit 503s opened would be probed sooner: the provider says it is only busy).
    * ``summary`` runs on an endpoint that stays down: once its circuit opens, the task falls
      back to the agent's backup adapter, which answers.
    * the three ``tags_*`` tasks are ready at once, on a model declared at 240 requests a
      minute (``Limits(requests_per_minute=240)``): their requests go one every 0.25 s, the
      tasks waiting their turn give their slots up, and they finish a quarter second apart.
    """
    main = "offline-model"

    def scripted(replies: Sequence[str | Exception], name: str = main) -> ScriptedAdapter:
        return ScriptedAdapter(replies, name=name, delay_s=delay_s)

    rate_limited = RateLimitError(
        "offline",
        "too many requests (simulated 429, Retry-After: 1)",
        status_code=429,
        retry_after_s=RETRY_AFTER_S,
    )
    unavailable = ProviderUnavailableError(
        "offline", "service unavailable (simulated 503)", status_code=503
    )
    failing = ProviderUnavailableError(
        "offline", "internal server error (simulated 500)", status_code=500
    )
    missing = ModelNotFoundError(
        "offline", "model 'fact-checker-xl' not found (simulated 404)", status_code=404
    )
    adapters: dict[str, LLMAdapter] = {
        "researcher": scripted([rate_limited, _FINDINGS]),
        "writer": scripted([_DRAFT]),
        "translator": scripted([_TRANSLATION]),
        "publisher": scripted([_PUBLISHED]),
        "fact_checker": scripted([missing], name="fact-checker-xl"),
        "editor": scripted([failing, failing, _HEADLINES], name="offline-flaky"),
        "summarizer": scripted([unavailable] * 4, name="offline-down"),
        "tagger": ScriptedAdapter(_tags, name=TAGGER_MODEL, delay_s=delay_s),
    }
    fallbacks = {"summarizer": [scripted([_SUMMARY], name="offline-backup")]}
    prompts = dict(_ARTICLE_AGENTS)
    prompts["fact_checker"] = "Check facts; cite sources."
    prompts["editor"] = "Write short, punchy headlines."
    prompts["summarizer"] = "Sum things up in one line."
    prompts["tagger"] = "Tag texts with three keywords."
    team = Team(
        "article-demo",
        [
            AgentConfig(
                name=name,
                system_prompt=prompts[name],
                adapter=adapter,
                fallbacks=fallbacks.get(name, ()),
            )
            for name, adapter in adapters.items()
        ],
    )
    pool = AgentPool(
        max_concurrent=4,
        consecutive_failure_limit=2,
        recovery_timeout_s=1.0,
        is_failure=counts_against_breaker,
    )
    retry = RetryPolicy(
        max_attempts=4, initial_delay_s=0.2, max_delay_s=5.0, max_total_delay_s=10.0
    )
    limits = {TAGGER_MODEL: Limits(requests_per_minute=TAGGER_PER_MINUTE)}
    oma = OpenMultiAgent(pool=pool, retry=retry, seed=seed, limits=limits)
    return Demo(
        oma, team, ARTICLE_TASKS + OFFLINE_EXTRA_TASKS, "offline", offline=True, limits=limits
    )


def _tags(messages: Sequence[Message]) -> str:
    """The tagger's answer: three keywords from the topic its task names."""
    topic = messages[-1].content.splitlines()[0].rsplit(" on ", 1)[-1]
    return ", ".join(f"#{word}" for word in [*topic.replace(" and", "").split(), "ai"][:3])


def provider_demo(adapter: LLMAdapter, provider: str) -> Demo:
    """The article's four tasks, every agent on ``adapter`` (a real provider)."""
    team = Team(
        "article-demo",
        [AgentConfig(name=n, system_prompt=p, adapter=adapter) for n, p in _ARTICLE_AGENTS],
    )
    pool = AgentPool(max_concurrent=4, is_failure=counts_against_breaker)
    return Demo(OpenMultiAgent(pool=pool), team, ARTICLE_TASKS, provider, offline=False)


def ollama_url(environ: Mapping[str, str]) -> str:
    """Ollama's base URL from ``OLLAMA_HOST``, as :func:`aegis_adapters.ollama_base_url` says."""
    return ollama_base_url(environ=environ)


def probe_ollama(base_url: str, *, timeout_s: float = OLLAMA_PROBE_TIMEOUT_S) -> list[str] | None:
    """The models a reachable Ollama at ``base_url`` has pulled, or ``None`` if unreachable.

    An unusable URL (see :func:`_url_problem`) is ``None`` too, never an exception.
    """
    if _url_problem(base_url) is not None:
        return None
    try:
        with urllib.request.urlopen(f"{base_url}/api/tags", timeout=timeout_s) as response:  # noqa: S310  # scheme checked above
            data = json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, http.client.HTTPException):
        # HTTPException: http.client's InvalidURL (a bad port) is neither OSError nor ValueError.
        return None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return None
    return [str(m["name"]) for m in models if isinstance(m, dict) and "name" in m]


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an Ollama server's address, or ``None`` if it can."""
    if any(not char.isprintable() or char.isspace() for char in url):
        return "it holds a control character or a space"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # its text may quote the URL's password: say it in our own words
        return "it is not a valid URL"
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        return "its port is not a number from 1 to 65535"
    if parts.scheme not in {"http", "https"}:
        return "its scheme is not http or https"
    if not parts.hostname:
        return "it names no host"
    return None


def _shown(url: str) -> str:
    """``url`` fit to print: credentials redacted, control characters escaped."""
    text = redact_url(url)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def detect_provider(environ: Mapping[str, str] | None = None) -> tuple[LLMAdapter, str] | str:
    """The real provider the environment offers, as ``(adapter, description)``.

    Checks ``ANTHROPIC_API_KEY``, then ``OPENAI_API_KEY``, then a reachable Ollama with at
    least one model (``AEGIS_MODEL`` picks the model). When none is there, returns the reason
    as a string instead; an unusable ``OLLAMA_HOST`` is such a reason, not an exception.
    Every URL in the returned text has its credentials redacted.
    """
    env = os.environ if environ is None else environ
    model = env.get("AEGIS_MODEL") or None
    if env.get("ANTHROPIC_API_KEY"):
        anthropic_model = model or "claude-haiku-4-5-20251001"
        adapter: LLMAdapter = make_adapter("anthropic", anthropic_model, max_tokens=600)
        return adapter, f"Anthropic ({anthropic_model}), from ANTHROPIC_API_KEY"
    if env.get("OPENAI_API_KEY"):
        openai_model = model or OpenAIAdapter.DEFAULT_MODEL
        return make_adapter("openai", openai_model, max_tokens=600), f"OpenAI ({openai_model})"
    url = ollama_base_url(environ=env)
    shown = _shown(url)
    problem = _url_problem(url)
    if problem is not None:
        return (
            f"no ANTHROPIC_API_KEY, no OPENAI_API_KEY and OLLAMA_HOST ({shown}) is not a "
            f"usable address: {problem}"
        )
    models = probe_ollama(url)
    if models is None:
        return f"no ANTHROPIC_API_KEY, no OPENAI_API_KEY and no Ollama answering at {shown}"
    if not models:
        pull = f"ollama pull {OllamaAdapter.DEFAULT_MODEL}"
        return f"Ollama at {shown} has no model pulled (try: {pull})"
    if model is None:
        wanted = OllamaAdapter.DEFAULT_MODEL
        matching = [m for m in models if m == wanted or m.startswith(f"{wanted}:")]
        model = matching[0] if matching else models[0]
    described = f"Ollama ({model}) at {shown}"
    return make_adapter("ollama", model, base_url=url, max_tokens=600), described


OFFLINE_EXPECTED: Final = {
    "research": TaskState.DONE,
    "draft": TaskState.DONE,
    "translate": TaskState.DONE,
    "publish": TaskState.DONE,
    "fact_check": TaskState.FAILED,
    "cite_sources": TaskState.SKIPPED,
    "headlines": TaskState.DONE,
    "summary": TaskState.DONE,
    "tags_agents": TaskState.DONE,
    "tags_models": TaskState.DONE,
    "tags_reliability": TaskState.DONE,
}
"""How every task of the offline demo ends when it behaves as scripted."""


@attrs.define
class DemoWitness:
    """Collects the events that prove each behaviour the offline demo shows."""

    started: dict[str, float] = attrs.Factory(dict)
    finished: dict[str, float] = attrs.Factory(dict)
    retry_waits: dict[str, list[float]] = attrs.Factory(dict)
    circuits: list[CircuitStateChanged] = attrs.Factory(list)
    fallbacks: list[FellBack] = attrs.Factory(list)
    clock: Callable[[], float] = time.monotonic

    def __call__(self, event: RunEvent) -> None:
        """Record ``event``."""
        now = self.clock()
        if isinstance(event, TaskStarted):
            self.started.setdefault(event.task_id, now)
        elif isinstance(event, TaskSucceeded):
            self.finished[event.task_id] = now
        elif isinstance(event, TaskRetrying):
            self.retry_waits.setdefault(event.task_id, []).append(event.delay_s)
        elif isinstance(event, CircuitStateChanged):
            self.circuits.append(event)
        elif isinstance(event, FellBack):
            self.fallbacks.append(event)

    def recap(self, result: RunResult) -> list[str]:
        """What the run showed, one sentence per behaviour, from what really happened."""
        lines: list[str] = []
        waits = self.retry_waits.get("research", [])
        research = result.get("research")
        if waits and research is not None and research.status is TaskState.DONE:
            lines.append(
                f"Retry-After: 'research' got a 429 asking to wait {RETRY_AFTER_S:.0f} s; it "
                f"waited {waits[0]:.2f} s, then succeeded on attempt {research.attempts}."
            )
        if {"translate", "publish"} <= self.started.keys() and {
            "translate",
            "publish",
        } <= self.finished.keys():
            overlap = min(self.finished["translate"], self.finished["publish"]) - max(
                self.started["translate"], self.started["publish"]
            )
            if overlap > 0:
                lines.append(
                    "Parallel branch: 'translate' and 'publish' both depend only on 'draft' and "
                    f"ran at the same time (overlapping {overlap:.2f} s)."
                )
        cite = result.get("cite_sources")
        fact_check = result.get("fact_check")
        if cite is not None and cite.blamed == "fact_check" and fact_check is not None:
            lines.append(
                f"Failure cascade: 'fact_check' failed ({fact_check.error_type}, not "
                f"retried), so 'cite_sources' was skipped (blamed: {cite.blamed!r}) while "
                + (
                    "the other branches went on until the run was interrupted."
                    if result.cancelled
                    else "the article branch and 'headlines' finished."
                )
            )
        flaky = [c for c in self.circuits if c.endpoint.endswith("offline-flaky")]
        path = " -> ".join([flaky[0].old.value, *(c.new.value for c in flaky)]) if flaky else ""
        headlines = result.get("headlines")
        if flaky and flaky[-1].new.value == "closed" and headlines is not None:
            lines.append(
                f"Circuit breaker: the flaky endpoint failed twice, so its circuit went {path}: "
                "it rejected calls for 1 s, let one probe through, and closed when it succeeded; "
                f"'headlines' finished after {headlines.attempts} attempts."
            )
        summary = result.get("summary")
        if self.fallbacks and summary is not None and summary.status is TaskState.DONE:
            lines.append(
                "Fallback: 'summary''s endpoint stayed down (503), so once its circuit opened "
                f"the task moved to its backup, {endpoint_display_name(summary.endpoint or '')!r}, "
                "which answered."
            )
        tagged = sorted(self.finished[t] for t in TAG_TASKS if t in self.finished)
        if len(tagged) == len(TAG_TASKS) and self.started:
            start = min(self.started.values())
            times = ", ".join(f"{t - start:.2f}" for t in tagged)
            lines.append(
                f"Rate limit: {TAGGER_MODEL!r} is declared at {TAGGER_PER_MINUTE:g} requests a "
                f"minute, so its {len(tagged)} tasks, ready at once, sent one request every "
                f"{60 / TAGGER_PER_MINUTE:.2f} s (waiting their turn without a slot) and "
                f"finished at {times} s."
            )
        if result.cancelled:
            cancelled = sum(r.skip_reason == "cancelled" for r in result.values())
            lines.append(
                f"Interrupted: {cancelled} task(s) never started and were skipped as cancelled."
                if cancelled
                else "Interrupted after every task had started; see each task's state above."
            )
        return lines


def offline_outcome_ok(result: RunResult) -> bool:
    """True when every task of the offline demo ended as scripted."""
    return all(
        result.get(task_id) is not None and result[task_id].status is state
        for task_id, state in OFFLINE_EXPECTED.items()
    )
