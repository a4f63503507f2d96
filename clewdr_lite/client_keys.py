"""Client keys (gateway.md §9): `[[client_keys]]` as values, admission checks, rate buckets,
budget periods, and the price table and cost formula of §10.

Pure: `now` (epoch seconds) and random bytes come in as arguments. Keys are stored as the
SHA-256 hex of the whole `sk-clewdr-…` key; lookup compares digests with hmac.compare_digest.
Admission runs §9.3's checks in order: disabled (401), expired (401), model (403), provider (403),
budget (403, never 429: SDKs and SillyTavern retry 429s), rpm (429), tpm (429), max_parallel (429).
Buckets and parallel counts live in memory only (§9.4): a restart refills them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Callable

from clewdr_lite.errors import AuthError, PermissionDenied, RateLimited

PREFIX = "sk-clewdr-"
DISPLAY_CHARS = 14                       # key_prefix: "sk-clewdr-" + 4
MIN_RANDOM_BYTES = 16
PERIODS = ("daily", "weekly", "monthly", "total")
DEFAULT_PERIOD = "total"                 # a budget without a period never silently refills
HEX64 = re.compile(r"[0-9a-f]{64}")
ID_RE = re.compile(r"[A-Za-z0-9_-]+")
STRING_FIELDS = ("name", "key_prefix", "group", "device", "note")
LIMIT_FIELDS = ("rpm", "tpm", "max_parallel")
TIME_FIELDS = ("created_at", "expires_at", "budget_reset_at")
KNOWN_FIELDS = frozenset({"id", "key", "key_hash", "disabled", "enabled", "models", "providers",
                          "budget_usd", "budget", "budget_period", "period",
                          *STRING_FIELDS, *LIMIT_FIELDS, *TIME_FIELDS})


def hash_key(plaintext: str) -> str:
    """SHA-256 hex of the whole key, as stored in `key_hash`."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ClientKey:
    """One `[[client_keys]]` entry (§9.2), never holding the plain key."""

    id: str
    key_hash: str
    name: str = ""
    key_prefix: str = ""
    created_at: float | None = None
    expires_at: float | None = None
    disabled: bool = False
    models: tuple[str, ...] = ()         # globs, case-insensitive; empty = all
    providers: tuple[str, ...] = ()      # empty = all
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: str = DEFAULT_PERIOD
    budget_reset_at: float | None = None  # a manual reset: the period starts no earlier
    group: str = ""
    device: str = ""
    note: str = ""

    def allows_model(self, model: str, resolved: str | None = None) -> bool:
        """Any glob matches the model as sent or the resolved `provider/model`."""
        names = [n.lower() for n in (model, resolved) if isinstance(n, str) and n]
        return not self.models or any(fnmatchcase(n, g.lower()) for g in self.models for n in names)

    def allows_provider(self, provider: str | None) -> bool:
        """The provider is on the list (or there is no list, or it is not known yet)."""
        allowed = {p.lower() for p in self.providers}
        return not allowed or provider is None or provider.lower() in allowed


def _positive_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else None


def _strings(value) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


# field → (check returning the value or None, what was expected)
FIELD_CHECKS = (
    *((f, lambda v: v if isinstance(v, str) else None, "a string") for f in STRING_FIELDS),
    *((f, _positive_int, "a positive integer") for f in LIMIT_FIELDS),
    *((f, _number, "epoch seconds") for f in TIME_FIELDS),
    ("models", _strings, "an array of globs"), ("providers", _strings, "an array of names"),
    ("budget_usd", _number, "a number ≥ 0"),
    ("budget_period", lambda v: v if v in PERIODS else None, "|".join(PERIODS)),
)


def _digest(entry: Mapping) -> str | None:
    """The stored digest: `key_hash`, or `key` as a digest or as the plain key (hashed here)."""
    for value in (entry.get("key_hash"), entry.get("key")):
        if isinstance(value, str) and HEX64.fullmatch(value.lower()):
            return value.lower()
    key = entry.get("key")
    return hash_key(key) if isinstance(key, str) and key.startswith(PREFIX) else None


