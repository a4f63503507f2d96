"""Records kept by the fake Google APIs: API keys, service accounts, access tokens, requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict, MultiDict

# Endpoint names: what `requests_to` takes and what `fail_on` lists. Vertex endpoints are the
# AI Studio names with a "vertex_" prefix; a credential's `fail_on` names the unprefixed ones.
STUDIO_ENDPOINTS = ("generateContent", "streamGenerateContent", "countTokens", "models", "openai_chat",
                    "openai_models")
VERTEX_ENDPOINTS = ("vertex_generateContent", "vertex_streamGenerateContent", "vertex_countTokens",
                    "vertex_openai_chat")
ENDPOINTS = STUDIO_ENDPOINTS + VERTEX_ENDPOINTS + ("token",)
NATIVE_METHODS = ("generateContent", "streamGenerateContent", "countTokens")

GENERATE = ("generateContent", "streamGenerateContent", "openai_chat")
NATIVE_GENERATE = ("generateContent", "streamGenerateContent")
EVERYWHERE = GENERATE + ("countTokens", "models", "openai_models")

# Where each behaviour strikes unless the credential says otherwise (gemini.md §4.3).
DEFAULT_FAIL_ON: dict[str, tuple[str, ...]] = {
    "invalid": EVERYWHERE,  # 400 API_KEY_INVALID
    "suspended": EVERYWHERE,  # 403 CONSUMER_SUSPENDED
    "api_disabled": EVERYWHERE,  # 403 SERVICE_DISABLED
    "forbidden": EVERYWHERE,  # plain 403 PERMISSION_DENIED
    "region_blocked": EVERYWHERE,  # 400 FAILED_PRECONDITION "User location is not supported …"
    "rate_limited": GENERATE,  # 429 with RetryInfo
    "daily_quota": GENERATE,  # 429 with a PerDay quota id (and a RetryInfo, as Google sends)
    "internal": GENERATE,  # 500 INTERNAL
    "unavailable": GENERATE,  # 503 UNAVAILABLE
    "unavailable_in_stream": GENERATE,  # streams: some chunks, then an in-stream 503 error; else 503
    "empty": GENERATE,  # 200 without candidates (OpenAI-compatible: "choices": [])
    "finish_other": NATIVE_GENERATE,  # 200, finishReason OTHER, no parts
    "blocked_prompt": NATIVE_GENERATE,  # 200, promptFeedback.blockReason SAFETY
    "safety_rejected": GENERATE,  # 400 naming a safety setting, when CIVIC_INTEGRITY or OFF is sent
}
# Behaviours answered before the body is looked at: they belong to the key, not the request.
KEY_LEVEL = ("invalid", "suspended", "api_disabled", "forbidden", "region_blocked", "rate_limited", "daily_quota")


@dataclass
class Cred:
    """What AI Studio keys and service accounts share: a behaviour and its counters."""

    behaviour: str | None = None
    fail_on: tuple[str, ...] | None = None  # None: DEFAULT_FAIL_ON[behaviour]
    fail_times: int | None = None  # None: the behaviour strikes every time
    retry_delay: str = "37s"  # RetryInfo.retryDelay of rate_limited
    failures: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    answered: int = 0  # generate calls answered with status 200

    def strikes(self, endpoint: str, behaviours: tuple[str, ...] | None = None) -> bool:
        """Whether this call answers with the behaviour (among `behaviours`, if given); counts it if so."""
        if self.behaviour is None or (behaviours is not None and self.behaviour not in behaviours):
            return False
        where = DEFAULT_FAIL_ON[self.behaviour] if self.fail_on is None else self.fail_on
        if endpoint.removeprefix("vertex_") not in where:
            return False
        if self.fail_times is not None and self.failures >= self.fail_times:
            return False
        self.failures += 1
        return True


@dataclass
class GoogleKey(Cred):
    """One AI Studio API key and how it misbehaves."""

    key: str = ""


@dataclass
class ServiceAccount(Cred):
    """A Vertex service account: its downloaded JSON, its public key and its token-endpoint knobs."""

    info: dict[str, Any] = field(default_factory=dict)
    public_key: Any = None  # cryptography RSAPublicKey
    token_error: str | int | None = None  # "invalid_grant", "invalid_client", or an HTTP status such as 500
    token_error_times: int | None = None  # None: every exchange fails while token_error is set
    token_failures: int = 0
    exchanges: int = 0  # tokens issued

    @property
    def email(self) -> str:
        """The client_email."""
        return str(self.info.get("client_email", ""))

    @property
    def project_id(self) -> str:
        """The project the account belongs to."""
        return str(self.info.get("project_id", ""))


@dataclass
class AccessToken:
    """An access token (ya29.…) issued by the token endpoint."""

    token: str
    account: ServiceAccount
    scope: str
    expires_at: float


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]
    json: Any  # parsed JSON body, or None
    form: dict[str, str] | None  # form fields (token endpoint), or None
    endpoint: str | None  # a name from ENDPOINTS; None for unknown paths
    model: str | None = None  # from the path (native) or the body (OpenAI-compatible)
    project: str | None = None  # Vertex paths
    location: str | None = None
