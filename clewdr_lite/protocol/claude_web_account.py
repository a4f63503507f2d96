"""claude.ai accounts: cookie parsing and masking, bootstrap and flag checks, cookie reasons.

claude-web.md §4 (cookie format), §5 (bootstrap, organizations, flags) and §14 (reasons).

A cookie reason is a `Reason(name, until)`: `name` is one of `REASON_NAMES`; `until` is the epoch
second a `Restricted` or `TooManyRequest` reason lasts to, None for the others. It is a plain
hashable tuple, so the pool can store, compare and log it; in TOML and JSON it is externally
tagged as ClewdR writes it: `"Banned"` or `{"Restricted": 1760000000}`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

from ..errors import UpstreamError

# §4 step 2: the full cookie anywhere in the cleaned input; step 3: a bare value, whole
_FULL_COOKIE = re.compile(r"sk-ant-sid\d{2}-[0-9A-Za-z_-]{86,120}-[0-9A-Za-z_-]{6}AA")
_BARE_COOKIE = re.compile(r"[0-9A-Za-z_-]{86,120}-[0-9A-Za-z_-]{6}AA")
_NOT_COOKIE_CHARS = re.compile(r"[^0-9A-Za-z_-]")
BARE_PREFIX = "sk-ant-sid01-"
# §5.1: a capability naming any paid plan makes the account "pro"
_PRO_MARKERS = ("pro", "enterprise", "raven", "max")


def parse_cookie(text: str) -> str:
    """Any accepted cookie input form → the stored cookie; ValueError("Invalid cookie format")."""
    cleaned = _NOT_COOKIE_CHARS.sub("", str(text).strip())
    found = _FULL_COOKIE.search(cleaned)
    if found:
        return found.group(0)
    if _BARE_COOKIE.fullmatch(cleaned):
        # clewdr-lite stores bare values with the prefix the browser cookie always carries
        return BARE_PREFIX + cleaned
    raise ValueError("Invalid cookie format")


def mask_log(cookie: str) -> str:
    """Cookie as written to logs: the first 20 characters and `...`."""
    return cookie[:20] + "..."


def mask_ui(cookie: str) -> str:
    """Cookie as the admin UI lists it: the first and last 6 characters."""
    return cookie if len(cookie) <= 12 else f"{cookie[:6]}...{cookie[-6:]}"


class Reason(NamedTuple):
    """Why a cookie is skipped, parked or retired (claude-web.md §14)."""

    name: str
    until: int | None = None


NORMAL_PRO, FREE, DISABLED = Reason("NormalPro"), Reason("Free"), Reason("Disabled")
BANNED, NULL = Reason("Banned"), Reason("Null")
TIMED = ("Restricted", "TooManyRequest")
# name → what the pool does with the cookie
REASON_EFFECT = {
    "NormalPro": "skip", "Free": "invalid", "Disabled": "invalid", "Banned": "invalid",
    "Null": "invalid", "Restricted": "exhausted", "TooManyRequest": "exhausted",
}
REASON_NAMES = tuple(REASON_EFFECT)
# older ClewdR spelled `Free` as `NonPro`; current ClewdR cannot load it, clewdr-lite can
_ALIASES = {"NonPro": "Free"}
_TEXTS = {
    "NormalPro": "Normal Pro account", "Free": "Free account", "Disabled": "Organization Disabled",
    "Banned": "Banned", "Null": "Null", "Restricted": "Restricted/Warning: until {}",
    "TooManyRequest": "429 Too many request: until {}",
}


def restricted(until: int) -> Reason:
    """`Restricted(ts)`: parked until the flag expires."""
    return Reason("Restricted", int(until))


def too_many_requests(until: int) -> Reason:
    """`TooManyRequest(ts)`: parked until the rate limit resets."""
    return Reason("TooManyRequest", int(until))


def reason_parts(reason: Reason) -> tuple[str, int | None]:
    """(name, until) of a reason; `until` is None except for Restricted and TooManyRequest."""
    return reason.name, reason.until


def reason_to_toml(reason: Reason):
    """Externally tagged form: `"Banned"` or `{"Restricted": ts}`."""
    if reason.name in TIMED:
        return {reason.name: int(reason.until or 0)}
    return reason.name


def reason_from_toml(value) -> Reason:
    """Read a stored reason (TOML or JSON value); `NonPro` reads as `Free`; ValueError otherwise."""
    if isinstance(value, str):
        name = _ALIASES.get(value, value)
        if name in REASON_EFFECT and name not in TIMED:
            return Reason(name)
    elif isinstance(value, dict) and len(value) == 1:
        ((name, ts),) = value.items()
        if name in TIMED and isinstance(ts, (int, float)) and not isinstance(ts, bool):
            return Reason(name, int(ts))
    raise ValueError(f"unknown cookie reason: {value!r}")


def format_utc(ts: float) -> str:
    """`UTC YYYY-MM-DD HH:MM:SS`, as ClewdR prints reset times."""
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("UTC %Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "Invalid date"


def reason_text(reason: Reason) -> str:
    """Display text of a reason (ClewdR's wording, §14)."""
    text = _TEXTS.get(reason.name, reason.name)
    return text.format(format_utc(reason.until or 0)) if reason.name in TIMED else text


class Bootstrap(NamedTuple):
    """What `GET /api/bootstrap` says about a cookie (§5.1)."""

    pro: bool
    reason: Reason | None
    email: str
    capabilities: list[str]


def _capabilities(org) -> list[str]:
    caps = org.get("capabilities") if isinstance(org, dict) else None
    return [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else []


def is_pro(capabilities: list[str]) -> bool:
    """Pro = any capability mentioning pro, enterprise, raven or max."""
    return any(m in c.lower() for c in capabilities for m in _PRO_MARKERS)


def read_bootstrap(data, *, skip_non_pro: bool) -> Bootstrap:
    """Judge a bootstrap answer; raises UpstreamError(500) when no membership can chat."""
    account = data.get("account") if isinstance(data, dict) else None
    if not isinstance(account, dict):
        return Bootstrap(False, NULL, "", [])
    memberships = account.get("memberships")
    orgs = [m.get("organization") for m in memberships if isinstance(m, dict)] \
        if isinstance(memberships, list) else []
    org = next((o for o in orgs if "chat" in _capabilities(o)), None)
    if org is None:
        # not the cookie's fault as far as ClewdR can tell: an error, not a reason
        raise UpstreamError("claude.ai bootstrap: no organization with the chat capability",
                            status=500)
    caps = _capabilities(org)
    pro = is_pro(caps)
    email = account.get("email_address")
    reason = FREE if (not pro and skip_non_pro) else None
    return Bootstrap(pro, reason, email if isinstance(email, str) else "", caps)


def choose_org(orgs) -> dict | None:
    """Among organizations that can chat, the one with the most capabilities (§5.2)."""
    best, most = None, -1
    for org in orgs if isinstance(orgs, list) else []:
        caps = _capabilities(org)
        # `>=`: on a tie the last one wins, as Rust's max_by_key does in ClewdR
        if "chat" in caps and len(caps) >= most:
            best, most = org, len(caps)
    return best


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?"
                      r"(Z|z|[+-]\d{2}:?\d{2})?$")


def parse_rfc3339(text) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (any fraction length, `Z`); None if unreadable."""
    found = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if not found:
        return None
    date, clock, frac, zone = found.groups()
    if zone in (None, "Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    # Python 3.10's fromisoformat takes neither `Z` nor fractions other than 3 or 6 digits
    frac = "." + (frac + "000000")[:6] if frac else ""
    try:
        return datetime.fromisoformat(f"{date}T{clock}{frac}{zone}").timestamp()
    except ValueError:
        return None


def active_flags(org, *, now: float) -> list[tuple[str, float | None]]:
    """(type, expiry) of the organization's flags that have not expired (expiry None: unknown)."""
    flags = org.get("active_flags") if isinstance(org, dict) else None
    out = []
    for flag in flags if isinstance(flags, list) else []:
        kind = flag.get("type") if isinstance(flag, dict) else None
        if not isinstance(kind, str):
            continue
        expires = parse_rfc3339(flag.get("expires_at"))
        if expires is None or expires >= now:
            out.append((kind, expires))
    return out


def _latest(flags: list[tuple[str, float | None]], word: str) -> float | None:
    times = [t for kind, t in flags if word in kind and t is not None]
    return max(times) if times else None


def check_flags(org, *, now: float, skip_restricted: bool, skip_second_warning: bool,
                skip_first_warning: bool, skip_normal_pro: bool) -> Reason | None:
    """The §5.3 verdict on an organization's flags: None (usable) or the reason to skip it."""
    if not isinstance(org, dict) or not isinstance(org.get("active_flags"), list):
        return None
    flags = active_flags(org, now=now)
    # a ban without a readable expiry still counts; the others need a time to park the cookie
    if any("banned" in kind for kind, _ in flags):
        return BANNED
    # ClewdR's ladder: the most severe flag present decides, even when its skip option is off
    ladder = (("restricted", skip_restricted), ("second_warning", skip_second_warning),
              ("first_warning", skip_first_warning))
    for word, skip in ladder:
        until = _latest(flags, word)
        if until is not None:
            return restricted(int(until)) if skip else None
    return NORMAL_PRO if skip_normal_pro else None
