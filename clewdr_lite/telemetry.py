"""Metrics registry and Prometheus text exposition 0.0.4, written by hand (gateway.md §12.2).

    Registry ─ Counter ─┐
             ─ Gauge   ─┼─ labels(**values) → child (cached: one dict lookup, then `.inc()` etc.)
             ─ Histogram┘
    Registry.render() → the /metrics body;  Metrics(registry) → exactly the series of §12.2

Single event loop, so no locks. Children are cached by the call's own label key (the positional
tuple, or the keyword items in call order); a miss validates, stringifies and files the child under
its canonical value tuple, so `status=200` and `status="200"` share a series. Counters and gauges
may be callback-backed (`set_function`): the function is called at render time.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# gateway.md §12.2: request and time-to-first-byte latency, and the proxy's own overhead (seconds)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
CREDENTIAL_STATES = ("active", "cooling", "disabled", "open")
OTHER_MODEL = "other"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def fmt_value(value: float) -> str:
    """A sample value as Go's %g-shortest would write it: `1`, `0.25`, `+Inf`, `NaN`."""
    if value.__class__ is int:
        return str(value)
    value = float(value)
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label(value: str) -> str:
    """Escape a label value: backslash, double quote, newline."""
    return value.translate(_LABEL_ESCAPES)


def label_pairs(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`a="1",b="2"` for the names and (string) values, escaped; empty without labels."""
    return ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values))


class _Value:
    """One counter or gauge series: its value and its pre-rendered label set."""

    __slots__ = ("value", "pairs")

    def __init__(self, pairs: str) -> None:
        self.value = 0
        self.pairs = pairs


class CounterChild(_Value):
    """A counter series."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        """Add a non-negative amount."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class GaugeChild(_Value):
    """A gauge series."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        """Add to the gauge."""
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        """Subtract from the gauge."""
        self.value -= amount

    def set(self, value: float) -> None:
        """Set the gauge."""
        self.value = value


class HistogramChild:
    """A histogram series: per-bucket counts (the last is +Inf) and the running sum."""

    __slots__ = ("bounds", "counts", "sum", "pairs")

    def __init__(self, pairs: str, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.pairs = pairs

    def observe(self, value: float) -> None:
        """Count one observation in the first bucket whose upper bound `le` holds it."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations."""
        return sum(self.counts)


class Metric:
    """A metric family: name, help, label names, and its children by label values."""

    kind = "untyped"
    child_class: type = _Value

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._check_names()
        self.series: dict[tuple[str, ...], object] = {}
        self._cache: dict[tuple, object] = {}
        self.function: Callable | None = None
        self.on_change: Callable[[], None] | None = None  # told when series are dropped
        if not self.labelnames:
            self._bind(self.labels())

    def _check_names(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for label in self.labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        if len(set(self.labelnames)) != len(self.labelnames):
            raise ValueError(f"duplicate label names in {self.labelnames!r}")

    def _bind(self, child: object) -> None:
        """An unlabelled metric takes its only child's methods, so `counter.inc()` works."""

    def _new_child(self, pairs: str) -> object:
        return self.child_class(pairs)

    def labels(self, *values: object, **named: object) -> object:
        """The child for these label values (positional in label order, or by name)."""
        key = values or tuple(named.items())
        try:
            return self._cache[key]
        except KeyError:
            return self._miss(key, values, named)

    def _miss(self, key: tuple, values: tuple, named: dict) -> object:
        if values and named:
            raise TypeError("label values go either by position or by name, not both")
        if named:
            if named.keys() != set(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(named)}")
            values = tuple(named[n] for n in self.labelnames)
        elif len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes {len(self.labelnames)} label values, got {len(values)}")
        canonical = tuple(str(v) for v in values)
        child = self.series.get(canonical)
        if child is None:
            child = self.series[canonical] = self._new_child(label_pairs(self.labelnames, canonical))
        self._cache[key] = child
        return child

    def remove(self, *values: object, **named: object) -> None:
        """Drop one series (a deleted client key, a removed provider)."""
        child = self.labels(*values, **named)
        self.series = {k: c for k, c in self.series.items() if c is not child}
        self._cache = {k: c for k, c in self._cache.items() if c is not child}
        if self.on_change is not None:
            self.on_change()

    def clear(self) -> None:
        """Drop every series (an unlabelled metric keeps its one, reset)."""
        self.series.clear()
        self._cache.clear()
        if not self.labelnames:
            self._bind(self.labels())
        if self.on_change is not None:
            self.on_change()

    def set_function(self, fn: Callable | None) -> None:
        """Back the metric by `fn`, called at render time.

        Unlabelled: `fn()` returns a number, or None for no sample. Labelled: a mapping of label
        value tuples (in label order) to numbers. Stored children are then not rendered.
        """
        self.function = fn

    def samples(self) -> Iterator[tuple[str, str, str]]:
        """(name suffix, label pairs, value) for every sample, series sorted by label values."""
        if self.function is not None:
            yield from self._function_samples()
            return
        for key in sorted(self.series):
            yield "", self.series[key].pairs, fmt_value(self.series[key].value)

    def _function_samples(self) -> Iterator[tuple[str, str, str]]:
        result = self.function()
        if not self.labelnames:
            if result is not None:
                yield "", "", fmt_value(result)
            return
        for key, value in sorted(((tuple(str(v) for v in k), v) for k, v in result.items()),
                                 key=lambda item: item[0]):
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: callback gave label values {key!r}")
            yield "", label_pairs(self.labelnames, key), fmt_value(value)

    def render(self) -> list[str]:
        """The family's exposition lines: HELP, TYPE, then the samples."""
        lines = [f"# HELP {self.name} {self.help.translate(_HELP_ESCAPES)}",
                 f"# TYPE {self.name} {self.kind}"]
        for suffix, pairs, value in self.samples():
            labels = "{" + pairs + "}" if pairs else ""
            lines.append(f"{self.name}{suffix}{labels} {value}")
        return lines


class Counter(Metric):
    """A monotonically increasing count; the name should end in `_total`."""

    kind = "counter"
    child_class = CounterChild

    def _bind(self, child: CounterChild) -> None:
        self.inc = child.inc

    def inc(self, amount: float = 1) -> None:
        """Add to an unlabelled counter (a labelled one needs `labels(...)` first)."""
        raise TypeError(f"{self.name} has labels {self.labelnames}: use .labels(...).inc()")


class Gauge(Metric):
    """A value that goes up and down."""

    kind = "gauge"
    child_class = GaugeChild

    def _bind(self, child: GaugeChild) -> None:
        self.inc, self.dec, self.set = child.inc, child.dec, child.set

    def _labelled(self, *_args: object) -> None:
        raise TypeError(f"{self.name} has labels {self.labelnames}: use .labels(...) first")

    inc = dec = set = _labelled

    @contextmanager
    def track(self) -> Iterator[None]:
        """Hold the (unlabelled) gauge one higher for the duration of the block."""
        self.inc()
        try:
            yield
        finally:
            self.dec()


class Histogram(Metric):
    """Observations counted into fixed cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = (),
                 buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram buckets must be increasing and distinct")
        if "le" in tuple(labelnames):
            raise ValueError("'le' is reserved for histogram buckets")
        self.buckets = bounds
        self._les = tuple(f'le="{fmt_value(b)}"' for b in bounds) + ('le="+Inf"',)
        super().__init__(name, help, labelnames)

    def _new_child(self, pairs: str) -> HistogramChild:
        return HistogramChild(pairs, self.buckets)

    def _bind(self, child: HistogramChild) -> None:
        self.observe = child.observe

    def observe(self, value: float) -> None:
        """Observe on an unlabelled histogram (a labelled one needs `labels(...)` first)."""
        raise TypeError(f"{self.name} has labels {self.labelnames}: use .labels(...).observe()")

    def set_function(self, fn: Callable | None) -> None:
        """Histograms are not callback-backed."""
        raise TypeError("a histogram cannot be backed by a function")

    def samples(self) -> Iterator[tuple[str, str, str]]:
        """Per series: cumulative `_bucket`s up to +Inf, then `_sum` and `_count`."""
        for key in sorted(self.series):
            child = self.series[key]
            prefix = child.pairs + "," if child.pairs else ""
            total = 0
            for le, n in zip(self._les, child.counts):
                total += n
                yield "_bucket", prefix + le, str(total)
            yield "_sum", child.pairs, fmt_value(child.sum)
            yield "_count", child.pairs, str(total)


class Registry:
    """The metric families of one app, rendered in registration order."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def register(self, metric: Metric) -> Metric:
        """Add a family; its name must be new."""
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        """Register and return a counter."""
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = (),
              fn: Callable | None = None) -> Gauge:
        """Register and return a gauge, callback-backed when `fn` is given."""
        gauge = self.register(Gauge(name, help, labelnames))
        gauge.set_function(fn)
        return gauge

    def histogram(self, name: str, help: str, labelnames: Iterable[str] = (),
                  buckets: Iterable[float] = LATENCY_BUCKETS) -> Histogram:
        """Register and return a histogram."""
        return self.register(Histogram(name, help, labelnames, buckets))

    def render(self) -> str:
        """The whole exposition, newline-terminated (serve it with CONTENT_TYPE)."""
        lines: list[str] = []
        for metric in self.metrics.values():
            lines += metric.render()
        return "\n".join(lines) + "\n" if lines else ""


def read_rss(proc: str = "/proc") -> int | None:
    """Resident memory in bytes from `<proc>/self/statm`, or None where unreadable (not Linux)."""
    try:
        with open(f"{proc}/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def read_start_time(proc: str = "/proc") -> float | None:
    """Process start, Unix seconds: boot time plus the start tick of `<proc>/self/stat`, or None."""
    try:
        with open(f"{proc}/stat", encoding="ascii") as file:
            boot = next(int(line.split()[1]) for line in file if line.startswith("btime "))
        with open(f"{proc}/self/stat", encoding="utf-8", errors="replace") as file:
            # the command name (field 2) may hold spaces and parentheses: count after the last ')'
            ticks = int(file.read().rpartition(")")[2].split()[19])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError, StopIteration):
        return None


class _RequestSeries:
    """The series one kind of finished request feeds, found with one lookup (Metrics.request_done);
    the time-to-first-byte, overhead and token series are made on first use, as labels() would."""

    __slots__ = ("metrics", "label_values", "requests", "duration", "ttfb", "overhead", "tokens")

    def __init__(self, metrics: "Metrics", route: str, provider: str, model: str, status: int | str) -> None:
        self.metrics, self.label_values = metrics, (route, provider, model)
        self.requests = metrics.requests.labels(route, provider, model, status)
        self.duration = metrics.request_duration.labels(route, provider)
        self.ttfb: HistogramChild | None = None
        self.overhead: HistogramChild | None = None
        self.tokens: list[CounterChild | None] = [None] * len(TOKEN_KINDS)

    def made_ttfb(self) -> HistogramChild:
        self.ttfb = self.metrics.upstream_ttfb.labels(self.label_values[1])
        return self.ttfb

    def made_overhead(self) -> HistogramChild:
        self.overhead = self.metrics.overhead.labels(self.label_values[0])
        return self.overhead

    def made_tokens(self, kind: int) -> CounterChild:
        _, provider, model = self.label_values
        child = self.tokens[kind] = self.metrics.tokens.labels(provider, model, TOKEN_KINDS[kind])
        return child


class Metrics:
    """Exactly the series of gateway.md §12.2, and one method per event that feeds them.

    `models` bounds the `model` label (configured models and aliases; anything else is `other`);
    None leaves it unbounded. `start_time` (Unix s) replaces reading it from /proc.
    """

    def __init__(self, registry: Registry, *, models: Iterable[str] | None = None,
                 start_time: float | None = None, proc: str = "/proc") -> None:
        self.registry = r = registry
        self.requests = r.counter("clewdr_requests_total", "Requests answered, by route, provider, model and status.",
                                  ("route", "provider", "model", "status"))
        self.request_duration = r.histogram("clewdr_request_duration_seconds",
                                            "Time from the request's arrival to the end of its response.",
                                            ("route", "provider"), LATENCY_BUCKETS)
        self.upstream_ttfb = r.histogram("clewdr_upstream_ttfb_seconds",
                                         "Time from sending the upstream request to its first byte.",
                                         ("provider",), LATENCY_BUCKETS)
        self.overhead = r.histogram("clewdr_overhead_seconds", "Time spent in the proxy itself (x-clewdr-overhead-ms).",
                                    ("route",), OVERHEAD_BUCKETS)
        self.tokens = r.counter("clewdr_tokens_total", "Tokens by provider, model and kind.",
                                ("provider", "model", "kind"))
        self.cost = r.counter("clewdr_cost_usd_total", "Estimated cost in US dollars by provider and client key.",
                              ("provider", "client_key"))
        self.retries = r.counter("clewdr_retries_total", "Upstream retries by provider and reason.",
                                 ("provider", "reason"))
        self.fallbacks = r.counter("clewdr_fallbacks_total", "Fallbacks to another route by scenario.", ("scenario",))
        self.credentials = r.gauge("clewdr_credentials", "Credentials by provider and state.", ("provider", "state"))
        self.inflight = r.gauge("clewdr_inflight_requests", "Requests being answered now.")
        self.budget_remaining = r.gauge("clewdr_client_key_budget_remaining_usd",
                                        "Budget left per client key, US dollars.", ("client_key",))
        self.subscription_utilization = r.gauge("clewdr_subscription_utilization_ratio",
                                                "Subscription window utilisation per (masked) credential.",
                                                ("credential", "window"))
        self.conserve_mode = r.gauge("clewdr_conserve_mode", "1 while conserve mode is on.")
        self.logs_dropped = r.counter("clewdr_log_dropped_total", "Request log rows dropped.")
        self.resident_memory = r.gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                                       fn=lambda: read_rss(proc))
        self.start_time = r.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.",
                                  fn=self._start_time)
        self._start, self._proc = start_time, proc
        # (route, provider, model label, status) → its series: one lookup a request, not six; as
        # bounded as the labels themselves, and emptied when any of those families drops series
        self._request_series: dict[tuple, _RequestSeries] = {}
        for family in (self.requests, self.request_duration, self.upstream_ttfb, self.overhead, self.tokens):
            family.on_change = self._request_series.clear
        self.set_models(models)

    def _start_time(self) -> float | None:
        if self._start is None:
            self._start = read_start_time(self._proc)
        return self._start

    def set_models(self, models: Iterable[str] | None) -> None:
        """Replace the models the `model` label may name (a config reload)."""
        self.models = None if models is None else frozenset(models)

    def model_label(self, model: str | None) -> str:
        """The model as a label value: itself when known (or unbounded), else `other`."""
        if self.models is None:
            return model or ""
        return model if model in self.models else OTHER_MODEL

    def request_done(self, *, route: str, provider: str | None, model: str | None, status: int | str,
                     duration_s: float, ttfb_s: float | None = None, overhead_s: float | None = None,
                     input_tokens: int = 0, output_tokens: int = 0, cache_read_tokens: int = 0,
                     cache_write_tokens: int = 0, cost_usd: float = 0.0, client_key: str | None = None) -> None:
        """Count one finished request: status, latencies, tokens and cost (token counts below 1 are
        not counted: a counter only goes up)."""
        provider = provider or ""
        model = self.model_label(model)
        key = (route, provider, model, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = _RequestSeries(self, route, provider, model, status)
        series.requests.value += 1
        series.duration.observe(duration_s)
        if ttfb_s is not None:
            (series.ttfb or series.made_ttfb()).observe(ttfb_s)
        if overhead_s is not None:
            (series.overhead or series.made_overhead()).observe(overhead_s)
        tokens = series.tokens
        if input_tokens > 0:
            (tokens[0] or series.made_tokens(0)).value += input_tokens
        if output_tokens > 0:
            (tokens[1] or series.made_tokens(1)).value += output_tokens
        if cache_read_tokens > 0:
            (tokens[2] or series.made_tokens(2)).value += cache_read_tokens
        if cache_write_tokens > 0:
            (tokens[3] or series.made_tokens(3)).value += cache_write_tokens
        if cost_usd:
            self.cost.labels(provider, client_key or "").inc(cost_usd)

    def retry(self, provider: str, reason: str) -> None:
        """Count one retry."""
        self.retries.labels(provider, reason).inc()

    def fallback(self, scenario: str) -> None:
        """Count one fallback to another route."""
        self.fallbacks.labels(scenario).inc()

    def set_credentials(self, provider: str, active: int, cooling: int, disabled: int, open: int = 0) -> None:
        """Set a provider's credential counts per state (push style)."""
        for state, n in zip(CREDENTIAL_STATES, (active, cooling, disabled, open)):
            self.credentials.labels(provider, state).set(n)

    def watch_credentials(self, fn: Callable[[], Mapping[str, Mapping[str, int]]] | None) -> None:
        """Read credential counts at render time from `fn() → {provider: {state: n}}` (None: push again)."""
        if fn is None:
            self.credentials.set_function(None)
            return
        self.credentials.set_function(lambda: {(provider, state): states.get(state, 0)
                                               for provider, states in fn().items()
                                               for state in CREDENTIAL_STATES})

    def set_budget(self, client_key: str, remaining_usd: float | None) -> None:
        """Set a client key's remaining budget; None (no budget, key deleted) drops the series."""
        if remaining_usd is None:
            self.budget_remaining.remove(client_key)
        else:
            self.budget_remaining.labels(client_key).set(remaining_usd)

    def set_utilization(self, credential: str, window: str, ratio: float) -> None:
        """Set a subscription window's utilisation; `credential` must already be masked."""
        self.subscription_utilization.labels(credential, window).set(ratio)

    def set_conserve(self, on: bool) -> None:
        """Conserve mode on (1) or off (0)."""
        self.conserve_mode.set(1 if on else 0)

    def log_dropped(self, n: int = 1) -> None:
        """Count request log rows dropped."""
        self.logs_dropped.inc(n)
