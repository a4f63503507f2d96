"""Circuit breaker (gateway.md §6) under an explicit clock."""

from __future__ import annotations

import pytest

from clewdr_lite.breaker import BUCKETS, CLOSED, HALF_OPEN, OPEN, PROBE_WAIT, Breaker, Breakers, BreakerSettings

T = 1_760_000_000.0


def failing(breaker: Breaker, n: int, at: float = T) -> None:
    for _ in range(n):
        assert breaker.allow(at)
        breaker.record(False, at)


def test_five_consecutive_failures_open():
    b = Breaker()
    failing(b, 4)
    assert b.state(T) == CLOSED and b.allow(T)
    b.record(False, T)
    assert b.state(T) == OPEN and not b.allow(T)
    assert b.retry_in(T + 10) == pytest.approx(20.0)


def test_a_success_resets_the_streak():
    b = Breaker()
    failing(b, 4)
    b.record(True, T)
    failing(b, 4)
    assert b.state(T) == CLOSED


@pytest.mark.parametrize("outcomes, opened", [
    ([True, False] * 5, True),                    # 50 % of 10 in the window
    ([False, True] * 5, False),                   # the rule is checked on a failure only
    ([False, True] * 5 + [False], True),          # 6 of 11
    ([False, True, True] * 3 + [False], False),   # 40 % of 10
    ([False, True] * 4 + [False], False),         # 5 of 9: too few requests
    ([False, False, True] * 4, True),             # 8 of 12
])
def test_failure_ratio_in_the_window(outcomes, opened):
    b = Breaker()
    for i, ok in enumerate(outcomes):
        b.record(ok, T + i)
    assert (b.state(T + len(outcomes)) == OPEN) is opened


def test_old_outcomes_leave_the_window():
    b = Breaker()
    for i in range(4):
        b.record(False, T + i)
        b.record(True, T + i)
    # 4 failures of 8 long ago, then 1 failure + 1 success: the window holds 2, below min_requests
    b.record(True, T + 100)
    b.record(False, T + 100)
    assert b.state(T + 100) == CLOSED


@pytest.mark.parametrize("later, opened", [(59.5, True), (60.5, False)])
def test_an_outcome_counts_for_the_window_to_within_one_bucket(later, opened):
    b = Breaker()
    for _ in range(4):
        b.record(True, T)
        b.record(False, T)
    b.record(True, T + later)
    b.record(False, T + later)  # 5 of 10 while the first eight are in the window; 1 of 2 after
    assert (b.state(T + later) == OPEN) is opened


def test_the_window_holds_counts_not_outcomes():
    b = Breaker()
    for i in range(100_000):  # 1,000 a second for 100 s
        b.record(True, T + i / 1000)
    assert len(b._buckets) <= BUCKETS and b._total == 60_000


def test_new_window_settings_start_the_window_afresh():
    breakers = Breakers()
    for _ in range(4):
        breakers.record("p", "k", True, T)
        breakers.record("p", "k", False, T)
    breakers.reconfigure(BreakerSettings(window_s=120))
    breakers.record("p", "k", True, T + 1)
    breakers.record("p", "k", False, T + 1)  # 1 of 2 under the new window: not enough to open
    assert breakers.state("p", "k", T + 1) == CLOSED


def test_new_settings_with_the_same_window_keep_its_counts():
    breakers = Breakers()
    for _ in range(4):
        breakers.record("p", "k", True, T)
        breakers.record("p", "k", False, T)
    breakers.reconfigure(BreakerSettings(failures=99))  # a new settings object, the same window
    breakers.record("p", "k", True, T + 0.5)
    breakers.record("p", "k", False, T + 0.5)  # 5 of 10 in the window still: the ratio rule opens it
    assert breakers.state("p", "k", T + 0.5) == OPEN


def test_outcomes_move_on_to_a_new_bucket_when_theirs_is_over():
    b = Breaker()
    b.record(True, T)
    b.record(True, T + 0.999)  # the same one-second bucket
    b.record(False, T + 1.0)   # the next
    assert [bucket[1:] for bucket in b._buckets] == [[2, 0], [1, 1]] and (b._total, b._failed) == (3, 1)


def test_half_open_allows_a_single_probe():
    b = Breaker()
    failing(b, 5)
    later = T + 30
    assert b.state(later - 0.001) == OPEN
    assert b.state(later) == HALF_OPEN and b.retry_in(later) == 0.0
    assert b.allow(later) is True                       # the probe
    assert b.allow(later) is False                      # others wait while it is in flight
    assert b.allow(later + 5) is False
    assert b.retry_in(later + 5) == PROBE_WAIT


