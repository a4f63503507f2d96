"""Claude Code upstream: cookie → OAuth token (PKCE), refresh, Messages calls (claude-code.md).

Shares the cookie pool and the retry loop with the web upstream (`ClaudeWeb.attempts`). Token
and refresh calls go through the plain client: the token endpoint's WAF answers 429 to browser
fingerprints (§3.3). Messages calls also use the plain client, as the CLI itself does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from clewdr_lite import errors
from clewdr_lite.protocol import claude_code as cc
from clewdr_lite.protocol import claude_web as web_proto
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol.anthropic import answer_problem
from clewdr_lite.protocol.model_rules import split_model_suffixes
from clewdr_lite.upstream.claude_web import AttemptFailed, ClaudeWeb, base_url
from clewdr_lite.upstream.http import TRANSPORT_ERRORS, drain
from clewdr_lite.upstream.relay import EarlyError, MessagesStream

log = logging.getLogger("clewdr_lite.code")

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"  # Claude Code's public OAuth client (§2)
COUNT_CACHE_S = 300.0
COUNT_CACHE_MAX = 256
COUNT_CONCURRENCY = 4


def _fail(action: str, message: str, status: int = 502) -> AttemptFailed:
    return AttemptFailed(ue.Outcome(action, errors.UpstreamError(message, status=status)))


class ClaudeCode:
    """The Claude Code upstream over the shared cookie pool."""

    def __init__(self, *, web: ClaudeWeb, config: Callable[[], Any], plain: Callable[[], Any],
                 clock: Callable[[], float], random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.web, self.pool = web, web.pool
        self._config, self._plain, self._clock = config, plain, clock
        self._random = random_bytes
        self._locks: dict[str, asyncio.Lock] = {}
        self._prelude: set[str] = set()  # cookies whose requests need the identity prelude (§6.3)
        self._count_cache: OrderedDict = OrderedDict()
        self._count_gate: asyncio.Semaphore | None = None
        self._background: set[asyncio.Task] = set()
        self._probed: dict[str, float] = {}

    def _ua(self) -> str:
        cfg = self._config()
        return cc.user_agent(cfg.claude_code_user_agent, cfg.claude_code_version)

    # ----- tokens (§3, §4)
    async def access_token(self, record: dict, *, force: bool = False) -> str:
        """A usable access token for this cookie: stored, refreshed, or freshly exchanged."""
        cookie = record["cookie"]
        lock = self._locks.setdefault(cookie, asyncio.Lock())
        seen = (record.get("token") or {}).get("access_token")
        async with lock:
            token = record.get("token")
            current = (token or {}).get("access_token")
            if token and not cc.token_expired(token, self._clock()) and not (force and current == seen):
                return current  # valid, or another request refreshed it while we waited
            fresh = None
            if token and token.get("refresh_token"):
                fresh = await self._refresh(token)
            if fresh is None and record.get("imported"):  # no cookie to authorize again with (§5)
                raise AttemptFailed(ue.Outcome(ue.RETIRE, errors.AuthError(
                    "imported OAuth login expired and cannot be refreshed"), "Null"))
            if fresh is None:
                fresh = await self._exchange(cookie)
            self.pool.update(cookie, token=fresh)
            return fresh["access_token"]

    async def _token_call(self, form: list[tuple[str, str]]) -> tuple[int, bytes]:
        """POST the form to the token URL; on 429 or 404 try the next known URL (§2, §3.3)."""
        status, body = 0, b""
        configured = self._config().claude_code_token_url
        # the official hosts stand in for each other; a mirror (or a test) is only retried itself
        official = configured.rstrip("/") in {u.rstrip("/") for u in cc.TOKEN_URLS}
        for url in cc.token_url_candidates(configured) if official else [configured, configured]:
            try:
                resp = await self._plain().request("POST", url, headers=cc.token_headers(self._ua()),
                                                   data=urlencode(form).encode())
                status, body = resp.status, await resp.read()
                await resp.close()
            except TRANSPORT_ERRORS as exc:
                raise _fail(ue.TRANSIENT, f"token endpoint unreachable: {exc}") from exc
            if status not in (404, 429):
                return status, body
        if status == 429:
            raise _fail(ue.TRANSIENT, "token endpoint blocked (429 from every token URL)")
        return status, body

    async def _refresh(self, token: dict) -> dict | None:
        """A refreshed token, or None when the grant is gone and a new authorization is needed."""
        status, body = await self._token_call(cc.refresh_form(
            refresh_token=token["refresh_token"], client_id=self._client_id()))
        if status == 200:
            org = (token.get("organization") or {}).get("uuid")
            return cc.token_record(json.loads(body), now=self._clock(), org_uuid=org, previous=token)
        if cc.is_invalid_grant(status, body):
            log.info("refresh token rejected; authorizing again")
            return None
        raise _fail(ue.TRANSIENT, f"token refresh failed: {cc.token_error(status, body)}")

    def _client_id(self) -> str:
        return self._config().claude_code_client_id or CLIENT_ID

    async def _exchange(self, cookie: str) -> dict:
        """Cookie → authorization code → token, by PKCE (§3.1–3.3)."""
        cfg = self._config()
        acct = await self.web.account(cookie)
        if not acct.pro:  # free accounts cannot use Claude Code; keep them for the web (§3.1)
            self.pool.update(cookie, code_allowed=False)
            raise AttemptFailed(ue.Outcome("skip", errors.PermissionDenied("free account: web only")))
        pkce = cc.make_pkce(self._random(32), self._random(32))
        answer = await self.web.call_json(
            "POST", f"v1/oauth/{acct.org}/authorize", cookie, "new",
            cc.authorize_body(client_id=self._client_id(), org_uuid=acct.org,
                              redirect_uri=cfg.claude_code_redirect_uri, scope=cfg.claude_code_scope, pkce=pkce))
        try:
            code = cc.code_from_redirect(answer if isinstance(answer, dict) else {}, pkce.state)
        except ValueError as exc:
            raise _fail(ue.TRANSIENT, f"authorization failed: {exc}") from None
        status, body = await self._token_call(cc.code_form(
            code=code, pkce=pkce, client_id=self._client_id(), redirect_uri=cfg.claude_code_redirect_uri))
        if status != 200:
            raise _fail(ue.TRANSIENT, f"token exchange failed: {cc.token_error(status, body)}")
        log.info("cookie %s: OAuth token obtained", web_proto.mask_log(cookie))
        return cc.token_record(json.loads(body), now=self._clock(), org_uuid=acct.org)

    # ----- messages (§6)
    async def open(self, req: dict, *, stream: bool, echo_model: str,
                   client_headers: Mapping[str, str]):
        """A started MessagesStream (stream) or the response body (non-stream), after retries."""
        sticky = cc.sticky_keys(req, client_headers)

        async def attempt(record: dict):
            return await self._attempt(record, req, stream=stream, echo_model=echo_model,
                                       client_headers=client_headers)
        return await self.web.attempts(attempt, need_code=True, sticky_keys=sticky)

    def _prepare(self, req: dict, cookie: str) -> tuple[dict, list[str]]:
        cfg = self._config()
        _, _, want_1m = split_model_suffixes(req["model"])
        entry = cfg.claude_code_entrypoint or "cli"
        return cc.prepare_request(req, version=cfg.claude_code_version, entrypoint=entry,
                                  custom_system=cfg.custom_system, prelude=cookie in self._prelude,
                                  want_1m=want_1m)

    async def _post(self, record: dict, path: str, body: dict, betas: str, client_headers):
        token = await self.access_token(record)
        headers = cc.upstream_headers(client_headers, auth={"Authorization": f"Bearer {token}"},
                                      betas=betas, user_agent=self._ua(), oauth=True)
        url = base_url(self._config().rproxy) + path
        try:
            return await self._plain().request("POST", url, headers=headers, json=body)
        except TRANSPORT_ERRORS as exc:
            raise AttemptFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"Anthropic API unreachable: {exc}"))) from exc

    def _betas(self, record: dict, client_headers, extra: list[str], drop_1m: bool) -> str:
        cfg = self._config()
        drop = [cc.LONG_CONTEXT_BETA] if drop_1m else []
        return cc.merge_betas(client_headers.get("anthropic-beta"), [*extra, *cfg.claude_code_betas], drop=drop,
                              base=cc.OAUTH_BETA)

    async def _attempt(self, record: dict, req: dict, *, stream: bool, echo_model: str, client_headers):
        """One cookie, with the same-cookie fixes of §6.7 (refresh, re-authorize, prelude, no 1M)."""
        cookie = record["cookie"]
        fixes: set[str] = set()
        while True:
            body, extra = self._prepare(req, cookie)
            drop_1m = record.get("supports_claude_1m") is False
            betas = self._betas(record, client_headers, extra, drop_1m)
            resp = await self._post(record, "v1/messages?beta=true", body, betas, client_headers)
            if 200 <= resp.status < 300:
                if cc.LONG_CONTEXT_BETA in betas and record.get("supports_claude_1m") is not True:
                    self.pool.update(cookie, supports_claude_1m=True)
                return await self._success(record, resp, body["model"], stream=stream, echo_model=echo_model)
            raw = await drain(resp)
            fix = self._fix_for(record, resp.status, raw, fixes, drop_1m)
            if fix is None:
                raise AttemptFailed(cc.classify_oauth(resp.status, resp.headers, raw, now=self._clock()))
            fixes.add(fix)

    def _fix_for(self, record: dict, status: int, raw: bytes, done: set, drop_1m: bool) -> str | None:
        """Which same-cookie fix an error calls for, applying its state change; None = classify it."""
        message = ue.read_body(raw).message
        cookie = record["cookie"]
        if status == 401 and "refresh" not in done:
            token = dict(record.get("token") or {})
            token["expires_at"] = 0  # force a refresh on the next call
            self.pool.update(cookie, token=token)
            return "refresh"
        if status == 401 and "exchange" not in done and not record.get("imported"):
            self.pool.update(cookie, token=None)
            return "exchange"
        if cc.is_claude_code_only_error(status, message) and "prelude" not in done:
            self._prelude.add(cookie)
            return "prelude"
        if cc.is_long_context_error(status, message) and not drop_1m:
            self.pool.update(cookie, supports_claude_1m=False)
            return "no-1m"
        return None

    async def _success(self, record: dict, resp, model: str, *, stream: bool, echo_model: str):
        cookie = record["cookie"]

        def done(input_tokens: int, output_tokens: int) -> None:
            self.pool.record_usage(cookie, model, input_tokens, output_tokens)
            self._maybe_probe(record)

        if stream:
            relay = MessagesStream(resp, echo_model=echo_model, on_done=done)
            try:
                await relay.prime()
            except EarlyError as exc:
                raise AttemptFailed(exc.outcome) from None
            return relay
        try:
            data = json.loads(await resp.read())
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise _fail(ue.TRANSIENT, f"unreadable answer from the Anthropic API: {exc}") from None
        finally:
            await resp.close()
        problem = answer_problem(data)
        if problem is not None:
            raise _fail(ue.TRANSIENT, f"unreadable answer from the Anthropic API: {problem}")
        data["model"] = echo_model
        done(*cc.usage_from_message(data))
        return data

    # ----- count_tokens (§10)
    async def count_tokens(self, req: dict, client_headers: Mapping[str, str]) -> dict:
        """Upstream count with a 5-minute cache and at most 4 calls at once; a local estimate otherwise."""
        key, now = cc.count_cache_key(req), self._clock()
        hit = self._count_cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        self._count_gate = self._count_gate or asyncio.Semaphore(COUNT_CONCURRENCY)
        async with self._count_gate:
            answer = await self.web.attempts(lambda record: self._count_once(record, req, client_headers),
                                             need_code=True)
        self._count_cache[key] = (self._clock() + COUNT_CACHE_S, answer)
        while len(self._count_cache) > COUNT_CACHE_MAX:
            self._count_cache.popitem(last=False)
        return answer

    async def _count_once(self, record: dict, req: dict, client_headers) -> dict:
        cookie = record["cookie"]
        body, extra = self._prepare({**req, "max_tokens": req.get("max_tokens") or 1}, cookie)
        body.pop("stream", None)
        body.pop("max_tokens", None)
        if record.get("count_tokens_allowed") is False:
            return {"input_tokens": tokens.estimate_request(body)}
        betas = self._betas(record, client_headers, extra, record.get("supports_claude_1m") is False)
        resp = await self._post(record, "v1/messages/count_tokens?beta=true", body, betas, client_headers)
        raw = await drain(resp)
        if resp.status == 200:
            if record.get("count_tokens_allowed") is not True:
                self.pool.update(cookie, count_tokens_allowed=True)
            return json.loads(raw)
        outcome = cc.classify_oauth(resp.status, resp.headers, raw, now=self._clock())
        if resp.status == 404 or (resp.status == 403 and outcome.action != ue.CODE_DENIED):
            self.pool.update(cookie, count_tokens_allowed=False)  # ClewdR returned the error (quirk 19)
            return {"input_tokens": tokens.estimate_request(body)}
        raise AttemptFailed(outcome)

    # ----- usage windows (§8, claude-web.md §16.3)
    def _maybe_probe(self, record: dict) -> None:
        if not cc.probe_due(record, now=self._clock()):
            return
        task = asyncio.ensure_future(self.probe(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def probe(self, record: dict) -> dict | None:
        """Read the OAuth usage endpoint and update the cookie's windows; None when it failed."""
        cookie = record["cookie"]
        probe = None
        try:
            token = await self.access_token(record)
            resp = await self._plain().request("GET", self._config().claude_code_usage_url, headers={
                "Authorization": f"Bearer {token}", "Accept": "application/json, text/plain, */*",
                "User-Agent": self._ua(), "anthropic-beta": "oauth-2025-04-20"})
            raw = await drain(resp)
            if resp.status == 200:
                probe = json.loads(raw)
        except (AttemptFailed, ValueError, *TRANSPORT_ERRORS) as exc:
            log.debug("usage probe failed for %s: %s", web_proto.mask_log(cookie), exc)
        updates = cc.apply_probe(record, probe, now=self._clock())
        self.pool.update(cookie, **updates)
        return probe

    async def close(self) -> None:
        """Cancel background probes."""
        for task in list(self._background):
            task.cancel()

