"""Subscription usage windows of a cookie record (claude-web.md §16.3, claude-code.md §8).

Every function returns field updates for the record; a None value means "remove the field"
(the convention of `CookiePool.update`), so a record never holds a null TOML cannot store.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .claude_web_account import parse_rfc3339

HOUR, DAY = 3600, 86400
PROBE_MIN_INTERVAL_S = 60  # claude-code.md §8.4: never more than one probe per cookie per minute
# the bucket columns of pool.COLUMNS; repeated because protocol/ may not import the pool
COLUMNS = ("total_input_tokens", "total_output_tokens", "sonnet_input_tokens",
           "sonnet_output_tokens", "opus_input_tokens", "opus_output_tokens")


class Window(NamedTuple):
    """One usage window: record prefix, bucket, length, usage-endpoint field, shown percent."""

    name: str
    bucket: str
    length: int
    source: str
    utilization: str


WINDOWS = (
    Window("session", "session_usage", 5 * HOUR, "five_hour", "session_utilization"),
    Window("weekly", "weekly_usage", 7 * DAY, "seven_day", "seven_day_utilization"),
    Window("weekly_sonnet", "weekly_sonnet_usage", 7 * DAY, "seven_day_sonnet",
           "seven_day_sonnet_utilization"),
    Window("weekly_opus", "weekly_opus_usage", 7 * DAY, "seven_day_opus",
           "seven_day_opus_utilization"),
)


def _zero() -> dict:
    return {column: 0 for column in COLUMNS}


def _epoch(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _flag(record: dict, window: Window):
    return record.get(f"{window.name}_has_reset")  # None unknown, True tracked, False no such limit


def _due(record: dict, window: Window, now: float) -> bool:
    """A tracked window whose boundary has passed (or was lost)."""
    if _flag(record, window) is not True:
        return False
    boundary = _epoch(record.get(f"{window.name}_resets_at"))
    return boundary is None or boundary <= now


def _percent(value) -> int | None:
    number = _epoch(value)
    return None if number is None else math.floor(number + 0.5)  # half up, as the web UI rounds


def _probe_ok(probe) -> bool:
    # an error document passed by mistake must not mark every window "no such limit"
    return isinstance(probe, dict) and any(w.source in probe for w in WINDOWS)


def _probe_failed(record: dict, now: float) -> dict:
    updates: dict = {"resets_last_checked_at": int(now)}
    for window in WINDOWS:
        if _due(record, window, now):
            updates[window.bucket] = _zero()
            updates[f"{window.name}_resets_at"] = int(now) + window.length
        updates[window.utilization] = None  # shown only after a successful probe (compat §7.3)
    return updates


def apply_probe(record: dict, probe: dict | None, *, now: float) -> dict:
    """Updates from a usage-endpoint answer (None: the probe failed) for a cookie record."""
    if not _probe_ok(probe):
        return _probe_failed(record, now)
    updates: dict = {"resets_last_checked_at": int(now)}
    for window in WINDOWS:
        entry = probe.get(window.source)
        entry = entry if isinstance(entry, dict) else {}
        boundary = parse_rfc3339(entry.get("resets_at"))
        if _due(record, window, now):
            updates[window.bucket] = _zero()
        # the answer is authoritative: a limit appears or disappears with the subscription
        updates[f"{window.name}_has_reset"] = boundary is not None
        updates[f"{window.name}_resets_at"] = None if boundary is None else int(boundary)
        updates[window.utilization] = _percent(entry.get("utilization"))
    return updates


def tick_windows(record: dict, *, now: float) -> dict:
    """Tracked windows whose boundary passed: zeroed, boundary moved to the next one after now."""
    updates: dict = {}
    for window in WINDOWS:
        boundary = _epoch(record.get(f"{window.name}_resets_at"))
        if _flag(record, window) is not True or boundary is None or boundary > now:
            continue
        # whole periods, so an idle week does not leave the boundary in the past
        periods = int((now - boundary) // window.length) + 1
        updates[window.bucket] = _zero()
        updates[f"{window.name}_resets_at"] = int(boundary) + periods * window.length
    return updates


def probe_due(record: dict, *, now: float) -> bool:
    """Whether a lazy probe is due: a flag unknown or a tracked window passed, none in the last 60 s."""
    last = _epoch(record.get("resets_last_checked_at"))
    if last is not None and now - last < PROBE_MIN_INTERVAL_S:
        return False
    return any(_flag(record, w) is None or _due(record, w, now) for w in WINDOWS)
