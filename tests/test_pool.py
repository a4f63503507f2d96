"""Cookie pool (claude-web.md §14–16): states, round-robin selection, stickiness, usage buckets.

The pool is pure: every test passes `now` as a plain float and reads the state back.
"""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.pool import (
    BUCKETS,
    COLUMNS,
    WINDOW_BUCKETS,
    CookiePool,
    add_usage,
    backoff_delay,
    model_family,
)

NOW = 1_760_000_000.0
LATER = int(NOW) + 3600


def full_bucket(value: int) -> dict:
    return {column: value for column in COLUMNS}


def used(cookie: str, **extra) -> dict:
    """A record with every usage bucket filled with 7."""
    record = {"cookie": cookie, **{name: full_bucket(7) for name in BUCKETS}}
    record.update(extra)
    return record


def make(*cookies: str, exhausted=(), invalid=(), max_concurrent: int = 0) -> CookiePool:
    """A pool of plain valid cookies, plus (cookie, reset_time) parked and (cookie, reason) retired."""
    return CookiePool.from_records(
        [{"cookie": c} for c in cookies] + [{"cookie": c, "reset_time": t} for c, t in exhausted],
        [{"cookie": c, "reason": r} for c, r in invalid],
        now=NOW, max_concurrent=max_concurrent)


def order(pool: CookiePool) -> list[str]:
    return [r["cookie"] for r in pool.valid]


def names(records) -> list[str]:
    return [r["cookie"] for r in records]


def picks(pool: CookiePool, n: int, **kw) -> list[str | None]:
    out = []
    for _ in range(n):
        record = pool.pick(NOW, **kw)
        out.append(None if record is None else record["cookie"])
    return out


# ---------------------------------------------------------------- loading


def test_from_records_sorts_records_into_states():
    pool = CookiePool.from_records(
        [{"cookie": "a"}, {"cookie": "x", "reset_time": LATER}, {"cookie": "b"}],
        [{"cookie": "w", "reason": "Banned"}, {"cookie": "v", "reason": {"Restricted": LATER}}],
        now=NOW, max_concurrent=3)
    assert order(pool) == ["a", "b"]
    assert pool.exhausted == [{"cookie": "x", "reset_time": LATER}]
    assert pool.invalid == [{"cookie": "w", "reason": "Banned"},
                            {"cookie": "v", "reason": {"Restricted": LATER}}]
    assert pool.counts() == (2, 1, 2)
    assert pool.max_concurrent == 3
    assert pool.version == 0


@pytest.mark.parametrize("cookies, wasted, valid, exhausted, invalid", [
    # The first occurrence wins inside cookie_array ...
    ([{"cookie": "a"}, {"cookie": "b"}, {"cookie": "a", "token": "t"}], [],
     [{"cookie": "a"}, {"cookie": "b"}], [], []),
    ([{"cookie": "a", "reset_time": LATER}, {"cookie": "a"}], [],
     [], [{"cookie": "a", "reset_time": LATER}], []),
    # ... inside wasted_cookie ...
    ([], [{"cookie": "w", "reason": "Null"}, {"cookie": "w", "reason": "Banned"}],
     [], [], [{"cookie": "w", "reason": "Null"}]),
    # ... and across the two lists, cookie_array being read first.
    ([{"cookie": "a"}], [{"cookie": "a", "reason": "Null"}, {"cookie": "w", "reason": "Free"}],
     [{"cookie": "a"}], [], [{"cookie": "w", "reason": "Free"}]),
], ids=["dup-valid", "dup-exhausted-first", "dup-wasted", "dup-across"])
def test_from_records_deduplicates(cookies, wasted, valid, exhausted, invalid):
    pool = CookiePool.from_records(cookies, wasted, now=NOW)
    assert list(pool.valid) == valid
    assert pool.exhausted == exhausted
    assert pool.invalid == invalid


