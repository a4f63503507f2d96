"""One error tree for the whole proxy, and its rendering in each client dialect.

    ProxyError                     status  Anthropic type          retryable
    ├── BadRequest                 400     invalid_request_error   no
    ├── AuthError                  401     authentication_error    no
    ├── PermissionDenied           403     permission_error        no
    ├── NotFound                   404     not_found_error         no
    ├── TooLarge                   413     request_too_large       no
    ├── RateLimited                429     rate_limit_error        no   (retry_after seconds)
    ├── NoCredential               503     api_error               no
    ├── RetriesExceeded            504     api_error               no
    └── UpstreamError              the upstream's status and type; retryable when transient
        ├── UpstreamBlocked        502     api_error               no   (Cloudflare / IP block)
        └── UpstreamUnavailable    502     api_error               yes  (connect error, timeout)

Every error carries its status, its Anthropic error type and whether a retry on another
credential may help. `render(err, dialect)` draws the body a client of that dialect reads
(conversions.md §14); the server has one middleware that calls it (DESIGN.md §5).
"""

from __future__ import annotations

ANTHROPIC, OPENAI, GEMINI = "anthropic", "openai", "gemini"

# status -> Anthropic error type, for upstream errors that came without a usable type
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
# status -> OpenAI (type, code)
_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", None),
    413: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
# status -> Google status string
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_STANDARD_ANTHROPIC = frozenset(_ANTHROPIC_TYPES.values()) | {"api_error"}


def anthropic_type(status: int) -> str:
    """The Anthropic error type that belongs to an HTTP status."""
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class ProxyError(Exception):
    """Base of every error the proxy shows a client."""

    status = 500
    type = "api_error"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 retryable: bool | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable
        self.headers = dict(headers or {})


class BadRequest(ProxyError):
    """The client's request is malformed or unsupported."""

    status, type = 400, "invalid_request_error"


class AuthError(ProxyError):
    """Missing or wrong key or password."""

    status, type = 401, "authentication_error"


class PermissionDenied(ProxyError):
    """Authenticated, but not allowed (model not on the key's list, budget spent)."""

    status, type = 403, "permission_error"


class NotFound(ProxyError):
    """Unknown route or model."""

    status, type = 404, "not_found_error"


class TooLarge(ProxyError):
    """Body over `max_body_mb`."""

    status, type = 413, "request_too_large"


class RateLimited(ProxyError):
    """Every credential is parked; `retry_after` says for how long at least."""

    status, type = 429, "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(0, int(retry_after))))


class NoCredential(ProxyError):
    """No credential exists that could serve the request."""

    status, type = 503, "api_error"


class RetriesExceeded(ProxyError):
    """Every attempt failed without an upstream error worth showing."""

    status, type = 504, "api_error"


class UpstreamError(ProxyError):
    """An error answer from an upstream, kept with its status and type."""

    status, type = 502, "api_error"


class UpstreamBlocked(UpstreamError):
    """The upstream host blocked us (Cloudflare challenge or 302): not the credential's fault."""

    status, type = 502, "api_error"


class UpstreamUnavailable(UpstreamError):
    """Connection failure or timeout before the response headers: worth another try."""

    status, type, retryable = 502, "api_error", True


def _anthropic_kind(err: ProxyError) -> str:
    return err.type if err.type in _STANDARD_ANTHROPIC else anthropic_type(err.status)


def render(err: ProxyError, dialect: str) -> dict:
    """The JSON error body for a client of `dialect` (conversions.md §14)."""
    if dialect == OPENAI:
        kind, code = _OPENAI_TYPES.get(err.status, ("server_error" if err.status >= 500
                                                     else "invalid_request_error", None))
        return {"error": {"message": err.message, "type": kind, "param": None, "code": code}}
    if dialect == GEMINI:
        status = _GEMINI_STATUS.get(err.status, "INTERNAL" if err.status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": err.status, "message": err.message, "status": status}}
    return {"type": "error", "error": {"type": _anthropic_kind(err), "message": err.message}}


def stream_event(err: ProxyError) -> dict:
    """The Anthropic in-stream `error` event for an error after the first byte."""
    return {"type": "error", "error": {"type": _anthropic_kind(err), "message": err.message}}
