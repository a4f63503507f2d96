"""Records kept by the fake claude.ai: accounts, conversations, uploads, requests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Union

from multidict import CIMultiDict

from tests.fakes.claude_web_wire import DEFAULT_FAIL_ON

FlagSpec = Union[str, tuple[str, Union[int, float, str]], dict[str, Any]]

DAY = 86400


def rfc3339(epoch: float) -> str:
    """Epoch seconds as an RFC 3339 UTC timestamp."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def wire_flags(flags: tuple[FlagSpec, ...] | list[FlagSpec] | None, now: float) -> list[dict[str, Any]] | None:
    """`active_flags` entries from "type", ("type", epoch or RFC 3339) or ready dicts."""
    if flags is None:
        return None
    out = []
    for flag in flags:
        if isinstance(flag, dict):
            out.append(dict(flag))
            continue
        kind, when = (flag, now + DAY) if isinstance(flag, str) else flag
        out.append({"type": kind, "expires_at": when if isinstance(when, str) else rfc3339(when)})
    return out


def _api_org() -> dict[str, Any]:
    # Real accounts often also belong to an API-only org; listing it first catches a proxy
    # that takes the first org instead of the chat org with the most capabilities (spec §5.2).
    return {"uuid": str(uuid.uuid4()), "name": "API org", "capabilities": ["api"], "active_flags": []}


@dataclass
class Account:
    """One claude.ai account reachable with one session cookie, and how it misbehaves."""

    cookie: str
    email: str
    pro: bool
    capabilities: list[str]
    flags: list[dict[str, Any]] | None  # None: organizations answer without an active_flags key
    behaviour: str | None = None
    fail_on: tuple[str, ...] | None = None  # None: DEFAULT_FAIL_ON[behaviour]
    fail_times: int | None = None  # None: fail every time
    resets_at: int = 0
    reset_in_body: bool = True
    reset_header: bool = False
    paprika_mode: str | None = None  # what create answers in settings.paprika_mode
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    org_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    extra_orgs: list[dict[str, Any]] = field(default_factory=lambda: [_api_org()])
    completions: int = 0  # completion streams served (status 200)
    failures: int = 0  # behaviour answers given
    calls: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def fails(self, endpoint: str) -> bool:
        """Whether this call answers with the behaviour's error; counts it if so."""
        if self.behaviour is None:
            return False
        where = DEFAULT_FAIL_ON[self.behaviour] if self.fail_on is None else self.fail_on
        if endpoint not in where or (self.fail_times is not None and self.failures >= self.fail_times):
            return False
        self.failures += 1
        return True

    def organization(self) -> dict[str, Any]:
        """This account's chat organization as `api/organizations` lists it."""
        org: dict[str, Any] = {"uuid": self.org_uuid, "name": f"{self.email}'s Organization",
                               "capabilities": list(self.capabilities)}
        if self.flags is not None:
            org["active_flags"] = self.flags
        return org

    def bootstrap(self) -> dict[str, Any]:
        """The `api/bootstrap` body."""
        orgs = self.extra_orgs + [self.organization()]
        memberships = [{"organization": {k: o[k] for k in ("uuid", "name", "capabilities")}} for o in orgs]
        return {"account": {"uuid": self.uuid, "email_address": self.email, "memberships": memberships}}


@dataclass
class Conversation:
    """A chat conversation created through the fake."""

    uuid: str
    org: str
    cookie: str
    name: str
    is_temporary: bool
    settings: dict[str, Any]
    deleted: bool = False
    settings_calls: int = 0
    completions: list[dict[str, Any]] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        """The conversation as the create and settings calls answer it."""
        return {"uuid": self.uuid, "name": self.name, "summary": "", "model": None,
                "settings": dict(self.settings), "is_starred": False, "is_temporary": self.is_temporary,
                "project_uuid": None, "current_leaf_message_uuid": None}


@dataclass
class Upload:
    """One uploaded file."""

    file_uuid: str
    org: str
    filename: str | None
    content_type: str | None
    size: int
    data: bytes


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str  # relative to the fake's base URL, e.g. "api/bootstrap"
    query: str
    headers: CIMultiDict[str]
    json: Any  # parsed JSON body, or None
    endpoint: str | None  # route name (ENDPOINTS), None for unknown paths