def parse_key(entry, where: str, warn: Callable[[str], None]) -> ClientKey | None:
    """One table → ClientKey; a bad field is reported and left out, a bad entry skipped."""
    digest = _digest(entry) if isinstance(entry, Mapping) else None
    if digest is None:
        warn(f"{where}: needs key_hash (SHA-256 hex) or an sk-clewdr- key; skipped")
        return None
    ident = entry.get("id", digest[:8])
    if not isinstance(ident, str) or not ID_RE.fullmatch(ident):
        warn(f"{where}: id {ident!r} is not [A-Za-z0-9_-]+; skipped")
        return None
    values: dict = {"id": ident, "key_hash": digest}
    raw = {**entry, "budget_usd": entry.get("budget_usd", entry.get("budget")),
           "budget_period": entry.get("budget_period", entry.get("period"))}
    for name, check, expected in FIELD_CHECKS:
        if raw.get(name) is not None:
            value = check(raw[name])
            if value is None:
                warn(f"{where}.{name}: expected {expected}; ignored")
            else:
                values[name] = value
    values["disabled"] = entry.get("disabled") is True or entry.get("enabled") is False
    if "key_prefix" not in values and isinstance(entry.get("key"), str) and entry["key"].startswith(PREFIX):
        values["key_prefix"] = entry["key"][:DISPLAY_CHARS]
    for name in sorted(set(entry) - KNOWN_FIELDS):
        warn(f"{where}.{name}: unknown field ignored")
    return ClientKey(**values)


def new_key(random_bytes: bytes, *, now: float, **fields) -> tuple[str, dict]:
    """A fresh key from ≥ 16 random bytes (32 give §9.1's 43 characters): (plaintext, table)."""
    if len(random_bytes) < MIN_RANDOM_BYTES:
        raise ValueError(f"need at least {MIN_RANDOM_BYTES} random bytes")
    plaintext = PREFIX + base64.urlsafe_b64encode(random_bytes).decode("ascii").rstrip("=")
    digest = hash_key(plaintext)
    table = {"id": digest[:8], "name": "", "key_hash": digest,
             "key_prefix": plaintext[:DISPLAY_CHARS], "created_at": int(now), "disabled": False}
    table.update(fields)
    return plaintext, table


# ── token buckets (§9.4) ────────────────────────────────────────────────────────────────────


class TokenBucket:
    """Capacity `rate_per_min`, refilled at rate/60 per second; starts full at `now`."""

    def __init__(self, rate_per_min: float, now: float) -> None:
        self.capacity = float(rate_per_min)
        self.per_s = rate_per_min / 60.0
        self.level = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)  # a clock that steps back refills nothing
        self.level = min(self.capacity, self.level + elapsed * self.per_s)
        self.updated = max(self.updated, now)

    def wait(self, n: float, now: float, *, debt: bool = False) -> float:
        """Seconds until take(n) would succeed; 0 when it would now (nothing is taken).

        `debt`: §9.4's tpm rule, any positive level admits and the bucket may go negative.
        Otherwise n tokens are needed (at most the capacity, so a big n is not refused forever).
        """
        self._refill(now)
        if debt:
            return 0.0 if self.level > 0 else (1.0 - self.level) / self.per_s
        need = min(n, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.per_s

    def take(self, n: float, now: float, *, debt: bool = False) -> float:
        """Take n tokens and return 0, or take nothing and return the seconds to wait."""
        wait = self.wait(n, now, debt=debt)
        if wait == 0.0:
            self.level -= n
        return wait

    def charge(self, n: float, now: float) -> None:
        """Debit n unconditionally (negative n refunds, up to the capacity)."""
        self._refill(now)
        self.level = min(self.capacity, self.level - n)


# ── budget periods (§9.5) ───────────────────────────────────────────────────────────────────


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, timezone.utc)


def _calendar_start(period: str, now: float) -> datetime | None:
    day = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = {"daily": day, "weekly": day - timedelta(days=day.weekday()),
              "monthly": day.replace(day=1), "total": None}
    if period not in starts:
        raise ValueError(f"unknown budget period {period!r}")
    return starts[period]


