"""Records kept by the fake api.anthropic.com: accounts, API keys, OAuth grants, requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Union

from multidict import CIMultiDict

from tests.fakes.claude_web_state import Account

# Endpoint names; they are the keys of `fail_on` and what `requests_to` takes.
WEB_ENDPOINTS = ("bootstrap", "organizations", "authorize")
ENDPOINTS = WEB_ENDPOINTS + ("token", "messages", "count_tokens", "usage", "models")

# Where each failure behaviour strikes unless the credential says otherwise (`fail_on`).
DEFAULT_FAIL_ON: dict[str, tuple[str, ...]] = {
    "unauthorized": WEB_ENDPOINTS,  # the session cookie is dead (web 401)
    "null_account": ("bootstrap",),
    "rate_limited": ("messages",),
    "overloaded": ("messages",),
    "overloaded_in_stream": ("messages",),
    "long_context_denied": ("messages", "count_tokens"),  # only when the 1M beta is asked for
    "invalid_key": ("messages", "count_tokens", "models", "usage"),
    "no_credit": ("messages", "count_tokens"),
    "forbidden": ("messages",),
}


def strikes(cred: CodeAccount | ApiKey, endpoint: str) -> bool:
    """Whether this call answers with the credential's behaviour; counts it if so."""
    if cred.behaviour is None:
        return False
    where = DEFAULT_FAIL_ON[cred.behaviour] if cred.fail_on is None else cred.fail_on
    if endpoint not in where or (cred.fail_times is not None and cred.failures >= cred.fail_times):
        return False
    cred.failures += 1
    return True


@dataclass
class CodeAccount(Account):
    """A claude.ai account as api.anthropic.com sees it: cookie, OAuth rights, usage windows."""

    oauth_denied: bool = False  # authorize answers 403 "OAuth authentication is currently not allowed …"
    needs_prelude: bool = False  # messages also need the "You are Claude Code, …" block after the billing one
    usage: dict[str, Any] | None = None  # the api/oauth/usage body; None: an idle account's windows
    messages: int = 0  # messages calls answered with status 200

    def fails(self, endpoint: str) -> bool:
        """Whether this call answers with the behaviour's error (this fake's table)."""
        return strikes(self, endpoint)


@dataclass
class ApiKey:
    """One Console API key and how it misbehaves."""

    key: str
    behaviour: str | None = None
    fail_on: tuple[str, ...] | None = None
    fail_times: int | None = None
    failures: int = 0
    resets_at: int = 0  # epoch seconds a 429 names; add_key sets clock + 60
    messages: int = 0  # messages calls answered with status 200
    calls: Counter[str] = field(default_factory=Counter)

    def fails(self, endpoint: str) -> bool:
        """Whether this call answers with the behaviour's error."""
        return strikes(self, endpoint)


@dataclass
class AuthCode:
    """An authorization code handed out by the authorize call."""

    code: str
    account: CodeAccount
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    challenge: str
    issued_at: float
    used: bool = False


@dataclass
class AccessToken:
    """An OAuth access token (sk-ant-oat01-…)."""

    token: str
    account: CodeAccount
    expires_at: float
    scope: str


@dataclass
class RefreshToken:
    """An OAuth refresh token (sk-ant-ort01-…); single use."""

    token: str
    account: CodeAccount
    scope: str
    valid: bool = True


@dataclass(frozen=True)
class Tokens:
    """What issue_tokens hands a test: both token strings and the expiry."""

    access_token: str
    refresh_token: str
    expires_at: float


@dataclass
class Caller:
    """Who a v1 call is from: an API key, or an OAuth token of a cookie account."""

    kind: str  # "key" or "oauth"
    key: ApiKey | None = None
    token: AccessToken | None = None

    @property
    def cred(self) -> Union[ApiKey, CodeAccount]:
        """The credential whose behaviour applies."""
        if self.key is not None:
            return self.key
        assert self.token is not None
        return self.token.account


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str  # relative to the base URL, e.g. "v1/messages"
    query: str
    headers: CIMultiDict[str]
    json: Any  # parsed JSON body, or None
    form: dict[str, str] | None  # form fields in sent order, or None
    endpoint: str | None  # a name from ENDPOINTS, None for unknown paths
    raw: bytes = b""  # the body exactly as it arrived
