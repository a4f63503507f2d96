"""API-key providers: one KeyPool each, key rotation and cool-downs (gateway.md §5, §7)."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

from clewdr_lite import errors
from clewdr_lite.pool import Backoff, KeyPool
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.upstream.http import TRANSPORT_ERRORS, drain, note_credential

log = logging.getLogger("clewdr_lite.keys")


@functools.lru_cache(maxsize=256)  # once per request for the log row: the pool's few keys, masked once
def mask_key(key: str) -> str:
    """An API key as logs and the admin UI show it."""
    return f"{key[:8]}…{key[-4:]}" if len(key) > 16 else "…"


class KeyFailed(Exception):
    """One attempt with one key failed; `outcome` says what to do."""

    def __init__(self, outcome: ue.Outcome) -> None:
        super().__init__(outcome.error.message if outcome.error else outcome.action)
        self.outcome = outcome


class KeyedProvider:
    """A provider whose credentials are API keys: the retry loop and the state changes."""

    def __init__(self, provider, pool: KeyPool, *, config: Callable[[], Any], client: Callable[[], Any],
                 clock: Callable[[], float], rand: Callable[[], float], sleep=asyncio.sleep) -> None:
        self.provider, self.pool = provider, pool
        self._config, self._client, self._clock = config, client, clock
        self._rand, self._sleep = rand, sleep
        self.breakers = None  # breaker.Breakers, set by the app (per provider and key)

    async def _post(self, key, url: str, headers: dict, body: dict | bytes, *, classify: Callable):
        """POST to the provider (a dict as JSON, bytes as they are); a non-2xx answer becomes KeyFailed."""
        payload = {"data": body} if isinstance(body, bytes) else {"json": body}
        try:
            resp = await self._client().request("POST", url, headers=headers,
                                                headers_timeout=self.provider.first_byte_timeout, **payload)
        except TRANSPORT_ERRORS as exc:
            raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"{self.provider.name} unreachable: {exc}"))) from exc
        if 200 <= resp.status < 300:
            return resp
        raw = await drain(resp)
        raise KeyFailed(classify(resp.status, resp.headers, raw, now=self._clock()))

    async def attempts(self, attempt: Callable) -> Any:
        """Key rotation: credential errors switch at once; transient ones after a jittered backoff."""
        cfg = self._config()
        started, backoff = self._clock(), None  # the backoff is made on the first transient failure
        tried, last = set(), None
        for _ in range(cfg.max_retries + 1):
            entry = self._pick_closed(tried)
            if entry is None:
                break
            tried.add(entry.key)
            self.pool.mark_used(entry.key, self._clock())
            note_credential(mask_key(entry.key))
            try:
                result = await attempt(entry.key)
                self._breaker_record(entry.key, True)
                return result
            except KeyFailed as exc:
                last = exc.outcome.error
                self._breaker_record(entry.key, exc.outcome.action != ue.TRANSIENT)
                if not self._settle(entry.key, exc.outcome):
                    raise last from None
                if exc.outcome.action == ue.PARK and await self._wait_for_reset(entry.key, exc.outcome, cfg):
                    tried.discard(entry.key)
                    continue
                if exc.outcome.action == ue.TRANSIENT:
                    tried.discard(entry.key)  # not its fault: usable again, after the others (gateway.md §7.2)
                    backoff = backoff or Backoff(cfg.tables.get("retry"), started)
                    delay = backoff.next_delay(self._clock(), self._rand())
                    if delay is None:
                        break
                    await self._sleep(delay)
        raise self._exhausted(last)

    def _pick_closed(self, exclude: set):
        """The next key whose circuit breaker lets a request through (gateway.md §6)."""
        while True:
            entry = self.pool.pick(self._clock(), exclude=exclude, rand=self._rand())
            if entry is None or self.breakers is None or self.breakers.allow(self.provider.name, entry.key,
                                                                             self._clock()):
                return entry
            exclude = exclude | {entry.key}

    def _breaker_record(self, key: str, ok: bool) -> None:
        """Only transient failures count against a key's breaker; credential errors have their own states."""
        if self.breakers is not None:
            self.breakers.record(self.provider.name, key, ok, self._clock())

    async def _wait_for_reset(self, key: str, outcome: ue.Outcome, cfg) -> bool:
        """No other key usable and the reset is near (≤ `[retry] max_retry_after`, 20 s): wait for it."""
        retry = cfg.tables.get("retry") or {}
        wait = (outcome.until or 0) - self._clock()
        active, _, _ = self.pool.counts(self._clock())
        if active or not 0 < wait <= float(retry.get("max_retry_after", 20)):
            return False
        await self._sleep(wait)
        self.pool.refresh(self._clock())
        return True

    def _settle(self, key: str, outcome: ue.Outcome) -> bool:
        """Apply an outcome to the key's state; False when the loop must stop."""
        if outcome.action == ue.RETIRE:
            self.pool.disable(key, str(outcome.reason))
            log.warning("%s key %s disabled: %s", self.provider.name, mask_key(key), outcome.reason)
        elif outcome.action == ue.PARK:
            self.pool.cool(key, outcome.until, "rate_limited")
            log.warning("%s key %s cooling until %s", self.provider.name, mask_key(key), outcome.until)
        elif outcome.action != ue.TRANSIENT:
            return False
        return True

    def _exhausted(self, last: errors.ProxyError | None) -> errors.ProxyError:
        active, cooling, disabled = self.pool.counts(self._clock())
        if last is not None and (active or last.retryable):
            return last
        if cooling and not active:
            wait = max(1, int((self.pool.earliest_cooldown() or 0) - self._clock()))
            return errors.RateLimited(f"every {self.provider.name} key is rate limited; the first is back "
                                      f"in {wait} s", retry_after=wait)
        if last is not None:
            return last
        return errors.NoCredential(f"No usable key for provider {self.provider.name}"
                                   + (f" ({disabled} disabled)" if disabled else ""))