@pytest.mark.parametrize("reset_time, parked", [
    (int(NOW) - 3600, False),
    (int(NOW), False),       # due exactly now
    (int(NOW) + 1, True),
])
def test_from_records_unparks_due_cookies_at_load(reset_time, parked):
    record = used("x", reset_time=reset_time, token={"access": "t"})
    pool = CookiePool.from_records([record, {"cookie": "a"}], [], now=NOW)
    if parked:
        assert order(pool) == ["a"] and names(pool.exhausted) == ["x"]
        assert pool.exhausted[0]["session_usage"] == full_bucket(7)
    else:
        assert order(pool) == ["a", "x"]  # un-parked cookies join the END of the queue
        x = pool.find("x")
        assert "reset_time" not in x
        assert all(x[name] == full_bucket(0) for name in WINDOW_BUCKETS)
        assert x["lifetime_usage"] == full_bucket(7)
        assert x["token"] == {"access": "t"}
    assert pool.version == 0  # loading is not a change to save


def test_from_records_does_not_touch_the_callers_records():
    source = [{"cookie": "a"}, {"cookie": "x", "reset_time": int(NOW) - 1}]
    before = copy.deepcopy(source)
    pool = CookiePool.from_records(source, [], now=NOW)
    pool.update("a", token="new")
    pool.park("a", LATER)
    assert source == before


def test_usage_buckets_are_not_shared_with_inputs_or_snapshots():
    source = {"cookie": "a", "session_usage": {"total_input_tokens": 1}}
    pool = CookiePool.from_records([source], [], now=NOW)
    saved, _ = pool.snapshot()
    pool.record_usage("a", "claude-sonnet-4", 10, 5)
    assert source["session_usage"] == {"total_input_tokens": 1}
    assert saved[0]["session_usage"] == {"total_input_tokens": 1}
    assert pool.find("a")["session_usage"]["total_input_tokens"] == 11


# ---------------------------------------------------------------- selection


