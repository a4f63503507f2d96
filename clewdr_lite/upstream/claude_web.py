"""claude.ai web upstream: bootstrap, throw-away conversations, completion streams (claude-web.md).

`ClaudeWeb.open()` runs the retry loop of §15 over the cookie pool and returns a `WebStream` once
the upstream has answered 200 and its first content event is in (or 10 s have passed), so a
failure before that point can still move on to the next cookie. The stream yields hub events
(Anthropic Messages events, already fixed up by `protocol.claude_web.WebEvents`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from clewdr_lite import errors
from clewdr_lite.pool import Backoff, CookiePool
from clewdr_lite.protocol import claude_web as web
from clewdr_lite.protocol.claude_web_account import REASON_EFFECT
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol.sse import loads_bytes
from clewdr_lite.upstream.http import TRANSPORT_ERRORS, note_credential
from clewdr_lite.upstream.relay import EarlyError, converted_events, hold_events, new_msg_id

log = logging.getLogger("clewdr_lite.web")

DEFAULT_BASE = "https://api.anthropic.com/"
IMAGE_TOKENS = 1600
MAX_IMAGE_BYTES = 10 << 20


class AttemptFailed(Exception):
    """One attempt with one cookie failed; `outcome` says what the pool and the loop should do."""

    def __init__(self, outcome: ue.Outcome) -> None:
        super().__init__(outcome.error.message if outcome.error else outcome.action)
        self.outcome = outcome


@dataclass
class Account:
    """Cached bootstrap result of one cookie."""

    org: str
    pro: bool
    expires: float


def base_url(rproxy: str | None) -> str:
    """E with exactly one trailing slash, so joining keeps a mirror's path (claude-web.md §1)."""
    return (rproxy or DEFAULT_BASE).rstrip("/") + "/"


