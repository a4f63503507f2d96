"""Gemini upstreams: AI Studio with a key pool, Vertex AI with service accounts (gemini.md §3–§6).

Native Gemini clients get the upstream's bytes (only the safety settings are edited); other
dialects go through `hub_open`, which converts the hub request to Gemini and the Gemini stream back
to hub events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable
from urllib.parse import urlencode

from clewdr_lite import errors
from clewdr_lite.pool import Backoff, KeyPool
from clewdr_lite.protocol import gemini as gem
from clewdr_lite.protocol import gemini_keys as gk
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol import vertex as vx
from clewdr_lite.upstream.http import TRANSPORT_ERRORS, drain, note_credential
from clewdr_lite.upstream.relay import EarlyError, converted_events, hold_events, new_msg_id, synthetic_signature

log = logging.getLogger("clewdr_lite.google")


class CredFailed(Exception):
    """One attempt with one credential failed; `outcome` says what to do."""

    def __init__(self, outcome: ue.Outcome) -> None:
        super().__init__(outcome.error.message if outcome.error else outcome.action)
        self.outcome = outcome


class Answer:
    """A finished non-streaming upstream answer: status, content type and body bytes."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body


class Google:
    """Shared by AI Studio and Vertex: the retry loop, native calls, the hub conversion."""

    kind = ""

    def __init__(self, *, config: Callable[[], Any], client: Callable[[], Any], clock: Callable[[], float],
                 rand: Callable[[], float], sleep=asyncio.sleep) -> None:
        self._config, self._client, self._clock = config, client, clock
        self._rand, self._sleep = rand, sleep

    def _pick(self, exclude: set):
        """The next credential of `self.pool` (a KeyPool of keys or service-account emails)."""
        entry = self.pool.pick(self._clock(), exclude=exclude, rand=self._rand())
        if entry is not None:
            self.pool.mark_used(entry.key, self._clock())
        return entry

    # subclasses: credentials and URLs

    async def _auth(self, cred) -> dict:
        raise NotImplementedError

    def _native_url(self, cred, model: str, method: str, alt: str | None) -> str:
        raise NotImplementedError

    def _settle(self, cred, outcome: ue.Outcome) -> None:
        raise NotImplementedError

    def _ok(self, cred) -> None:
        """A success (resets counters such as count_403)."""

    def _exhausted(self, last) -> errors.ProxyError:
        raise NotImplementedError

    def _classify(self, cred, status: int, body: bytes) -> ue.Outcome:
        return gk.classify_gemini(status, body, now=self._clock(), count_403=0, max_403=1 << 30)

    async def attempts(self, attempt: Callable) -> Any:
        """One credential per attempt; credential errors switch at once, transient ones back off."""
        cfg = self._config()
        backoff = Backoff(cfg.tables.get("retry"), self._clock())
        tried, last = set(), None
        for _ in range(cfg.max_retries + 1):
            cred = self._pick(tried)
            if cred is None:
                break
            tried.add(self._ident(cred))
            note_credential(gk.mask_key(self._ident(cred)) if self.kind == "gemini" else self._ident(cred))
            try:
                result = await attempt(cred)
                self._ok(cred)
                return result
            except CredFailed as exc:
                last = exc.outcome.error
                self._settle(cred, exc.outcome)
                if exc.outcome.action in (ue.CLIENT, ue.BLOCKED):
                    raise last from None
                if exc.outcome.action == ue.TRANSIENT:
                    tried.discard(self._ident(cred))  # not its fault: usable again, after the others (gateway.md §7.2)
                    delay = backoff.next_delay(self._clock(), self._rand())
                    if delay is None:
                        break
                    await self._sleep(delay)
        raise self._exhausted(last)

    def _ident(self, cred) -> str:
        return cred.key

    async def _post(self, cred, url: str, body: dict, *, auth: dict | None = None):
        headers = {"Content-Type": "application/json", **(auth if auth is not None else await self._auth(cred))}
        try:
            resp = await self._client().request("POST", url, headers=headers, json=body)
        except TRANSPORT_ERRORS as exc:
            raise CredFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"{self.kind} unreachable: {exc}"))) from exc
        if 200 <= resp.status < 300:
            return resp
        raw = await drain(resp)
        raise CredFailed(self._classify(cred, resp.status, raw))

    async def _native_once(self, cred, model: str, method: str, body: dict, alt: str | None):
        url = self._native_url(cred, model, method, alt)
        try:
            return await self._post(cred, url, body)
        except CredFailed as exc:  # a model that rejects a safety threshold: one relaxed retry (§7)
            err = exc.outcome.error
            if err is None or err.status != 400 or not gem.names_safety_setting(err.message):
                raise
            return await self._post(cred, url, gem.relaxed_safety(body))

    async def native(self, model: str, method: str, body: dict, *, alt: str | None):
        """A native call: the streaming Response, or an Answer (empty answers retried, §3.3)."""
        if method != "countTokens":  # countTokens takes no safety settings
            body = gem.apply_safety(body, self._config().gemini_safety)
        last_empty: list[Answer] = []

        async def attempt(cred):
            resp = await self._native_once(cred, model, method, body, alt)
            if method == "streamGenerateContent":
                return resp
            raw = await drain(resp)
            answer = Answer(resp.status, resp.headers.get("Content-Type", "application/json"), raw)
            data = _json_object(raw)
            if data is None:  # a 200 page (a portal, a proxy), a cut body: not an answer
                raise CredFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                    "Google answered 200 with something that is not a JSON object", status=502)))
            if method == "generateContent" and gk.is_empty_answer(data):
                last_empty[:] = [answer]
                raise CredFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError("empty answer", status=502)))
            return answer
        try:
            return await self.attempts(attempt)
        except errors.ProxyError:
            if last_empty:  # ClewdR answered 204; the last body with 200 is more useful (§3.3)
                return last_empty[0]
            raise

    async def hub_open(self, req: dict, *, model: str, stream: bool, echo_model: str):
        """Hub request in, hub events (stream) or a hub message out."""
        body = gem.hub_to_gemini(req)
        if not stream:
            answer = await self.native(model, "generateContent", body, alt=None)
            data = json.loads(answer.body or b"{}")
            return gem.gemini_to_hub_message(data, model=echo_model, msg_id=new_msg_id(),
                                             signature=synthetic_signature())
        resp = await self.native(model, "streamGenerateContent", body, alt="sse")
        try:  # held until content: a failure before it may still go to another provider
            return await hold_events(_hub_events(resp, echo_model))
        except EarlyError as exc:
            raise exc.outcome.error from None


