"""Anthropic API-key provider: a key pool, pass-through relay, cool-downs (gateway.md §2.3, §7, §8)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Mapping

from clewdr_lite import errors
from clewdr_lite.pool import Backoff, KeyPool
from clewdr_lite.protocol import anthropic as hub
from clewdr_lite.protocol import claude_code as cc
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.upstream.http import TRANSPORT_ERRORS
from clewdr_lite.upstream.relay import EarlyError, MessagesStream

log = logging.getLogger("clewdr_lite.anthropic")

DEFAULT_BASE = "https://api.anthropic.com"
MID_CONVERSATION_SYSTEM = "mid-conversation-system"


def mask_key(key: str) -> str:
    """An API key as logs and the admin UI show it."""
    return f"{key[:8]}…{key[-4:]}" if len(key) > 16 else "…"


class KeyFailed(Exception):
    """One attempt with one key failed; `outcome` says what to do."""

    def __init__(self, outcome: ue.Outcome) -> None:
        super().__init__(outcome.error.message if outcome.error else outcome.action)
        self.outcome = outcome


def prepare(req: dict, model: str, client_betas: str | None) -> dict:
    """Body rules for API upstreams: model rules, thinking hygiene, system placement (§2.3)."""
    body = hub.apply_model_rules({**req, "model": model})
    body = hub.strip_foreign_thinking(body)
    if MID_CONVERSATION_SYSTEM not in (client_betas or ""):
        body = hub.prepare_for_api(body)
    return body


class AnthropicKeys:
    """One `type = "anthropic"` provider and its keys."""

    def __init__(self, provider, pool: KeyPool, *, config: Callable[[], Any], client: Callable[[], Any],
                 clock: Callable[[], float], rand: Callable[[], float], sleep=asyncio.sleep) -> None:
        self.provider, self.pool = provider, pool
        self._config, self._client, self._clock = config, client, clock
        self._rand, self._sleep = rand, sleep

    def _url(self, path: str) -> str:
        return (self.provider.base_url or DEFAULT_BASE).rstrip("/") + "/" + path

    async def _send(self, key: str, path: str, body: dict, client_headers, *, stream: bool):
        betas = cc.merge_betas(client_headers.get("anthropic-beta"), base=None)
        headers = cc.upstream_headers(client_headers, auth={"x-api-key": key}, betas=betas,
                                      user_agent=None, oauth=False)
        headers.update(self.provider.headers or {})
        try:
            resp = await self._client().request("POST", self._url(path), headers=headers, json=body,
                                                stream=stream)
        except TRANSPORT_ERRORS as exc:
            raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"{self.provider.name} unreachable: {exc}"))) from exc
        if 200 <= resp.status < 300:
            return resp
        try:
            raw = await resp.read()
        except TRANSPORT_ERRORS:
            raw = b""
        finally:
            await resp.close()
        raise KeyFailed(cc.classify_api_key(resp.status, resp.headers, raw, now=self._clock()))

    async def open(self, req: dict, *, model: str, stream: bool, echo_model: str,
                   client_headers: Mapping[str, str]):
        """A started MessagesStream (stream) or the response body, after key rotation and retries."""
        body = prepare(req, model, client_headers.get("anthropic-beta"))

        async def attempt(key: str):
            resp = await self._send(key, "v1/messages", body, client_headers, stream=stream)
            return await self._success(resp, body["model"], stream=stream, echo_model=echo_model)
        return await self.attempts(attempt)

    async def _success(self, resp, model: str, *, stream: bool, echo_model: str):
        if stream:
            relay = MessagesStream(resp, echo_model=echo_model, on_done=lambda i, o: None)
            try:
                await relay.prime()
            except EarlyError as exc:
                raise KeyFailed(exc.outcome) from None
            return relay
        try:
            data = json.loads(await resp.read())
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                f"unreadable answer from {self.provider.name}: {exc}"))) from None
        finally:
            await resp.close()
        if isinstance(data, dict):
            data["model"] = echo_model
        return data

    async def count_tokens(self, req: dict, *, model: str, client_headers: Mapping[str, str]) -> dict:
        """Upstream count_tokens; a local estimate when the upstream cannot count."""
        body = prepare(req, model, client_headers.get("anthropic-beta"))
        for key in ("stream", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata"):
            body.pop(key, None)

        async def attempt(key: str) -> dict:
            resp = await self._send(key, "v1/messages/count_tokens", body, client_headers, stream=False)
            try:
                return json.loads(await resp.read())
            finally:
                await resp.close()
        try:
            return await self.attempts(attempt)
        except errors.ProxyError as err:
            if err.status in (403, 404):
                return {"input_tokens": tokens.estimate_request(body)}
            raise

    async def attempts(self, attempt: Callable) -> Any:
        """Key rotation: credential errors switch at once; transient ones after a jittered backoff."""
        cfg = self._config()
        backoff = Backoff(cfg.tables.get("retry"), self._clock())
        tried, last = set(), None
        for _ in range(cfg.max_retries + 1):
            entry = self.pool.pick(self._clock(), exclude=tried, rand=self._rand())
            if entry is None:
                break
            tried.add(entry.key)
            self.pool.mark_used(entry.key, self._clock())
            try:
                return await attempt(entry.key)
            except KeyFailed as exc:
                last = exc.outcome.error
                if not self._settle(entry.key, exc.outcome):
                    raise last from None
                if exc.outcome.action == ue.TRANSIENT:
                    delay = backoff.next_delay(self._clock(), self._rand())
                    if delay is None:
                        break
                    await self._sleep(delay)
        raise self._exhausted(last)

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
