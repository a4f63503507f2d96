"""API-key pool (gateway.md §5): states, tiers, weights, reserve keys, LRU tie-break, cool-downs.

The pool is pure: every test passes `now` and `rand` as plain floats and reads the state back.
"""

from __future__ import annotations

from collections import Counter

import pytest

from clewdr_lite.pool import KeyPool, weighted_choice

NOW = 1_760_000_000.0


def keys_of(pool: KeyPool) -> list[str]:
    return [e["key"] for e in pool.entries()]


def states(pool: KeyPool) -> dict[str, str]:
    return {e["key"]: e["state"] for e in pool.entries()}


def picked(pool: KeyPool, *, now: float = NOW, exclude=(), rand: float = 0.0) -> str | None:
    entry = pool.pick(now, exclude=exclude, rand=rand)
    return None if entry is None else entry.key


def draws(pool: KeyPool, n: int = 1000, **kw) -> Counter:
    """Pick with n evenly spaced values of rand: the counts are the exact shares."""
    return Counter(picked(pool, rand=i / n, **kw) for i in range(n))


# ---------------------------------------------------------------- building


@pytest.mark.parametrize("keys, expected", [
    (["a", "b"], ["a", "b"]),
    (["a", "a", {"key": "a", "weight": 5}], ["a"]),          # duplicates ignored, first wins
    (["a", "A"], ["a", "A"]),                                  # compared exactly
    ([" a \n", "a"], ["a"]),                                   # surrounding blanks are not part of it
    (["", "  ", 7, None, {"weight": 2}, {"key": ""}, {"key": 5}, "b"], ["b"]),
    ([{"key": "t", "priority": 2, "weight": 3}], ["t"]),
])
def test_from_keys_keeps_usable_distinct_keys_in_order(keys, expected):
    assert keys_of(KeyPool.from_keys(keys)) == expected


@pytest.mark.parametrize("item, state, reason, until", [
    ("k", "active", None, None),
    ({"key": "k"}, "active", None, None),
    ({"key": "k", "enabled": False}, "disabled", "manual", None),
    ({"key": "k", "disabled_reason": "invalid"}, "disabled", "invalid", None),
    ({"key": "k", "enabled": False, "disabled_reason": "no_credit"}, "disabled", "no_credit", None),
    # `enabled`, when present, decides: flipping it by hand re-enables the key
    ({"key": "k", "enabled": True, "disabled_reason": "invalid"}, "active", None, None),
    ({"key": "k", "cooldown_until": NOW + 60}, "cooling", "rate_limited", NOW + 60),
    ({"key": "k", "cooldown_until": NOW + 60, "cooldown_reason": "quota"}, "cooling", "quota", NOW + 60),
    ({"key": "k", "cooldown_until": 0}, "active", None, None),
])
def test_from_keys_reads_durable_state(item, state, reason, until):
    [entry] = KeyPool.from_keys([item]).entries()
    assert (entry["state"], entry["reason"], entry["until"]) == (state, reason, until)


@pytest.mark.parametrize("item, priority, weight", [
    ({"key": "k"}, 0, 1),
    ({"key": "k", "priority": -1, "weight": 2.5}, -1, 2.5),
    ({"key": "k", "priority": "high", "weight": -3}, 0, 1),    # bad values fall back to defaults
    ({"key": "k", "priority": True, "weight": True}, 0, 1),
])
def test_from_keys_reads_priority_and_weight(item, priority, weight):
    [entry] = KeyPool.from_keys([item]).entries()
    assert (entry["priority"], entry["weight"]) == (priority, weight)


def test_a_fresh_pool_is_version_zero_and_all_active():
    pool = KeyPool.from_keys(["a", "b", {"key": "c", "enabled": False}])
    assert pool.version == 0
    assert pool.counts() == (2, 0, 1)


# ---------------------------------------------------------------- choice (§5.2 steps 2–5)

TIERS = [
    {"key": "t0a", "priority": 0},
    {"key": "t0b", "priority": 0},
    {"key": "t1", "priority": 1},
    {"key": "t-1", "priority": -1, "enabled": False},
]


@pytest.mark.parametrize("exclude, expected", [
    ((), {"t0a", "t0b"}),                        # the lowest usable tier only (t-1 is disabled)
    (("t0a",), {"t0b"}),                         # already tried: excluded
    (("t0a", "t0b"), {"t1"}),                    # a tier exhausted: the next one
    (("t0a", "t0b", "t1"), {None}),              # nothing left
    (("nope",), {"t0a", "t0b"}),                 # unknown exclusions are harmless
])
def test_pick_takes_the_lowest_usable_tier(exclude, expected):
    pool = KeyPool.from_keys(TIERS)
    assert set(draws(pool, 100, exclude=exclude)) == expected


