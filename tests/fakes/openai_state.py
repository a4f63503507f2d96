"""Records kept by the fake OpenAI-compatible server: API keys and requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

ENDPOINTS = ("chat", "models")  # what `requests_to` takes


@dataclass
class OKey:
    """One API key and how it misbehaves."""

    key: str
    behaviour: str | None = None  # a name from openai_errors.BEHAVIOURS
    fail_times: int | None = None  # None: the behaviour strikes every time
    retry_after: float | None = 20  # rate_limited: the retry-after header (None: not sent)
    reset_after: float | None = None  # rate_limited: x-ratelimit-reset-* (None: retry_after, else 6m0s)
    failures: int = 0
    answered: int = 0  # chat calls answered with status 200
    calls: Counter[str] = field(default_factory=Counter)

    def strikes(self, endpoint: str) -> bool:
        """Whether this call answers with the behaviour; counts it if so (`invalid` strikes everywhere)."""
        if self.behaviour is None or (endpoint != "chat" and self.behaviour != "invalid"):
            return False
        if self.fail_times is not None and self.failures >= self.fail_times:
            return False
        self.failures += 1
        return True


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str  # relative to the origin, e.g. "/v1/chat/completions"
    query: str
    headers: CIMultiDict[str]
    raw: bytes
    json: Any  # parsed JSON body, or None
    endpoint: str | None  # a name from ENDPOINTS, None for unknown paths
    key: str | None = None  # the Bearer token, if any
    status: int = 0  # the status answered (set once known)
