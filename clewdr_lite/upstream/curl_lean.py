"""claude.ai's calls on curl_cffi's easy handles, driven directly (the lean curl path).

curl_cffi's AsyncSession resets a handle and configures it from scratch for every request (the
browser impersonation included), parses every answer into Response, Headers and Cookies objects,
and streams through an asyncio.Queue that a task fills: more CPU than the claude.ai call itself
costs. Its stream close also waits until the upstream has sent the whole answer, so a client that
leaves kept its cookie busy until claude.ai had finished writing. Here each handle is configured
once — with `Curl.impersonate()`, the very call the session makes, so the TLS and HTTP/2 fingerprint
and the browser's default headers are the session's (tests/upstream/test_curl_lean.py compares the
bytes on the wire) — and per request only the URL, the method, the body and the headers are set.
Body pieces go straight into a `body.Pieces`; closing early takes the handle out of the multi
handle, which ends the transfer at once. The answer's head is taken when its body begins (or the
transfer ends): the status from libcurl, the headers from what libcurl keeps of them (its headers
API, upstream/curl_heads.py), read by name or whole when asked, so no Python callback runs per
header line (some thirty a claude.ai request, an eighth of the two calls' cost). Where that API
cannot be reached, a header callback collects the lines as before.

A connection's socket stays in the event loop's selector between the calls that reuse it ("parked"),
instead of leaving it when a call ends and joining it again when the next starts (two epoll_ctl
system calls and four asyncio calls a call). That is safe only for sockets libcurl will close
through us: the handles tell us of each connection socket they open (CURLOPT_SOCKOPTFUNCTION) and
close it through us (CURLOPT_CLOSESOCKETFUNCTION), so a closed socket never stays in the selector
for its number to mislead whoever opens the next one. A parked socket that turns readable (the
server closed the idle connection) leaves the selector at once; libcurl finds the connection dead
when it next looks, as before.

No cookie engine runs on these handles: each call carries the Cookie header it was given and
nothing claude.ai sets is kept (the handles serve every account). Uploads (multipart) and calls
without impersonation stay on the session (http.CurlClient).
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

import aiohttp
from multidict import CIMultiDictProxy

from clewdr_lite.upstream.body import HIGH_WATER, Deadlines, Pieces, expire
from clewdr_lite.upstream.curl_heads import KeptHead, all_headers, easy_pointer, parse_headers

IDLE_HANDLES = 64         # configured handles kept for reuse
# With no transfer running for this long the multi handle closes, its kept connections with it (curl
# would not reuse them after 118 s anyway) and curl_cffi's safety timer, which otherwise wakes the
# process ten times a second for good (~3 ms of CPU a second: a phone's battery); the next call opens
# a new one.
IDLE_CLOSE_S = 60.0
ACCEPT_ENCODING = b"gzip, deflate, br"  # set by the session before it impersonates (as here)
WRITEFUNC_PAUSE = 0x10000001  # a write callback's "keep this piece, offer it again on resume"
PAUSE_CONTINUE = 0
# libcurl's option numbers for what each call sets (CurlOpt's values; fixed by libcurl's ABI)
_URL, _POSTFIELDS, _POSTFIELDSIZE, _HTTPGET = 10002, 10015, 60, 80
_CUSTOMREQUEST, _HTTPHEADER, _HTTPPROXYTUNNEL = 10036, 10023, 61
# libcurl's socket callback values (curl/multi.h; fixed by libcurl's ABI)
_POLL_IN, _POLL_OUT, _POLL_REMOVE = 1, 2, 4
_CSELECT_IN, _CSELECT_OUT = 1, 2
_SOCKET_TIMEOUT, _POLL_NONE = -1, 0  # socket_action's "no socket: timeouts", and no events
_SOCKOPTFUNCTION, _CLOSESOCKETFUNCTION = 20148, 20208
_CURLMSG_DONE = 1  # curl_multi_info_read's "a transfer is done" (curl/multi.h)
_RESPONSE_CODE = 0x200002  # CURLINFO_RESPONSE_CODE
_installed = False  # our socket and timer callbacks are curl_cffi's (see _install_callbacks)
# curl_cffi's ffi and lib and cffi values made with them, set by the first LeanCurl (lazy import);
# _COUNT: where socket_action and info_read write counts nobody reads (one for every run); _CODE:
# where getinfo writes a status
_ffi = _lib = _NULL = _ONE = _ZERO = _COUNT = _CODE = None
# connection sockets our handles opened (libcurl closes them through _on_close), and those of them
# parked: watched for reading while no call uses them, by the _Sockets of their multi handle
_conn_fds: set[int] = set()
_parked: dict[int, "_Sockets"] = {}
_socket_hooks = None  # the two cffi callbacks, made once (False: cffi cannot make them here)


def _cffi_constants() -> None:
    global _ffi, _lib, _NULL, _ONE, _ZERO, _COUNT, _CODE
    from curl_cffi import ffi, lib
    _ffi, _lib = ffi, lib
    _NULL, _ONE, _ZERO, _COUNT = ffi.NULL, ffi.new("long*", 1), ffi.new("long*", 0), ffi.new("int*")
    _CODE = ffi.new("long*")


def available() -> bool:
    """Whether the installed curl_cffi has what this path uses (0.16 and later)."""
    try:
        from curl_cffi import AsyncCurl, Curl, CurlOpt, aio, lib
        from curl_cffi import curl as curl_module
        from curl_cffi.requests import impersonate
    except ImportError:
        return False
    callbacks = (hasattr(aio, "socket_function") and hasattr(aio, "timer_function")  # _install_callbacks'
                 and hasattr(AsyncCurl, "process_data") and not hasattr(AsyncCurl, "__slots__")
                 and all(hasattr(AsyncCurl, name) for name in ("_check_error", "set_result", "set_exception"))
                 and hasattr(Curl, "_get_error") and hasattr(lib, "curl_multi_info_read")
                 and (aio.CURL_SOCKET_TIMEOUT, aio.CURL_POLL_NONE) == (_SOCKET_TIMEOUT, _POLL_NONE)
                 and (aio.CURL_POLL_IN, aio.CURL_POLL_OUT, aio.CURL_POLL_REMOVE) == (_POLL_IN, _POLL_OUT, _POLL_REMOVE)
                 and (aio.CURL_CSELECT_IN, aio.CURL_CSELECT_OUT) == (_CSELECT_IN, _CSELECT_OUT))
    ours = {"URL": _URL, "POSTFIELDS": _POSTFIELDS, "POSTFIELDSIZE": _POSTFIELDSIZE, "HTTPGET": _HTTPGET,
            "CUSTOMREQUEST": _CUSTOMREQUEST, "HTTPHEADER": _HTTPHEADER, "HTTPPROXYTUNNEL": _HTTPPROXYTUNNEL,
            "SOCKOPTFUNCTION": _SOCKOPTFUNCTION, "CLOSESOCKETFUNCTION": _CLOSESOCKETFUNCTION}
    contexts = (hasattr(curl_module, "_CallbackContext") and hasattr(curl_module, "_store_callback_error")
                and hasattr(curl_module, "write_callback") and hasattr(Curl, "_get_callback_exception"))
    return (callbacks and contexts and hasattr(Curl, "pause")
            and hasattr(impersonate, "resolve_latest_browser_type")
            and all(hasattr(lib, name) for name in ("_curl_easy_setopt", "curl_slist_append", "curl_slist_free_all"))
            and all(getattr(CurlOpt, name, None) == number for name, number in ours.items()))


class _Sockets:
    """The sockets one multi handle (curl_cffi's AsyncCurl) asked us to watch, and for what.

    curl_cffi's own socket callback removes a socket's reader and writer and adds them again at
    every call, through asyncio's public calls, which first look the socket up among asyncio's
    transports (a KeyError raised and caught each) and remove what is not there (another): six
    exceptions a transfer. Here only what changes is changed, through the selector loop's own calls
    when it has them (curl's sockets are never asyncio transports).
    """

    __slots__ = ("acurl", "masks", "fds", "process", "add_reader", "remove_reader", "add_writer", "remove_writer")

    def __init__(self, acurl) -> None:
        loop = acurl.loop
        self.acurl = acurl
        self.masks: dict[int, int] = {}
        self.fds = getattr(acurl, "_sockfds", set())  # curl_cffi's record, which its close() unwatches
        self.process = acurl.process_data
        private = all(hasattr(loop, name) for name in ("_add_reader", "_remove_reader", "_add_writer", "_remove_writer"))
        prefix = "_" if private else ""  # another loop (a selector thread on Windows): its public calls
        self.add_reader, self.remove_reader = getattr(loop, prefix + "add_reader"), getattr(loop, prefix + "remove_reader")
        self.add_writer, self.remove_writer = getattr(loop, prefix + "add_writer"), getattr(loop, prefix + "remove_writer")

    def want(self, fd: int, what: int) -> None:
        new = 0 if what & _POLL_REMOVE else what & (_POLL_IN | _POLL_OUT)
        old = self.masks.get(fd)
        if old is None:  # parked, watched before our callback took over (curl_cffi's), or neither
            if _parked.pop(fd, None) is not None:
                old = _POLL_IN  # its reader never left
            else:
                old = _POLL_IN | _POLL_OUT if fd in self.fds else 0
        if not new and old == _POLL_IN and fd in _conn_fds:  # a call is done with its connection
            _parked[fd] = self
            self.masks.pop(fd, None)
            return
        if old & _POLL_IN and not new & _POLL_IN:
            self.remove_reader(fd)
        if old & _POLL_OUT and not new & _POLL_OUT:
            self.remove_writer(fd)
        if new & _POLL_IN and not old & _POLL_IN:
            self.add_reader(fd, self.readable, fd)
        if new & _POLL_OUT and not old & _POLL_OUT:
            self.add_writer(fd, self.process, fd, _CSELECT_OUT)
        if new:
            self.masks[fd] = new
            self.fds.add(fd)
        else:  # libcurl says so before it closes a socket: a new one with its number starts afresh
            self.masks.pop(fd, None)
            self.fds.discard(fd)

    def readable(self, fd: int) -> None:
        """The reader's callback: libcurl's, unless the socket is parked (then it leaves). A transfer
        that this read finishes is read by process_data right after libcurl's run: the run libcurl's
        "no timer" asks for meanwhile is not needed (`_lean_reading`, see _on_timer)."""
        if fd in _parked:
            self.drop(fd)
            return
        acurl = self.acurl
        acurl._lean_reading = True
        try:
            self.process(fd, _CSELECT_IN)
        finally:
            acurl._lean_reading = False

    def drop(self, fd: int) -> None:
        """A parked socket leaves the selector (it turned readable, or libcurl is closing it)."""
        del _parked[fd]
        self.fds.discard(fd)
        self.remove_reader(fd)


def _on_sockopt(clientp, fd: int, purpose: int) -> int:
    """CURLOPT_SOCKOPTFUNCTION: libcurl opened a connection socket for one of our handles."""
    _conn_fds.add(fd)
    return 0  # CURL_SOCKOPT_OK


def _on_close(clientp, fd: int) -> int:
    """CURLOPT_CLOSESOCKETFUNCTION: libcurl closes one of those sockets (out of the selector first)."""
    try:
        owner = _parked.get(fd)
        if owner is not None:
            owner.drop(fd)
    finally:
        _conn_fds.discard(fd)
        closed = _close(fd)
    return 0 if closed else 1  # libcurl's "closed" and "failed"


def _close(fd: int) -> bool:
    try:
        os.close(fd)
    except OSError:
        return False
    return True


def _socket_callbacks():
    """The sockopt and close callbacks as cffi function pointers, made once (kept for the process's
    life, so a connection closed at any time finds them); None where sockets are not plain file
    descriptors (Windows) or cffi cannot make callbacks (memory that may not be both written and run)."""
    global _socket_hooks
    if _socket_hooks is None:
        _socket_hooks = False
        if sys.platform != "win32":
            try:
                _socket_hooks = (_ffi.callback("int(void *, int, int)", _on_sockopt, error=1),
                                 _ffi.callback("int(void *, int)", _on_close, error=1))
            except Exception:  # noqa: BLE001 - no parking then; every call watches afresh
                _socket_hooks = False
    return _socket_hooks or None


def _on_socket(curl, sockfd: int, what: int, clientp, data) -> int:
    """libcurl's CURLMOPT_SOCKETFUNCTION, for every AsyncCurl once installed (_install_callbacks)."""
    acurl = _ffi.from_handle(clientp)
    try:
        sockets = acurl._lean_sockets
    except AttributeError:
        sockets = acurl._lean_sockets = _Sockets(acurl)
    sockets.want(sockfd, what)
    return 0


def _on_timer(curlm, timeout_ms: int, clientp) -> int:
    """libcurl's CURLMOPT_TIMERFUNCTION: curl_cffi's, but a timer due now is a ready callback, and
    a timer that would run no later than the one asked for is kept.

    Due now (0), and "no timer" (-1), socket_action runs as a ready callback (`_timer`, which
    replaces the last one and which AsyncCurl.close() cancels). The run for -1 reads the transfers
    that finished inside curl_cffi's safety pass, which reads none (dropping it hung a lone
    request); it is skipped when asked inside process_data for a readable socket, which reads
    them itself right after. Due now while LeanCurl.request adds its handle, that request runs it
    at once. A later time is a timer in the loop's heap (`_lean_timer`); it stays while libcurl
    asks for one no sooner, and -1 leaves it too: a socket_action run early does nothing but have
    libcurl ask again. Every call asks for one as it starts (its connect timeout): this makes
    about one loop timer per connect timeout instead of one (and one cancelled) per call.
    """
    acurl = _ffi.from_handle(clientp)
    if timeout_ms > 0:
        loop = acurl.loop
        when = loop.time() + timeout_ms / 1000
        armed = getattr(acurl, "_lean_timer", None)
        if armed is not None:
            if armed.when() <= when:
                return 0
            armed.cancel()
        acurl._lean_timer = loop.call_at(when, _timer_due, acurl)
        return 0
    if timeout_ms < 0 and getattr(acurl, "_lean_reading", False):
        return 0  # inside process_data for a readable socket, which reads finished transfers next
    timer = getattr(acurl, "_timer", None)
    if timer is not None:
        timer.cancel()
    if getattr(acurl, "_lean_adding", False):  # LeanCurl.request runs it once the handle is in
        acurl._timer = None
        acurl._lean_due = True
    else:
        acurl._timer = acurl.loop.call_soon(acurl.process_data, _SOCKET_TIMEOUT, _POLL_NONE)
    return 0


def _timer_due(acurl) -> None:
    """The multi handle's timer ran out: libcurl checks its timeouts (and asks for its timer again);
    nothing when the multi handle has closed meanwhile (close() does not know this timer)."""
    acurl._lean_timer = None
    if getattr(acurl, "_curlm", True):  # (curl_cffi sets it to None as it closes)
        acurl.process_data(_SOCKET_TIMEOUT, _POLL_NONE)


def _process_data(acurl, sockfd: int, ev_bitmask: int) -> None:
    """AsyncCurl.process_data for our multi handles (LeanCurl.request binds it to each): one
    socket_action run, then the transfers it finished, settled as curl_cffi settles them. Less
    its per-run work: two cffi allocations, a method call and an error check around
    socket_action, and a try block per message; it runs at every piece a transfer reads."""
    curlm = acurl._curlm
    if not curlm:  # closed meanwhile (a ready run made before close())
        return
    code = _lib.curl_multi_socket_action(curlm, sockfd, ev_bitmask, _COUNT)
    if code:
        acurl._check_error(code)  # curl_cffi's CurlError, as its own process_data raises
    msg = _lib.curl_multi_info_read(curlm, _COUNT)
    while msg != _NULL:
        if msg.msg == _CURLMSG_DONE:
            curl = acurl._curl2curl.get(msg.easy_handle)
            if curl is not None:  # (curl_cffi would warn of a handle it does not know, and go on)
                retcode = msg.data.result
                failure = curl._get_callback_exception()
                if failure is not None:
                    acurl.set_exception(curl, failure)
                elif retcode == 0:
                    acurl.set_result(curl)
                else:
                    acurl.set_exception(curl, curl._get_error(retcode, "perform"))
        msg = _lib.curl_multi_info_read(curlm, _COUNT)


def _on_write(ptr, size: int, nmemb: int, userdata) -> int:
    """libcurl's header and body callback for every handle that has curl_cffi call a function
    (CURLOPT_HEADERFUNCTION, CURLOPT_WRITEFUNCTION): curl_cffi's `write_callback`, less two Python
    calls and the checks for the usual answer, a function that took every byte (some thirty a
    claude.ai request, one per header line and body piece). Other answers get curl_cffi's rules."""
    wrote = _ffi.from_handle(userdata).callback(_ffi.buffer(ptr, nmemb)[:])
    if wrote == nmemb and size == 1:
        return wrote
    return _write_rules(wrote, size, nmemb)


def _write_rules(wrote, size: int, nmemb: int) -> int:
    """curl_cffi's `write_callback` after its call: pause and error pass; anything else counts as
    every byte taken (with its warning when the function said otherwise)."""
    from curl_cffi.curl import CURL_WRITEFUNC_ERROR, CurlCffiWarning

    wrote = int(wrote) if wrote else 0
    if wrote in (WRITEFUNC_PAUSE, CURL_WRITEFUNC_ERROR):
        return wrote
    if wrote != nmemb * size:
        warnings.warn("Wrote bytes != received bytes.", CurlCffiWarning, stacklevel=2)
    return nmemb * size


def _install_callbacks() -> None:
    """Put _on_socket, _on_timer and _on_write behind curl_cffi's socket, timer and write
    callbacks (cffi's def_extern again for the same names: the C functions libcurl calls stay,
    the Python functions they run change), once; they serve every AsyncCurl and Curl from then on.
    The write callback keeps curl_cffi's error handler: an exception in the function is kept on
    its handle's context and fails the transfer."""
    global _installed
    if not _installed:
        from curl_cffi.curl import CURL_WRITEFUNC_ERROR, _store_callback_error
        _ffi.def_extern(name="socket_function")(_on_socket)
        _ffi.def_extern(name="timer_function")(_on_timer)
        _ffi.def_extern(name="write_callback", onerror=_store_callback_error(CURL_WRITEFUNC_ERROR))(_on_write)
        _installed = True


def _unused(data: bytes) -> int:
    """A handle's callbacks between its calls (libcurl calls none then)."""
    return len(data)


class _Transfer(Pieces):
    """One request on one handle: its status and headers, then its body as it arrives."""

    def __init__(self, owner: LeanCurl, curl, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, owner._deadlines)  # the idle deadline on the client's shared timer
        self.owner, self.curl = owner, curl
        self.head = loop.create_future()
        self.status = 0
        self.headers: CIMultiDictProxy | None = None
        self._lines: list[bytes] = []
        self._kept: KeptHead | None = None  # a 2xx answer's headers, while libcurl keeps them
        self._held = False  # ended before the answer's close: its handle (and headers) wait for it
        self._paused = False
        self.sent = b""  # the request body, which libcurl reads from our buffer
        self.header_list = _NULL  # the request's header lines as libcurl's list (ours to free)

    def free(self) -> None:
        """The request's header list, once libcurl is done with the transfer."""
        if self.header_list != _NULL:
            _lib.curl_slist_free_all(self.header_list)
            self.header_list = _NULL

    # -- curl's callbacks: inside socket_action, on the loop's thread
    def on_header(self, line: bytes) -> int:
        if line != b"\r\n" and line != b"\n":  # a head's lines are kept until its blank line
            self._lines.append(line)
            return len(line)
        lines, self._lines = self._lines, []
        if self.head.done() or not lines:  # trailers, or lines after an abort: not kept
            return len(line)
        parts = lines[0].split(None, 2) if lines[0].startswith(b"HTTP/") else ()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status >= 200:  # the final head (a 100 Continue is followed by another)
            self.status = status
            self.headers = parse_headers(lines[1:])
            self.head.set_result(None)
        return len(line)

    def _response_code(self) -> int:
        """The answer's status as libcurl has it (0 while its status line is not in)."""
        _lib.curl_easy_getinfo(self.curl._curl, _RESPONSE_CODE, _CODE)
        return _CODE[0]

    def take_head(self, status: int = 0, *, whole: bool = False) -> None:
        """The head is in (the body begins, the transfer ended, or its deadline came with the status
        in): its status from libcurl (unless given), its headers from libcurl's store, where no
        header callback runs (curl_heads). Those of a 2xx answer are read when asked (KeptHead);
        the others, and all of them when `whole` (the handle is about to serve other calls), now."""
        self.status = status = status or self._response_code()
        if 200 <= status < 300 and not whole:
            self.headers = self._kept = KeptHead(self.curl._lean_easy)
        else:
            self.headers = all_headers(self.curl._lean_easy)
        self.head.set_result(None)

    def head_due(self) -> None:
        """The headers deadline: met if the status line is in (a head whose body has not begun: its
        headers as they stand), else the call times out."""
        if self.head.done():
            return
        if self.curl._lean_easy is not None and self.running and (status := self._response_code()):
            self.take_head(status, whole=True)
            return
        expire(self.head)

    def on_body(self, data: bytes) -> int:
        if not self.head.done() and self.curl._lean_easy is not None:
            self.take_head()
        if self._size and self._size + len(data) > HIGH_WATER:
            self._paused = True  # the reader lags: curl keeps this piece until it catches up
            return WRITEFUNC_PAUSE
        self.put(data)
        return len(data)

    def finished(self, future: asyncio.Future) -> None:
        """The multi handle is done with the transfer: it completed, failed, or abort() removed it."""
        cancelled = future.cancelled()
        exc = None if cancelled else future.exception()
        if not cancelled and exc is None and not self.head.done() and self.curl._lean_easy is not None:
            self.take_head(whole=True)  # an answer with no body
        self.owner.release(self.curl, self)
        if cancelled:
            return
        if not self.head.done():
            self.head.set_exception(aiohttp.ClientConnectionError(
                str(exc) if exc is not None else "the answer ended before its headers"))
            self.abort()
        elif exc is not None:
            self.fail(aiohttp.ClientPayloadError(str(exc)))
        else:
            self.end()

    @property
    def running(self) -> bool:
        """Whether the transfer is still in the multi handle."""
        return self.owner._running.get(self.curl) is self

    # -- the reader's side
    def _caught_up(self) -> None:
        if self._paused and self.running:
            self._paused = False
            self.curl.pause(PAUSE_CONTINUE)  # curl offers the kept piece again

    def _give_back(self) -> None:
        """A handle kept for this answer's headers goes back to the others (once)."""
        if self._held:
            self._held = False
            self.owner.keep(self.curl)

    def __del__(self) -> None:
        # an answer dropped without its close (its reader read to the end and let it go): its
        # handle goes back to the others rather than with it
        try:
            self._give_back()
        except Exception:  # noqa: BLE001 - at interpreter exit, say: the handle closes itself
            pass

    def abort(self) -> None:
        """Give up on the rest (the reader closes the answer): the handle leaves the multi handle,
        which ends the transfer; a handle kept for the headers goes back to the others."""
        super().abort()
        if not self.head.done():
            self.head.cancel()
        if self._kept is not None:
            self._kept.close()
        if self.running:
            self.owner.remove(self.curl)
        else:
            self._give_back()


def header_lines(headers, body: bytes | None) -> list[bytes]:
    """The request's header lines as the session writes them (an empty value as `Name;`; an
    octet-stream type for an untyped body; `Expect:` to never send one)."""
    lines = [(f"{name}: {value}" if value != "" else f"{name};").encode() for name, value in headers.items()]
    if body and "Content-Type" not in headers and not any(name.lower() == "content-type" for name in headers):
        lines.append(b"Content-Type: application/octet-stream")
    lines.append(b"Expect:")
    return lines


class LeanCurl:
    """Impersonating easy handles configured once, on one multi handle of our own."""

    def __init__(self, proxy: str | None, *, connect_timeout: float, target: str = "chrome") -> None:
        from curl_cffi.requests.impersonate import resolve_latest_browser_type
        _cffi_constants()
        self.proxy = proxy
        self.target = resolve_latest_browser_type(target)  # "chrome" → the newest Chrome, as the session
        self._connect_ms = int(connect_timeout * 1000)
        # the session's CA rule: REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, else certifi's bundle
        self._cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._idle: list = []
        self._custom: set = set()  # handles whose last call set a custom method
        self._running: dict = {}  # handle → its transfer, while in the multi handle
        self._acurl = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None  # the heads awaited (on _loop, made with it)
        self._idle_timer: asyncio.TimerHandle | None = None  # armed while idle, not re-armed per call
        self._idle_since = 0.0  # loop time the last transfer ended
        self._closing: asyncio.Future | None = None  # a multi handle closing after an idle spell
        self._closed = False

    def _new_handle(self):
        """A handle set up as the session sets one up for an impersonated call, less the per-call parts."""
        from curl_cffi import Curl, CurlOpt
        curl = Curl()
        setopt = curl.setopt
        setopt(CurlOpt.FOLLOWLOCATION, 0)  # a 302 is Cloudflare's block signal (claude-web.md §2)
        setopt(CurlOpt.MAXREDIRS, 30)
        setopt(CurlOpt.CONNECTTIMEOUT_MS, self._connect_ms)
        # no total deadline (a long answer is fine), and no low-speed check: a stall is the
        # reader's idle deadline (body.Pieces.next). libcurl's check would move its timer on at
        # every piece read, a timer callback (Python) a piece.
        if self.proxy:
            setopt(CurlOpt.PROXY_CREDENTIAL_NO_REUSE, 1)
            setopt(CurlOpt.PROXY, self.proxy)
        if self._cafile:
            setopt(CurlOpt.CAINFO, self._cafile)
            setopt(CurlOpt.PROXY_CAINFO, self._cafile)
        setopt(CurlOpt.ACCEPT_ENCODING, ACCEPT_ENCODING)
        if curl.impersonate(self.target, default_headers=True) != 0:
            curl.close()
            raise aiohttp.ClientConnectionError(f"curl_cffi cannot impersonate {self.target}")
        setopt(CurlOpt.SUPPRESS_CONNECT_HEADERS, 1)  # a proxy's CONNECT answer is not the head
        # calls that start together wait for the one connection being made and share it over
        # HTTP/2, as a browser does, rather than open one connection (and TLS handshake) each
        setopt(CurlOpt.PIPEWAIT, 1)
        # no SIGPIPE juggling around every socket operation (two rt_sigaction calls each; Python
        # ignores SIGPIPE already, and this libcurl resolves names with c-ares, not alarm())
        setopt(CurlOpt.NOSIGNAL, 1)
        # curl_cffi's callback contexts, set once and kept for the handle's life: each call points
        # them at its transfer (and clears their exception) instead of setting both options again
        # (a new context each, and the handle's buffers cleaned after)
        # the answer's header lines: read from libcurl's store once the head is in (no callback
        # per line) where its headers API is reached; else a header callback, one call a line
        curl._lean_easy = easy_pointer(_ffi, curl._curl)
        if curl._lean_easy is None:
            setopt(CurlOpt.HEADERFUNCTION, _unused)
        setopt(CurlOpt.WRITEFUNCTION, _unused)
        curl._lean_contexts = (_ffi.from_handle(curl._header_handle) if curl._lean_easy is None else None,
                               _ffi.from_handle(curl._write_handle))
        hooks = _socket_callbacks()  # connection sockets we may keep in the selector (_Sockets.want)
        if hooks is not None:
            sockopt, close = hooks
            if (_lib._curl_easy_setopt(curl._curl, _SOCKOPTFUNCTION, _ffi.cast("void *", sockopt))
                    | _lib._curl_easy_setopt(curl._curl, _CLOSESOCKETFUNCTION, _ffi.cast("void *", close))):
                curl.close()
                raise aiohttp.ClientConnectionError("curl refused the socket callbacks")
        return curl

    def _configure(self, curl, transfer: _Transfer, method: str, url: str, headers, body: bytes | None) -> None:
        """The per-call options (every one a previous call on the handle may have set).

        Set with libcurl's setopt through curl_cffi's glue, as `Curl.setopt` ends up doing, less
        its per-call work (two dict literals, an enum division, a type dispatch). The callbacks
        stay set (`_new_handle`): their contexts are pointed at this transfer.
        """
        handle, setopt = curl._curl, _lib._curl_easy_setopt
        failed = setopt(handle, _URL, url.encode())
        if method == "POST" or body is not None or method in ("PUT", "PATCH"):
            data = transfer.sent = body or b""  # libcurl reads the body in place: kept to the end
            failed |= setopt(handle, _POSTFIELDS, data)  # a POST from here on
            failed |= setopt(handle, _POSTFIELDSIZE, _ffi.new("long*", len(data)))
        else:
            failed |= setopt(handle, _HTTPGET, _ONE)  # back to a GET after a POST
        if method not in ("GET", "POST"):
            failed |= setopt(handle, _CUSTOMREQUEST, method.encode())
            self._custom.add(curl)
        elif curl in self._custom:
            failed |= setopt(handle, _CUSTOMREQUEST, _NULL)
            self._custom.discard(curl)
        if self.proxy and not self.proxy.startswith("socks"):
            failed |= setopt(handle, _HTTPPROXYTUNNEL, _ONE if url.startswith("https:") else _ZERO)
        for line in header_lines(headers or {}, body):  # the transfer's list, freed when it ends
            transfer.header_list = _lib.curl_slist_append(transfer.header_list, line)
        failed |= setopt(handle, _HTTPHEADER, transfer.header_list)
        if failed:
            raise aiohttp.ClientConnectionError(f"curl refused the call's options (code {failed})")
        on_head, on_body = curl._lean_contexts
        if on_head is not None:
            on_head.callback, on_head.exception = transfer.on_header, None
        on_body.callback, on_body.exception = transfer.on_body, None

    async def request(self, method: str, url: str, headers, body: bytes | None,
                      headers_timeout: float) -> _Transfer:
        """Send; return the transfer once its final head is in (status, headers; the body follows)."""
        if self._closed:
            raise aiohttp.ClientConnectionError("the claude.ai client is closed")
        loop = self._loop
        if loop is None:  # a client lives on the loop it first ran on (so does its multi handle)
            self._loop = loop = asyncio.get_running_loop()
            self._deadlines = Deadlines(loop)
        if self._acurl is None:
            from curl_cffi import AsyncCurl
            _install_callbacks()
            self._acurl = AsyncCurl(loop=loop)
            self._acurl.process_data = _process_data.__get__(self._acurl)  # ours, for this multi handle
        curl = self._idle.pop() if self._idle else self._new_handle()
        transfer = _Transfer(self, curl, loop)
        acurl = self._acurl
        try:
            self._configure(curl, transfer, method, url, headers, body)
            acurl._lean_adding = True  # a timer due now is run below, in this turn (_on_timer)
            try:
                future = acurl.add_handle(curl)
            finally:
                acurl._lean_adding = False
        except BaseException:
            self._run_due(acurl, later=True)
            self.release(curl, transfer)
            raise
        future.add_done_callback(transfer.finished)
        self._running[curl] = transfer
        # no timer of its own: an alarm on the client's shared one
        self._deadlines.add(transfer, loop.time() + headers_timeout, transfer.head_due)
        try:
            self._run_due(acurl)
            await transfer.head
        except BaseException:  # a timeout, or the caller left: end the transfer
            transfer.abort()
            raise
        finally:
            self._deadlines.drop_alarm(transfer)
        return transfer

    @staticmethod
    def _run_due(acurl, *, later: bool = False) -> None:
        """The timer libcurl asked for, due now, while its call's handle was being added: run here,
        in this loop turn, so the call goes out at once (a ready handle would cost a loop turn
        of its own first); `later`: the add failed, the timer runs as a ready handle after all."""
        if getattr(acurl, "_lean_due", False):
            acurl._lean_due = False
            if later:
                acurl._timer = acurl.loop.call_soon(acurl.process_data, _SOCKET_TIMEOUT, _POLL_NONE)
                return
            try:
                acurl.process_data(_SOCKET_TIMEOUT, _POLL_NONE)
            except Exception as exc:  # curl_cffi's CurlError: the multi handle would not run
                raise aiohttp.ClientConnectionError(f"curl could not start the call: {exc}") from exc

    def remove(self, curl) -> None:
        """End a running transfer (its future is cancelled; `finished` then releases the handle)."""
        del self._running[curl]
        self._acurl.remove_handle(curl)

    def release(self, curl, transfer: _Transfer) -> None:
        """A handle whose transfer is over: its per-call buffers go, the handle is kept for reuse."""
        if self._running.get(curl) is transfer:
            del self._running[curl]
        transfer.free()
        on_head, on_body = curl._lean_contexts
        on_body.callback = _unused  # the handle keeps no transfer alive
        if on_head is not None:
            on_head.callback = _unused
        if transfer._kept is not None and not transfer._kept.closed:
            transfer._held = True  # its reader may still read the headers libcurl keeps (abort() keeps it)
        else:
            self.keep(curl)
        if not self._running and self._acurl is not None and not self._closed:
            self._idle_since = self._loop.time()
            if self._idle_timer is None:  # one timer per idle spell, not a new one per call
                self._idle_timer = self._loop.call_later(IDLE_CLOSE_S, self._close_idle)

    def keep(self, curl) -> None:
        """A handle free for the next call: kept for reuse, or closed (too many kept, or the client
        closed)."""
        if self._closed or len(self._idle) >= IDLE_HANDLES:
            self._custom.discard(curl)
            curl.close()
        else:
            self._idle.append(curl)

    def _close_idle(self) -> None:
        """Nothing ran for IDLE_CLOSE_S: close the multi handle (a later call makes a new one)."""
        self._idle_timer = None
        if self._running or self._acurl is None:
            return  # busy: the release that ends the last transfer arms the timer again
        left = self._idle_since + IDLE_CLOSE_S - self._loop.time()
        if left > 0:  # calls came and went since the timer was armed: idle for less than that
            self._idle_timer = self._loop.call_later(left, self._close_idle)
            return
        acurl, self._acurl = self._acurl, None
        self._closing = asyncio.ensure_future(acurl.close())

    async def close(self) -> None:
        """Close the multi handle (ending what still runs) and every kept handle."""
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._closing is not None:
            await self._closing
        for transfer in list(self._running.values()):  # cut, not ended: the reader must not see an end
            transfer.fail(aiohttp.ClientPayloadError("the claude.ai client was closed"))
            transfer.abort()
        acurl, self._acurl = self._acurl, None
        if acurl is not None:
            await acurl.close()
        for curl in self._idle:
            curl.close()
        self._idle.clear()
        self._custom.clear()
