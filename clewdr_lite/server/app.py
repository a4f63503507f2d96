"""The aiohttp application: state under AppKeys, routes, background tasks in cleanup_ctx."""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from clewdr_lite import telemetry
from clewdr_lite.breaker import Breakers, BreakerSettings
from clewdr_lite.client_keys import ClientKeys
from clewdr_lite.config_file import ConfigError
from clewdr_lite.pool import CookiePool, KeyPool
from clewdr_lite.providers import parse_providers
from clewdr_lite.protocol import claude_web_account as web_proto
from clewdr_lite.upstream import http

log = logging.getLogger("clewdr_lite")

SAVE_DEBOUNCE_S = 2.0      # at most one pool-triggered write per 2 s (claude-web.md §14)
TICK_S = 300.0             # un-park exhausted cookies (claude-web.md §15.3)


@dataclass
class State:
    """Everything long-lived; `config` is swapped whole on change (hot reload)."""

    config: Any
    config_file: Any
    pool: CookiePool
    clock: Callable[[], float]
    http_backend: str
    started: float
    rand: Callable[[], float] = random.random
    sleep: Any = asyncio.sleep
    _web: Any = None  # the claude.ai upstream, built on first use (see `web`)
    _code: Any = None  # the Claude Code upstream, built on first use (see `code`)
    providers: tuple = ()
    keyed: dict = field(default_factory=dict)  # provider name -> AnthropicKeys
    google: dict = field(default_factory=dict)  # "gemini" -> AIStudio, "vertex" -> Vertex

    @property
    def web(self):
        """The claude.ai upstream (upstream/claude_web.py): its code is imported by the first
        request or command that needs it, not by a gateway that only relays API keys."""
        if self._web is None:
            from clewdr_lite.upstream.claude_web import ClaudeWeb
            self._web = ClaudeWeb(config=lambda: self.config, pool=self.pool, client=self.client,
                                  clock=self.clock, rand=self.rand, sleep=self.sleep)
        return self._web

    @property
    def code(self):
        """The Claude Code upstream (OAuth from the cookies), built on first use as `web` is."""
        if self._code is None:
            from clewdr_lite.upstream.claude_code import ClaudeCode
            self._code = ClaudeCode(web=self.web, config=lambda: self.config, plain=self.plain,
                                    clock=self.clock)
        return self._code

    def provider(self, name: str):
        """The Provider value called `name` (KeyError when there is none)."""
        found = self.provider_named(name)
        if found is None:
            raise KeyError(name)
        return found

    def provider_named(self, name: str | None):
        """The Provider called `name`, or None (a dict lookup: once per request)."""
        if self._by_name[0] is not self.providers:
            self._by_name = (self.providers, {p.name: p for p in self.providers})
        return self._by_name[1].get(name)
    clients: dict = field(default_factory=dict)
    _by_name: tuple = (None, {})
    saved_version: tuple = ()
    save_error: str | None = None  # the last failed save's reason, told once until a save works
    listing: tuple | None = None  # (pool version, built at, body) of GET /api/cookies
    metrics: Any = None  # telemetry.Metrics
    client_keys: Any = None  # client_keys.ClientKeys
    store: Any = None  # store.Store, opened in cleanup_ctx
    breakers: Any = None  # breaker.Breakers, per provider ("*") and credential
    spend: dict = field(default_factory=dict)  # (key id, period start) -> USD

    def spent(self, key, now: float) -> float:
        """A client key's spend in its current budget period."""
        from clewdr_lite.client_keys import period_start
        return self.spend.get((key.id, period_start(key.budget_period, now, key.budget_reset_at)), 0.0)

    def add_spend(self, key, now: float, usd: float) -> None:
        """Charge a finished request to its key's current period."""
        from clewdr_lite.client_keys import period_start
        slot = (key.id, period_start(key.budget_period, now, key.budget_reset_at))
        self.spend[slot] = self.spend.get(slot, 0.0) + usd

    def client(self, backend: str | None = None):
        """The outbound client for the current `proxy` setting (rebuilt when it changes)."""
        backend = backend or self.http_backend
        proxy = self.config.effective_proxy
        client = self.clients.get((backend, proxy))
        if client is None:
            client = self.clients[(backend, proxy)] = http.make_client(backend, proxy)
        return client

    def plain(self):
        """The plain aiohttp client: OAuth token calls and API upstreams need no browser fingerprint."""
        return self.client("aiohttp")

    def set_config(self, config) -> None:
        """Swap in a new config value and tell the long-lived objects."""
        self.config = config
        self.pool.max_concurrent = config.web_max_concurrent_per_cookie


STATE = web.AppKey("state", State)
KEYED_TYPES = {"anthropic": ("clewdr_lite.upstream.anthropic", "AnthropicKeys"),
               "openai": ("clewdr_lite.upstream.openai_compat", "OpenAICompat")}


