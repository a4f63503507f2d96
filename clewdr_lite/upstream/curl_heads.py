"""The head of an answer on the lean curl path (upstream/curl_lean.py): read from what libcurl
keeps of it, or parsed from the lines a header callback collected where that cannot be done.

libcurl keeps every header of a transfer's answers on its easy handle, until the handle's next
call, and offers them through its headers API (curl_easy_header, curl_easy_nextheader; libcurl
7.84 and later). curl_cffi's bindings leave that API out: it is reached through cffi's ABI mode in
the library curl_cffi loaded. Reading the head there once it is in takes the Python callback per
header line off every call.
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

CURLH_HEADER, LAST_REQUEST = 1, -1  # the headers API's "plain headers" and "of the last request"
_api = None  # (ffi, lib, an out-pointer) once reached; False where it cannot be
_MISSING, _MISSING_LIST = object(), object()
_FOLDS = (" ", "\t")  # what opens an obsolete folded header line


def easy_pointer(ffi, curl_pointer):
    """An easy handle's address as the headers API's ffi sees it (`ffi`: curl_cffi's, whose
    `curl_pointer` it is); None without the API."""
    reached = api()
    return reached[0].cast("void *", int(ffi.cast("uintptr_t", curl_pointer))) if reached else None


_HEADERS_CDEF = """
struct curl_header { char *name; char *value; size_t amount; size_t index; unsigned int origin; void *anchor; };
struct curl_header *curl_easy_nextheader(void *easy, unsigned int origin, int request, struct curl_header *prev);
int curl_easy_header(void *easy, const char *name, size_t index, unsigned int origin, int request,
                     struct curl_header **hout);
"""


def api():
    """libcurl's headers API (curl_easy_header, curl_easy_nextheader; libcurl 7.84 and later),
    which curl_cffi's own bindings leave out: reached through cffi's ABI mode in the library
    curl_cffi loaded, once. None where it cannot be (the answer's header lines then come through
    a header callback, one call a line)."""
    global _api
    if _api is None:
        _api = False
        try:
            import cffi
            from curl_cffi import _wrapper
            abi = cffi.FFI()
            abi.cdef(_HEADERS_CDEF)
            lib = abi.dlopen(_wrapper.__file__)
            lib.curl_easy_header, lib.curl_easy_nextheader  # noqa: B018 - resolves both, or raises
            _api = (abi, lib, abi.new("struct curl_header **"))
        except Exception:  # noqa: BLE001 - no such symbols, no dlopen: the callback path (_api stays False)
            pass
    return _api or None


def all_headers(easy) -> CIMultiDictProxy:
    """Every header of the last answer libcurl keeps for the handle (`easy`: its address as the
    headers API's ffi sees it), in the order received."""
    abi, lib, _ = _api
    pairs, prev = [], abi.NULL
    step, string = lib.curl_easy_nextheader, abi.string
    while True:
        prev = step(easy, CURLH_HEADER, LAST_REQUEST, prev)
        if prev == abi.NULL:
            return CIMultiDictProxy(CIMultiDict(pairs))
        pairs.append((string(prev.name).decode("latin-1"), string(prev.value).decode("latin-1")))


class KeptHead(Mapping):
    """A 2xx answer's headers, read from what libcurl keeps on the handle when asked: a header
    by its name (the request id the log wants) costs one lookup, the whole head is read at the
    first use that needs it. Without this, every header line was a Python callback (some thirty
    a claude.ai request). libcurl keeps them until the handle's next call, and the handle waits
    for the answer's close (or, dropped unclosed, its collection) before it serves another
    (curl_lean.LeanCurl.release); after the close, only what was read before is there."""

    __slots__ = ("_easy", "_all")

    def __init__(self, easy) -> None:
        self._easy, self._all = easy, None

    def _whole(self) -> CIMultiDictProxy:
        if self._all is None:
            if self._easy is None:
                raise RuntimeError("the headers of a claude.ai answer read after its close")
            self._all = all_headers(self._easy)
        return self._all

    def get(self, name: str, default=None):
        if self._all is not None or self._easy is None:
            return self._whole().get(name, default)
        abi, lib, out = _api
        try:
            key = name.encode("latin-1")
        except UnicodeEncodeError:  # no header has such a name
            return default
        if lib.curl_easy_header(self._easy, key, 0, CURLH_HEADER, LAST_REQUEST, out):
            return default  # CURLHE_MISSING (or any other failure to find it)
        return abi.string(out[0].value).decode("latin-1")

    def __getitem__(self, name: str) -> str:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self.get(name, _MISSING) is not _MISSING

    def __iter__(self):
        return iter(self._whole())

    def __len__(self) -> int:
        return len(self._whole())

    # the rest as the multidict gives it (repeated headers each with their own value)
    def items(self):
        return self._whole().items()

    def keys(self):
        return self._whole().keys()

    def values(self):
        return self._whole().values()

    def getall(self, name: str, default=_MISSING_LIST):
        found = self._whole().getall(name, [])
        if found or default is not _MISSING_LIST:
            return found or default
        raise KeyError(name)

    def close(self) -> None:
        """The answer is closed: the handle may serve another call, and its store with it."""
        self._easy = None

    @property
    def closed(self) -> bool:
        return self._easy is None


def parse_headers(lines: list[bytes]) -> CIMultiDictProxy:
    """Header lines as curl hands them over (one a line, with its line end) → a case-insensitive
    multidict, built from a list (a real claude.ai answer has some 25 lines). A line at a time
    costs less than one regex pass over the whole head, and than splitting the joined head."""
    pairs: list[tuple[str, str]] = []
    for line in lines:
        text = line.decode("latin-1")
        if text[:1] in _FOLDS:  # an obsolete folded line continues the last value
            text = text.strip()
            if pairs and text:
                name, value = pairs[-1]
                pairs[-1] = (name, f"{value} {text}")
            continue
        name, sep, value = text.partition(":")
        if sep and name:
            pairs.append((name.strip(), value.strip()))
    return CIMultiDictProxy(CIMultiDict(pairs))