def test_pick_is_round_robin():
    pool = make("a", "b", "c")
    assert picks(pool, 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert order(pool) == ["b", "c", "a"]


def test_pick_on_an_empty_pool():
    assert make().pick(NOW) is None
    assert make(exhausted=[("x", LATER)], invalid=[("w", "Null")]).pick(NOW) is None


@pytest.mark.parametrize("exclude, expected", [
    ((), ["a", "b", "c", "a"]),
    ({"a"}, ["b", "c", "b", "c"]),
    (["a", "c"], ["b", "b", "b", "b"]),
    (("a", "b", "c"), [None] * 4),
    ({"not-in-pool"}, ["a", "b", "c", "a"]),
])
def test_pick_skips_excluded(exclude, expected):
    pool = make("a", "b", "c")
    assert picks(pool, 4, exclude=exclude) == expected


def test_pick_with_nothing_usable_leaves_the_order_alone():
    pool = make("a", "b", "c")
    pool.pick(NOW)
    assert pool.pick(NOW, exclude={"a", "b", "c"}) is None
    assert order(pool) == ["b", "c", "a"]
    assert pool.pick(NOW)["cookie"] == "b"


@pytest.mark.parametrize("need_code, expected", [
    (False, ["a", "b", "c", "a", "b", "c"]),
    (True, ["b", "c", "b", "c", "b", "c"]),  # only `code_allowed = false` is skipped; unknown is ok
])
def test_pick_need_code_skips_code_denied(need_code, expected):
    pool = CookiePool.from_records(
        [{"cookie": "a", "code_allowed": False}, {"cookie": "b"},
         {"cookie": "c", "code_allowed": True}], [], now=NOW)
    assert picks(pool, 6, need_code=need_code) == expected


def test_pick_unparks_due_cookies_first():
    pool = make("a", exhausted=[("x", int(NOW) + 10)])
    assert pool.pick(NOW + 9)["cookie"] == "a"
    assert pool.counts() == (1, 1, 0)
    assert pool.pick(NOW + 10)["cookie"] == "a"  # x joined the end of the queue
    assert pool.counts() == (2, 0, 0)
    assert pool.pick(NOW + 10)["cookie"] == "x"


# ---------------------------------------------------------------- sticky keys


def test_sticky_key_returns_the_remembered_cookie():
    pool = make("a", "b", "c")
    assert pool.pick(NOW, sticky_key="s1")["cookie"] == "a"
    assert pool.pick(NOW, sticky_key="s2")["cookie"] == "b"
    assert pool.sticky == {"s1": "a", "s2": "b"}
    assert picks(pool, 3, sticky_key="s1") == ["a", "a", "a"]
    assert picks(pool, 3, sticky_key="s2") == ["b", "b", "b"]
    # Sticky hits do not turn the wheel; unsticky picks keep rotating.
    assert picks(pool, 3) == ["c", "a", "b"]


@pytest.mark.parametrize("spoil", [
    lambda pool: pool.retire("a", "Null"),
    lambda pool: pool.park("a", LATER),
    lambda pool: pool.remove("a"),
], ids=["retired", "parked", "removed"])
def test_sticky_key_is_reassigned_when_its_cookie_leaves_the_queue(spoil):
    pool = make("a", "b", "c")
    assert pool.pick(NOW, sticky_key="k")["cookie"] == "a"
    spoil(pool)
    assert pool.pick(NOW, sticky_key="k")["cookie"] == "b"
    assert pool.sticky["k"] == "b"
    assert picks(pool, 2, sticky_key="k") == ["b", "b"]


def test_sticky_key_stays_with_the_new_cookie_after_the_old_one_returns():
    pool = make("a", "b")
    pool.pick(NOW, sticky_key="k")
    pool.park("a", int(NOW) + 5)
    assert pool.pick(NOW, sticky_key="k")["cookie"] == "b"
    assert pool.pick(NOW + 5, sticky_key="k")["cookie"] == "b"


@pytest.mark.parametrize("kw, setup", [
    ({"exclude": {"a"}}, lambda pool: None),
    ({"need_code": True}, lambda pool: pool.update("a", code_allowed=False)),
    ({}, lambda pool: pool.acquire("a")),  # max_concurrent = 1
], ids=["excluded", "code-denied", "busy"])
def test_sticky_cookie_that_is_not_usable_now_is_replaced(kw, setup):
    pool = make("a", "b", "c", max_concurrent=1)
    assert pool.pick(NOW, sticky_key="k")["cookie"] == "a"
    setup(pool)
    assert pool.pick(NOW, sticky_key="k", **kw)["cookie"] == "b"
    assert pool.sticky["k"] == "b"


def test_sticky_entry_expires_after_an_idle_hour():
    pool = make("a", "b")
    assert pool.pick(NOW, sticky_key="k")["cookie"] == "a"
    assert pool.pick(NOW + 3601, sticky_key="k")["cookie"] == "b"


def test_sticky_map_is_bounded():
    pool = make("a", "b")
    for n in range(1001):
        pool.pick(NOW, sticky_key=f"k{n}")
    assert len(pool.sticky) <= 1000


# ---------------------------------------------------------------- concurrency


def test_max_concurrent_with_acquire_and_release():
    pool = make("a", "b", max_concurrent=1)
    first = pool.pick(NOW)["cookie"]
    pool.acquire(first)
    second = pool.pick(NOW)["cookie"]
    pool.acquire(second)
    assert (first, second) == ("a", "b")
    assert pool.pick(NOW) is None
    pool.release("a")
    assert pool.pick(NOW)["cookie"] == "a"
    pool.release("b")
    assert picks(pool, 2) == ["b", "a"]


def test_max_concurrent_counts_every_request_in_flight():
    pool = make("a", max_concurrent=2)
    pool.acquire("a")
    assert pool.pick(NOW)["cookie"] == "a"
    pool.acquire("a")
    assert pool.pick(NOW) is None
    pool.release("a")
    assert pool.pick(NOW)["cookie"] == "a"


def test_max_concurrent_zero_is_unlimited():
    pool = make("a")
    for _ in range(50):
        pool.acquire("a")
    assert pool.pick(NOW)["cookie"] == "a"


def test_release_never_goes_negative_and_leaves_no_entries():
    pool = make("a", max_concurrent=1)
    pool.acquire("a")
    pool.release("a")
    pool.release("a")
    pool.release("never-acquired")
    assert pool.inflight == {}
    pool.acquire("a")
    assert pool.pick(NOW) is None


def test_acquire_and_release_are_not_durable_changes():
    pool = make("a")
    pool.acquire("a")
    pool.release("a")
    pool.pick(NOW)
    assert pool.version == 0


# ---------------------------------------------------------------- park


def test_park_moves_to_exhausted_and_zeroes_windows():
    pool = CookiePool.from_records([used("a", token={"t": 1}), {"cookie": "b"}], [], now=NOW)
    assert pool.park("a", LATER, error="429 " + "x" * 300) is True
    assert order(pool) == ["b"]
    assert names(pool.exhausted) == ["a"]
    a = pool.find("a")
    assert a["reset_time"] == LATER
    assert a["last_error"] == ("429 " + "x" * 300)[:200]
    assert all(a[name] == full_bucket(0) for name in WINDOW_BUCKETS)
    assert a["lifetime_usage"] == full_bucket(7)
    assert a["token"] == {"t": 1}
    assert pool.version == 1
    assert pool.counts() == (1, 1, 0)


def test_park_keeps_absent_buckets_absent_and_truncates_until():
    pool = make("a")
    assert pool.park("a", LATER + 0.9)
    assert pool.find("a") == {"cookie": "a", "reset_time": LATER}


def test_park_again_moves_the_reset_time():
    pool = make(exhausted=[("x", LATER)])
    assert pool.park("x", LATER + 60, error="again")
    assert pool.exhausted == [{"cookie": "x", "reset_time": LATER + 60, "last_error": "again"}]
    assert pool.earliest_reset() == LATER + 60


def test_park_does_not_revive_an_invalid_cookie():
    pool = make("a", invalid=[("w", "Banned")])
    assert pool.park("w", LATER) is False
    assert pool.invalid == [{"cookie": "w", "reason": "Banned"}]
    assert pool.counts() == (1, 0, 1)
    assert pool.version == 0
    assert pool.pick(NOW + 7200)["cookie"] == "a"


def test_park_unknown_cookie():
    pool = make("a")
    assert pool.park("nope", LATER) is False
    assert pool.version == 0


def test_park_judges_state_by_collection_not_by_fields():
    pool = CookiePool.from_records([{"cookie": "a", "reason": "Null"}], [], now=NOW)
    assert pool.counts() == (1, 0, 0)
    assert pool.park("a", LATER) is True
    assert pool.counts() == (0, 1, 0)


# ---------------------------------------------------------------- retire


@pytest.mark.parametrize("reason", ["Null", "Disabled", "Banned", "Free", {"Restricted": LATER}])
def test_retire_replaces_the_record(reason):
    pool = CookiePool.from_records([used("a", token={"t": 1}, code_allowed=True), {"cookie": "b"}],
                                   [], now=NOW)
    assert pool.retire("a", reason, error="401 " + "y" * 300) is True
    assert order(pool) == ["b"]
    assert pool.invalid == [{"cookie": "a", "reason": reason, "last_error": ("401 " + "y" * 300)[:200]}]
    assert pool.version == 1


def test_retire_without_error_has_no_last_error():
    pool = make(exhausted=[("x", LATER)])
    assert pool.retire("x", "Null")
    assert pool.invalid == [{"cookie": "x", "reason": "Null"}]
    assert pool.counts() == (0, 0, 1)
    assert pool.earliest_reset() is None


def test_retire_an_invalid_cookie_changes_its_reason():
    pool = make(invalid=[("w", "Null")])
    assert pool.retire("w", "Banned")
    assert pool.invalid == [{"cookie": "w", "reason": "Banned"}]


def test_retire_unknown_cookie():
    pool = make("a")
    assert pool.retire("nope", "Null") is False
    assert pool.version == 0 and pool.counts() == (1, 0, 0)


# ---------------------------------------------------------------- unpark_due


@pytest.mark.parametrize("now, due", [
    (LATER - 1.0, False),
    (LATER - 0.001, False),
    (float(LATER), True),
    (LATER + 0.5, True),
    (LATER + 86400.0, True),
])
def test_unpark_due_under_a_fake_clock(now, due):
    pool = CookiePool.from_records(
        [{"cookie": "a"}, used("x", reset_time=LATER, last_error="429"), {"cookie": "b"}], [], now=NOW)
    assert pool.unpark_due(now) == int(due)
    if due:
        assert order(pool) == ["a", "b", "x"]
        x = pool.find("x")
        assert "reset_time" not in x
        assert all(x[name] == full_bucket(0) for name in WINDOW_BUCKETS)
        assert x["lifetime_usage"] == full_bucket(7)
        assert pool.version == 1
    else:
        assert order(pool) == ["a", "b"]
        assert pool.exhausted[0]["reset_time"] == LATER
        assert pool.version == 0


def test_unpark_due_moves_several_in_parking_order():
    pool = make("a", exhausted=[("x", LATER + 5), ("y", LATER), ("z", LATER + 99)])
    assert pool.unpark_due(LATER + 10) == 2
    assert order(pool) == ["a", "x", "y"]
    assert names(pool.exhausted) == ["z"]
    assert pool.version == 1


def test_unpark_due_accepts_stored_reset_times_of_any_number_type():
    pool = CookiePool.from_records([{"cookie": "x", "reset_time": float(LATER)}], [], now=NOW)
    assert pool.unpark_due(NOW) == 0
    assert pool.unpark_due(LATER) == 1


# ---------------------------------------------------------------- queries


@pytest.mark.parametrize("exhausted, expected", [
    ([], None),
    ([("x", LATER)], LATER),
    ([("x", LATER + 300), ("y", LATER + 100), ("z", LATER + 200)], LATER + 100),
])
def test_earliest_reset(exhausted, expected):
    pool = make("a", exhausted=exhausted)
    assert pool.earliest_reset() == expected


def test_earliest_reset_follows_unparking():
    pool = make(exhausted=[("x", LATER), ("y", LATER + 100)])
    pool.unpark_due(LATER)
    assert pool.earliest_reset() == LATER + 100


def test_counts_follow_every_move():
    pool = make("a", "b", "c")
    assert pool.counts() == (3, 0, 0)
    pool.park("a", LATER)
    assert pool.counts() == (2, 1, 0)
    pool.retire("b", "Null")
    assert pool.counts() == (1, 1, 1)
    pool.add("d")
    assert pool.counts() == (2, 1, 1)
    pool.remove("a")
    assert pool.counts() == (2, 0, 1)


def test_snapshot_shapes():
    pool = make("a", "b", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    pool.pick(NOW)  # rotation order is the saved order
    pool.retire("b", "Banned", error="gone")
    cookie_array, wasted = pool.snapshot()
    assert cookie_array == [{"cookie": "a"}, {"cookie": "x", "reset_time": LATER}]
    assert wasted == [{"cookie": "w", "reason": "Null"},
                      {"cookie": "b", "reason": "Banned", "last_error": "gone"}]
    cookie_array[0]["token"] = "edited"
    wasted.clear()
    assert pool.find("a") == {"cookie": "a"} and pool.counts() == (1, 1, 2)


def test_find_in_every_state():
    pool = make("a", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    assert pool.find("a") == {"cookie": "a"}
    assert pool.find("x") == {"cookie": "x", "reset_time": LATER}
    assert pool.find("w") == {"cookie": "w", "reason": "Null"}
    assert pool.find("nope") is None


# ---------------------------------------------------------------- add / remove / update


def test_add_appends_a_new_valid_cookie():
    pool = make("a")
    assert pool.add("n") is True
    assert list(pool.valid) == [{"cookie": "a"}, {"cookie": "n"}]
    assert pool.version == 1


@pytest.mark.parametrize("cookie", ["a", "x", "w"], ids=["valid", "exhausted", "invalid"])
def test_add_duplicate_in_any_state(cookie):
    pool = make("a", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    before = pool.snapshot()
    assert pool.add(cookie) is False
    assert pool.snapshot() == before
    assert pool.version == 0


@pytest.mark.parametrize("cookie", ["a", "x", "w"], ids=["valid", "exhausted", "invalid"])
def test_remove_from_each_state(cookie):
    pool = make("a", "b", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    assert pool.remove(cookie) is True
    assert pool.find(cookie) is None
    assert sum(pool.counts()) == 3
    assert pool.version == 1
    assert pool.add(cookie) is True  # gone for good: it can come back as new


def test_remove_cleans_only_its_sticky_entries():
    pool = make("a", "b")
    pool.pick(NOW, sticky_key="k1")
    pool.pick(NOW, sticky_key="k2")
    pool.sticky.bind("k3", "a", NOW)
    assert pool.remove("a")
    assert pool.sticky == {"k2": "b"}


def test_remove_unknown_cookie():
    pool = make("a")
    pool.pick(NOW, sticky_key="k")
    assert pool.remove("nope") is False
    assert pool.sticky == {"k": "a"} and pool.version == 0


@pytest.mark.parametrize("cookie", ["a", "x", "w"], ids=["valid", "exhausted", "invalid"])
def test_update_sets_and_removes_fields(cookie):
    pool = make("a", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    pool.update(cookie, token={"access": "t"}, last_error="boom", code_allowed=False)
    record = pool.find(cookie)
    assert (record["token"], record["last_error"], record["code_allowed"]) == ({"access": "t"}, "boom", False)
    pool.update(cookie, last_error=None, code_allowed=None, never_there=None)
    assert "last_error" not in record and "code_allowed" not in record and "never_there" not in record
    assert record["token"] == {"access": "t"}
    assert pool.version == 2


def test_update_unknown_cookie_is_a_no_op():
    pool = make("a")
    pool.update("nope", token="t")
    assert pool.version == 0 and pool.find("nope") is None


# ---------------------------------------------------------------- usage (§16.2)


@pytest.mark.parametrize("model, family", [
    ("claude-sonnet-4-5-20250929", "sonnet"),
    ("claude-3-7-Sonnet-latest", "sonnet"),
    ("claude-opus-4-1", "opus"),
    ("CLAUDE-OPUS-4", "opus"),
    ("opus-vs-sonnet", "opus"),  # opus is looked for first
    ("claude-3-5-haiku", "other"),
    ("", "other"),
])
def test_model_family(model, family):
    assert model_family(model) == family


SONNET_PAIR = {"total_input_tokens": 3, "total_output_tokens": 2,
               "sonnet_input_tokens": 3, "sonnet_output_tokens": 2}
OPUS_PAIR = {"total_input_tokens": 3, "total_output_tokens": 2,
             "opus_input_tokens": 3, "opus_output_tokens": 2}
TOTAL_PAIR = {"total_input_tokens": 3, "total_output_tokens": 2}


@pytest.mark.parametrize("model, expected", [
    ("claude-sonnet-4", {"session_usage": SONNET_PAIR, "weekly_usage": SONNET_PAIR,
                         "lifetime_usage": SONNET_PAIR, "weekly_sonnet_usage": SONNET_PAIR}),
    ("claude-opus-4", {"session_usage": OPUS_PAIR, "weekly_usage": OPUS_PAIR,
                       "lifetime_usage": OPUS_PAIR, "weekly_opus_usage": OPUS_PAIR}),
    ("claude-haiku-4", {"session_usage": TOTAL_PAIR, "weekly_usage": TOTAL_PAIR,
                        "lifetime_usage": TOTAL_PAIR}),
])
def test_add_usage_buckets_per_family(model, expected):
    record = {"cookie": "a"}
    add_usage(record, model, 3, 2)
    assert record == {"cookie": "a", **expected}


def test_add_usage_accumulates_into_existing_buckets():
    record = used("a")
    add_usage(record, "claude-sonnet-4", 10, 20)
    add_usage(record, "claude-opus-4", 1, 2)
    for name in ("session_usage", "weekly_usage", "lifetime_usage"):
        assert record[name] == {"total_input_tokens": 18, "total_output_tokens": 29,
                                "sonnet_input_tokens": 17, "sonnet_output_tokens": 27,
                                "opus_input_tokens": 8, "opus_output_tokens": 9}
    assert record["weekly_sonnet_usage"] == {**full_bucket(7), "total_input_tokens": 17,
                                             "total_output_tokens": 27, "sonnet_input_tokens": 17,
                                             "sonnet_output_tokens": 27}
    assert record["weekly_opus_usage"] == {**full_bucket(7), "total_input_tokens": 8,
                                           "total_output_tokens": 9, "opus_input_tokens": 8,
                                           "opus_output_tokens": 9}


@pytest.mark.parametrize("inp, out", [(0, 0), (-5, 0), (0, -1), (-2, -3)])
def test_add_usage_ignores_empty_exchanges(inp, out):
    record = used("a")
    add_usage(record, "claude-sonnet-4", inp, out)
    assert record == used("a")


def test_add_usage_counts_one_sided_exchanges():
    record = {"cookie": "a"}
    add_usage(record, "claude-haiku", 0, 5)
    assert record["session_usage"] == {"total_input_tokens": 0, "total_output_tokens": 5}


def test_add_usage_saturates_at_zero():
    record = used("a")
    add_usage(record, "claude-sonnet-4", -100, 1)
    assert record["session_usage"]["total_input_tokens"] == 0
    assert record["session_usage"]["sonnet_input_tokens"] == 0
    assert record["session_usage"]["total_output_tokens"] == 8
    assert record["weekly_opus_usage"] == full_bucket(7)



def test_add_usage_reads_hand_edited_counts_as_int_does():
    record = {"session_usage": {"total_input_tokens": "12", "total_output_tokens": 2.9,
                                "sonnet_input_tokens": True, "sonnet_output_tokens": -40}}
    add_usage(record, "claude-sonnet-4", 3, 5)
    assert record["session_usage"] == {"total_input_tokens": 15, "total_output_tokens": 7,
                                       "sonnet_input_tokens": 4, "sonnet_output_tokens": 0}
    assert all(type(v) is int for v in record["session_usage"].values())
    with pytest.raises(ValueError):
        add_usage({"weekly_usage": {"total_input_tokens": "many"}}, "claude-haiku", 1, 1)

def test_record_usage_on_the_pool():
    pool = make("a", exhausted=[("x", LATER)], invalid=[("w", "Null")])
    pool.record_usage("a", "claude-sonnet-4", 3, 2)
    assert pool.find("a")["weekly_sonnet_usage"] == SONNET_PAIR
    assert pool.version == 1
    pool.record_usage("x", "claude-opus-4", 3, 2)  # a parked cookie's last stream still counts
    assert pool.find("x")["weekly_opus_usage"] == OPUS_PAIR
    assert pool.version == 2


@pytest.mark.parametrize("cookie, inp, out", [("a", 0, 0), ("nope", 5, 5)])
def test_record_usage_no_ops(cookie, inp, out):
    pool = make("a")
    pool.record_usage(cookie, "claude-sonnet-4", inp, out)
    assert pool.find("a") == {"cookie": "a"}
    assert pool.version == 0


# ---------------------------------------------------------------- backoff (gateway.md §7.3)


@pytest.mark.parametrize("attempt, rand, expected", [
    (1, 0.0, 0.0),
    (5, 0.0, 0.0),
    (1, 1.0, 0.5),
    (2, 1.0, 1.0),
    (3, 1.0, 2.0),
    (4, 1.0, 4.0),
    (5, 1.0, 8.0),
    (6, 1.0, 8.0),   # capped
    (30, 1.0, 8.0),
    (3, 0.5, 1.0),
    (6, 0.25, 2.0),
])
def test_backoff_delay_defaults(attempt, rand, expected):
    assert backoff_delay(attempt, base=0.5, cap=8.0, rand=rand) == pytest.approx(expected)


@pytest.mark.parametrize("base, cap", [(0.5, 8.0), (1.0, 30.0), (0.1, 0.3), (2.0, 1.0)])
def test_backoff_delay_full_jitter_bounds(base, cap):
    for attempt in range(1, 12):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=base, cap=cap, rand=r / 10) for r in range(11)]
        assert delays[0] == 0.0
        assert delays[-1] == pytest.approx(ceiling)
        assert all(0.0 <= d <= ceiling + 1e-12 for d in delays)
        assert delays == sorted(delays)
