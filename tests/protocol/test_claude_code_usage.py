"""Usage windows (claude-web.md §16.3, claude-code.md §8) with an explicit `now`."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from clewdr_lite.protocol import claude_code as cc
from clewdr_lite.protocol.claude_code_usage import COLUMNS

NOW = 1_760_000_000
H, D = 3600, 86400
ZERO = {c: 0 for c in COLUMNS}
USED = {c: 7 for c in COLUMNS}
NAMES = ("session", "weekly", "weekly_sonnet", "weekly_opus")
BUCKETS = ("session_usage", "weekly_usage", "weekly_sonnet_usage", "weekly_opus_usage")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def record(**fields) -> dict:
    base = {"cookie": "c", **{b: dict(USED) for b in BUCKETS}, "lifetime_usage": dict(USED)}
    base.update(fields)
    return base


def tracked(session=NOW + H, weekly=NOW + D, sonnet=NOW + 2 * D, opus=None) -> dict:
    """A record whose windows are known: a time = tracked until then, None = no such limit."""
    fields = {}
    for name, at in zip(NAMES, (session, weekly, sonnet, opus)):
        fields[f"{name}_has_reset"] = at is not None
        if at is not None:
            fields[f"{name}_resets_at"] = at
    return record(**fields)


def probe(five=(37.0, NOW + 4 * H), seven=(12.5, NOW + 6 * D), sonnet=(3.0, NOW + 5 * D),
          opus=None) -> dict:
    out = {}
    for key, entry in zip(("five_hour", "seven_day", "seven_day_sonnet", "seven_day_opus"),
                          (five, seven, sonnet, opus)):
        out[key] = None if entry is None else {"utilization": entry[0],
                                               "resets_at": rfc3339(entry[1])}
    return out


# ---------------------------------------------------------------- apply_probe: success


def test_probe_on_an_unknown_record_sets_flags_and_boundaries():
    updates = cc.apply_probe(record(), probe(), now=NOW)
    assert updates == {
        "resets_last_checked_at": NOW,
        "session_has_reset": True, "session_resets_at": NOW + 4 * H, "session_utilization": 37,
        "weekly_has_reset": True, "weekly_resets_at": NOW + 6 * D, "seven_day_utilization": 13,
        "weekly_sonnet_has_reset": True, "weekly_sonnet_resets_at": NOW + 5 * D,
        "seven_day_sonnet_utilization": 3,
        "weekly_opus_has_reset": False, "weekly_opus_resets_at": None,
        "seven_day_opus_utilization": None,
    }  # unknown windows are learned, not zeroed


def test_probe_zeroes_only_due_tracked_windows():
    rec = tracked(session=NOW - 10, weekly=NOW, sonnet=NOW + 10, opus=NOW - D)
    before = copy.deepcopy(rec)
    updates = cc.apply_probe(rec, probe(opus=(50.0, NOW + 3 * D)), now=NOW)
    assert rec == before  # updates only; the record itself is untouched
    assert {b for b in BUCKETS if b in updates} == {"session_usage", "weekly_usage",
                                                    "weekly_opus_usage"}
    assert all(updates[b] == ZERO for b in BUCKETS if b in updates)
    assert "lifetime_usage" not in updates
    assert updates["weekly_opus_resets_at"] == NOW + 3 * D
    assert updates["seven_day_opus_utilization"] == 50


@pytest.mark.parametrize("entry, has_reset, resets_at, pct", [
    ({"utilization": 99.5, "resets_at": "2025-10-09T12:00:00.123456+00:00"}, True, 1760011200, 100),
    ({"utilization": 0.49, "resets_at": "2025-10-09T12:00:00Z"}, True, 1760011200, 0),
    ({"utilization": 20.0, "resets_at": None}, False, None, 20),
    ({"utilization": None, "resets_at": "garbage"}, False, None, None),
    ({"utilization": "12"}, False, None, None),
    (None, False, None, None),
    ("weird", False, None, None),
], ids=["fraction-and-half-up", "rounds-down", "no-reset", "bad-time", "string-pct", "null",
        "not-an-object"])
def test_probe_entry_shapes(entry, has_reset, resets_at, pct):
    answer = probe()
    answer["five_hour"] = entry
    updates = cc.apply_probe(tracked(), answer, now=NOW)
    assert updates["session_has_reset"] is has_reset
    assert updates["session_resets_at"] == resets_at
    assert updates["session_utilization"] == pct


def test_tracked_window_that_disappears_becomes_untracked():
    updates = cc.apply_probe(tracked(session=NOW - 1), probe(five=None), now=NOW)
    assert updates["session_usage"] == ZERO  # it was due
    assert updates["session_has_reset"] is False
    assert updates["session_resets_at"] is None


# ---------------------------------------------------------------- apply_probe: failure


@pytest.mark.parametrize("answer", [None, {}, {"error": {"message": "nope"}}, "x"],
                         ids=["none", "empty", "error-document", "not-a-dict"])
def test_failed_probe_moves_due_tracked_windows(answer):
    rec = tracked(session=NOW - 5, weekly=NOW - 1, sonnet=NOW + 100, opus=None)
    rec.pop("weekly_opus_has_reset")  # unknown stays unknown
    updates = cc.apply_probe(rec, answer, now=NOW)
    assert updates == {
        "resets_last_checked_at": NOW,
        "session_usage": ZERO, "session_resets_at": NOW + 5 * H,
        "weekly_usage": ZERO, "weekly_resets_at": NOW + 7 * D,
        "session_utilization": None, "seven_day_utilization": None,
        "seven_day_sonnet_utilization": None, "seven_day_opus_utilization": None,
    }


def test_failed_probe_on_a_tracked_window_without_boundary():
    rec = record(session_has_reset=True)
    updates = cc.apply_probe(rec, None, now=NOW)
    assert updates["session_usage"] == ZERO
    assert updates["session_resets_at"] == NOW + 5 * H


# ---------------------------------------------------------------- tick_windows


@pytest.mark.parametrize("rec, expected", [
    (tracked(), {}),
    (tracked(session=NOW), {"session_usage": ZERO, "session_resets_at": NOW + 5 * H}),
    (tracked(session=NOW - 1), {"session_usage": ZERO, "session_resets_at": NOW - 1 + 5 * H}),
    (tracked(session=NOW - 11 * H), {"session_usage": ZERO, "session_resets_at": NOW + 4 * H}),
    (tracked(weekly=NOW - 8 * D, sonnet=NOW - 3 * D),
     {"weekly_usage": ZERO, "weekly_resets_at": NOW + 6 * D,
      "weekly_sonnet_usage": ZERO, "weekly_sonnet_resets_at": NOW + 4 * D}),
    (record(session_has_reset=False, session_resets_at=NOW - 10), {}),
    (record(session_resets_at=NOW - 10), {}),
    (record(session_has_reset=True), {}),
    (record(session_has_reset=True, session_resets_at="x"), {}),
], ids=["nothing-due", "exactly-now", "just-passed", "two-periods-idle", "weekly-windows",
        "untracked", "unknown", "no-boundary", "bad-boundary"])
def test_tick_windows(rec, expected):
    assert cc.tick_windows(rec, now=NOW) == expected


def test_tick_after_tick_is_quiet():
    rec = tracked(session=NOW - 1)
    rec.update(cc.tick_windows(rec, now=NOW))
    assert cc.tick_windows(rec, now=NOW) == {}
    assert cc.tick_windows(rec, now=rec["session_resets_at"]) != {}


# ---------------------------------------------------------------- probe_due


@pytest.mark.parametrize("rec, due", [
    (record(), True),
    (tracked(), False),
    (tracked(opus=NOW + D), False),
    ({**tracked(), "weekly_opus_has_reset": None}, True),
    (tracked(session=NOW - 1), True),
    (tracked(session=NOW), True),
    ({**tracked(session=NOW - 1), "resets_last_checked_at": NOW - 30}, False),
    ({**tracked(session=NOW - 1), "resets_last_checked_at": NOW - 60}, True),
    ({**record(), "resets_last_checked_at": NOW - 59.5}, False),
    (record(session_has_reset=True, weekly_has_reset=False, weekly_sonnet_has_reset=False,
            weekly_opus_has_reset=False), True),
    (record(session_has_reset=False, weekly_has_reset=False, weekly_sonnet_has_reset=False,
            weekly_opus_has_reset=False, session_resets_at=NOW - D), False),
], ids=["all-unknown", "all-known-future", "opus-tracked", "one-unknown", "passed", "exactly-now",
        "probed-30s-ago", "probed-60s-ago", "unknown-but-recent", "tracked-without-boundary",
        "untracked-stale-boundary"])
def test_probe_due(rec, due):
    assert cc.probe_due(rec, now=NOW) is due


def test_probe_then_not_due_then_due_at_boundary():
    rec = record()
    rec.update(cc.apply_probe(rec, probe(), now=NOW))
    for key in [k for k, v in list(rec.items()) if v is None]:
        del rec[key]  # None means "remove", as CookiePool.update does
    assert not cc.probe_due(rec, now=NOW + 61)
    assert cc.probe_due(rec, now=NOW + 4 * H)