def _hub_events(resp, model: str):
    conv = gem.GeminiToHub(model=model, msg_id=new_msg_id(), signature=synthetic_signature(), input_tokens=0)
    return converted_events(resp, conv)


def _json_object(raw: bytes) -> dict | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None



class AIStudio(Google):
    """AI Studio keys (`gemini_keys`) with the health rules of gemini.md §4.3."""

    kind = "gemini"

    def __init__(self, pool: KeyPool, **kw) -> None:
        super().__init__(**kw)
        self.pool = pool

    def _base(self) -> str:
        return self._config().gemini_base.rstrip("/")

    async def _auth(self, cred) -> dict:
        return {"x-goog-api-key": cred.key}  # never in the URL, where logs keep it (§3.1)

    def _native_url(self, cred, model: str, method: str, alt: str | None) -> str:
        query = f"?{urlencode({'alt': alt})}" if alt else ""
        return f"{self._base()}/{self._config().gemini_api_version}/models/{model}:{method}{query}"

    def _classify(self, cred, status: int, body: bytes) -> ue.Outcome:
        return gk.classify_gemini(status, body, now=self._clock(), count_403=int(cred.extra.get("count_403", 0)),
                                  max_403=self._config().gemini_max_403)

    def _settle(self, cred, outcome: ue.Outcome) -> None:
        if outcome.error is not None and outcome.error.status == 403 and outcome.action != ue.RETIRE:
            cred.extra["count_403"] = int(cred.extra.get("count_403", 0)) + 1
            self.pool.version += 1
        if outcome.action == ue.RETIRE:
            self.pool.disable(cred.key, str(outcome.reason))
            log.warning("gemini key %s disabled: %s", gk.mask_key(cred.key), outcome.reason)
        elif outcome.action == ue.PARK:
            self.pool.cool(cred.key, outcome.until, str(outcome.reason or "rate_limited"))
            log.warning("gemini key %s cooling until %s", gk.mask_key(cred.key), outcome.until)

    def _ok(self, cred) -> None:
        if cred.extra.get("count_403"):
            cred.extra["count_403"] = 0
            self.pool.version += 1

    def _exhausted(self, last) -> errors.ProxyError:
        active, cooling, disabled = self.pool.counts(self._clock())
        if last is not None and active:
            return last
        if cooling and not active:
            wait = max(1, int((self.pool.earliest_cooldown() or 0) - self._clock()))
            return errors.RateLimited(f"every Gemini key is cooling down; the first is back in {wait} s",
                                      retry_after=wait)
        if last is not None:
            return last
        return errors.NoCredential("No key available" + (f" ({disabled} disabled)" if disabled else ""))

    async def models(self) -> list[dict]:
        """The upstream's model list (cached 1 h, §10.4); [] when no key can fetch it."""
        cached = getattr(self, "_models", None)
        if cached and cached[0] > self._clock():
            return cached[1]
        entry = self.pool.pick(self._clock(), rand=self._rand())
        if entry is None:
            return []
        url = f"{self._base()}/{self._config().gemini_api_version}/models?pageSize=1000"
        try:
            resp = await self._client().request("GET", url, headers={"x-goog-api-key": entry.key})
            raw = await drain(resp)
            found = json.loads(raw).get("models", []) if resp.status == 200 else []
        except (ValueError, AttributeError, *TRANSPORT_ERRORS):
            found = []
        if found:
            self._models = (self._clock() + 3600, found)
        return found

    async def openai(self, body: dict, *, stream: bool):
        """The OpenAI-compatible endpoint (§6): a streaming Response or an Answer."""
        if stream:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        url = f"{self._base()}/v1beta/openai/chat/completions"

        async def attempt(cred):
            resp = await self._post(cred, url, body, auth={"Authorization": f"Bearer {cred.key}"})
            if stream:
                return resp
            raw = await drain(resp)
            return Answer(resp.status, "application/json", raw)
        return await self.attempts(attempt)