def origin_of(base: str) -> str:
    """Scheme + host [+ port] of E, no trailing slash (claude-web.md §3)."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def call_headers(base: str, cookie: str, referer: str, *, stream: bool = False) -> dict:
    """The headers of a claude.ai call to E = `base` (claude-web.md §3), Content-Type aside."""
    return {"Cookie": f"sessionKey={cookie}", "Origin": origin_of(base), "Referer": base + referer,
            "Accept-Language": "en-US,en;q=0.9", "Accept": "text/event-stream" if stream else "application/json"}


class ClaudeWeb:
    """The claude.ai web upstream over a cookie pool."""

    def __init__(self, *, config: Callable[[], Any], pool: CookiePool, client: Callable[[], Any],
                 clock: Callable[[], float], rand: Callable[[], float], sleep=asyncio.sleep) -> None:
        self._config = config
        self.pool = pool
        self._client = client
        self._clock = clock
        self._rand = rand
        self._sleep = sleep
        self.accounts: dict[str, Account] = {}
        self._stamp_at, self._stamp_text = -1, ""

    # ----- plumbing
    def _headers(self, cookie: str, referer: str, *, stream: bool = False) -> dict:
        return call_headers(base_url(self._config().rproxy), cookie, referer, stream=stream)

    async def _call(self, method: str, path: str, cookie: str, referer: str, *, json_body=None,
                    files=None, stream: bool = False):
        """One web call; non-2xx answers become AttemptFailed with their classification."""
        url = base_url(self._config().rproxy) + path
        headers = self._headers(cookie, referer, stream=stream)
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = await self._client().request(method, url, headers=headers, json=json_body,
                                                files=files, impersonate=True)
        except TRANSPORT_ERRORS as exc:
            raise AttemptFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"claude.ai unreachable: {exc.__class__.__name__}: {exc}"))) from exc
        if 200 <= resp.status < 300:
            return resp
        try:
            body = await resp.read()
        except TRANSPORT_ERRORS:
            body = b""
        finally:
            await resp.close()
        raise AttemptFailed(ue.classify(resp.status, resp.headers, body, now=self._clock()))

    async def call_json(self, method: str, path: str, cookie: str, referer: str, json_body=None):
        resp = await self._call(method, path, cookie, referer, json_body=json_body)
        try:
            return loads_bytes(await resp.read() or b"null")
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise AttemptFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"claude.ai sent an unreadable answer to {path}"))) from exc
        finally:
            await resp.close()

    # ----- account checks (§5)
    async def account(self, cookie: str) -> Account:
        """Bootstrap + organization + flags, cached for `web_bootstrap_ttl` seconds."""
        cfg, now = self._config(), self._clock()
        cached = self.accounts.get(cookie)
        if cached and cached.expires > now:
            return cached
        boot = await self.call_json("GET", "api/bootstrap", cookie, "new")
        try:
            pro, reason, email, caps = web.read_bootstrap(boot, skip_non_pro=cfg.skip_non_pro)
        except errors.UpstreamError as exc:  # no membership with chat: not a cookie reason
            raise AttemptFailed(ue.Outcome(ue.CLIENT, exc)) from None
        if reason:
            raise AttemptFailed(_verdict_outcome(reason))
        orgs = await self.call_json("GET", "api/organizations", cookie, "new")
        org = web.choose_org(orgs if isinstance(orgs, list) else [])
        if org is None:
            raise AttemptFailed(ue.Outcome(ue.CLIENT, errors.UpstreamError(
                "the account has no organization with chat capability", status=500)))
        verdict = web.check_flags(org, now=now, skip_restricted=cfg.skip_restricted,
                                  skip_second_warning=cfg.skip_second_warning,
                                  skip_first_warning=cfg.skip_first_warning,
                                  skip_normal_pro=cfg.skip_normal_pro)
        log.info("cookie %s: %s, pro=%s, capabilities=%s", web.mask_log(cookie), email, pro, caps)
        if verdict is not None:
            raise AttemptFailed(_verdict_outcome(verdict))
        account = Account(org["uuid"], pro, now + cfg.web_bootstrap_ttl)
        self.accounts[cookie] = account
        return account

    # ----- one attempt (§6)
    async def _attempt(self, cookie: str, req: dict, flat, files, *, raw: bool):
        cfg = self._config()
        acct = await self.account(cookie)
        conv = str(uuid.uuid4())  # always fresh (Clove's timestamp ids collide, §6.1)
        temporary = not cfg.preserve_chats
        stamp = self._stamp()
        created = await self.call_json("POST", f"api/organizations/{acct.org}/chat_conversations", cookie,
                                   "new?incognito" if temporary else "new",
                                   web.create_body(conv, temporary=temporary, now_str=stamp))
        wanted = web.thinking_wanted(req) and acct.pro
        if web.settings_needed(created, wanted):
            await self._settings(cookie, acct.org, conv, wanted)
        file_ids = await self._uploads(cookie, acct.org, conv, files)
        body = web.completion_body(
            flat.text, model=req["model"] if acct.pro else None, max_tokens=req.get("max_tokens", 8192),
            rendering_mode="raw" if raw else "messages", custom_prompt=cfg.custom_prompt or "",
            timezone=cfg.web_timezone, web_search=web.web_search_wanted(req, cfg.web_search),
            file_uuids=file_ids)
        return await self._call("POST", f"api/organizations/{acct.org}/chat_conversations/{conv}/completion",
                                cookie, f"chat/{conv}", json_body=body, stream=True)

    def _stamp(self) -> str:
        """The current UTC second as the conversation's name wants it (made once per second)."""
        second = int(self._clock())
        if second != self._stamp_at:
            self._stamp_at = second
            self._stamp_text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return self._stamp_text

    async def _settings(self, cookie: str, org: str, conv: str, thinking: bool) -> None:
        try:
            resp = await self._call("PUT", f"api/organizations/{org}/chat_conversations/{conv}", cookie,
                                    f"chat/{conv}", json_body=web.settings_body(thinking))
            await resp.close()
        except AttemptFailed as exc:  # §6.2: the answer and any error are ignored
            log.debug("settings call failed: %s", exc)

    async def download(self, url: str) -> tuple[str, str, bytes] | None:
        """An external image for upload (`allow_external_images`, claude-web.md §7.2)."""
        try:
            resp = await self._client().request("GET", url, impersonate=False)
            try:
                kind = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if resp.status != 200 or not kind.startswith("image/"):
                    raise ValueError(f"status {resp.status}, type {kind or 'none'}")
                data = await resp.read()
            finally:
                await resp.close()
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            log.warning("external image %s skipped: %s", url[:100], exc)
            return None
        if len(data) > MAX_IMAGE_BYTES:
            log.warning("external image %s skipped: larger than %d bytes", url[:100], MAX_IMAGE_BYTES)
            return None
        return web.upload_name(kind), kind, data

    async def _files(self, flat) -> list[tuple[str, str, bytes]]:
        files = []
        for item in flat.files:
            try:
                files.append((item.name, item.media_type, base64.b64decode(item.data_b64, validate=False)))
            except ValueError as exc:
                log.warning("attachment %s skipped: bad base64 (%s)", item.name, exc)
        if flat.urls and not self._config().allow_external_images:
            log.warning("%d external image URLs dropped (allow_external_images is off)", len(flat.urls))
        elif flat.urls:
            files += [f for f in [await self.download(url) for url in flat.urls] if f]
        return files

    async def _uploads(self, cookie: str, org: str, conv: str, files) -> list[str]:
        ids = []
        for name, media_type, content in files:
            try:
                resp = await self._call("POST", f"api/{org}/upload", cookie, f"chat/{conv}",
                                        files=[("file", name, media_type, content)])
                try:
                    ids.append(json.loads(await resp.read())["file_uuid"])
                finally:
                    await resp.close()
            except (AttemptFailed, ValueError, KeyError, TypeError, *TRANSPORT_ERRORS) as exc:
                log.warning("upload of %s skipped: %s", name, exc)  # §6.3: request goes on
        return ids

    # ----- the retry loop (§15.2)
    async def open(self, req: dict, *, stream: bool, echo_model: str) -> "WebStream":
        """Run attempts until one stream starts; raises the error the client should see."""
        cfg = self._config()
        flat = web.flatten(req, custom_h=cfg.custom_h, custom_a=cfg.custom_a,
                           use_real_roles=cfg.use_real_roles, sanitize=cfg.sanitize_messages)
        for warning in flat.warnings:
            log.warning("%s", warning)
        # §16.1: the input estimate is that of the prompt actually sent, plus images
        files = await self._files(flat)  # decoded (and downloaded) once, uploaded per attempt
        input_tokens = tokens.estimate_text(flat.text) + IMAGE_TOKENS * len(files)
        raw = not stream and cfg.web_rendering_mode == "raw"

        async def attempt(record: dict) -> "WebStream":
            return await self._start(record["cookie"], req, flat, files, raw=raw, echo_model=echo_model,
                                     input_tokens=input_tokens, stream=stream)
        return await self.attempts(attempt)

    async def attempts(self, attempt: Callable, *, need_code: bool = False, sticky_keys=()) -> Any:
        """The retry loop of §15.2 over the cookie pool: one cookie per attempt, shared by Claude Code."""
        cfg = self._config()
        backoff = Backoff(cfg.tables.get("retry"), self._clock())
        tried, last = set(), None
        for number in range(cfg.max_retries + 1):
            record = self.pool.pick(self._clock(), exclude=tried, need_code=need_code,
                                    sticky_keys=sticky_keys)
            if record is None:
                break
            cookie = record["cookie"]
            tried.add(cookie)
            note_credential(web.mask_log(cookie))
            if number:
                log.info("[RETRY] attempt: %d", number + 1)
            try:
                return await attempt(record)
            except AttemptFailed as exc:
                if exc.outcome.action in (ue.TRANSIENT, ue.CLIENT, ue.BLOCKED):
                    last = exc.outcome.error  # cookie reasons are told through the pool's state
                if not self._settle(cookie, exc.outcome):
                    raise exc.outcome.error from None
                if exc.outcome.action == ue.TRANSIENT:
                    tried.discard(cookie)  # not its fault: usable again, after the others (gateway.md §7.2)
                    delay = backoff.next_delay(self._clock(), self._rand())
                    if delay is None:
                        break
                    await self._sleep(delay)
        raise self._exhausted_error(last, need_code=need_code)

    def _settle(self, cookie: str, outcome: ue.Outcome) -> bool:
        """Apply an attempt's outcome to the pool; False when the loop must stop (§13, §15.2)."""
        text = outcome.error.message if outcome.error else None
        if outcome.action == ue.RETIRE:
            self.accounts.pop(cookie, None)
            self.pool.retire(cookie, outcome.reason, error=text)
            log.warning("cookie %s retired: %s", web.mask_log(cookie), outcome.reason)
        elif outcome.action == ue.PARK:
            self.pool.park(cookie, outcome.until, error=text)
            log.warning("cookie %s parked until %s", web.mask_log(cookie), outcome.until)
        elif outcome.action == ue.CODE_DENIED:
            self.pool.update(cookie, code_allowed=False)
        elif outcome.action in (ue.TRANSIENT, "skip"):
            pass
        else:  # blocked (other cookies share the IP) and client errors end the loop
            return False
        valid, exhausted, invalid = self.pool.counts()
        log.info("Valid: %d, Exhausted: %d, Invalid: %d", valid, exhausted, invalid)
        return True

    def _exhausted_error(self, last: errors.ProxyError | None, *, need_code: bool = False) -> errors.ProxyError:
        if last is not None:
            return last
        valid, exhausted, invalid = self.pool.counts()
        if need_code and valid and all(r.get("code_allowed") is False for r in self.pool.valid):
            return errors.NoCredential("No cookie available for Claude Code: every valid cookie is web-only "
                                       "(free account or OAuth not allowed for its organization)")
        if not need_code and valid and all(r.get("imported") for r in self.pool.valid):
            return errors.NoCredential("No cookie available: the pool holds only imported Claude Code "
                                       "logins, which cannot serve claude.ai web requests")
        if valid:
            return errors.RetriesExceeded("Retries exceeded")
        if exhausted:
            wait = max(1, int((self.pool.earliest_reset() or 0) - self._clock()))
            return errors.RateLimited(
                f"every cookie is rate limited; the first one is back in {wait} s", retry_after=wait)
        detail = f" ({invalid} cookies are invalid; see the admin page)" if invalid else ""
        return errors.NoCredential(f"No cookie available{detail}")

    async def _start(self, cookie: str, req: dict, flat, files, *, raw: bool, echo_model: str,
                     input_tokens: int, stream: bool) -> "WebStream":
        self.pool.acquire(cookie)
        try:
            resp = await self._attempt(cookie, req, flat, files, raw=raw)
            processor = (web.RawEvents if raw else web.WebEvents)(
                model=echo_model, msg_id=new_msg_id(), input_tokens=input_tokens,
                stops=req.get("stop_sequences") or [])
            events = WebStream(self, cookie, req["model"], resp, processor, input_tokens)
            await events.prime(whole=not stream)
            return events
        except BaseException:
            self.pool.release(cookie)
            raise

    def finished(self, cookie: str, model: str, input_tokens: int, output_tokens: int) -> None:
        """Record usage on the cookie and free its slot."""
        self.pool.release(cookie)
        self.pool.record_usage(cookie, model, input_tokens, output_tokens)