def period_start(period: str, now: float, anchor: float | None = None) -> float:
    """Start of the current period: 00:00 UTC, Monday 00:00 UTC, the 1st, or 0 for `total`.

    `anchor` (a manual budget reset) moves the start later when it lies inside the period.
    """
    start = _calendar_start(period, now)
    value = start.timestamp() if start else 0.0
    return max(value, anchor) if anchor is not None and anchor <= now else value


def period_end(period: str, now: float) -> float | None:
    """When the current period's spend resets; None for `total`."""
    start = _calendar_start(period, now)
    if start is None:
        return None
    if period == "monthly":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month).timestamp()
    return (start + timedelta(days=1 if period == "daily" else 7)).timestamp()


def _iso(epoch: float) -> str:
    return _utc(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


# ── the key registry and admission (§9.3) ───────────────────────────────────────────────────


class ClientKeys:
    """Every client key, with its in-memory rpm/tpm buckets and parallel count."""

    def __init__(self, keys: tuple[ClientKey, ...] = ()) -> None:
        self.keys = keys
        self.by_id = {k.id: k for k in keys}
        self._buckets: dict[str, tuple] = {}   # id → (rpm, tpm, rpm bucket, tpm bucket)
        self._parallel: dict[str, int] = {}

    @classmethod
    def from_tables(cls, tables, *, warn: Callable[[str], None],
                    previous: ClientKeys | None = None) -> ClientKeys:
        """From Config.tables (or the `[[client_keys]]` list); `previous` hands over live state."""
        entries = tables.get("client_keys") if isinstance(tables, Mapping) else tables
        if entries is not None and not isinstance(entries, (list, tuple)):
            warn("client_keys: expected an array of tables; ignored")
            entries = None
        keys, ids, digests = [], set(), set()
        for index, entry in enumerate(entries or ()):
            key = parse_key(entry, f"client_keys[{index}]", warn)
            if key is not None and (key.id in ids or key.key_hash in digests):
                warn(f"client_keys[{index}]: a second key with id {key.id!r} or its hash; skipped")
            elif key is not None:
                keys.append(key)
                ids.add(key.id)
                digests.add(key.key_hash)
        registry = cls(tuple(keys))
        if previous is not None:
            registry._buckets = {i: b for i, b in previous._buckets.items()
                                 if i in registry.by_id and b[:2] == _limits(registry.by_id[i])}
            registry._parallel = {i: n for i, n in previous._parallel.items() if i in registry.by_id}
        return registry

    def lookup(self, presented: str) -> ClientKey | None:
        """The key whose digest matches (disabled and expired keys too: admit() refuses them)."""
        if not isinstance(presented, str) or not presented:
            return None
        digest = hash_key(presented)
        found = None
        for key in self.keys:  # compare with every key, so the time says nothing about which
            if hmac.compare_digest(digest, key.key_hash):
                found = key
        return found

    def admit(self, key: ClientKey, *, model: str, now: float, estimate_tokens: int, spent: float,
              resolved: str | None = None, provider: str | None = None) -> None:
        """Run §9.3's checks in order; raise the first failure, else take from the buckets.

        `spent` is the key's spend in the current period (`period_start`); `resolved` the routed
        `provider/model`. On success the parallel count goes up: call release() when done.
        """
        _check_key(key, model=model, now=now, spent=spent, resolved=resolved, provider=provider)
        _, _, rpm, tpm = self._bucket(key, now)
        waits = [("requests per minute", rpm, 1, False), ("tokens per minute", tpm, estimate_tokens, True)]
        for what, bucket, n, debt in waits:
            wait = bucket.wait(n, now, debt=debt) if bucket else 0.0
            if wait > 0:
                raise RateLimited(f"rate limit of this key reached ({what})",
                                  retry_after=max(1, math.ceil(wait)))
        if key.max_parallel and self._parallel.get(key.id, 0) >= key.max_parallel:
            raise RateLimited("too many parallel requests for this key", retry_after=1)
        for _, bucket, n, debt in waits:
            if bucket:
                bucket.take(n, now, debt=debt)
        self._parallel[key.id] = self._parallel.get(key.id, 0) + 1

    def release(self, key: ClientKey) -> None:
        """One admitted request of `key` ended."""
        self._parallel[key.id] = max(0, self._parallel.get(key.id, 0) - 1)

    def record_tokens(self, key: ClientKey, tokens: int, now: float, *, estimated: int = 0) -> None:
        """Charge the tpm bucket the actual input + output tokens less what admit() charged."""
        _, _, _, tpm = self._bucket(key, now)
        if tpm is not None:
            tpm.charge(tokens - estimated, now)

    def in_flight(self, key: ClientKey) -> int:
        """Admitted and not yet released requests of `key`."""
        return self._parallel.get(key.id, 0)

    def _bucket(self, key: ClientKey, now: float) -> tuple:
        held = self._buckets.get(key.id)
        if held is None or held[:2] != _limits(key):
            held = (key.rpm, key.tpm, TokenBucket(key.rpm, now) if key.rpm else None,
                    TokenBucket(key.tpm, now) if key.tpm else None)
            self._buckets[key.id] = held
        return held


def _limits(key: ClientKey) -> tuple:
    return key.rpm, key.tpm


def _check_key(key: ClientKey, *, model: str, now: float, spent: float, resolved: str | None,
               provider: str | None) -> None:
    """The checks before the buckets: disabled, expired, model, provider, budget."""
    if key.disabled:
        raise AuthError("this key is disabled")
    if key.expires_at is not None and now >= key.expires_at:
        raise AuthError("key expired")
    if not key.allows_model(model, resolved):
        raise PermissionDenied("model not allowed for this key")
    if not key.allows_provider(provider):
        raise PermissionDenied("provider not allowed for this key")
    if key.budget_usd is not None and spent >= key.budget_usd:
        end = period_end(key.budget_period, now)
        raise PermissionDenied("budget exhausted" + (f" until {_iso(end)}" if end else ""))


# ── prices and cost (§10) ───────────────────────────────────────────────────────────────────

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")  # USD per million tokens
# Bundled list prices. Anthropic cache writes are the 5-minute rate (1.25 × input); Gemini and
# OpenAI bill no cache write beyond the input price. Keys match by glob, else longest prefix.
_PRICE_ROWS = (
    ("claude-opus-4-6", 5.0, 25.0, 0.50, 6.25),
    ("claude-opus-4-5", 5.0, 25.0, 0.50, 6.25),
    ("claude-opus-4", 15.0, 75.0, 1.50, 18.75),
    ("claude-sonnet-4", 3.0, 15.0, 0.30, 3.75),
    ("claude-haiku-4", 1.0, 5.0, 0.10, 1.25),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-5-haiku", 0.80, 4.0, 0.08, 1.0),
    ("claude-3-opus", 15.0, 75.0, 1.50, 18.75),
    ("claude-3-haiku", 0.25, 1.25, 0.03, 0.30),
    ("gemini-3-pro", 2.0, 12.0, 0.20, 2.0),
    ("gemini-2.5-pro", 1.25, 10.0, 0.125, 1.25),
    ("gemini-2.5-flash", 0.30, 2.50, 0.03, 0.30),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.01, 0.10),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025, 0.10),
    ("gemini-2.0-flash-lite", 0.075, 0.30, 0.075, 0.075),
    ("gemini-1.5-pro", 1.25, 5.0, 0.3125, 1.25),
    ("gemini-1.5-flash", 0.075, 0.30, 0.01875, 0.075),
    ("gpt-5", 1.25, 10.0, 0.125, 1.25),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.25),
    ("gpt-5-nano", 0.05, 0.40, 0.005, 0.05),
    ("gpt-4.1", 2.0, 8.0, 0.50, 2.0),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10, 0.40),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025, 0.10),
    ("gpt-4o", 2.50, 10.0, 1.25, 2.50),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.15),
    ("o1", 15.0, 60.0, 7.50, 15.0),
    ("o1-mini", 1.10, 4.40, 0.55, 1.10),
    ("o3", 2.0, 8.0, 0.50, 2.0),
    ("o3-mini", 1.10, 4.40, 0.55, 1.10),
    ("o4-mini", 1.10, 4.40, 0.275, 1.10),
    ("deepseek-chat", 0.28, 0.42, 0.028, 0.28),
    ("deepseek-reasoner", 0.28, 0.42, 0.028, 0.28),
)
PRICES: dict[str, dict] = {row[0]: dict(zip(PRICE_FIELDS, row[1:])) for row in _PRICE_ROWS}
FREE = dict.fromkeys(PRICE_FIELDS, 0.0)
# usage field → price field; the hub's Anthropic names and the short ones
USAGE_FIELDS = {"input_tokens": "input", "output_tokens": "output",
                "cache_read_input_tokens": "cache_read", "cache_creation_input_tokens": "cache_write",
                **{f: f for f in PRICE_FIELDS}}