class Vertex(Google):
    """Vertex AI service accounts: JWT bearer exchange, cached tokens, project URLs (gemini.md §5)."""

    kind = "vertex"

    def __init__(self, credentials: list[dict], **kw) -> None:
        super().__init__(**kw)
        self.set_credentials(credentials)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def set_credentials(self, credentials: list[dict]) -> None:
        """Replace the service accounts (admin changes, reloads)."""
        self.creds = {vx.credential_id(c): c for c in credentials if isinstance(c, dict) and c.get("client_email")}
        self.pool = KeyPool.from_keys(list(self.creds))

    def _host(self) -> str:
        cfg = self._config()
        return vx.vertex_host(cfg.vertex_location, cfg.vertex_base)

    def _native_url(self, cred, model: str, method: str, alt: str | None) -> str:
        cfg = self._config()
        return vx.native_url(self._host(), self.creds[cred.key]["project_id"], cfg.vertex_location, model, method,
                             sse=alt == "sse")

    async def _auth(self, cred) -> dict:
        return {"Authorization": f"Bearer {await self.access_token(cred.key)}"}

    async def access_token(self, ident: str) -> str:
        """A cached access token, exchanged by JWT bearer when missing or near expiry (§5.3)."""
        lock = self._locks.setdefault(ident, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(ident)
            if cached and cached[1] > self._clock():
                return cached[0]
            cred = self.creds[ident]
            try:
                assertion = vx.jwt_assertion(cred, now=self._clock(), signer=vx.default_signer(cred["private_key"]))
            except (ValueError, KeyError) as exc:  # an unusable private key will not heal by itself
                raise CredFailed(ue.Outcome(ue.RETIRE, errors.UpstreamError(
                    f"service account {ident}: unusable private key ({exc})", status=502), "bad_key")) from None
            uri = cred.get("token_uri") or "https://oauth2.googleapis.com/token"
            try:
                resp = await self._client().request(
                    "POST", uri, data=urlencode(vx.token_form(assertion)).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
            except TRANSPORT_ERRORS as exc:
                raise CredFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                    f"Google token endpoint unreachable: {exc}"))) from exc
            raw = await drain(resp)
            if resp.status != 200:
                disable = vx.token_error_disables(resp.status, raw)
                raise CredFailed(ue.Outcome(ue.RETIRE if disable else ue.PARK, errors.UpstreamError(
                    f"Vertex token exchange failed ({resp.status}): {raw[:200].decode('utf-8', 'replace')}",
                    status=502), "token_rejected" if disable else "token_error",
                    None if disable else int(self._clock()) + 60))
            answer = json.loads(raw)
            self._tokens[ident] = (answer["access_token"], vx.token_cache_expiry(answer, now=self._clock()))
            return answer["access_token"]

    def _classify(self, cred, status: int, body: bytes) -> ue.Outcome:
        outcome = gk.classify_gemini(status, body, now=self._clock(), count_403=0, max_403=1 << 30)
        if status in (401, 403):  # a credential error on Vertex: move on to the next account (§5.2)
            self._tokens.pop(cred.key, None)
            return ue.Outcome(ue.PARK, outcome.error, "credential", int(self._clock()) + 60)
        return outcome

    def _settle(self, cred, outcome: ue.Outcome) -> None:
        if outcome.action == ue.RETIRE:
            self.pool.disable(cred.key, str(outcome.reason))
        elif outcome.action == ue.PARK:
            self.pool.cool(cred.key, outcome.until, str(outcome.reason or "rate_limited"))

    def _exhausted(self, last) -> errors.ProxyError:
        if not self.creds:
            return errors.BadRequest("Vertex is not configured")
        if last is not None:
            return last
        return errors.NoCredential("No Vertex credential available")

    async def openai(self, body: dict, *, stream: bool):
        """The Vertex OpenAI-compatible endpoint (§5.4, §6)."""
        cfg = self._config()
        body = vx.openai_body({**body, "stream": stream}, cfg.gemini_safety)

        async def attempt(cred):
            url = vx.openai_url(self._host(), self.creds[cred.key]["project_id"], cfg.vertex_location)
            resp = await self._post(cred, url, body)
            if stream:
                return resp
            raw = await drain(resp)
            return Answer(resp.status, "application/json", raw)
        return await self.attempts(attempt)
