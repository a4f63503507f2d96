"""Outbound HTTP clients: curl_cffi with Chrome impersonation when present, aiohttp otherwise.

The aiohttp backend sends direct requests without uploads through the lean HTTP/1.1 client of
`wire.py` (same answers and error types, a little over half of aiohttp's client CPU as
tests/bench/client.py measures it), and the rest (an outbound proxy, multipart) through aiohttp itself. Both backends offer the same
small surface (`request()` → `Response` with `status`, `headers`, `read()`, `chunks()`, `close()`),
so upstream modules never care which one runs. curl_cffi is imported on first use only (it costs
~40 ms and ~6 MB at start-up, edge.md §1).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import importlib.util
import json as _json
import logging
import os
import ssl
import time
from typing import AsyncIterator, Callable, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from clewdr_lite import errors
from clewdr_lite.protocol.sse import json_bytes

log = logging.getLogger("clewdr_lite.http")

class Timing:
    """When a request arrived, and when its upstream calls were sent and answered (monotonic s)."""

    __slots__ = ("arrived", "read", "first_send", "last_headers", "sends", "waited", "credential", "request_id",
                 "pending")

    def __init__(self, arrived: float) -> None:
        self.arrived = self.read = arrived
        self.first_send = self.last_headers = None
        self.sends = 0
        self.waited = 0.0  # time inside upstream calls (and retry sleeps): not overhead
        self.credential = None  # the masked credential of the latest attempt, for the request log
        self.request_id = None  # the id the latest answering upstream gave its answer, for the log
        self.pending: Callable[[], None] | None = None  # work for when the next upstream call is out

    def sent(self) -> float:
        """Mark one upstream request going out."""
        now = time.monotonic()
        if self.first_send is None:
            self.first_send = now
        self.sends += 1
        return now

    def after_send(self, work: Callable[[], None]) -> None:
        """Run `work` once the request's next upstream call is on its way (see `on_sent`): off the
        path to the upstream, and without a loop turn of its own. Work still waiting (a route that
        failed over before it sent anything) runs first, now."""
        if self.pending is not None:
            self.on_sent()
        self.pending = work

    def on_sent(self) -> None:
        """The bytes of an upstream call are out (or the request ends without one): run what waits
        for that. A fault in it is logged; the request goes on."""
        work = self.pending
        if work is not None:
            self.pending = None
            try:
                work()
            except Exception:  # noqa: BLE001 - work for the log must never fail the request
                log.exception("after-send work failed")

    def identify(self, headers: Mapping[str, str]) -> None:
        """Keep the upstream's id of an answer (Anthropic `request-id`, OpenAI-style `x-request-id`)."""
        self.request_id = headers.get("request-id") or headers.get("x-request-id")

    def answered(self, since: float) -> None:
        """Mark that upstream's headers arriving."""
        now = time.monotonic()
        self.last_headers = now
        self.waited += now - since

    def overhead_ms(self, now: float) -> float:
        """Proxy time so far: everything except waiting on upstreams."""
        return max(0.0, (now - self.read) - self.waited) * 1000


# The current request's Timing, set by the server for the handler's task (a key, not state)
TIMING: contextvars.ContextVar = contextvars.ContextVar("clewdr_timing", default=None)


def note_credential(masked: str) -> None:
    """Tell the current request's log which credential served it (already masked)."""
    clock = TIMING.get()
    if clock is not None:
        clock.credential = masked

CONNECT_TIMEOUT = 15.0
HEADERS_TIMEOUT = 120.0
IDLE_TIMEOUT = 300.0
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def curl_available() -> bool:
    """Whether curl_cffi can be imported, without importing it."""
    try:
        return importlib.util.find_spec("curl_cffi") is not None
    except (ImportError, ValueError):
        return False


