"""A faithful forward proxy (HTTP absolute-form + CONNECT, or SOCKS5) on 127.0.0.1, port 0.

It relays only to loopback targets, so a client misconfigured in a test can never reach the outside
world through it, and it records what it was asked to relay so tests can prove traffic went through.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import struct
from urllib.parse import quote, urlsplit

LOCALHOST = "127.0.0.1"
# The only targets ever dialled; anything else is refused (this sandbox must not reach other hosts).
ALLOWED_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
# Hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1), plus its own credentials.
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
               "trailer", "upgrade"}

SOCKS_VERSION, SOCKS_AUTH_VERSION = 5, 1
NO_AUTH, USER_PASS, NO_METHOD = 0x00, 0x02, 0xFF
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
# RFC 1928 §6 reply codes.
REP_OK, REP_FAILURE, REP_NOT_ALLOWED, REP_REFUSED, REP_BAD_COMMAND, REP_BAD_ATYP = 0, 1, 2, 5, 7, 8


class ForwardProxy:
    """`async with ForwardProxy("http"|"socks5", username=, password=) as p:` → relay at `p.url`."""

    def __init__(self, kind: str = "http", username: str | None = None,
                 password: str | None = None) -> None:
        if kind not in ("http", "socks5"):
            raise ValueError(f"unknown proxy kind {kind!r}")
        self.kind = kind
        self.username = username
        self.password = password
        self.url = ""
        self.requests: list[tuple] = []
        """HTTP: (method, target) per absolute-form request or CONNECT; SOCKS5: (host, port)."""
        self.refused: list[tuple] = []
        """Targets asked for but not loopback, in the same shape as `requests`."""
        self.auth_failures = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, LOCALHOST, 0)
        port = self._server.sockets[0].getsockname()[1]
        creds = ""
        if self.username is not None:
            creds = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        self.url = f"{self.kind}://{creds}{LOCALHOST}:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._closing = True
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(writer)
        target: asyncio.StreamWriter | None = None
        try:
            serve = self._serve_http if self.kind == "http" else self._serve_socks
            target = await serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client hanging up mid-handshake is not the proxy's failure
        except asyncio.CancelledError:
            # Only __aexit__ cancels; ending quietly keeps asyncio's stream callback from logging.
            if not self._closing:
                raise
        finally:
            for w in (writer, target):
                if w is not None:
                    await _close(w)
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _dial(self, host: str, port: int):
        reader, writer = await asyncio.open_connection(ALLOWED_HOSTS[host], port)
        self._writers.add(writer)
        return reader, writer

    # ---- HTTP -------------------------------------------------------------------------------

    async def _serve_http(self, reader, writer) -> asyncio.StreamWriter | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = lines[0].split(" ")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        if not self._http_authorized(headers):
            self.auth_failures += 1
            await _reply(writer, "407 Proxy Authentication Required",
                         'Proxy-Authenticate: Basic realm="fake"\r\n')
            return None
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            path = None
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                await _reply(writer, "400 Bad Request")
                return None
            host, port = url.hostname, url.port or 80
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if host not in ALLOWED_HOSTS:
            self.refused.append((method, target))
            await _reply(writer, "403 Forbidden")
            return None
        self.requests.append((method, target))
        try:
            up_reader, up_writer = await self._dial(host, int(port))
        except OSError:
            await _reply(writer, "502 Bad Gateway")
            return None
        if path is None:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # Origin-form with `Connection: close`: the target's EOF then marks the response's end.
            kept = "".join(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in HOP_HEADERS)
            up_writer.write(f"{method} {path} {version}\r\n{kept}Connection: close\r\n\r\n"
                            .encode("latin-1"))
        await _pipe_both(reader, writer, up_reader, up_writer)
        return up_writer

    def _http_authorized(self, headers: list[tuple[str, ...]]) -> bool:
        if self.username is None:
            return True
        expected = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        given = [v for k, v in headers if k.lower() == "proxy-authorization"]
        return given == [f"Basic {expected}"]

    # ---- SOCKS5 -----------------------------------------------------------------------------

    async def _serve_socks(self, reader, writer) -> asyncio.StreamWriter | None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        wanted = NO_AUTH if self.username is None else USER_PASS
        if version != SOCKS_VERSION or wanted not in methods:
            writer.write(bytes([SOCKS_VERSION, NO_METHOD]))
            return None
        writer.write(bytes([SOCKS_VERSION, wanted]))
        if wanted == USER_PASS and not await self._socks_login(reader, writer):
            return None
        _, command, _, atyp = await reader.readexactly(4)
        host = await _read_socks_host(reader, atyp)
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        if host is None or command != 1:  # only CONNECT (1); BIND and UDP ASSOCIATE are not used
            writer.write(_socks_reply(REP_BAD_ATYP if host is None else REP_BAD_COMMAND))
            return None
        if host not in ALLOWED_HOSTS:
            self.refused.append((host, port))
            writer.write(_socks_reply(REP_NOT_ALLOWED))
            return None
        self.requests.append((host, port))
        try:
            up_reader, up_writer = await self._dial(host, port)
        except OSError:
            writer.write(_socks_reply(REP_REFUSED))
            return None
        writer.write(_socks_reply(REP_OK, up_writer.get_extra_info("sockname")))
        await _pipe_both(reader, writer, up_reader, up_writer)
        return up_writer

    async def _socks_login(self, reader, writer) -> bool:
        """RFC 1929 username/password sub-negotiation."""
        _, ulen = await reader.readexactly(2)
        user = (await reader.readexactly(ulen)).decode()
        (plen,) = await reader.readexactly(1)
        password = (await reader.readexactly(plen)).decode()
        ok = (user, password) == (self.username, self.password or "")
        self.auth_failures += not ok
        writer.write(bytes([SOCKS_AUTH_VERSION, 0 if ok else 1]))
        return ok


async def _read_socks_host(reader: asyncio.StreamReader, atyp: int) -> str | None:
    if atyp == ATYP_IPV4:
        return socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
    if atyp == ATYP_IPV6:
        return str(ipaddress.IPv6Address(await reader.readexactly(16)))
    if atyp == ATYP_DOMAIN:
        (length,) = await reader.readexactly(1)
        return (await reader.readexactly(length)).decode("idna")
    return None


def _socks_reply(code: int, bound: tuple | None = None) -> bytes:
    host, port = (bound or ("0.0.0.0", 0))[:2]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    atyp = ATYP_IPV6 if family == socket.AF_INET6 else ATYP_IPV4
    return (bytes([SOCKS_VERSION, code, 0, atyp]) + socket.inet_pton(family, host)
            + struct.pack("!H", port))


async def _reply(writer: asyncio.StreamWriter, status: str, extra: str = "") -> None:
    writer.write(f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close `dst` so the far side sees the end too."""
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        pass


async def _pipe_both(c_reader, c_writer, t_reader, t_writer) -> None:
    await asyncio.gather(_pipe(c_reader, t_writer), _pipe(t_reader, c_writer))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