class Upstreams(dict):
    """Upstream objects built on first use (`state.google`): Gemini and Vertex code is imported only
    when configured or first asked for. `get()`, `in` and `items()` see the built ones only."""

    def __init__(self, makers: dict) -> None:
        super().__init__()
        self._makers = makers

    def __missing__(self, kind: str):
        if kind not in self._makers:
            raise KeyError(kind)
        built = self[kind] = self._makers[kind]()
        return built


def _google(name: str):
    from clewdr_lite.upstream import google
    return getattr(google, name)


def cookie_records(config, *, now: float) -> CookiePool:
    """Parse the config's cookie records into a pool; malformed entries are skipped with a warning."""
    valid, wasted = [], []
    for source, target in ((config.cookie_array, valid), (config.wasted_cookie, wasted)):
        for entry in source:
            try:
                record = dict(entry)
                record["cookie"] = web_proto.parse_cookie(str(record.get("cookie", "")))
            except (ValueError, TypeError) as exc:
                log.warning("skipping a cookie entry: %s", exc)
                continue
            if "reason" in record:
                record["reason"] = web_proto.reason_to_toml(web_proto.reason_from_toml(record["reason"]))
            target.append(record)
    for entry in config.tables.get("claude_code_tokens") or []:
        record = imported_record(entry)
        if record is not None:
            (wasted if "reason" in record else valid).append(record)
    return CookiePool.from_records(valid, wasted, now=now,
                                   max_concurrent=config.web_max_concurrent_per_cookie)


def gemini_key_entries(config) -> list[dict]:
    """`gemini_keys` entries with cleaned keys; a malformed key only warns (gemini.md §4.1)."""
    from clewdr_lite.protocol import gemini_keys as gk

    entries = []
    for entry in config.gemini_keys:
        item = dict(entry)
        item["key"] = gk.clean_key(str(item.get("key", "")))
        if not gk.valid_key(item["key"]):
            log.warning("gemini key %s does not look like an AI Studio key", gk.mask_key(item["key"]))
        if item["key"]:
            entries.append(item)
    return entries


def imported_record(entry) -> dict | None:
    """A `[[claude_code_tokens]]` entry as a pool record (it has an id instead of a cookie)."""
    if not isinstance(entry, dict) or not entry.get("id") or not isinstance(entry.get("token"), dict):
        log.warning("skipping a claude_code_tokens entry without id or token")
        return None
    record = {k: v for k, v in entry.items() if k != "id"}
    record.update(cookie=str(entry["id"]), imported=True)
    return record


def imported_entry(record: dict) -> dict:
    """The `[[claude_code_tokens]]` form of an imported record."""
    entry = {"id": record["cookie"]}
    entry.update({k: v for k, v in record.items() if k not in ("cookie", "imported")})
    return entry


def make_app(config, *, config_file=None, clock: Callable[[], float] = time.time,
             http_backend: str = "auto", rand: Callable[[], float] = random.random,
             sleep=asyncio.sleep) -> web.Application:
    """Build the application around a Config value (DESIGN.md §2)."""
    from clewdr_lite.server import (accounting, admin, admin_keys, api, gemini_api, messages_api, metrics,
                                    middleware, static)

    app = web.Application(client_max_size=int(config.max_body_mb * 1024 * 1024),
                          middlewares=[accounting.timing, middleware.error_funnel, middleware.authenticate])
    pool = cookie_records(config, now=clock())
    state = State(config=config, config_file=config_file, pool=pool, clock=clock,
                  http_backend=_backend(http_backend), started=clock(), rand=rand, sleep=sleep)
    state.providers = parse_providers(config.tables, warn=log.warning)
    for provider in state.providers:  # each kind's module is imported only when it is configured
        if provider.type in KEYED_TYPES:
            module, name = KEYED_TYPES[provider.type]
            state.keyed[provider.name] = getattr(importlib.import_module(module), name)(
                provider, KeyPool.from_keys(provider.keys), config=lambda: state.config,
                client=state.plain, clock=clock, rand=rand, sleep=sleep)
    common = dict(config=lambda: state.config, client=state.plain, clock=clock, rand=rand, sleep=sleep)
    state.google = Upstreams({
        "gemini": lambda: _google("AIStudio")(KeyPool.from_keys(gemini_key_entries(state.config)), **common),
        "vertex": lambda: _google("Vertex")(list(state.config.vertex.get("credentials") or []), **common)})
    if config.gemini_keys:  # configured: built now, so /metrics and the admin page count them
        state.google["gemini"]
    if config.vertex.get("credentials"):
        state.google["vertex"]
    state.client_keys = ClientKeys.from_tables(config.tables, warn=log.warning)
    state.breakers = Breakers(BreakerSettings.from_table(config.tables.get("breaker") or {}, warn=log.warning))
    for keyed in state.keyed.values():
        keyed.breakers = state.breakers
    state.metrics = telemetry.Metrics(telemetry.Registry(), start_time=clock())
    state.metrics.watch_credentials(lambda: metrics.credential_states(state))
    app[STATE] = state
    api.setup(app)
    messages_api.setup(app)
    gemini_api.setup(app)
    admin.setup(app)
    admin_keys.setup(app)
    metrics.setup(app)
    static.setup(app)
    app.cleanup_ctx.append(_background)
    return app