def env_proxy(environ: Mapping[str, str]) -> str | None:
    """`HTTPS_PROXY`, then `ALL_PROXY` (either case), when `proxy` is unset (claude-web.md §2)."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if environ.get(name):
            return environ[name]
    return None


def system_cas_present() -> bool:
    """Whether OpenSSL's default CA file or directory exists (not so inside some binaries)."""
    paths = ssl.get_default_verify_paths()
    return any(p and os.path.exists(p) for p in (paths.cafile, paths.capath))


_CAFILE_AT_IMPORT = os.environ.get("SSL_CERT_FILE")  # what aiohttp's default context was built with


def ssl_context() -> ssl.SSLContext | bool:
    """How outbound TLS is verified: the store aiohttp's default context loaded already (True:
    nothing parsed twice; OpenSSL itself honours SSL_CERT_FILE); a SSL_CERT_FILE set since; else
    certifi's CA file (a binary may have no system store)."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile == _CAFILE_AT_IMPORT and system_cas_present():
        return True
    if not cafile:
        import certifi
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


if hasattr(asyncio, "timeout"):  # 3.11+: a deadline on the running task, no task per request
    async def within(awaitable, seconds: float):
        """Await with a deadline (asyncio.TimeoutError when it passes)."""
        async with asyncio.timeout(seconds):
            return await awaitable
else:  # pragma: no cover - Python 3.10
    within = asyncio.wait_for


def _never() -> bool:
    return False


class Response:
    """An upstream response whose body may still be arriving."""

    def __init__(self, status: int, headers: Mapping[str, str], reader: Callable[[], AsyncIterator[bytes]],
                 closer, whole=None, body=None) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._closer = closer
        self._whole = whole  # the backend's own read-it-all, when it has one
        # The lean client's body: `ready()` says the next chunk (or the end) is here and reading
        # will not wait; `await wait_ready(timeout)` waits for that without reading. None elsewhere.
        self.ready = body.ready if body is not None else _never
        self.wait_ready = body.wait if body is not None else None

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        return self._reader()

    async def read(self) -> bytes:
        """The whole body."""
        if self._whole is not None:
            return await self._whole()
        parts = [chunk async for chunk in self._reader()]
        return b"".join(parts)

    async def json(self):
        """The whole body parsed as JSON."""
        return _json.loads(await self.read())

    async def close(self) -> None:
        """Release (or abort) the connection."""
        await self._closer()


class _Pieces:
    """A lean client's body (upstream/body.Pieces) as it arrives. An iterator object, not an async
    generator: one left part-read (a stream whose reader stops at its last event) needs no closing,
    where asyncio closes a forgotten async generator in a task of its own: a task per request."""

    __slots__ = ("_answer",)

    def __init__(self, answer) -> None:
        self._answer = answer

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        piece = await self._answer.next(IDLE_TIMEOUT)
        if piece is None:
            raise StopAsyncIteration
        return piece


class _Once:
    """A body read whole, as one chunk (an iterator object, as _Pieces)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


def pieces_response(status: int, headers: Mapping[str, str], answer) -> Response:
    """A Response over a lean client's body (upstream/body.Pieces)."""
    def reader():
        return _Pieces(answer)

    async def whole():
        return await answer.rest(IDLE_TIMEOUT)

    async def closer():
        answer.abort()

    return Response(status, headers, reader, closer, whole, answer)


def _split_credentials(proxy: str | None) -> tuple[str | None, dict]:
    """Proxy URL without its user:password, and the Proxy-Authorization header in UTF-8.

    aiohttp encodes URL credentials as latin-1; curl (and proxies) expect UTF-8.
    """
    if not proxy or "@" not in proxy:
        return proxy, {}
    parts = urlsplit(proxy)
    if parts.username is None:
        return proxy, {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}