def test_probe_success_closes():
    b = Breaker()
    failing(b, 5)
    assert b.allow(T + 30)
    b.record(True, T + 31)
    assert b.state(T + 31) == CLOSED and b.allow(T + 31) and b.allow(T + 31)
    failing(b, 5, T + 40)                               # the open period is back to 30 s
    assert b.retry_in(T + 40) == pytest.approx(30.0)


def test_probe_failure_reopens_with_a_doubled_period_up_to_the_cap():
    b = Breaker()
    failing(b, 5)
    now, periods = T + 30, []
    for _ in range(6):
        assert b.allow(now)
        b.record(False, now)
        periods.append(b.retry_in(now))
        now += periods[-1]
    assert periods == [60, 120, 240, 300, 300, 300]


def test_late_outcomes_do_not_move_an_open_breaker():
    b = Breaker()
    failing(b, 5)
    b.record(True, T + 1)
    b.record(False, T + 2)
    assert b.state(T + 2) == OPEN and b.retry_in(T + 2) == pytest.approx(28.0)


def test_an_outcome_without_a_probe_in_half_open_is_ignored():
    b = Breaker()
    failing(b, 5)
    b.record(False, T + 30)                             # nobody took the probe
    assert b.state(T + 30) == HALF_OPEN and b.allow(T + 30)


def test_a_released_or_stale_probe_lets_another_through():
    b = Breaker(probe_timeout_s=60)
    failing(b, 5)
    assert b.allow(T + 30) and not b.allow(T + 31)
    b.release()
    assert b.allow(T + 32) and not b.allow(T + 33)
    assert b.allow(T + 92)                              # the stuck probe is given up after 60 s


def test_settings_are_keyword_overrides():
    b = Breaker(failures=2, open_s=10, max_open_s=15)
    failing(b, 2)
    assert b.retry_in(T) == 10
    assert b.allow(T + 10)
    b.record(False, T + 10)
    assert b.retry_in(T + 10) == 15


def test_settings_from_table():
    warnings = []
    s = BreakerSettings.from_table({"failures": 3, "open_s": 10, "ratio": 2, "window_s": "x", "max": 1},
                                   warn=warnings.append)
    assert (s.failures, s.open_s, s.ratio, s.window_s) == (3, 10.0, 0.5, 60.0)
    assert len(warnings) == 3
    assert BreakerSettings.from_table(None, warn=pytest.fail) == BreakerSettings()
    assert BreakerSettings.from_table({"failures": 2.5}, warn=warnings.append).failures == 5


# ---------------------------------------------------------------- Breakers


def test_breakers_are_per_provider_and_credential():
    bs = Breakers(BreakerSettings(failures=1))
    bs.record("anthropic", "k1", False, T)
    assert bs.state("anthropic", "k1", T) == OPEN
    assert bs.state("anthropic", "k2", T) == CLOSED and bs.allow("anthropic", "k2", T)
    assert bs.state("openai", "k1", T) == CLOSED
    assert bs.snapshot(T) == {("anthropic", "k1"): OPEN, ("anthropic", "k2"): CLOSED}


def test_provider_breaker_opens_when_all_credentials_are_open():
    bs = Breakers(BreakerSettings(failures=1))
    bs.record("p", "a", False, T)
    assert not bs.provider_open("p", ["a", "b"], T)
    bs.record("p", "b", False, T + 5)
    assert bs.provider_open("p", ["a", "b"], T + 5)
    assert bs.provider_retry_in("p", ["a", "b"], T + 5) == pytest.approx(25.0)
    assert not bs.provider_open("p", [], T)
    assert bs.provider_retry_in("p", ["a", "c"], T + 5) == 0.0


def test_forget_and_reconfigure():
    bs = Breakers(BreakerSettings(failures=1))
    bs.record("p", "a", False, T)
    bs.record("q", "a", False, T)
    bs.forget("p", "a")
    assert bs.state("p", "a", T) == CLOSED and bs.state("q", "a", T) == OPEN
    bs.forget("q")
    assert bs.snapshot(T) == {}
    bs.reconfigure(BreakerSettings(failures=3))
    bs.record("p", "a", False, T)
    assert bs.state("p", "a", T) == CLOSED
