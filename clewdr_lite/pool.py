"""Credential pool: selection, states and cool-downs, as plain values (`now` is always a parameter).

A credential is a record dict (its persisted TOML table: `cookie`, `reset_time`, usage buckets, …).
States (claude-web.md §14): valid (in the round-robin queue), exhausted (parked until
`reset_time`), invalid (retired with a reason, kept as `{cookie, reason}`).

API-key providers use `KeyPool` (gateway.md §5): keys that are active, cooling until T, or
disabled with a reason, chosen by priority tier, weight and least recent use.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable

BUCKETS = ("session_usage", "weekly_usage", "weekly_sonnet_usage", "weekly_opus_usage",
           "lifetime_usage")
WINDOW_BUCKETS = BUCKETS[:4]  # zeroed when a cookie is parked or retired
COLUMNS = ("total_input_tokens", "total_output_tokens", "sonnet_input_tokens",
           "sonnet_output_tokens", "opus_input_tokens", "opus_output_tokens")


def model_family(model: str) -> str:
    """`opus`, `sonnet` or `other`, by substring (claude-web.md §16.2)."""
    lower = model.lower()
    return "opus" if "opus" in lower else "sonnet" if "sonnet" in lower else "other"


# per family: the buckets an exchange adds to, and the (input, output) columns it adds to in each
_SHARED = ("session_usage", "weekly_usage", "lifetime_usage")
_TARGETS = {"sonnet": _SHARED + ("weekly_sonnet_usage",), "opus": _SHARED + ("weekly_opus_usage",),
            "other": _SHARED}
_PAIRS = {family: (("total_input_tokens", "total_output_tokens"),)
          + (((f"{family}_input_tokens", f"{family}_output_tokens"),) if family != "other" else ())
          for family in _TARGETS}


def add_usage(record: dict, model: str, input_tokens: int, output_tokens: int) -> None:
    """Add one exchange to the record's buckets (claude-web.md §16.2)."""
    if input_tokens <= 0 and output_tokens <= 0:
        return
    family = model_family(model)
    pairs = _PAIRS[family]
    for name in _TARGETS[family]:
        bucket = record.setdefault(name, {})
        for inp, out in pairs:  # saturating at 0, whatever a hand-edited file held
            was_in, was_out = bucket.get(inp, 0), bucket.get(out, 0)
            if type(was_in) is not int or type(was_out) is not int:  # int() only for what needs it
                was_in, was_out = int(was_in), int(was_out)
            now_in, now_out = was_in + input_tokens, was_out + output_tokens
            bucket[inp] = now_in if now_in > 0 else 0
            bucket[out] = now_out if now_out > 0 else 0


def _zero_windows(record: dict) -> None:
    for name in WINDOW_BUCKETS:
        if name in record:
            record[name] = {column: 0 for column in COLUMNS}


STICKY_MAX = 1000
STICKY_IDLE_S = 3600.0


class StickyMap:
    """Sticky key → cookie: an LRU of at most STICKY_MAX entries, forgotten after an idle hour."""

    def __init__(self) -> None:
        self._map: OrderedDict = OrderedDict()  # key -> (cookie, last used)

    def get(self, key: str, now: float) -> str | None:
        """The remembered cookie, unless the entry idled out."""
        entry = self._map.get(key)
        if entry is None:
            return None
        if now - entry[1] > STICKY_IDLE_S:
            del self._map[key]
            return None
        return entry[0]

    def bind(self, key: str, cookie: str, now: float) -> None:
        """Remember (or refresh) `key` → `cookie`; overflow purges expired entries, then the LRU."""
        self._map[key] = (cookie, now)
        self._map.move_to_end(key)
        if len(self._map) > STICKY_MAX:
            for stale in [k for k, (_, used) in self._map.items() if now - used > STICKY_IDLE_S]:
                del self._map[stale]
            while len(self._map) > STICKY_MAX:
                self._map.popitem(last=False)

    def forget(self, cookie: str) -> None:
        """Drop every key bound to `cookie`."""
        for key in [k for k, (c, _) in self._map.items() if c == cookie]:
            del self._map[key]

    def __getitem__(self, key: str) -> str:
        return self._map[key][0]

    def __len__(self) -> int:
        return len(self._map)

    def __eq__(self, other) -> bool:
        return {k: c for k, (c, _) in self._map.items()} == other