class AiohttpClient:
    """Plain client: one pool of lean keep-alive connections per origin, one aiohttp session for
    proxied and multipart requests."""

    backend = "aiohttp"

    def __init__(self, proxy: str | None = None) -> None:
        self._socks = bool(proxy and proxy.startswith("socks"))
        self.proxy, self._proxy_auth = (proxy, {}) if self._socks else _split_credentials(proxy)
        self._session: aiohttp.ClientSession | None = None
        self._lean = None  # wire.LeanClient: direct requests without uploads

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = self._connector()
            timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=IDLE_TIMEOUT)
            # no cookie jar: credentials are sent explicitly per request, and one account's
            # Set-Cookie must never ride along with another's (nor cost a jar lookup per call)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                                  trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _connector(self) -> aiohttp.BaseConnector:
        if self._socks:
            try:
                from aiohttp_socks import ProxyConnector  # optional extra [socks]
                return ProxyConnector.from_url(self.proxy, ssl=ssl_context(), limit=0)
            except ImportError:
                log.error("proxy %s needs the [socks] extra (aiohttp-socks) when curl_cffi is "
                          "absent; connecting directly", self.proxy.split("@")[-1])
                self._socks = False
                self.proxy = None  # aiohttp would otherwise speak HTTP to the SOCKS port
        return aiohttp.TCPConnector(ssl=ssl_context(), limit=0, ttl_dns_cache=300)

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      json=None, data: bytes | None = None, files=None,
                      impersonate: bool = False, headers_timeout: float | None = None) -> Response:
        """Send a request; returns once the status line and headers are in."""
        body = data
        if files:
            form = aiohttp.FormData()
            for name, filename, content_type, content in files:
                form.add_field(name, content, filename=filename, content_type=content_type)
            body = form
        elif json is not None:
            body = json_bytes(json)
        if not files and not self.proxy:
            return await self._direct(method, url, headers, body, headers_timeout)
        proxy = None if (self._socks or not self.proxy) else self.proxy
        extra = {}
        if proxy and self._proxy_auth:
            if url.startswith("https:"):
                extra["proxy_headers"] = self._proxy_auth  # sent on CONNECT
            else:
                headers = {**(headers or {}), **self._proxy_auth}
        ctx = self._get().request(method, url, headers=headers, data=body, proxy=proxy,
                                  allow_redirects=False, **extra)
        clock = TIMING.get()
        started = clock.sent() if clock else 0.0
        if clock:
            clock.on_sent()  # aiohttp's client has no hook after its write: at the call's start
        try:
            resp = await within(ctx, headers_timeout or HEADERS_TIMEOUT)
        finally:
            if clock:
                clock.answered(started)
        if clock:
            clock.identify(resp.headers)

        async def closer():
            resp.close()

        # iter_any() is an iterator object: nothing to close when a reader stops early (_Pieces)
        return Response(resp.status, resp.headers, resp.content.iter_any, closer, resp.read)

    async def _direct(self, method: str, url: str, headers, body: bytes | None,
                      headers_timeout: float | None) -> Response:
        """Through the lean HTTP/1.1 client (upstream/wire.py): same answers, less CPU."""
        if self._lean is None:
            from clewdr_lite.upstream.wire import LeanClient
            self._lean = LeanClient(ssl_context(), CONNECT_TIMEOUT)
        clock = TIMING.get()
        started = clock.sent() if clock else 0.0
        try:
            status, head, answer = await self._lean.request(method, url, headers, body,
                                                            headers_timeout or HEADERS_TIMEOUT,
                                                            on_sent=clock.on_sent if clock else None)
        finally:
            if clock:
                clock.answered(started)
        if clock:
            clock.identify(head)
        return pieces_response(status, head, answer)

    async def close(self) -> None:
        """Close the pools."""
        if self._lean is not None:
            await self._lean.close()
        if self._session is not None:
            await self._session.close()