def _backend(choice: str) -> str:
    if choice == "auto":
        return "curl_cffi" if http.curl_available() else "aiohttp"
    return choice


def _db_path(state: State):
    """clewdr.db next to clewdr.toml (or `db_path`); in memory under no_fs or without a file."""
    if state.config.no_fs or state.config_file is None:
        return None
    return state.config.db_path or str(state.config_file.path.with_name("clewdr.db"))


async def _open_store(state: State) -> None:
    from clewdr_lite.store import Store  # sqlite3 is loaded when first needed (DESIGN.md §5.11)

    log_table = state.config.tables.get("log") or {}
    # opened on the loop: this runs before the server listens, so nothing waits, and no executor
    # thread is started (and kept, idle, for the life of the process) just to open a file
    try:
        state.store = Store(_db_path(state), bodies=log_table.get("bodies", False))
    except Exception as exc:  # a broken database must not stop the proxy: log in memory instead
        log.error("clewdr.db unusable (%s); keeping the request log in memory", exc)
        state.store = Store(None)
    for key in state.client_keys.keys if state.client_keys else ():
        if key.budget_usd is not None:  # seed the in-memory budget totals (gateway.md §9.5)
            from clewdr_lite.client_keys import period_start
            since = period_start(key.budget_period, state.clock(), key.budget_reset_at)
            spent = await asyncio.to_thread(state.store.spend, key.id, since)
            state.spend[(key.id, since)] = spent


async def _background(app: web.Application):
    state = app[STATE]
    await _open_store(state)
    state.saved_version = _versions(state)
    tasks = [asyncio.ensure_future(_persister(state)), asyncio.ensure_future(_ticker(state))]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if state._code is not None:
        await state._code.close()
    await save_pool(state)
    if state.store is not None:
        await asyncio.to_thread(state.store.close)
    for client in state.clients.values():
        await client.close()


def _versions(state: State) -> tuple:
    gemini = state.google.get("gemini")
    return (state.pool.version, gemini.pool.version if gemini else 0,
            *(k.pool.version for k in state.keyed.values()))


async def save_pool(state: State) -> None:
    """Write the credential pools into clewdr.toml if they changed since the last write."""
    version = _versions(state)
    if state.config_file is None or version == state.saved_version:
        return
    cookies, wasted = state.pool.snapshot()
    settings = {}
    imported = [imported_entry(r) for r in (*cookies, *wasted) if r.get("imported")]
    if imported or state.config.tables.get("claude_code_tokens"):
        settings["claude_code_tokens"] = imported  # ClewdR could not load them in cookie_array
        cookies = [r for r in cookies if not r.get("imported")]
        wasted = [r for r in wasted if not r.get("imported")]
    if state.keyed and version[2:] != state.saved_version[2:]:
        settings["providers"] = _providers_table(state)
    extra = {}
    if version[1:2] != state.saved_version[1:2] and "gemini" in state.google:
        extra["gemini_keys"] = state.google["gemini"].pool.records()
    try:
        await asyncio.to_thread(state.config_file.save, cookies=cookies, wasted=wasted,
                                settings=settings or None, **extra)
    except Exception as exc:  # noqa: BLE001 - a full disk, a file hand-edited into bad TOML, a bug:
        # the version still differs, so the next cycle tries again; told once, not every 2 s
        reason = f"{type(exc).__name__}: {exc}"
        if reason != state.save_error:
            log.error("saving clewdr.toml failed (retried every %g s): %s", SAVE_DEBOUNCE_S, reason,
                      exc_info=not isinstance(exc, (OSError, ConfigError)))
        state.save_error = reason
        return
    state.saved_version = version
    if state.save_error is not None:
        log.info("clewdr.toml saved again")
        state.save_error = None


def _providers_table(state: State) -> list[dict]:
    """The `[[providers]]` tables with each keyed provider's key states written back."""
    tables = []
    for raw in state.config.tables.get("providers") or []:
        table = dict(raw)
        keyed = state.keyed.get(str(table.get("name", "")).lower())
        if keyed is not None:
            table["keys"] = keyed.pool.records()
        tables.append(table)
    return tables


async def _persister(state: State) -> None:
    """Debounced saves: every 2 s, write the pool when its version moved."""
    while True:
        await asyncio.sleep(SAVE_DEBOUNCE_S)
        await save_pool(state)


async def _ticker(state: State) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        if state.pool.unpark_due(state.clock()):
            log.info("Valid: %d, Exhausted: %d, Invalid: %d", *state.pool.counts())