@dataclass
class CookiePool:
    """The cookie pool of claude-web.md §14–15; `version` grows with every durable change."""

    valid: deque = field(default_factory=deque)      # records, round-robin order
    exhausted: list = field(default_factory=list)    # records with `reset_time`
    invalid: list = field(default_factory=list)      # {cookie, reason[, last_error]}
    max_concurrent: int = 0
    version: int = 0
    inflight: dict = field(default_factory=dict)     # cookie -> requests in flight
    sticky: StickyMap = field(default_factory=StickyMap)

    @classmethod
    def from_records(cls, cookies: Iterable[dict], wasted: Iterable[dict], *, now: float,
                     max_concurrent: int = 0) -> "CookiePool":
        """Build from `cookie_array` / `wasted_cookie` records (already parsed and deduplicated)."""
        pool = cls(max_concurrent=max_concurrent)
        seen = set()
        for record in cookies:
            if record["cookie"] in seen:
                continue
            seen.add(record["cookie"])
            (pool.exhausted if record.get("reset_time") else pool.valid).append(copy.deepcopy(record))
        for record in wasted:
            if record["cookie"] not in seen:
                seen.add(record["cookie"])
                pool.invalid.append(copy.deepcopy(record))
        pool.unpark_due(now)
        pool.version = 0
        return pool

    # ----- queries
    def find(self, cookie: str) -> dict | None:
        """The record of `cookie` in any state."""
        for record in self._all():
            if record["cookie"] == cookie:
                return record
        return None

    def _all(self):
        yield from self.valid
        yield from self.exhausted
        yield from self.invalid

    def counts(self) -> tuple[int, int, int]:
        """(valid, exhausted, invalid)."""
        return len(self.valid), len(self.exhausted), len(self.invalid)

    def earliest_reset(self) -> int | None:
        """The soonest `reset_time` among exhausted cookies."""
        return min((int(r["reset_time"]) for r in self.exhausted), default=None)

    def snapshot(self) -> tuple[list[dict], list[dict]]:
        """(`cookie_array`, `wasted_cookie`) as they are saved."""
        return copy.deepcopy([*self.valid, *self.exhausted]), copy.deepcopy(self.invalid)

    # ----- selection
    def unpark_due(self, now: float) -> int:
        """Move exhausted cookies whose reset time has passed back to the end of the queue."""
        due = [r for r in self.exhausted if float(r["reset_time"]) <= now]
        for record in due:
            self.exhausted.remove(record)
            record.pop("reset_time", None)
            _zero_windows(record)
            self.valid.append(record)
        if due:
            self.version += 1
        return len(due)

    def _usable(self, record: dict, exclude, need_code: bool) -> bool:
        if record["cookie"] in exclude:
            return False
        if need_code and record.get("code_allowed") is False:
            return False
        if not need_code and record.get("imported"):  # an imported OAuth login has no web session
            return False
        return not (self.max_concurrent and self.inflight.get(record["cookie"], 0) >= self.max_concurrent)

    def pick(self, now: float, *, exclude: Iterable[str] = (), need_code: bool = False,
             sticky_key: str | None = None, sticky_keys: Iterable[str] = ()) -> dict | None:
        """Choose a cookie for one attempt (claude-web.md §15.1, claude-code.md §9), or None."""
        self.unpark_due(now)
        exclude = set(exclude)
        keys = [*sticky_keys, *([sticky_key] if sticky_key is not None else [])]
        chosen = None
        for key in keys:  # the first key that maps to a usable cookie wins
            cookie = self.sticky.get(key, now)
            record = next((r for r in self.valid if r["cookie"] == cookie), None) if cookie else None
            if record is not None and self._usable(record, exclude, need_code):
                chosen = record
                break
        if chosen is None:
            chosen = self._rotate(exclude, need_code)
        if chosen is not None:
            for key in keys:
                self.sticky.bind(key, chosen["cookie"], now)
        return chosen

    def _rotate(self, exclude: set, need_code: bool) -> dict | None:
        for _ in range(len(self.valid)):
            record = self.valid.popleft()
            self.valid.append(record)
            if self._usable(record, exclude, need_code):
                return record
        return None

    def acquire(self, cookie: str) -> None:
        """Count one more request in flight on `cookie`."""
        self.inflight[cookie] = self.inflight.get(cookie, 0) + 1

    def release(self, cookie: str) -> None:
        """Count one request less in flight on `cookie`."""
        left = self.inflight.get(cookie, 0) - 1
        if left > 0:
            self.inflight[cookie] = left
        else:
            self.inflight.pop(cookie, None)

    # ----- state changes
    def _take(self, cookie: str, collections=None) -> dict | None:
        for collection in collections or (self.valid, self.exhausted, self.invalid):
            for record in collection:
                if record["cookie"] == cookie:
                    collection.remove(record)
                    return record
        return None

    def park(self, cookie: str, until: int, *, error: str | None = None) -> bool:
        """Exhausted until `until` (epoch s): 429 or a restriction flag. An invalid cookie stays invalid."""
        record = self._take(cookie, (self.valid, self.exhausted))
        if record is None:
            return False
        record.pop("reason", None)
        record["reset_time"] = int(until)
        if error:
            record["last_error"] = error[:200]
        _zero_windows(record)
        self.exhausted.append(record)
        self.version += 1
        return True

    def retire(self, cookie: str, reason: Any, *, error: str | None = None) -> bool:
        """Invalid with `reason` (TOML form: "Banned", "Null", {"Restricted": ts} …)."""
        record = self._take(cookie)
        if record is None:
            return False
        retired = {"cookie": cookie, "reason": reason}
        if error:
            retired["last_error"] = error[:200]
        self.invalid.append(retired)
        self.version += 1
        return True

    def update(self, cookie: str, **fields: Any) -> None:
        """Change fields of a record (token, flags, last_error); None removes a field."""
        record = self.find(cookie)
        if record is None:
            return
        for key, value in fields.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
        self.version += 1

    def record_usage(self, cookie: str, model: str, input_tokens: int, output_tokens: int) -> None:
        """Add one finished exchange to the cookie's usage buckets."""
        record = self.find(cookie)
        if record is not None and (input_tokens > 0 or output_tokens > 0):
            add_usage(record, model, input_tokens, output_tokens)
            self.version += 1

    def add(self, cookie: str | dict) -> bool:
        """Add a new valid cookie (or a whole record); False when it already exists in any state."""
        record = {"cookie": cookie} if isinstance(cookie, str) else copy.deepcopy(cookie)
        if self.find(record["cookie"]) is not None:
            return False
        self.valid.append(record)
        self.version += 1
        return True

    def remove(self, cookie: str) -> bool:
        """Delete a cookie from every state."""
        if self._take(cookie) is None:
            return False
        self.sticky.forget(cookie)
        self.version += 1
        return True