@pytest.mark.parametrize("weights, expected", [
    ({"a": 1, "b": 1}, {"a": 500, "b": 500}),
    ({"a": 1, "b": 3}, {"a": 250, "b": 750}),
    ({"a": 2, "b": 1, "c": 1}, {"a": 500, "b": 250, "c": 250}),
    ({"a": 0.5, "b": 1.5}, {"a": 250, "b": 750}),
    ({"a": 1, "b": 0}, {"a": 1000}),             # weight 0 never drawn beside a positive key
])
def test_weighted_choice_gives_each_key_its_share(weights, expected):
    pool = KeyPool.from_keys([{"key": k, "weight": w} for k, w in weights.items()])
    assert draws(pool) == expected


@pytest.mark.parametrize("keys, exclude, expected", [
    # weight-0 keys are a reserve for the whole pool, whatever their tier
    ([{"key": "r", "weight": 0, "priority": 0}, {"key": "p", "priority": 5}], (), "p"),
    ([{"key": "r", "weight": 0, "priority": 0}, {"key": "p", "priority": 5}], ("p",), "r"),
    ([{"key": "r", "weight": 0}, {"key": "p", "enabled": False}], (), "r"),
    ([{"key": "r", "weight": 0}, {"key": "p", "cooldown_until": NOW + 9}], (), "r"),
    # among reserves, priority still orders them
    ([{"key": "r1", "weight": 0, "priority": 1}, {"key": "r0", "weight": 0, "priority": 0}], (), "r0"),
])
def test_weight_zero_only_when_no_positive_key_is_usable(keys, exclude, expected):
    pool = KeyPool.from_keys(keys)
    assert set(draws(pool, 50, exclude=exclude)) == {expected}


def test_ties_go_to_the_least_recently_used_key():
    pool = KeyPool.from_keys(["a", "b", "c"])
    order = []
    for step in range(6):
        key = picked(pool, rand=0.0)
        pool.mark_used(key, NOW + step)
        order.append(key)
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_never_used_keys_come_before_used_ones_then_config_order():
    pool = KeyPool.from_keys(["a", "b", "c"])
    pool.mark_used("a", NOW)
    assert picked(pool, rand=0.0) == "b"
    pool.mark_used("b", NOW - 100)  # used longer ago than a
    pool.mark_used("c", NOW + 1)
    assert picked(pool, rand=0.0) == "b"


def test_all_zero_weights_rotate_by_least_recent_use():
    pool = KeyPool.from_keys([{"key": k, "weight": 0} for k in "xyz"])
    seen = []
    for step in range(3):
        key = picked(pool, rand=0.99)  # rand is irrelevant without positive weights
        pool.mark_used(key, NOW + step)
        seen.append(key)
    assert seen == ["x", "y", "z"]


def test_lru_layout_keeps_weighted_shares():
    pool = KeyPool.from_keys([{"key": "a", "weight": 1}, {"key": "b", "weight": 3}])
    pool.mark_used("b", NOW - 10)
    pool.mark_used("a", NOW)
    assert picked(pool, rand=0.0) == "b"   # least recently used first in the layout
    assert draws(pool) == {"a": 250, "b": 750}


def test_pick_neither_marks_use_nor_changes_the_version():
    pool = KeyPool.from_keys(["a", "b"])
    assert [picked(pool) for _ in range(3)] == ["a", "a", "a"]
    assert pool.version == 0
    pool.mark_used("a", NOW)
    assert pool.version == 0 and pool.find("a").last_used == NOW


@pytest.mark.parametrize("weights, rand, expected", [
    ([1, 1], 0.0, 0), ([1, 1], 0.4999, 0), ([1, 1], 0.5, 1), ([1, 1], 0.9999, 1),
    ([0, 1], 0.0, 1), ([1, 0], 0.9999, 0), ([0, 0], 0.7, 0), ([], 0.3, 0),
    ([1, 1], 1.0, 1), ([1, 1], 7.0, 1), ([1, 1], -1.0, 0),   # out-of-range rand is clamped
    ([1, 2, 0], 1.0, 1),
])
def test_weighted_choice_edges(weights, rand, expected):
    assert weighted_choice(weights, rand) == expected


# ---------------------------------------------------------------- states


def test_cooldown_expires_under_an_explicit_now():
    pool = KeyPool.from_keys(["a", "b"])
    assert pool.cool("a", NOW + 60, "rate_limited") is True
    assert pool.counts(NOW) == (1, 1, 0)
    assert pool.earliest_cooldown() == NOW + 60
    assert set(draws(pool, 20)) == {"b"}
    assert picked(pool, now=NOW + 59.9, exclude=("b",)) is None
    assert picked(pool, now=NOW + 60, exclude=("b",)) == "a"
    assert pool.counts() == (2, 0, 0)
    assert pool.earliest_cooldown() is None


def test_counts_lift_expired_cooldowns_only_when_given_now():
    pool = KeyPool.from_keys(["a", {"key": "b", "cooldown_until": NOW}])
    assert pool.counts() == (1, 1, 0)
    assert pool.counts(NOW - 1) == (1, 1, 0)
    version = pool.version
    assert pool.counts(NOW) == (2, 0, 0)
    assert pool.version == version + 1        # the saved cool-down is gone: durable
    assert pool.refresh(NOW) == 0 and pool.version == version + 1