PREFIX_ENDS = "-@:"  # what may follow a prefix key: a date or variant, Vertex @version, :suffix


def _norm(name: str) -> str:
    """Lower case, dots as dashes (OpenRouter's `claude-sonnet-4.5` = `claude-sonnet-4-5`)."""
    return name.strip().lower().replace(".", "-")


def _find(name: str, table: Mapping) -> dict | None:
    """Glob match (table order), else the longest prefix key followed by - @ : or the end."""
    best, best_len = None, -1
    for key, price in table.items():
        k = _norm(key)
        if any(c in k for c in "*?["):
            if fnmatchcase(name, k):
                return price
        elif name.startswith(k) and (len(name) == len(k) or name[len(k)] in PREFIX_ENDS):
            if len(k) > best_len:
                best, best_len = price, len(k)
    return best


def price_for(model: str, overrides: Mapping | None = None) -> dict | None:
    """USD per million tokens of `model` (overrides first, then PRICES); None when unknown.

    The whole name is tried first, then the part after the last `/` (`anthropic/…`, `models/…`);
    OpenRouter's `:free` variants cost nothing. A price missing cache fields bills them as input.
    """
    if not isinstance(model, str) or not model:
        return None
    name = _norm(model)
    if name.endswith(":free"):
        return dict(FREE)
    candidates = tuple(dict.fromkeys((name, name.rpartition("/")[2])))
    for candidate in candidates:
        price = _find(candidate, overrides) if overrides else None
        if isinstance(price, Mapping):
            return _full_price(price)
        builtin = _builtin_price(candidate)
        if builtin is not None:
            return dict(builtin)
    return None