def backoff_delay(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Full-jitter exponential backoff before retry `attempt` (1, 2, …): rand × min(cap, base·2ⁿ⁻¹)."""
    return rand * min(cap, base * (2 ** (attempt - 1)))


class Backoff:
    """Delays before transient retries, inside the request's time budget (gateway.md §7.3)."""

    def __init__(self, retry: dict | None, started: float) -> None:
        retry = retry if isinstance(retry, dict) else {}
        self.base = float(retry.get("base_delay", 0.5))
        self.cap = float(retry.get("max_delay", 8))
        self.budget = float(retry.get("budget_s", 30))
        self.started = started
        self.count = 0

    def next_delay(self, now: float, rand: float) -> float | None:
        """The next delay, or None when it would end past the budget."""
        self.count += 1
        delay = backoff_delay(self.count, base=self.base, cap=self.cap, rand=rand)
        return None if now + delay - self.started > self.budget else delay


# ── API-key pools (gateway.md §5) ───────────────────────────────────────────────────────────

ACTIVE, COOLING, DISABLED = "active", "cooling", "disabled"
# Fields a key table may carry that the pool itself reads and writes back (gemini.md §4.1 names)
_KEY_FIELDS = frozenset({"key", "priority", "weight", "enabled", "disabled_reason",
                         "cooldown_until", "cooldown_reason"})


def weighted_choice(weights: list, rand: float) -> int:
    """Index picked by cumulative weight for `rand` in [0, 1); with no positive weight, index 0."""
    total = sum(weights)
    if total <= 0:
        return 0
    point = min(max(rand, 0.0), 1.0) * total
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight
        if point < running:
            return index
    return max(i for i, w in enumerate(weights) if w > 0)  # rand ≈ 1 and float rounding


@dataclass
class KeyEntry:
    """One API key: its selection settings, its state, and the table fields it was read with."""

    key: str
    priority: int = 0
    weight: float = 1
    state: str = ACTIVE
    until: float | None = None       # cooling: back at this epoch second
    reason: str | None = None        # cooling or disabled: why
    last_used: float | None = None   # not durable
    extra: dict = field(default_factory=dict)  # other table fields (count_403, last_error …), kept
    plain: bool = False              # written in the file as a bare string

    def __repr__(self) -> str:  # never print a whole secret into a log
        return f"KeyEntry(…{self.key[-4:]}, {self.state}, priority={self.priority}, weight={self.weight})"

    def view(self) -> dict:
        """The admin view of this entry: a plain dict."""
        return {**self.extra, "key": self.key, "state": self.state, "priority": self.priority,
                "weight": self.weight, "until": self.until, "reason": self.reason,
                "last_used": self.last_used}

    def record(self):
        """The entry as it is saved: a bare string when it has nothing else to say."""
        out = {"key": self.key, **self.extra}
        if self.priority != 0:
            out["priority"] = self.priority
        if self.weight != 1:
            out["weight"] = self.weight
        if self.state == DISABLED:
            out.update(enabled=False, disabled_reason=self.reason)
        elif self.state == COOLING:
            out.update(cooldown_until=math.ceil(self.until), cooldown_reason=self.reason)
        return self.key if self.plain and len(out) == 1 else out


def key_entry(item) -> KeyEntry | None:
    """A KeyEntry from a `keys` item (a string or a table); None when it holds no usable key."""
    if isinstance(item, str):
        return KeyEntry(item.strip(), plain=True) if item.strip() else None
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"].strip():
        return None
    entry = KeyEntry(item["key"].strip(), extra={k: copy.deepcopy(v) for k, v in item.items()
                                                 if k not in _KEY_FIELDS})
    priority, weight = item.get("priority", 0), item.get("weight", 1)
    if isinstance(priority, int) and not isinstance(priority, bool):
        entry.priority = priority
    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0:
        entry.weight = weight
    # `enabled`, when present, decides, so flipping it to true by hand re-enables a key
    disabled = item["enabled"] is False if "enabled" in item else bool(item.get("disabled_reason"))
    until = item.get("cooldown_until")
    if disabled:
        entry.state, entry.reason = DISABLED, str(item.get("disabled_reason") or "manual")
    elif isinstance(until, (int, float)) and not isinstance(until, bool) and until > 0:
        entry.state, entry.until = COOLING, float(until)
        entry.reason = str(item.get("cooldown_reason") or "rate_limited")
    return entry


@dataclass
class KeyPool:
    """The keys of one API-key provider (gateway.md §5); `version` grows with every durable change."""

    _entries: list = field(default_factory=list, repr=False)  # KeyEntry, config order
    version: int = 0

    @classmethod
    def from_keys(cls, keys: Iterable) -> "KeyPool":
        """Build from a provider's `keys` (strings or tables); bad items and duplicates are skipped."""
        pool = cls()
        for item in keys:
            entry = key_entry(item)
            if entry is not None and pool.find(entry.key) is None:
                pool._entries.append(entry)
        return pool

    # ----- queries
    def find(self, key: str) -> KeyEntry | None:
        """The entry of `key` (exact match)."""
        for entry in self._entries:
            if entry.key == key:
                return entry
        return None

    def entries(self) -> list[dict]:
        """Every entry as a plain dict, in config order (admin view)."""
        return [entry.view() for entry in self._entries]

    def records(self) -> list:
        """The provider's `keys` as they are saved (strings stay strings while they can)."""
        return [entry.record() for entry in self._entries]

    def counts(self, now: float | None = None) -> tuple[int, int, int]:
        """(active, cooling, disabled); with `now`, expired cool-downs are lifted first."""
        if now is not None:
            self.refresh(now)
        states = [e.state for e in self._entries]
        return states.count(ACTIVE), states.count(COOLING), states.count(DISABLED)

    def earliest_cooldown(self) -> float | None:
        """The soonest end of a cool-down, or None when nothing is cooling."""
        return min((e.until for e in self._entries if e.state == COOLING), default=None)

    # ----- selection
    def refresh(self, now: float) -> int:
        """Make cooling keys whose time has come active again; how many were lifted."""
        due = [e for e in self._entries if e.state == COOLING and e.until <= now]
        for entry in due:
            entry.state, entry.until, entry.reason = ACTIVE, None, None
        if due:
            self.version += 1
        return len(due)

    def pick(self, now: float, *, exclude: Iterable[str] = (), rand: float) -> KeyEntry | None:
        """Choose a key for one attempt (gateway.md §5.2 steps 2–5), or None.

        Weight-0 keys are a reserve for the whole pool: they are considered only when no
        positive-weight key is usable, whatever its tier. Inside the lowest usable tier the
        candidates are laid out least recently used first (then config order) before the weighted
        draw, so the draw keeps each key's share while `rand` = 0, and an all-zero tier, take the
        least recently used key. The caller reports the attempt with mark_used().
        """
        self.refresh(now)
        excluded = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        usable = [e for e in self._entries if e.state == ACTIVE and e.key not in excluded]
        if len(usable) < 2:  # one key (the common case) or none: nothing to draw between
            return usable[0] if usable else None
        usable = [e for e in usable if e.weight > 0] or usable
        tier = min(e.priority for e in usable)
        candidates = sorted((e for e in usable if e.priority == tier), key=_recency)
        return candidates[weighted_choice([e.weight for e in candidates], rand)]

    def mark_used(self, key: str, now: float) -> None:
        """Record that `key` was just used (least-recently-used tie-break; not durable)."""
        entry = self.find(key)
        if entry is not None:
            entry.last_used = now

    # ----- state changes
    def cool(self, key: str, until: float, reason: str) -> bool:
        """Cooling until `until` (epoch s); a disabled key stays disabled."""
        entry = self.find(key)
        if entry is None or entry.state == DISABLED:
            return False
        entry.state, entry.until, entry.reason = COOLING, float(until), reason
        self.version += 1
        return True

    def disable(self, key: str, reason: str) -> bool:
        """Disabled with `reason` until enabled again by hand."""
        entry = self.find(key)
        if entry is None:
            return False
        entry.state, entry.until, entry.reason = DISABLED, None, reason
        self.version += 1
        return True

    def enable(self, key: str) -> bool:
        """Active again, whatever the state was."""
        entry = self.find(key)
        if entry is None:
            return False
        if entry.state != ACTIVE:
            entry.state, entry.until, entry.reason = ACTIVE, None, None
            self.version += 1
        return True

    def add(self, item) -> bool:
        """Add a key (a string or a table); False when it is unusable or already present."""
        entry = key_entry(item)
        if entry is None or self.find(entry.key) is not None:
            return False
        self._entries.append(entry)
        self.version += 1
        return True

    def remove(self, key: str) -> bool:
        """Delete a key."""
        entry = self.find(key)
        if entry is None:
            return False
        self._entries.remove(entry)
        self.version += 1
        return True


def _recency(entry: KeyEntry) -> float:
    return float("-inf") if entry.last_used is None else entry.last_used
