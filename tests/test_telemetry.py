"""Metrics registry and Prometheus text exposition 0.0.4 (gateway.md §12.2)."""

from __future__ import annotations

import math
import re

import pytest

from clewdr_lite.telemetry import (CONTENT_TYPE, LATENCY_BUCKETS, OVERHEAD_BUCKETS, Counter, Gauge, Histogram,
                                   Metrics, Registry, escape_label, fmt_value, read_rss, read_start_time)

# ── a minimal text-format parser, independent of the renderer ──

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)\Z")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def parse_labels(text: str) -> dict[str, str]:
    """`{a="x",b="y\\"z"}` → {"a": "x", "b": 'y"z'}, honouring the three escapes."""
    labels, i, body = {}, 0, text[1:-1]
    while i < len(body):
        eq = body.index("=", i)
        name = body[i:eq]
        assert body[eq + 1] == '"', text
        i, value = eq + 2, []
        while body[i] != '"':
            if body[i] == "\\":
                value.append(_UNESCAPE[body[i + 1]])
                i += 2
            else:
                value.append(body[i])
                i += 1
        assert name not in labels, f"duplicate label {name}"
        labels[name] = "".join(value)
        i += 1
        if i < len(body):
            assert body[i] == ",", text
            i += 1
    return labels


def parse_value(text: str) -> float:
    """A sample value as Prometheus reads it."""
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


