"""A lean HTTP/1.1 client for API upstreams reached directly (no outbound proxy, no uploads).

aiohttp's client spends about 170 µs of CPU on one small sequential request (tests/bench/client.py
on a 2-core EPYC); most of it pays for what an API relay never uses: cookie jars, redirects, trace
signals, the payload and multidict machinery around every request. This one writes a request in
one `write` and parses the answer with bytes methods: about 95 µs, the event loop's share included. It keeps one pool of idle
keep-alive connections per origin; a pooled connection the server has meanwhile closed is replaced
once, before any byte of the answer arrived. Errors are aiohttp's exception types, so callers
handle both clients alike. `AiohttpClient` sends everything else (a proxy, multipart) through aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
import sys
import time
import zlib
from collections import deque
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from clewdr_lite.upstream.body import Deadlines, Pieces
from clewdr_lite.upstream.http import within

IDLE_KEEP_S = 15.0        # an idle pooled connection older than this is closed, not reused
IDLE_PER_ORIGIN = 64      # idle connections kept per origin
HAPPY_EYEBALLS_S = 0.25   # the next address family is tried this long after the first (RFC 8305)
DEFAULTS = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"),
            ("User-Agent", f"Python/{sys.version_info[0]}.{sys.version_info[1]} aiohttp/{aiohttp.__version__}"))
_NO_BODY = (204, 304)
_VALUE_EDGE = " \t\x0b\x0c"  # what a header value loses at its edges: bytes.strip()'s set less CR and LF
SAFE_IN_TARGET = "/?&=%:@!$'()*+,;-._~"  # what stays as it is in a request target


def header_fields(fields: str) -> list[tuple[str, str]] | str:
    """A head's header lines (each ended by CRLF) as (name, value) pairs, or the first line that is
    not a header line: a name without edge whitespace (str.isspace()'s) or colon, a colon, the
    value with its edge whitespace (_VALUE_EDGE) off; a lone CR or LF anywhere is refused. A loop
    over the lines costs half what one regex pass over the head did (its lazy value tried the
    line's end at every character)."""
    lines = fields.split("\r\n")
    if lines.pop():  # text after the last CRLF: a line without its end
        return fields.rpartition("\r\n")[2]
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name[0].isspace() or name[-1].isspace():
            return line
        pairs.append((name, value.strip(_VALUE_EDGE)))
    if fields.count("\n") != len(lines) or fields.count("\r") != len(lines):  # a lone CR or LF
        return next(line for line in lines if "\r" in line or "\n" in line)
    return pairs


class _Conn(asyncio.Protocol):
    """One connection: request out, one answer in (headers, then body pieces), then reusable."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = 0.0           # monotonic time it went idle
        self.origin: tuple = ()
        self.client: LeanClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._head: asyncio.Future | None = None
        self._body: _Body | None = None
        self._left = 0            # fixed length: bytes still due; chunked: bytes of this chunk
        self._mode = ""           # "" headers, "len", "chunked", "close", "done"
        self._trailer = False
        self._keep = True
        self._no_body = False

    # -- driven by the client
    def send(self, data: bytes, *, head_only: bool) -> asyncio.Future:
        self._head = self.loop.create_future()
        self._no_body = head_only
        self._mode, self._buf, self._body, self._keep = "", bytearray(), None, True
        self.transport.write(data)
        return self._head

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.client is not None:
            self.client._live.discard(self)
        if self._head is not None and not self._head.done():
            self._head.set_exception(aiohttp.ServerDisconnectedError(
                "Server disconnected" if exc is None else f"Server disconnected: {exc}"))
        elif self._body is not None and self._mode not in ("done", ""):
            if self._mode == "close":
                self._finish()
            else:
                self._body.fail(aiohttp.ClientPayloadError(
                    "Response payload is not completed" + (f": {exc}" if exc else "")))

    def data_received(self, data: bytes) -> None:
        if self._mode == "done" or self._head is None:  # nothing was asked: not reusable any more
            self.closed = True
            self.transport.close()
            return
        self._buf += data
        try:
            if self._mode == "" and not self._parse_head():
                return
            self._parse_body()
        except Malformed as exc:
            self._keep = False
            if not self._head.done():
                self._head.set_exception(exc)
            elif self._body is not None:
                self._body.fail(aiohttp.ClientPayloadError(str(exc)))
            self.transport.close()

    def pause_writing(self) -> None:  # pragma: no cover - requests are small
        pass

    def resume_writing(self) -> None:  # pragma: no cover
        pass

    # -- parsing
    def _parse_head(self) -> bool:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > 65536:
                    raise _bad("response headers longer than 64 KiB")
                return False
            head = bytes(self._buf[:end + 2])  # every line with its CRLF
            del self._buf[:end + 4]
            line_end = head.find(b"\r\n")
            version, _, rest = head[:line_end].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise _bad(f"bad status line {head[:min(line_end, 80)]!r}")
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            break
        pairs = header_fields(head[line_end + 2:].decode("latin-1"))
        if type(pairs) is str:
            raise _bad(f"bad header line {pairs[:80].encode('latin-1')!r}")  # as the bytes came
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        connection = headers.get("Connection", "").lower()
        self._keep = version == b"HTTP/1.1" and "close" not in connection or "keep-alive" in connection
        self._body = _Body(self, headers.get("Content-Encoding", "").lower())
        if self._no_body or status in _NO_BODY:
            self._mode = "len"
            self._left = 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._mode, self._left, self._trailer = "chunked", -1, False
        elif "Content-Length" in headers:
            length = headers["Content-Length"]
            if not length.isdigit():
                raise _bad(f"bad Content-Length {length[:40]!r}")
            self._mode, self._left = "len", int(length)
        else:
            self._mode, self._keep = "close", False
        self._head.set_result((status, headers, self._body))
        return True

    def _parse_body(self) -> None:
        buf, body = self._buf, self._body
        if self._mode == "len":
            if buf:
                piece = bytes(buf[:self._left])
                del buf[:len(piece)]
                self._left -= len(piece)
                body.feed(piece)
            if self._left == 0:
                self._finish()
        elif self._mode == "close":
            if buf:
                body.feed(bytes(buf))
                buf.clear()
        elif self._mode == "chunked":
            self._chunks(buf, body)

    def _chunks(self, buf: bytearray, body: "_Body") -> None:
        """Parse the chunks that arrived: what they carry goes to the body as one piece, and the
        bytes they took leave the buffer at once (a stream of small events is many chunks a read)."""
        pos, pieces, size, ended = 0, [], len(buf), False
        try:
            while pos < size:
                if self._trailer:  # after the last chunk: trailer lines until an empty one
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        return
                    ended, pos = end == pos, end + 2
                    if ended:
                        break
                    continue
                left = self._left
                if left < 0:  # a chunk-size line
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        if size - pos > 1024:
                            raise _bad("chunk size line too long")
                        return
                    try:
                        left = int(buf[pos:end], 16)
                    except ValueError:  # an extension (`;name=value`), or not a size at all
                        left = _chunk_size(bytes(buf[pos:end]))
                    if left < 0:
                        raise _bad(f"bad chunk size {bytes(buf[pos:end])[:20]!r}")
                    pos = end + 2
                    if left == 0:
                        self._left, self._trailer = 0, True
                        continue
                    left += 2  # the chunk's closing CRLF
                take = left if left <= size - pos else size - pos
                left -= take
                data = take if left >= 2 else take - 2 + left  # what is not the closing CRLF
                if data > 0:
                    pieces.append(bytes(buf[pos:pos + data]))
                pos += take
                self._left = left if left else -1
        finally:  # also before a malformed chunk: what came before it is delivered, as it came
            if pos:
                del buf[:pos]
            if pieces:
                body.feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if ended:  # after its data, and with only what follows the answer left in the buffer
            self._finish()

    def _finish(self) -> None:
        self._mode = "done"
        self._head = None
        self._body.end()
        if self._buf or not self._keep:  # bytes past the answer, or no keep-alive: not reusable
            self.transport.close()
            self.closed = True
            return
        if self._body.paused:  # the answer is whole: the next one must be read at once
            self._body.paused = False
            self.transport.resume_reading()
        self.client._release(self)


def _chunk_size(line: bytes) -> int:
    """A chunk-size line with an extension (`1a;name=value`); Malformed if it is not a size."""
    size = line.split(b";", 1)[0].strip()
    try:
        return int(size, 16)
    except ValueError:
        raise _bad(f"bad chunk size {size[:20]!r}") from None


class Malformed(aiohttp.ClientConnectionError):
    """The upstream's answer is not HTTP/1.1 as it should be."""


def _bad(message: str) -> Malformed:
    return Malformed(f"malformed answer: {message}")


class _Body(Pieces):
    """The body pieces of one answer, as they arrive; reading pauses the socket when it lags."""

    def __init__(self, conn: _Conn, encoding: str) -> None:
        super().__init__(conn.loop)
        self.conn = conn
        self.paused = False
        self._inflate = (zlib.decompressobj(wbits=47) if encoding in ("gzip", "x-gzip", "deflate")
                         else None)
        self._raw_deflate = encoding == "deflate"

    def _arm(self, when: float) -> None:
        """The idle deadline of a read that waits, as an alarm on the client's shared timer (the
        heads'), found at the first wait: most answers are read whole without one."""
        if self._alarms is None and self._idle is None:  # (never switched while a timer is armed)
            client = self.conn.client
            alarms = client._deadlines if client is not None else None
            if alarms is not None and alarms.loop is self.loop:
                self._alarms = alarms
        super()._arm(when)

    def feed(self, data: bytes) -> None:
        if self._inflate is not None:
            try:
                data = self._inflate.decompress(data)
            except zlib.error:
                if not self._raw_deflate:
                    self.fail(aiohttp.ClientPayloadError("Can not decode content-encoding: gzip"))
                    return
                # some servers send raw deflate without the zlib header
                self._inflate, self._raw_deflate = zlib.decompressobj(wbits=-15), False
                data = self._inflate.decompress(data)
            if not data:
                return
        if self.put(data) and not self.paused and not self.conn.closed:
            self.paused = True
            self.conn.transport.pause_reading()

    def end(self) -> None:
        if self._inflate is not None:
            tail = self._inflate.flush()
            if tail:
                self._pieces.append(tail)
        super().end()

    def _caught_up(self) -> None:
        if self.paused and not self.conn.closed:  # everything was taken: read on
            self.paused = False
            self.conn.transport.resume_reading()

    def abort(self) -> None:
        """Give up on the rest: the connection cannot carry another answer."""
        super().abort()
        if self.conn._body is self and self.conn._mode != "done":
            self.conn.closed = True
            self.conn._mode = "done"
            self.conn.transport.close()


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple:
    """A URL parsed once (a provider's few URLs are asked thousands of times): the origin key, the
    request line after the method, the Host line, and an Authorization line from user:pass@ or ""."""
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host:
        raise aiohttp.InvalidURL(url)
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii() or " " in target or '"' in target:  # as yarl would send it
        target = quote(target, safe=SAFE_IN_TARGET)
    default_port = port == (443 if scheme == "https" else 80)
    auth = ""
    if parts.username is not None:  # http://user:pass@host/
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = f"Authorization: Basic {base64.b64encode(pair).decode()}\r\n"
    host_line = f"Host: {f'[{host}]' if ':' in host else host}{'' if default_port else f':{port}'}\r\n"
    return (scheme, host, port), f" {target} HTTP/1.1\r\n", host_line, auth


_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection"})
_DEFAULT_LINES = tuple((name.lower(), f"{name}: {value}\r\n") for name, value in DEFAULTS)
_NO_HEADERS = (frozenset(), "".join(text for _, text in _DEFAULT_LINES))
_HEADER_LINES: dict[tuple, tuple[frozenset, str]] = {}  # a header set → header_lines() of it
_HEADER_SETS_KEPT = 256


def header_lines(headers) -> tuple[frozenset, str]:
    """The names the caller gave (lower-cased) and the header lines that go out for them: aiohttp's
    defaults the caller left out, then the caller's own, less the framing ones (ValueError for a CR
    or LF in a name or a value). A gateway sends the same few header sets again and again, so each
    is made once (the values' types are part of the key: 1 and True are equal, not the same line)."""
    if not headers:
        return _NO_HEADERS
    try:
        key = (tuple(headers.items()), tuple(map(type, headers.values())))
        made = _HEADER_LINES.get(key)
    except TypeError:  # a value that cannot be hashed: made every time
        key = made = None
    if made is not None:
        return made
    given = frozenset(name.lower() for name in headers)
    fields = [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in _SKIPPED]
    text = "".join(fields)
    # each line brings its own CR and LF; one more anywhere is in a name or a value
    if text.count("\n") != len(fields) or text.count("\r") != len(fields):
        raise ValueError("Newline or carriage return character detected in HTTP status message or header")
    made = (given, "".join([line for lower, line in _DEFAULT_LINES if lower not in given]) + text)
    if key is not None:
        if len(_HEADER_LINES) >= _HEADER_SETS_KEPT:
            _HEADER_LINES.clear()
        _HEADER_LINES[key] = made
    return made


def _request_bytes(method: str, target: tuple, headers, body: bytes | None) -> bytes:
    """The request line, headers (aiohttp's defaults where the caller gave none) and body."""
    _, line, host_line, auth = target
    given, header_text = header_lines(headers)
    lines = [method, line]
    if auth and "authorization" not in given:
        lines.append(auth)
    if "host" not in given:
        lines.append(host_line)
    lines.append(header_text)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        if body is not None and "content-type" not in given:
            lines.append("Content-Type: application/octet-stream\r\n")
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8") + (body or b"")


class LeanClient:
    """Pools of keep-alive connections by origin; `request()` → (status, headers, body)."""

    def __init__(self, ssl_context, connect_timeout: float) -> None:
        self._ssl_setting = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._connect_timeout = connect_timeout
        self._idle: dict = {}  # (scheme, host, port) → deque of idle _Conn
        self._live: set = set()  # every open connection, idle or busy
        self._deadlines: Deadlines | None = None  # the heads awaited, on the loop of the calls

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            if isinstance(self._ssl_setting, ssl.SSLContext):
                self._ssl = self._ssl_setting
            else:  # the default verified context, built once (asyncio would build one per connection)
                self._ssl = ssl.create_default_context()
        return self._ssl

    def _release(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.origin, deque())
        if len(idle) >= IDLE_PER_ORIGIN:
            conn.transport.close()
            conn.closed = True
            return
        conn.used = time.monotonic()
        idle.append(conn)

    def _pooled(self, origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recent: the least likely to have been closed by the server
            if not conn.closed and not conn.transport.is_closing() and now - conn.used < IDLE_KEEP_S:
                return conn
            conn.transport.close()
        return None

    async def _connect(self, scheme: str, host: str, port: int, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        try:
            # happy eyeballs, as aiohttp: a host whose IPv6 route is dead still connects over IPv4
            _, conn = await within(loop.create_connection(_Conn, host, port, ssl=tls,
                                                           server_hostname=host if tls else None,
                                                           happy_eyeballs_delay=HAPPY_EYEBALLS_S, interleave=1),
                                    max(0.0, timeout))
        except asyncio.TimeoutError:
            raise aiohttp.ServerTimeoutError(f"Connection timeout to host {scheme}://{host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise aiohttp.ClientConnectionError(f"Cannot connect to host {host}:{port} ssl:{bool(tls)} [{exc}]") from exc
        conn.origin, conn.client, conn.loop = (scheme, host, port), self, loop
        self._live.add(conn)
        return conn

    async def request(self, method: str, url: str, headers, body: bytes | None, deadline: float, *,
                      on_sent: Callable[[], None] | None = None):
        """Send; return (status, headers, _Body) once the headers are in, within `deadline` seconds
        (asyncio.TimeoutError after that). `on_sent` runs once the request's bytes are written."""
        target = _target(url)
        data = _request_bytes(method, target, headers, body)
        head_only = method == "HEAD"
        origin = scheme, host, port = target[0]
        conn = self._pooled(origin)
        # a pooled connection knows its loop: on Python 3.11 get_running_loop() is a getpid() call
        loop = conn.loop if conn is not None else asyncio.get_running_loop()
        expires = loop.time() + deadline
        if conn is not None:
            try:
                return await self._exchange(loop, conn, data, head_only, expires, on_sent)
            except aiohttp.ServerDisconnectedError:
                pass  # closed by the server while idle: once more on a new connection
        conn = await self._connect(scheme, host, port, min(self._connect_timeout, expires - loop.time()))
        return await self._exchange(loop, conn, data, head_only, expires, on_sent)

    async def _exchange(self, loop, conn: _Conn, data: bytes, head_only: bool, expires: float,
                        on_sent: Callable[[], None] | None = None):
        """Send on `conn`; the answer's head by `expires` (the client's deadlines: no task, context
        or timer of its own)."""
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop)
        head = conn.send(data, head_only=head_only)
        deadlines.add(head, expires)
        if on_sent is not None:
            on_sent()
        try:
            return await head
        except BaseException:
            conn.transport.close()  # timed out, cancelled or broken: it carries nothing more
            raise
        finally:
            deadlines.drop(head)

    async def close(self) -> None:
        """Close every connection, answers still arriving included."""
        self._idle.clear()
        for conn in list(self._live):
            conn.transport.close()
        self._live.clear()