def test_earliest_cooldown_is_the_soonest():
    pool = KeyPool.from_keys(["a", "b", "c"])
    pool.cool("a", NOW + 300, "r")
    pool.cool("b", NOW + 30, "r")
    assert pool.earliest_cooldown() == NOW + 30


@pytest.mark.parametrize("action, args, result, state", [
    ("cool", ("a", NOW + 5, "rate_limited"), True, ("cooling", "rate_limited", NOW + 5)),
    ("disable", ("a", "invalid"), True, ("disabled", "invalid", None)),
    ("enable", ("a",), True, ("active", None, None)),
    ("cool", ("zz", NOW + 5, "r"), False, ("active", None, None)),
    ("disable", ("zz", "r"), False, ("active", None, None)),
    ("enable", ("zz",), False, ("active", None, None)),
])
def test_state_changes_from_active(action, args, result, state):
    pool = KeyPool.from_keys(["a"])
    assert getattr(pool, action)(*args) is result
    [entry] = pool.entries()
    assert (entry["state"], entry["reason"], entry["until"]) == state


def test_a_disabled_key_stays_disabled_when_cooled_and_is_re_enabled_by_hand():
    pool = KeyPool.from_keys(["a"])
    pool.disable("a", "invalid")
    assert pool.cool("a", NOW + 5, "rate_limited") is False
    assert states(pool) == {"a": "disabled"}
    assert picked(pool) is None
    assert pool.enable("a") is True
    assert picked(pool) == "a"


def test_cooling_again_takes_the_new_time():
    pool = KeyPool.from_keys(["a"])
    pool.cool("a", NOW + 100, "r")
    pool.cool("a", NOW + 10, "r2")
    assert pool.earliest_cooldown() == NOW + 10
    assert pool.entries()[0]["reason"] == "r2"


def test_disable_clears_a_cooldown():
    pool = KeyPool.from_keys(["a"])
    pool.cool("a", NOW + 100, "r")
    pool.disable("a", "invalid")
    assert pool.earliest_cooldown() is None
    assert pool.counts(NOW + 1000) == (0, 0, 1)


@pytest.mark.parametrize("change, bumps", [
    (lambda p: p.cool("a", NOW + 5, "r"), 1),
    (lambda p: p.disable("a", "r"), 1),
    (lambda p: p.enable("a"), 0),                    # already active: nothing changed
    (lambda p: p.add("c"), 1),
    (lambda p: p.add("a"), 0),                       # already there
    (lambda p: p.add({"key": ""}), 0),
    (lambda p: p.remove("a"), 1),
    (lambda p: p.remove("zz"), 0),
    (lambda p: p.mark_used("a", NOW), 0),            # not durable
    (lambda p: p.pick(NOW, rand=0.5), 0),
    (lambda p: p.counts(NOW), 0),
])
def test_version_counts_durable_changes(change, bumps):
    pool = KeyPool.from_keys(["a", "b"])
    change(pool)
    assert pool.version == bumps


def test_add_and_remove():
    pool = KeyPool.from_keys(["a"])
    assert pool.add({"key": "b", "priority": 1}) is True
    assert pool.add(" a ") is False
    assert keys_of(pool) == ["a", "b"]
    assert pool.remove("a") is True
    assert keys_of(pool) == ["b"] and pool.find("a") is None


# ---------------------------------------------------------------- views and saving


def test_entries_are_plain_dicts_with_extra_fields():
    pool = KeyPool.from_keys([{"key": "a", "count_403": 2, "last_error": "x"}])
    pool.mark_used("a", NOW)
    assert pool.entries() == [{"key": "a", "state": "active", "priority": 0, "weight": 1,
                               "until": None, "reason": None, "last_used": NOW,
                               "count_403": 2, "last_error": "x"}]


def test_records_keep_the_written_form_and_the_durable_state():
    pool = KeyPool.from_keys(["plain", {"key": "table"}, {"key": "w", "weight": 2, "priority": 1},
                              {"key": "g", "count_403": 1}, "cool", "dead"])
    pool.cool("cool", NOW + 0.5, "rate_limited")
    pool.disable("dead", "invalid")
    assert pool.records() == [
        "plain",
        {"key": "table"},
        {"key": "w", "priority": 1, "weight": 2},
        {"key": "g", "count_403": 1},
        {"key": "cool", "cooldown_until": int(NOW) + 1, "cooldown_reason": "rate_limited"},
        {"key": "dead", "enabled": False, "disabled_reason": "invalid"},
    ]


def test_records_round_trip():
    pool = KeyPool.from_keys(["a", {"key": "b", "weight": 0}, "c"])
    pool.cool("a", NOW + 60, "quota")
    pool.disable("c", "no_credit")
    again = KeyPool.from_keys(pool.records())
    assert again.entries() == pool.entries()
    pool.enable("c")
    assert pool.records()[2] == "c"               # back to the bare string once active


def test_repr_never_shows_a_whole_key():
    pool = KeyPool.from_keys(["sk-ant-api03-secret-value-1234"])
    assert "secret" not in repr(pool) and "secret" not in repr(pool.find("sk-ant-api03-secret-value-1234"))
    assert "1234" in repr(pool.find("sk-ant-api03-secret-value-1234"))