def parse(text: str) -> dict[str, dict]:
    """Families by name: {"type", "help", "samples": [(sample name, labels, value)]}; checks structure."""
    assert text == "" or text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert name not in families, f"family {name} twice"
            current = families[name] = {"help": doc.replace("\\n", "\n").replace("\\\\", "\\"), "samples": []}
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert current is families[name]
            current["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"bad sample line {line!r}"
            name, labels, value = match.groups()
            family = next(f for f in families if name == f or name.removeprefix(f) in ("_bucket", "_sum", "_count"))
            assert families[family] is current, f"{name} outside its family"
            current["samples"].append((name, parse_labels(labels) if labels else {}, parse_value(value)))
    for name, family in families.items():
        if family["type"] == "histogram":
            check_histogram(name, family["samples"])
    return families


def check_histogram(name: str, samples: list) -> None:
    """Buckets are cumulative, end at +Inf, and +Inf equals _count."""
    series: dict[tuple, dict] = {}
    for sample, labels, value in samples:
        labels = dict(labels)
        le = labels.pop("le", None)
        entry = series.setdefault(tuple(sorted(labels.items())), {"buckets": []})
        if sample == name + "_bucket":
            entry["buckets"].append((parse_value(le), value))
        else:
            entry[sample.removeprefix(name)] = value
    for entry in series.values():
        bounds = [b for b, _ in entry["buckets"]]
        counts = [c for _, c in entry["buckets"]]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        assert counts == sorted(counts) and counts[-1] == entry["_count"]
        assert "_sum" in entry


# ── golden output ──

def test_golden_counter_and_gauge():
    reg = Registry()
    hits = reg.counter("app_hits_total", "Hits by path.", ("path", "code"))
    hits.labels(path="/b", code=200).inc()
    hits.labels(path="/a", code="500").inc(2)
    hits.labels(code=200, path="/b").inc(0.5)
    temp = reg.gauge("app_temperature_celsius", "Temperature.")
    temp.set(21.25)
    temp.dec(0.25)
    assert reg.render() == (
        "# HELP app_hits_total Hits by path.\n"
        "# TYPE app_hits_total counter\n"
        'app_hits_total{path="/a",code="500"} 2\n'
        'app_hits_total{path="/b",code="200"} 1.5\n'
        "# HELP app_temperature_celsius Temperature.\n"
        "# TYPE app_temperature_celsius gauge\n"
        "app_temperature_celsius 21\n")


def test_golden_histogram():
    reg = Registry()
    h = reg.histogram("job_seconds", "Job time.", ("job",), buckets=(0.5, 1, 2.5))
    for v in (0.1, 0.5, 0.7, 3.0):
        h.labels(job="x").observe(v)
    reg.histogram("idle_seconds", "Never observed.", buckets=(1,))
    assert reg.render() == (
        "# HELP job_seconds Job time.\n"
        "# TYPE job_seconds histogram\n"
        'job_seconds_bucket{job="x",le="0.5"} 2\n'
        'job_seconds_bucket{job="x",le="1"} 3\n'
        'job_seconds_bucket{job="x",le="2.5"} 3\n'
        'job_seconds_bucket{job="x",le="+Inf"} 4\n'
        'job_seconds_sum{job="x"} 4.3\n'
        'job_seconds_count{job="x"} 4\n'
        "# HELP idle_seconds Never observed.\n"
        "# TYPE idle_seconds histogram\n"
        'idle_seconds_bucket{le="1"} 0\n'
        'idle_seconds_bucket{le="+Inf"} 0\n'
        "idle_seconds_sum 0\n"
        "idle_seconds_count 0\n")


def test_unlabelled_counter_starts_at_zero_and_empty_registry_renders_nothing():
    reg = Registry()
    assert reg.render() == ""
    reg.counter("x_total", "X.")
    reg.counter("y_total", "Y.", ("a",))
    assert reg.render() == ("# HELP x_total X.\n# TYPE x_total counter\nx_total 0\n"
                            "# HELP y_total Y.\n# TYPE y_total counter\n")
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# ── escaping ──

def test_label_values_are_escaped():
    reg = Registry()
    c = reg.counter("e_total", "E.", ("v",))
    c.labels(v='say "hi"\\ to\nme').inc()
    assert reg.render().splitlines()[-1] == r'e_total{v="say \"hi\"\\ to\nme"} 1'
    assert escape_label('a\\"\n') == 'a\\\\\\"\\n'


def test_help_escapes_backslash_and_newline_but_not_quotes():
    reg = Registry()
    reg.gauge("h", 'Line one\nback\\slash "quoted"')
    assert reg.render().splitlines()[0] == r'# HELP h Line one\nback\\slash "quoted"'
    assert parse(reg.render())["h"]["help"] == 'Line one\nback\\slash "quoted"'


@pytest.mark.parametrize("value, text", [
    (0, "0"), (3, "3"), (2.0, "2"), (0.25, "0.25"), (1e-05, "1e-05"), (1e20, "1e+20"),
    (-1.5, "-1.5"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (True, "1")])
def test_value_format(value, text):
    assert fmt_value(value) == text


# ── histogram bucket math ──

def test_bucket_bounds_are_inclusive_and_cumulative():
    h = Histogram("b", "B.", buckets=(1, 2, 5))
    for v in (-3, 0, 1, 1.0000001, 2, 5, 5.0001, 1e9):
        h.observe(v)
    child = h.labels()
    assert child.counts == [3, 2, 1, 2]  # le=1: -3, 0, 1; le=2: 1.0000001, 2; le=5: 5; +Inf: two
    assert child.count == 8
    assert child.sum == pytest.approx(sum((-3, 0, 1, 1.0000001, 2, 5, 5.0001, 1e9)))
    buckets = [(s[1]["le"], s[2]) for s in parse(render(h))["b"]["samples"] if s[0] == "b_bucket"]
    assert buckets == [("1", 3), ("2", 5), ("5", 6), ("+Inf", 8)]


def test_spec_buckets():
    assert LATENCY_BUCKETS == (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
    assert OVERHEAD_BUCKETS == (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
    h = Histogram("l", "L.")
    assert [s[1]["le"] for s in parse(render(h))["l"]["samples"] if "le" in s[1]] == [
        "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "+Inf"]


@pytest.mark.parametrize("buckets", [(), (2, 1), (1, 1), (math.inf,)])
def test_bad_buckets(buckets):
    with pytest.raises(ValueError):
        Histogram("h", "H.", buckets=buckets)


def test_explicit_inf_bucket_is_implied_once():
    h = Histogram("h", "H.", buckets=(1, math.inf))
    assert render(h).count('le="+Inf"') == 1


def render(metric) -> str:
    reg = Registry()
    reg.register(metric)
    return reg.render()


# ── labels and children ──

def test_children_are_cached_and_shared_across_call_forms():
    c = Counter("c_total", "C.", ("a", "b"))
    one = c.labels(a="x", b=1)
    assert c.labels(a="x", b=1) is one
    assert c.labels(b="1", a="x") is one
    assert c.labels("x", 1) is one and c.labels("x", "1") is one
    assert list(c.series) == [("x", "1")]


@pytest.mark.parametrize("call", [
    lambda c: c.labels(a="x"), lambda c: c.labels(a="x", b="y", z="q"), lambda c: c.labels("x"),
    lambda c: c.labels(a="x", c="y")])
def test_wrong_labels(call):
    with pytest.raises(ValueError):
        call(Counter("c_total", "C.", ("a", "b")))


def test_labels_by_position_and_name_together():
    with pytest.raises(TypeError):
        Counter("c_total", "C.", ("a", "b")).labels("x", b="y")


def test_labelled_metrics_refuse_bare_updates():
    with pytest.raises(TypeError):
        Counter("c_total", "C.", ("a",)).inc()
    with pytest.raises(TypeError):
        Gauge("g", "G.", ("a",)).set(1)
    with pytest.raises(TypeError):
        Histogram("h", "H.", ("a",)).observe(1)


def test_counter_only_goes_up():
    with pytest.raises(ValueError):
        Counter("c_total", "C.").inc(-1)


@pytest.mark.parametrize("make", [
    lambda: Counter("bad-name", "x"), lambda: Counter("ok", "x", ("bad-label",)),
    lambda: Counter("ok", "x", ("__reserved",)), lambda: Counter("ok", "x", ("a", "a")),
    lambda: Histogram("ok", "x", ("le",))])
def test_invalid_names(make):
    with pytest.raises(ValueError):
        make()


def test_duplicate_registration():
    reg = Registry()
    reg.counter("x_total", "X.")
    with pytest.raises(ValueError):
        reg.gauge("x_total", "X.")


def test_remove_and_clear():
    reg = Registry()
    g = reg.gauge("g", "G.", ("k",))
    g.labels(k="a").set(1)
    g.labels("b").set(2)
    g.remove(k="a")
    assert [s[1] for s in parse(reg.render())["g"]["samples"]] == [{"k": "b"}]
    assert g.labels(k="a").value == 0  # a fresh series after removal
    g.clear()
    assert parse(reg.render())["g"]["samples"] == []
    u = reg.gauge("u", "U.")
    u.set(5)
    u.clear()
    u.inc()
    assert reg.render().endswith("\nu 1\n")


def test_gauge_track():
    g = Gauge("inflight", "I.")
    with g.track():
        with g.track():
            assert g.labels().value == 2
    assert g.labels().value == 0
    with pytest.raises(RuntimeError), g.track():
        raise RuntimeError
    assert g.labels().value == 0


# ── callback-backed metrics ──

def test_callback_gauges():
    reg = Registry()
    box = {"v": None}
    reg.gauge("plain", "P.", fn=lambda: box["v"])
    pool = reg.gauge("pool", "Pool.", ("provider", "state"))
    pool.labels("ignored", "x").set(9)  # a function-backed gauge renders only the function's samples
    pool.set_function(lambda: {("b", "active"): 2, ("a", "active"): 1})
    assert reg.render() == (
        "# HELP plain P.\n# TYPE plain gauge\n"
        "# HELP pool Pool.\n# TYPE pool gauge\n"
        'pool{provider="a",state="active"} 1\npool{provider="b",state="active"} 2\n')
    box["v"] = 7
    assert "\nplain 7\n" in reg.render()
    pool.set_function(None)
    assert 'pool{provider="ignored",state="x"} 9' in reg.render()


def test_callback_with_wrong_arity_fails_loudly():
    reg = Registry()
    reg.gauge("pool", "Pool.", ("provider", "state"), fn=lambda: {("only",): 1})
    with pytest.raises(ValueError):
        reg.render()


def test_histograms_are_not_callback_backed():
    with pytest.raises(TypeError):
        Histogram("h", "H.").set_function(lambda: 1)


# ── the gateway's series (gateway.md §12.2) ──

SPEC = {  # name: (type, label names)
    "clewdr_requests_total": ("counter", ("route", "provider", "model", "status")),
    "clewdr_request_duration_seconds": ("histogram", ("route", "provider")),
    "clewdr_upstream_ttfb_seconds": ("histogram", ("provider",)),
    "clewdr_overhead_seconds": ("histogram", ("route",)),
    "clewdr_tokens_total": ("counter", ("provider", "model", "kind")),
    "clewdr_cost_usd_total": ("counter", ("provider", "client_key")),
    "clewdr_retries_total": ("counter", ("provider", "reason")),
    "clewdr_fallbacks_total": ("counter", ("scenario",)),
    "clewdr_credentials": ("gauge", ("provider", "state")),
    "clewdr_inflight_requests": ("gauge", ()),
    "clewdr_client_key_budget_remaining_usd": ("gauge", ("client_key",)),
    "clewdr_subscription_utilization_ratio": ("gauge", ("credential", "window")),
    "clewdr_conserve_mode": ("gauge", ()),
    "clewdr_log_dropped_total": ("counter", ()),
    "process_resident_memory_bytes": ("gauge", ()),
    "process_start_time_seconds": ("gauge", ()),
}


def feed(metrics: Metrics) -> None:
    metrics.request_done(route="/v1/messages", provider="claude_web", model="claude-sonnet-4", status=200,
                         duration_s=1.5, ttfb_s=0.3, overhead_s=0.002, input_tokens=100, output_tokens=20,
                         cache_read_tokens=5, cost_usd=0.25, client_key='team "a"')
    metrics.request_done(route="/v1/chat/completions", provider=None, model=None, status=401, duration_s=0.001)
    metrics.retry("claude_web", "429")
    metrics.fallback("longContext")
    metrics.set_credentials("claude_web", 3, 1, 0)
    metrics.set_budget("bob", 4.5)
    metrics.set_utilization("sk-ant…AA", "five_hour", 0.42)
    metrics.set_conserve(True)
    metrics.log_dropped(3)
    metrics.inflight.inc()


def test_metrics_define_exactly_the_spec_series():
    reg = Registry()
    metrics = Metrics(reg, models=["claude-sonnet-4"], start_time=1_700_000_000.5)
    assert {name: (m.kind, m.labelnames) for name, m in reg.metrics.items()} == SPEC
    assert metrics.request_duration.buckets == LATENCY_BUCKETS
    assert metrics.upstream_ttfb.buckets == LATENCY_BUCKETS
    assert metrics.overhead.buckets == OVERHEAD_BUCKETS
    feed(metrics)
    families = parse(reg.render())
    for name, (kind, labelnames) in SPEC.items():
        assert families[name]["type"] == kind
        assert families[name]["samples"], name
        for sample, labels, _ in families[name]["samples"]:
            assert tuple(k for k in labels if k != "le") == labelnames, sample


def values(families: dict, name: str) -> dict[tuple, float]:
    """{sorted label items: value} for one sample name."""
    family = next(f for f in families if name.startswith(f))
    return {tuple(sorted(labels.items())): v for s, labels, v in families[family]["samples"] if s == name}


def test_request_done_and_friends_feed_the_series():
    reg = Registry()
    metrics = Metrics(reg, models=["claude-sonnet-4"], start_time=1_700_000_000.5)
    feed(metrics)
    fam = parse(reg.render())
    assert values(fam, "clewdr_requests_total") == {
        (("model", "claude-sonnet-4"), ("provider", "claude_web"), ("route", "/v1/messages"), ("status", "200")): 1,
        (("model", "other"), ("provider", ""), ("route", "/v1/chat/completions"), ("status", "401")): 1}
    assert values(fam, "clewdr_tokens_total") == {
        (("kind", "input"), ("model", "claude-sonnet-4"), ("provider", "claude_web")): 100,
        (("kind", "output"), ("model", "claude-sonnet-4"), ("provider", "claude_web")): 20,
        (("kind", "cache_read"), ("model", "claude-sonnet-4"), ("provider", "claude_web")): 5}
    assert values(fam, "clewdr_cost_usd_total") == {(("client_key", 'team "a"'), ("provider", "claude_web")): 0.25}
    assert values(fam, "clewdr_upstream_ttfb_seconds_count") == {(("provider", "claude_web"),): 1}
    assert values(fam, "clewdr_overhead_seconds_count") == {(("route", "/v1/messages"),): 1}
    assert values(fam, "clewdr_request_duration_seconds_sum") == {
        (("provider", "claude_web"), ("route", "/v1/messages")): 1.5,
        (("provider", ""), ("route", "/v1/chat/completions")): 0.001}
    assert values(fam, "clewdr_retries_total") == {(("provider", "claude_web"), ("reason", "429")): 1}
    assert values(fam, "clewdr_fallbacks_total") == {(("scenario", "longContext"),): 1}
    assert values(fam, "clewdr_credentials") == {
        (("provider", "claude_web"), ("state", s)): n for s, n in
        (("active", 3), ("cooling", 1), ("disabled", 0), ("open", 0))}
    assert values(fam, "clewdr_client_key_budget_remaining_usd") == {(("client_key", "bob"),): 4.5}
    assert values(fam, "clewdr_subscription_utilization_ratio") == {
        (("credential", "sk-ant…AA"), ("window", "five_hour")): 0.42}
    assert values(fam, "clewdr_conserve_mode") == {(): 1}
    assert values(fam, "clewdr_log_dropped_total") == {(): 3}
    assert values(fam, "clewdr_inflight_requests") == {(): 1}
    assert values(fam, "process_start_time_seconds") == {(): 1_700_000_000.5}


def test_request_series_follow_families_that_dropped_theirs():
    reg = Registry()
    metrics = Metrics(reg, start_time=0)
    done = dict(route="/v1/messages", provider="p", model="m", duration_s=0.1, ttfb_s=0.05)
    metrics.request_done(status=200, input_tokens=5, **done)
    metrics.requests.clear()
    metrics.tokens.clear()
    metrics.upstream_ttfb.remove("p")
    metrics.request_done(status=200, input_tokens=7, **done)
    fam = parse(reg.render())
    labels = (("model", "m"), ("provider", "p"), ("route", "/v1/messages"), ("status", "200"))
    assert values(fam, "clewdr_requests_total") == {labels: 1}
    assert values(fam, "clewdr_tokens_total") == {(("kind", "input"), ("model", "m"), ("provider", "p")): 7}
    assert values(fam, "clewdr_upstream_ttfb_seconds_count") == {(("provider", "p"),): 1}
    assert values(fam, "clewdr_request_duration_seconds_count") == {(("provider", "p"), ("route", "/v1/messages")): 2}


def test_an_int_and_a_text_status_share_a_series_and_counts_below_one_are_not_counted():
    reg = Registry()
    metrics = Metrics(reg, start_time=0)
    for status in (200, "200"):
        metrics.request_done(route="/r", provider="p", model="m", status=status, duration_s=0.1,
                             input_tokens=-3, output_tokens=0)
    fam = parse(reg.render())
    assert values(fam, "clewdr_requests_total") == {
        (("model", "m"), ("provider", "p"), ("route", "/r"), ("status", "200")): 2}
    assert values(fam, "clewdr_tokens_total") == {}
    assert values(fam, "clewdr_upstream_ttfb_seconds_count") == {}  # never observed: no series


def test_unbounded_models_and_reload():
    metrics = Metrics(Registry(), start_time=0)
    assert metrics.model_label("anything") == "anything"
    assert metrics.model_label(None) == ""
    metrics.set_models(["a"])
    assert (metrics.model_label("a"), metrics.model_label("b"), metrics.model_label(None)) == ("a", "other", "other")


def test_budget_none_drops_the_series():
    reg = Registry()
    metrics = Metrics(reg, start_time=0)
    metrics.set_budget("bob", 1)
    metrics.set_budget("bob", None)
    assert values(parse(reg.render()), "clewdr_client_key_budget_remaining_usd") == {}


def test_watch_credentials_reads_the_pool_at_render_time():
    reg = Registry()
    metrics = Metrics(reg, start_time=0)
    pool = {"gemini": {"active": 2, "open": 1}}
    metrics.watch_credentials(lambda: pool)
    first = values(parse(reg.render()), "clewdr_credentials")
    assert first == {(("provider", "gemini"), ("state", s)): n for s, n in
                     (("active", 2), ("cooling", 0), ("disabled", 0), ("open", 1))}
    pool["gemini"]["active"] = 0
    assert values(parse(reg.render()), "clewdr_credentials")[(("provider", "gemini"), ("state", "active"))] == 0
    metrics.watch_credentials(None)
    metrics.set_credentials("openai", 1, 0, 0)
    assert len(values(parse(reg.render()), "clewdr_credentials")) == 4


def test_parse_back_with_hostile_label_values():
    reg = Registry()
    metrics = Metrics(reg, start_time=0)
    nasty = 'x\\"}\n{le="1"} 9 ,='
    metrics.request_done(route=nasty, provider=nasty, model=nasty, status=nasty, duration_s=0.2)
    fam = parse(reg.render())
    assert values(fam, "clewdr_requests_total") == {
        tuple(sorted({"route": nasty, "provider": nasty, "model": nasty, "status": nasty}.items())): 1}
    assert values(fam, "clewdr_request_duration_seconds_count") == {
        (("provider", nasty), ("route", nasty)): 1}


# ── /proc readers ──

def test_proc_readers(tmp_path, monkeypatch):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "statm").write_text("1000 250 30 1 0 200 0\n")
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    fields = ["S"] + ["0"] * 18 + ["12345"] + ["0"] * 30
    (tmp_path / "self" / "stat").write_text("42 (we ird) name)) " + " ".join(fields) + "\n")
    monkeypatch.setattr("os.sysconf", {"SC_PAGE_SIZE": 4096, "SC_CLK_TCK": 100}.__getitem__)
    assert read_rss(str(tmp_path)) == 250 * 4096
    assert read_start_time(str(tmp_path)) == 1700000000 + 123.45


def test_proc_readers_without_proc(tmp_path):
    assert read_rss(str(tmp_path)) is None
    assert read_start_time(str(tmp_path)) is None
    reg = Registry()
    Metrics(reg, proc=str(tmp_path))
    fam = parse(reg.render())
    assert fam["process_resident_memory_bytes"]["samples"] == []
    assert fam["process_start_time_seconds"]["samples"] == []
