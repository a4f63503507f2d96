"""Circuit breakers (gateway.md §6): one per (provider, credential), and a derived one per provider.

Pure: `now` is a parameter of every call. States:

    closed ── 5 failures in a row, or ≥ 50 % failures among ≥ 10 outcomes in 60 s ──► open
    open ── the open period ends ──► half_open
    half_open ── allow() lets exactly ONE probe through; others are refused while it is in flight
        probe ok ──► closed (window cleared, open period back to open_s)
        probe failed ──► open again, for twice the last period (at most max_open_s)

The caller decides what a failure is (§6: connection errors, timeouts, 5xx, 529, in-stream
overloaded/api errors) and records everything else (4xx, 401/403/429) as ok: the upstream answered.
A probe that never reports (a cancelled task) is given up after `probe_timeout_s`, or handed back
at once with `release()`.

The ratio rule's window is kept as BUCKETS time buckets of counts (window_s / 60: one second by
default), not one entry per outcome: memory stays the same at 5 or 5,000 requests a second, and an
outcome leaves the window between window_s − one bucket and window_s after it was recorded.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
PROBE_WAIT = 1.0  # retry_in while someone else's probe is in flight: a hint, not a promise
BUCKETS = 60  # the ratio rule's window in this many buckets of counts


@dataclass(frozen=True)
class BreakerSettings:
    """`[breaker]`: thresholds and open periods (gateway.md §6)."""

    failures: int = 5           # consecutive failures that open
    window_s: float = 60.0      # the ratio rule's window
    min_requests: int = 10      # outcomes in the window before the ratio rule applies
    ratio: float = 0.5          # failure share that opens
    open_s: float = 30.0        # first open period
    max_open_s: float = 300.0   # cap of the doubling
    probe_timeout_s: float = 300.0  # a half-open probe that never reports is given up

    @classmethod
    def from_table(cls, table: Mapping | None, *, warn: Callable[[str], None]) -> BreakerSettings:
        """Settings from `[breaker]`; a bad value is reported and its default kept."""
        values = {}
        for f in fields(cls):
            value = (table or {}).get(f.name, f.default)
            kind = int if f.type in ("int", int) else float
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            ok = ok and (kind is float or value == int(value)) and (f.name != "ratio" or value <= 1)
            if not ok:
                warn(f"breaker.{f.name}: expected a positive {kind.__name__}"
                     f"{' ≤ 1' if f.name == 'ratio' else ''}; {f.default} used")
                value = f.default
            values[f.name] = kind(value)
        unknown = sorted(set(table or {}) - {f.name for f in fields(cls)})
        for name in unknown:
            warn(f"breaker.{name}: unknown key ignored")
        return cls(**values)


class Breaker:
    """One credential's breaker: closed, open (until T) or half-open with a single probe."""

    def __init__(self, settings: BreakerSettings | None = None, **overrides) -> None:
        base = settings or BreakerSettings()
        self.settings = BreakerSettings(**{**base.__dict__, **overrides})
        self._buckets: deque = deque()    # [bucket number, outcomes, failures] inside the window
        self._width = 0.0                 # seconds per bucket the buckets were counted with
        self._counted_with: BreakerSettings | None = None  # the settings that width came from
        self._bucket_end = -math.inf      # when the newest bucket ends
        self._total = self._failed = 0    # sums over the buckets
        self._streak = 0                  # consecutive failures while closed
        self._open_until: float | None = None
        self._period = 0.0                # the last open period; 0 once a probe succeeded
        self._probe_at: float | None = None

    def state(self, now: float) -> str:
        """closed, open or half_open at `now`."""
        if self._open_until is None:
            return CLOSED
        return OPEN if now < self._open_until else HALF_OPEN

    def allow(self, now: float) -> bool:
        """May a request go now? In half-open, True once: the caller's request is the probe."""
        if self._open_until is None:  # closed: the hot path, two calls per request
            return True
        if now < self._open_until:
            return False
        stale = self._probe_at is not None and now - self._probe_at >= self.settings.probe_timeout_s
        if self._probe_at is None or stale:
            self._probe_at = now
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        """Report one outcome of a request this breaker allowed."""
        if self._open_until is not None:
            if now < self._open_until:
                return  # open: a late answer of a request sent before opening says nothing new
            if self._probe_at is not None:  # half-open: the probe's outcome
                self._close() if ok else self._open(now)
            return
        self._count(ok, now)
        self._streak = 0 if ok else self._streak + 1
        if not ok and self._should_open():
            self._open(now)

    def release(self) -> None:
        """Hand back an in-flight probe that ended without an outcome (client went away)."""
        self._probe_at = None

    def retry_in(self, now: float) -> float:
        """Seconds until allow() may say yes: 0 when it would now."""
        state = self.state(now)
        if state == OPEN:
            return self._open_until - now
        if state == HALF_OPEN and self._probe_at is not None:
            return PROBE_WAIT
        return 0.0

    def _should_open(self) -> bool:
        s = self.settings
        if self._streak >= s.failures:
            return True
        return self._total >= s.min_requests and self._failed >= s.ratio * self._total

    def _count(self, ok: bool, now: float) -> None:
        """Add one outcome to its bucket (the newest, unless its time is over)."""
        last = self._buckets[-1] if now < self._bucket_end and self.settings is self._counted_with \
            else self._new_bucket(now)
        last[1] += 1
        self._total += 1
        if not ok:
            last[2] += 1
            self._failed += 1

    def _new_bucket(self, now: float) -> list:
        """The bucket `now` falls in, made after dropping the buckets that left the window."""
        width = self.settings.window_s / BUCKETS
        if width != self._width:  # new settings (hot reload): the window starts afresh
            self._clear_window()
            self._width = width
        self._counted_with = self.settings
        number = int(now // width)
        buckets = self._buckets
        if buckets and buckets[-1][0] == number:  # the same bucket (after new, equal settings)
            last = buckets[-1]
        else:
            while buckets and buckets[0][0] <= number - BUCKETS:
                _, total, failed = buckets.popleft()
                self._total -= total
                self._failed -= failed
            last = [number, 0, 0]
            buckets.append(last)
        self._bucket_end = (number + 1) * width
        return last

    def _clear_window(self) -> None:
        self._buckets.clear()
        self._total = self._failed = 0
        self._bucket_end = -math.inf

    def _open(self, now: float) -> None:
        s = self.settings
        self._period = min(self._period * 2 if self._period else s.open_s, s.max_open_s)
        self._open_until = now + self._period
        self._probe_at = None
        self._clear_window()
        self._streak = 0

    def _close(self) -> None:
        self._open_until, self._probe_at, self._period = None, None, 0.0
        self._clear_window()
        self._streak = 0


class Breakers:
    """Every credential's breaker, keyed by (provider, credential id), made on first use."""

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._by_key: dict[tuple[str, str], Breaker] = {}

    def get(self, provider: str, credential: str) -> Breaker:
        """The breaker of one credential (a new closed one the first time)."""
        breaker = self._by_key.get((provider, credential))
        if breaker is None:
            breaker = self._by_key[(provider, credential)] = Breaker(self.settings)
        return breaker

    def allow(self, provider: str, credential: str, now: float) -> bool:
        """Breaker.allow of that credential (twice a request: a closed one says yes without
        another call)."""
        breaker = self._by_key.get((provider, credential)) or self.get(provider, credential)
        return True if breaker._open_until is None else breaker.allow(now)

    def record(self, provider: str, credential: str, ok: bool, now: float) -> None:
        """Breaker.record of that credential."""
        (self._by_key.get((provider, credential)) or self.get(provider, credential)).record(ok, now)

    def state(self, provider: str, credential: str, now: float) -> str:
        """That credential's state; closed when it has no breaker yet."""
        breaker = self._by_key.get((provider, credential))
        return breaker.state(now) if breaker else CLOSED

    def provider_open(self, provider: str, credentials: Iterable[str], now: float) -> bool:
        """The derived provider breaker: open when it has credentials and all of them are open."""
        states = [self.state(provider, c, now) for c in credentials]
        return bool(states) and all(s == OPEN for s in states)

    def provider_retry_in(self, provider: str, credentials: Iterable[str], now: float) -> float:
        """Seconds until the first of the provider's credentials may be tried again."""
        waits = [self._by_key[(provider, c)].retry_in(now) if (provider, c) in self._by_key else 0.0
                 for c in credentials]
        return min(waits, default=0.0)

    def snapshot(self, now: float) -> dict[tuple[str, str], str]:
        """(provider, credential) → state, for /metrics and the admin API."""
        return {key: breaker.state(now) for key, breaker in self._by_key.items()}

    def forget(self, provider: str, credential: str | None = None) -> None:
        """Drop the breakers of a removed credential (or of every credential of a provider)."""
        for key in [k for k in self._by_key if k[0] == provider and credential in (None, k[1])]:
            del self._by_key[key]

    def reconfigure(self, settings: BreakerSettings) -> None:
        """New settings (hot reload): kept breakers keep their state and use the new thresholds."""
        self.settings = settings
        for breaker in self._by_key.values():
            breaker.settings = settings