def _verdict_outcome(reason) -> ue.Outcome:
    """Map an account reason to a pool action (claude-web.md §5, §14)."""
    effect = REASON_EFFECT.get(reason.name)
    error = errors.AuthError(f"cookie rejected: {web.reason_text(reason)}")
    if effect == "invalid":
        return ue.Outcome(ue.RETIRE, error, web.reason_to_toml(reason))
    if effect == "exhausted":
        return ue.Outcome(ue.PARK, error, web.reason_to_toml(reason), int(reason.until or 0))
    return ue.Outcome("skip", error)


class WebStream:
    """Hub events of one started completion; iterate once, then `aclose()`."""

    def __init__(self, owner: ClaudeWeb, cookie: str, model: str, resp, processor, input_tokens: int) -> None:
        self.owner, self.cookie, self.model = owner, cookie, model
        self._resp, self._proc = resp, processor
        self._input = input_tokens
        self._gen = converted_events(resp, processor)  # hub events; closes resp when it ends
        self._out = None  # the events held by prime(), then the rest
        self._closed = False

    async def prime(self, *, whole: bool = False) -> None:
        """Hold events until the first content (relay.hold_events; `whole`: for a client that
        waits for the whole answer, however long it takes): an error or the end before it is a
        failed attempt the caller may retry."""
        try:
            self._out = await hold_events(self._gen, whole=whole)
        except EarlyError as exc:
            await self.aclose()
            raise AttemptFailed(exc.outcome) from None
        except BaseException:  # cancelled (the client left): free the upstream
            await self.aclose()
            raise

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        try:
            async for event in self._out:
                yield event
        finally:
            await self.aclose()

    async def drain(self, feed) -> None:
        """`feed(event)` for every event, then closed (hub.aggregate's way: no async generator of
        ours between claude.ai's events and the accumulator)."""
        try:
            await self._out.drain(feed)
        finally:
            await self.aclose()

    @property
    def output_tokens(self) -> int:
        """Output tokens counted so far."""
        return self._proc.output_tokens

    async def aclose(self) -> None:
        """Abort the upstream request (if still open) and record usage once."""
        if self._closed:
            return
        self._closed = True
        if self._out is not None:
            await self._out.aclose()  # the hold's reader stops, then the generator closes
        await self._gen.aclose()
        await self._resp.close()
        self.owner.finished(self.cookie, self.model, self._input, self._proc.output_tokens)