def _full_price(price: Mapping) -> dict:
    """Every PRICE_FIELDS entry; missing cache fields are billed as input."""
    base = {"input": 0.0, "output": 0.0, **price}
    return {f: float(base.get(f, base["input"]) or 0.0) for f in PRICE_FIELDS}


@lru_cache(maxsize=512)
def _builtin_price(name: str) -> dict | None:
    """PRICES' entry for one normalised name (the table is fixed: looked up once per model)."""
    price = _find(name, PRICES)
    return _full_price(price) if isinstance(price, Mapping) else None


_PRICES: dict = {}  # (model, id(overrides)) → (overrides, price): cost() runs once per request
_PRICES_MAX = 1024


def _price(model: str, overrides: Mapping | None) -> dict | None:
    """price_for, remembered per model and overrides table (a reload brings a new table)."""
    key = (model, id(overrides))
    hit = _PRICES.get(key)
    if hit is not None and hit[0] is overrides:  # the table is held, so its id is not reused
        return hit[1]
    price = price_for(model, overrides)
    if len(_PRICES) >= _PRICES_MAX:
        _PRICES.clear()
    _PRICES[key] = (overrides, price)
    return price


def cost(model: str, usage: Mapping, overrides: Mapping | None = None) -> float:
    """USD of one request: Σ tokens × price / 10⁶; 0 for an unknown model."""
    price = _price(model, overrides) if isinstance(model, str) else None
    if price is None or not isinstance(usage, Mapping):
        return 0.0
    total = 0.0
    for field, value in usage.items():
        kind = USAGE_FIELDS.get(field)
        if kind and isinstance(value, (int, float)) and not isinstance(value, bool):
            total += value * price[kind]
    return total / 1_000_000
