"""Client keys (gateway.md §9): parsing, lookup, admission order, buckets, periods; prices (§10)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

from clewdr_lite.client_keys import (
    PRICES,
    ClientKey,
    ClientKeys,
    TokenBucket,
    cost,
    hash_key,
    new_key,
    parse_key,
    period_end,
    period_start,
    price_for,
)
from clewdr_lite.errors import AuthError, PermissionDenied, RateLimited


def epoch(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


NOW = epoch(2025, 10, 15, 13, 30)           # a Wednesday
PLAIN = "sk-clewdr-" + "A" * 43
DIGEST = hashlib.sha256(PLAIN.encode()).hexdigest()


def keys(*entries, warn=pytest.fail, previous=None) -> ClientKeys:
    return ClientKeys.from_tables({"client_keys": list(entries)}, warn=warn, previous=previous)


def one(**fields) -> ClientKey:
    return keys({"id": "k1", "key_hash": DIGEST, **fields}).by_id["k1"]


# ---------------------------------------------------------------- new keys and parsing


def test_new_key_is_shown_once_and_stored_as_its_digest():
    plain, table = new_key(bytes(range(32)), now=NOW + 0.7, name="phone", rpm=30)
    assert plain.startswith("sk-clewdr-") and len(plain) == 10 + 43
    assert plain not in table.values()
    assert table == {"id": hash_key(plain)[:8], "name": "phone", "key_hash": hash_key(plain),
                     "key_prefix": plain[:14], "created_at": int(NOW), "disabled": False, "rpm": 30}
    registry = keys(table)
    assert registry.lookup(plain).name == "phone"
    with pytest.raises(ValueError):
        new_key(b"short", now=NOW)


@pytest.mark.parametrize("stored", [
    {"key_hash": DIGEST}, {"key_hash": DIGEST.upper()}, {"key": DIGEST}, {"key": PLAIN},
])
def test_key_forms(stored):
    registry = keys({"id": "k1", **stored})
    assert registry.lookup(PLAIN).id == "k1"
    assert registry.lookup(PLAIN + "x") is None and registry.lookup("") is None


def test_all_fields_parse():
    key = one(name="phone", key_prefix="sk-clewdr-AAAA", created_at=1, expires_at=2.5, disabled=False,
              models=["claude-*", "sonnet"], providers="gemini", rpm=30, tpm=200000, max_parallel=2,
              budget_usd=5, budget_period="monthly", budget_reset_at=3, group="family", device="phone",
              note="n")
    assert key == ClientKey(id="k1", key_hash=DIGEST, name="phone", key_prefix="sk-clewdr-AAAA",
                            created_at=1.0, expires_at=2.5, models=("claude-*", "sonnet"),
                            providers=("gemini",), rpm=30, tpm=200000, max_parallel=2, budget_usd=5.0,
                            budget_period="monthly", budget_reset_at=3.0, group="family",
                            device="phone", note="n")


def test_brief_spellings():
    key = one(enabled=False, budget=2, period="daily")
    assert (key.disabled, key.budget_usd, key.budget_period) == (True, 2.0, "daily")
    assert one(budget_usd=1).budget_period == "total"
    assert keys({"key": PLAIN}).keys[0].id == DIGEST[:8]          # id from the digest
    assert keys({"key": PLAIN}).keys[0].key_prefix == PLAIN[:14]


@pytest.mark.parametrize("entry, message", [
    ({"id": "k1"}, "needs key_hash"),
    ({"id": "k1", "key": "not-a-key"}, "needs key_hash"),
    ({"id": "bad id", "key_hash": DIGEST}, "is not [A-Za-z0-9_-]+"),
    ("junk", "needs key_hash"),
])
def test_bad_entries_are_skipped(entry, message):
    warnings = []
    assert keys(entry, warn=warnings.append).keys == ()
    assert len(warnings) == 1 and message in warnings[0]


def test_bad_fields_are_dropped_with_a_warning():
    warnings = []
    key = parse_key({"id": "k1", "key_hash": DIGEST, "rpm": 0, "tpm": "many", "models": [1],
                     "budget_usd": -1, "budget_period": "hourly", "expires_at": "soon", "colour": "red"},
                    "client_keys[0]", warnings.append)
    assert (key.rpm, key.tpm, key.models, key.budget_usd, key.budget_period, key.expires_at) == (
        None, None, (), None, "total", None)
    assert len(warnings) == 7


def test_duplicates_are_skipped():
    warnings = []
    registry = keys({"id": "a", "key_hash": DIGEST}, {"id": "a", "key_hash": "0" * 64},
                    {"id": "b", "key": PLAIN}, warn=warnings.append)
    assert [k.id for k in registry.keys] == ["a"] and len(warnings) == 2
    assert ClientKeys.from_tables({}, warn=pytest.fail).keys == ()
    assert ClientKeys.from_tables([{"id": "x", "key": PLAIN}], warn=pytest.fail).keys[0].id == "x"


# ---------------------------------------------------------------- admission (§9.3)


def admit(registry, key, *, model="claude-sonnet-4-5", now=NOW, estimate=100, spent=0.0, **kw):
    return registry.admit(key, model=model, now=now, estimate_tokens=estimate, spent=spent, **kw)


# (fields, admit kwargs, error class, status, message): each row fails exactly one check,
# with every later check failing too, so the order shows
ORDER = [
    ({"disabled": True, "expires_at": NOW - 1, "models": ["gpt-*"], "budget_usd": 0},
     {}, AuthError, 401, "disabled"),
    ({"expires_at": NOW, "models": ["gpt-*"], "budget_usd": 0}, {}, AuthError, 401, "key expired"),
    ({"models": ["gpt-*"], "providers": ["openai"], "budget_usd": 0}, {"provider": "claude_code"},
     PermissionDenied, 403, "model not allowed for this key"),
    ({"providers": ["openai"], "budget_usd": 0}, {"provider": "claude_code"},
     PermissionDenied, 403, "provider not allowed"),
    ({"budget_usd": 5.0, "budget_period": "monthly", "rpm": 1}, {"spent": 5.0},
     PermissionDenied, 403, "budget exhausted until 2025-11-01T00:00:00Z"),
]


@pytest.mark.parametrize("fields, kw, error, status, message", ORDER)
def test_admission_order(fields, kw, error, status, message):
    registry = keys({"id": "k1", "key_hash": DIGEST, "rpm": 1, **fields})
    key = registry.by_id["k1"]
    with pytest.raises(error, match=message) as caught:
        admit(registry, key, **kw)
    assert caught.value.status == status
    assert registry.in_flight(key) == 0


def test_budget_is_never_a_429_and_total_has_no_reset_time():
    key = one(budget_usd=1.0)
    with pytest.raises(PermissionDenied) as caught:
        admit(keys(), key, spent=1.5)
    assert caught.value.status == 403 and caught.value.message == "budget exhausted"
    admit(keys(), key, spent=0.99)


@pytest.mark.parametrize("globs, model, resolved, allowed", [
    ((), "anything", None, True),
    (("claude-*",), "Claude-Sonnet-4-5", None, True),              # case-insensitive
    (("sonnet",), "sonnet", "claude_code/claude-sonnet-4-6", True),   # the alias as sent
    (("claude_code/*",), "sonnet", "claude_code/claude-sonnet-4-6", True),  # or the resolved name
    (("gpt-*",), "sonnet", "claude_code/claude-sonnet-4-6", False),
])
def test_model_globs(globs, model, resolved, allowed):
    assert ClientKey("k", DIGEST, models=globs).allows_model(model, resolved) is allowed


def test_rpm_bucket():
    registry = keys({"id": "k1", "key_hash": DIGEST, "rpm": 2})
    key = registry.by_id["k1"]
    admit(registry, key)
    admit(registry, key)
    with pytest.raises(RateLimited) as caught:
        admit(registry, key, now=NOW + 1)
    assert caught.value.status == 429 and caught.value.retry_after == 29    # 1 token at 2/min
    assert caught.value.headers["retry-after"] == "29"
    admit(registry, key, now=NOW + 30)


def test_tpm_bucket_goes_negative_and_refuses_until_positive():
    registry = keys({"id": "k1", "key_hash": DIGEST, "tpm": 600})     # 10 tokens a second
    key = registry.by_id["k1"]
    admit(registry, key, estimate=5000)                                 # any positive level admits
    with pytest.raises(RateLimited) as caught:
        admit(registry, key, estimate=1)
    assert caught.value.retry_after == 441                              # (4400 + 1) / 10, rounded up
    registry.record_tokens(key, 200, NOW, estimated=5000)               # the estimate was high
    admit(registry, key, estimate=1)


def test_a_refused_request_takes_nothing_from_the_buckets():
    registry = keys({"id": "k1", "key_hash": DIGEST, "rpm": 1, "tpm": 60, "max_parallel": 1})
    key = registry.by_id["k1"]
    admit(registry, key, estimate=30)
    with pytest.raises(RateLimited) as caught:
        admit(registry, key, now=NOW + 60, estimate=30)     # rpm refilled, tpm refilled: parallel
    assert (caught.value.message, caught.value.retry_after) == ("too many parallel requests for this key", 1)
    registry.release(key)
    admit(registry, key, now=NOW + 60, estimate=30)      # the refused attempt took no rpm token
    assert registry.in_flight(key) == 1


def test_rpm_is_checked_before_tpm():
    registry = keys({"id": "k1", "key_hash": DIGEST, "rpm": 1, "tpm": 60})
    key = registry.by_id["k1"]
    admit(registry, key, estimate=600)
    with pytest.raises(RateLimited, match="requests per minute"):
        admit(registry, key, now=NOW + 1)
    with pytest.raises(RateLimited, match="tokens per minute"):
        admit(registry, key, now=NOW + 60)


def test_reload_keeps_live_state_of_unchanged_keys():
    table = {"id": "k1", "key_hash": DIGEST, "rpm": 1, "max_parallel": 5}
    old = keys(table)
    admit(old, old.by_id["k1"])
    same = keys(table, previous=old)
    assert same.in_flight(same.by_id["k1"]) == 1
    with pytest.raises(RateLimited):
        admit(same, same.by_id["k1"])
    raised = keys({**table, "rpm": 2}, previous=old)                     # a new limit: a new bucket
    admit(raised, raised.by_id["k1"])


# ---------------------------------------------------------------- token bucket


def test_token_bucket():
    bucket = TokenBucket(60, NOW)
    assert bucket.take(60, NOW) == 0.0
    assert bucket.take(1, NOW) == pytest.approx(1.0)
    assert bucket.take(1, NOW + 1) == 0.0
    assert bucket.wait(1, NOW + 1) == pytest.approx(1.0)
    assert bucket.take(100, NOW + 1000) == 0.0                          # more than the capacity
    assert bucket.level == pytest.approx(-40)
    bucket.charge(-1000, NOW + 1000)
    assert bucket.level == 60                                           # refunds stop at capacity
    bucket.take(1, NOW)                                                 # a clock stepping back
    assert bucket.level == 59


# ---------------------------------------------------------------- periods (§9.5)


@pytest.mark.parametrize("period, start, end", [
    ("daily", epoch(2025, 10, 15), epoch(2025, 10, 16)),
    ("weekly", epoch(2025, 10, 13), epoch(2025, 10, 20)),               # Monday 00:00 UTC
    ("monthly", epoch(2025, 10, 1), epoch(2025, 11, 1)),
    ("total", 0.0, None),
])
def test_periods(period, start, end):
    assert period_start(period, NOW) == start
    assert period_end(period, NOW) == end


def test_period_edges_and_anchor():
    assert period_end("monthly", epoch(2025, 12, 31, 23)) == epoch(2026, 1, 1)
    assert period_start("weekly", epoch(2025, 10, 13)) == epoch(2025, 10, 13)
    assert period_start("monthly", NOW, anchor=epoch(2025, 10, 10)) == epoch(2025, 10, 10)
    assert period_start("monthly", NOW, anchor=epoch(2025, 9, 10)) == epoch(2025, 10, 1)
    assert period_start("total", NOW, anchor=epoch(2025, 9, 10)) == epoch(2025, 9, 10)
    assert period_start("daily", NOW, anchor=NOW + 10) == epoch(2025, 10, 15)   # a future anchor
    with pytest.raises(ValueError):
        period_start("hourly", NOW)


# ---------------------------------------------------------------- prices and cost (§10)


@pytest.mark.parametrize("model, expected", [
    ("claude-sonnet-4-5-20250929", (3.0, 15.0, 0.30, 3.75)),
    ("anthropic/claude-sonnet-4.5", (3.0, 15.0, 0.30, 3.75)),          # the spec's example
    ("claude-sonnet-4-5@20250929", (3.0, 15.0, 0.30, 3.75)),           # Vertex
    ("claude-opus-4-1-20250805", (15.0, 75.0, 1.50, 18.75)),
    ("claude-opus-4-5-20251101", (5.0, 25.0, 0.50, 6.25)),
    ("claude-haiku-4-5", (1.0, 5.0, 0.10, 1.25)),
    ("claude-3-5-haiku-20241022", (0.80, 4.0, 0.08, 1.0)),
    ("gemini-2.5-flash-lite", (0.10, 0.40, 0.01, 0.10)),
    ("models/gemini-2.5-flash", (0.30, 2.50, 0.03, 0.30)),
    ("gpt-4o-mini-2024-07-18", (0.15, 0.60, 0.075, 0.15)),
    ("gpt-4o", (2.50, 10.0, 1.25, 2.50)),
    ("openai/o3-mini", (1.10, 4.40, 0.55, 1.10)),
    ("deepseek/deepseek-chat-v3.1:free", (0.0, 0.0, 0.0, 0.0)),
])
def test_bundled_prices(model, expected):
    price = price_for(model)
    assert tuple(price[f] for f in ("input", "output", "cache_read", "cache_write")) == expected


@pytest.mark.parametrize("model", ["llama3-70b", "gpt-4o1", "o30", "", None])
def test_unknown_models_have_no_price(model):
    assert price_for(model) is None
    assert cost(model, {"input_tokens": 1000}) == 0.0


def test_cost_formula():
    usage = {"input_tokens": 1000, "output_tokens": 2000, "cache_read_input_tokens": 10000,
             "cache_creation_input_tokens": 4000, "service_tier": "standard"}
    assert cost("claude-sonnet-4-5", usage) == pytest.approx((3000 + 30000 + 3000 + 15000) / 1e6)
    assert cost("claude-sonnet-4-5", {"input": 1_000_000}) == pytest.approx(3.0)


def test_a_reloaded_price_table_prices_the_next_request():
    usage = {"input_tokens": 1_000_000}
    before, after = {"my-model": {"input": 1.0, "output": 1.0}}, {"my-model": {"input": 4.0, "output": 1.0}}
    assert cost("my-model", usage, before) == pytest.approx(1.0)
    assert cost("my-model", usage, after) == pytest.approx(4.0)    # a new table: priced afresh
    assert cost("my-model", usage, before) == pytest.approx(1.0)
    assert cost("my-model", usage) == 0.0                           # no table: not a bundled model


def test_overrides_beat_the_bundled_table():
    overrides = {"anthropic/claude-sonnet-4.5": {"input": 2.0, "output": 10.0},
                 "qwen/*": {"input": 0.1, "output": 0.2, "cache_read": 0.01}}
    assert price_for("anthropic/claude-sonnet-4.5", overrides) == {
        "input": 2.0, "output": 10.0, "cache_read": 2.0, "cache_write": 2.0}   # missing: as input
    assert cost("qwen/qwen3-coder", {"input_tokens": 10, "cache_read_input_tokens": 100}, overrides) == \
        pytest.approx((1 + 1) / 1e6)
    assert price_for("claude-opus-4-6", overrides) == PRICES["claude-opus-4-6"]