class CurlClient:
    """curl_cffi client impersonating Chrome's TLS and HTTP/2 fingerprint (claude-web.md §2).

    Impersonated calls go through pre-configured handles (upstream/curl_lean.py); uploads
    (multipart) and plain downloads through curl_cffi's session, whole bodies only.
    """

    backend = "curl_cffi"

    def __init__(self, proxy: str | None = None) -> None:
        self.proxy = proxy
        self._session = None
        self._lean = None  # curl_lean.LeanCurl, made on the first call

    def _get(self):
        if self._session is None:
            # discard_cookies: the session keeps no cookie jar. claude.ai's answers set cookies of
            # the visit (lastActiveOrg, activitySessionId, Cloudflare's); one session serves every
            # account, so a kept jar would send one account's cookies with another's calls (the
            # aiohttp client keeps none either: DummyCookieJar). Each call sends its sessionKey only.
            from curl_cffi.requests import AsyncSession
            self._session = AsyncSession(max_clients=64, impersonate="chrome", discard_cookies=True)
        return self._session

    def _lean_client(self):
        if self._lean is None:
            from clewdr_lite.upstream import curl_lean
            if not curl_lean.available():  # installed apart from clewdr-lite's requirements
                from curl_cffi import __version__
                raise errors.UpstreamUnavailable(
                    f"curl_cffi {__version__} is too old for clewdr-lite, which needs 0.16 or later: "
                    "run `python3 -m pip install -U curl_cffi`")
            self._lean = curl_lean.LeanCurl(self.proxy, connect_timeout=CONNECT_TIMEOUT)
        return self._lean

    def _multipart(self, files):
        from curl_cffi import CurlMime
        mime = CurlMime()
        for name, filename, content_type, content in files:
            mime.addpart(name, content_type=content_type, filename=filename, data=content)
        return mime

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      json=None, data: bytes | None = None, files=None,
                      impersonate: bool = True, headers_timeout: float | None = None) -> Response:
        """Send a request; returns once the status line and headers are in (the body follows;
        through the session, uploads and plain downloads arrive whole)."""
        lean = self._lean_client()
        headers = dict(headers or {})
        if json is not None:
            data = json_bytes(json)
            headers.setdefault("Content-Type", "application/json")
        clock = TIMING.get()
        started = clock.sent() if clock else 0.0
        if clock:
            clock.on_sent()  # curl writes on a later loop turn: at the call's start
        try:
            if impersonate and not files:
                transfer = await lean.request(method, url, headers, data, headers_timeout or HEADERS_TIMEOUT)
                response = pieces_response(transfer.status, transfer.headers, transfer)
            else:
                response = await self._session_request(method, url, headers, data, files, impersonate,
                                                       headers_timeout or HEADERS_TIMEOUT)
        finally:
            if clock:
                clock.answered(started)
        if clock:
            clock.identify(response.headers)
        return response

    async def _session_request(self, method: str, url: str, headers: dict, data: bytes | None, files,
                               impersonate: bool, headers_timeout: float) -> Response:
        from curl_cffi.requests.exceptions import RequestException
        kwargs = dict(headers=headers, allow_redirects=False, timeout=(CONNECT_TIMEOUT, IDLE_TIMEOUT),
                      proxy=self.proxy, impersonate="chrome" if impersonate else None)
        if files:
            kwargs["multipart"] = self._multipart(files)
        elif data is not None:
            kwargs["data"] = data
        try:
            resp = await within(self._get().request(method, url, **kwargs), headers_timeout)
        except RequestException as exc:
            raise aiohttp.ClientConnectionError(str(exc)) from exc

        async def whole():
            return resp.content

        async def closer():
            return None
        return Response(resp.status_code, resp.headers, lambda: _Once(resp.content), closer, whole)

    async def close(self) -> None:
        """Close the session and the lean handles (a later request opens new ones)."""
        if self._lean is not None:
            lean, self._lean = self._lean, None
            await lean.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def make_client(backend: str, proxy: str | None):
    """`auto` picks curl_cffi when importable; `curl_cffi` or `aiohttp` force one."""
    if backend == "auto":
        backend = "curl_cffi" if curl_available() else "aiohttp"
    return CurlClient(proxy) if backend == "curl_cffi" else AiohttpClient(proxy)


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def drain(resp: Response) -> bytes:
    """Read a whole (error) body and release the connection; b"" when the body is lost."""
    try:
        return await resp.read()
    except TRANSPORT_ERRORS:
        return b""
    finally:
        await resp.close()
