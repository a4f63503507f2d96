"""Per-request accounting: timing, the x-clewdr-* headers, the usage log row, metrics (gateway.md §11–§12).

The HTTP client layer marks when each upstream request is sent and when its headers arrive (through
`upstream.http.TIMING`), so the overhead is the proxy's own time: from the complete client request to
the first upstream send, plus from the last upstream headers to the client's headers.
"""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from clewdr_lite.client_keys import cost
from clewdr_lite.errors import GEMINI, anthropic_type
from clewdr_lite.protocol.sse import UsageScanner
from clewdr_lite.protocol.tokens import estimate_request, estimate_text, token_count
from clewdr_lite.server.app import STATE
from clewdr_lite.server.middleware import cors_headers, dialect_of
from clewdr_lite.upstream.http import TIMING, Timing

# typed request-storage keys (aiohttp ≥ 3.13 warns on plain strings; older versions lack RequestKey)
_Key = getattr(web, "RequestKey", None)
TIMING_KEY = _Key("timing", Timing) if _Key else "timing"
ACCT_KEY = _Key("acct", dict) if _Key else "acct"
CLIENT_KEY = _Key("client_key", object) if _Key else "client_key"
BODY_MAX = 64 * 1024
log = logging.getLogger("clewdr_lite.server")
INFERENCE_PREFIXES = ("/v1", "/code/", "/gemini/", "/vertex/", "/messages", "/chat/", "/models")


def _new_record() -> dict:
    """A request's accounting record with every field the log row reads, so it reads them by index."""
    return {"provider": None, "model": None, "upstream_model": None, "scenario": None, "stream": False,
            "fallback": False, "input_tokens": 0, "output_tokens": 0, "cache_read": 0, "cache_write": 0,
            "estimated": False, "key_id": None, "raw": None}


def acct(request: web.Request) -> dict:
    """The request's accounting record (made by `timing`, or on first use elsewhere)."""
    try:
        return request[ACCT_KEY]  # request.get() would go through Mapping.get and a KeyError
    except KeyError:
        record = request[ACCT_KEY] = _new_record()
        return record


def note_usage(request: web.Request, usage: dict | None) -> None:
    """Record token usage from a hub usage object (cumulative output: the last value wins)."""
    if not isinstance(usage, dict):
        return
    record = acct(request)
    get = usage.get
    written, read = get("cache_creation_input_tokens"), get("cache_read_input_tokens")
    inputs, output = get("input_tokens"), get("output_tokens")
    # counts are ints (or absent) in nearly every answer: token_count only for the rest
    if type(written) is not int or written < 0:
        written = token_count(written) or 0
    if type(read) is not int or read < 0:
        read = token_count(read) or 0
    if type(inputs) is not int or inputs < 0:
        inputs = token_count(inputs) or 0
    inputs += written + read
    if inputs:
        record["input_tokens"], record["cache_write"], record["cache_read"] = inputs, written, read
    if output is not None:
        record["output_tokens"] = output if type(output) is int and output >= 0 else token_count(output) or 0


def usage_scanner(request: web.Request, dialect: str) -> UsageScanner:
    """Notes the usage a relayed OpenAI (`usage`) or Gemini (`usageMetadata`) answer reports, as
    its bytes pass (the body is never decoded whole); the last report wins."""
    if dialect == GEMINI:
        from clewdr_lite.protocol.gemini_response import hub_usage as gemini_usage
        return UsageScanner("usageMetadata", lambda meta: note_usage(request, gemini_usage(meta)))
    from clewdr_lite.protocol.openai_upstream_stream import hub_usage as openai_usage

    def found(usage: dict) -> None:
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            note_usage(request, openai_usage(usage))
    return UsageScanner("usage", found)


def note_event(request: web.Request, event: dict) -> None:
    """Watch a hub stream event for usage."""
    kind = event.get("type")
    if kind == "message_start":
        note_usage(request, (event.get("message") or {}).get("usage"))
    elif kind == "message_delta":
        note_usage(request, event.get("usage"))


@web.middleware
async def timing(request: web.Request, handler):
    """The outermost layer: start the request's clock and expose it to the upstream clients; count
    the request when it ends; put CORS and the x-clewdr-* headers on every response it returns
    (errors included: the funnel inside has rendered them). A stream adds them itself before it
    starts (send_stream), so no prepare signal runs for every response."""
    if not request.path.startswith(INFERENCE_PREFIXES) or request.method != "POST":
        response = await handler(request)
        if not response.prepared:
            cors_headers(request, response)
        return response
    clock = Timing(arrived=time.monotonic())
    state = request.app[STATE]  # looked up once for the layers below that need it
    request[TIMING_KEY] = clock
    request[ACCT_KEY] = record = _new_record()
    request[CLIENT_KEY] = None  # authenticate sets a client key; present, so lookups never miss
    token = TIMING.set(clock)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            cors_headers(request, response)
            _clewdr_headers(state, response, clock, record)
        return response
    finally:
        TIMING.reset(token)
        clock.on_sent()  # what waited for an upstream call the request never made (its [REQ] line)
        try:
            _finished(request, state, record, clock, status)
        except Exception:  # this layer is outside the funnel: a fault in the log or the metrics
            # must neither turn an answered request into an error nor reach the client
            log.exception("request accounting failed on %s %s", request.method, request.path)


def _client_key(request: web.Request):
    """The request's client key, None without one (request.get would go through Mapping.get)."""
    try:
        return request[CLIENT_KEY]
    except KeyError:
        return None


def admit(request: web.Request, *, model: str, provider: str, upstream_model: str, req: dict) -> None:
    """A client key's admission checks (gateway.md §9.3), once per request; nothing for the password."""
    key = _client_key(request)
    record = acct(request)
    if key is None or "admitted" in record:
        return
    # only keyed requests pay for the estimate; a Gemini body (contents, not messages) by its JSON
    estimate = (estimate_request(req) if isinstance(req.get("messages"), list)
                else estimate_text(json.dumps(req, ensure_ascii=False)))
    state = request.app[STATE]
    now = state.clock()
    state.client_keys.admit(key, model=model, now=now, estimate_tokens=estimate, spent=state.spent(key, now),
                            resolved=f"{provider}/{upstream_model}", provider=provider)
    record.update(admitted=estimate, key_id=key.id)


def _settle_key(request: web.Request, state, record: dict) -> float:
    """Release an admitted client key, charge its tokens and spend; the request's cost."""
    inputs, outputs = record["input_tokens"], record["output_tokens"]
    provider = state.provider_named(record["provider"])
    model = record["upstream_model"] or record["model"]
    priced = cost(model, {"input_tokens": inputs, "output_tokens": outputs},
                  provider.prices if provider else None) if model else 0.0
    # subscriptions cost nothing per call; their API price is kept as a shadow cost (gateway.md §10)
    subscription = provider is not None and provider.type in ("claude_web", "claude_code")
    record["shadow_cost"] = priced if subscription else 0.0
    usd = 0.0 if subscription else priced
    key = request[CLIENT_KEY]  # `timing` set it (None without a client key) before the handler ran
    if key is not None and "admitted" in record:
        now = state.clock()
        state.client_keys.release(key)
        state.client_keys.record_tokens(key, inputs + outputs, now, estimated=record["admitted"])
        shadow = (state.config.tables.get("budgets") or {}).get("count_shadow_cost")
        state.add_spend(key, now, usd + (record["shadow_cost"] if shadow else 0.0))
    return usd


def _finished(request: web.Request, state, record: dict, clock: Timing, status: int) -> None:
    """Log the request's row, count it in /metrics and settle its client key (`record`: its
    accounting record)."""
    record["cost"] = usd = _settle_key(request, state, record)
    now = time.monotonic()
    resource = request.match_info.route.resource
    route = resource.canonical if resource else request.path
    overhead_ms = clock.overhead_ms(now)
    ttfb_s = (clock.last_headers - clock.read) if clock.last_headers else None
    if state.store is not None:
        kept = None
        raw = record["raw"]
        if raw and state.store.keeps_bodies:  # the store's own mode first: "off" keeps none
            bodies = (state.config.tables.get("log") or {}).get("bodies", False)
            if bodies in (True, "all") or (bodies == "errors" and status >= 400):
                kept = raw[:BODY_MAX].decode("utf-8", "replace")  # §11.4
        state.store.record(_row(request, record, clock, status, route, now, overhead_ms, ttfb_s, usd),
                           request_body=kept)
    state.metrics.request_done(route=route, provider=record["provider"], model=record["model"],
                               status=status, duration_s=now - clock.arrived, ttfb_s=ttfb_s,
                               overhead_s=overhead_ms / 1000, input_tokens=record["input_tokens"],
                               output_tokens=record["output_tokens"], cost_usd=usd,
                               client_key=record["key_id"])


def decorate(request: web.Request, response: web.StreamResponse) -> None:
    """CORS and the x-clewdr-* headers, on a response not yet prepared."""
    cors_headers(request, response)
    headers_hook(request, response)


def headers_hook(request: web.Request, response: web.StreamResponse) -> None:
    """x-clewdr-overhead-ms, x-clewdr-provider, x-clewdr-attempts on proxied responses (§12.1)."""
    try:
        clock = request[TIMING_KEY]
    except KeyError:  # not a proxied request
        return
    _clewdr_headers(request.app[STATE], response, clock, request[ACCT_KEY])


def _clewdr_headers(state, response: web.StreamResponse, clock: Timing, record: dict) -> None:
    metrics_table = state.config.tables.get("metrics")
    if metrics_table and metrics_table.get("response_headers") is False:
        return
    headers = response.headers
    headers["x-clewdr-overhead-ms"] = f"{clock.overhead_ms(time.monotonic()):.2f}"
    if record["provider"]:
        headers["x-clewdr-provider"] = record["provider"]
    headers["x-clewdr-attempts"] = str(clock.sends)


def _row(request: web.Request, record: dict, clock: Timing, status: int, route: str, now: float,
         overhead_ms: float, ttfb_s: float | None, usd: float) -> tuple:
    """The request-log row of gateway.md §11.2 (metadata only; no bodies): every column's value in
    store.COLUMNS order, typed as the store keeps it (the writer then takes it as it is)."""
    arrived = clock.arrived
    return (time.time() - (now - arrived), clock.request_id, record["key_id"], route,  # ts (arrival) …
            dialect_of(request.path),  # dialect
            record["model"], record["provider"], record["upstream_model"],  # model_requested …
            clock.credential, record["scenario"], 1 if record["stream"] else 0, status,  # credential …
            anthropic_type(status) if status >= 400 else None, clock.sends or 1,  # error_type, attempts
            1 if record["fallback"] else 0,  # fallback_used
            None if ttfb_s is None else int(ttfb_s * 1000),  # ttfb_ms
            int((now - arrived) * 1000), int(overhead_ms),  # duration_ms, overhead_ms
            record["input_tokens"], record["output_tokens"],  # tokens: input, output,
            record["cache_read"], record["cache_write"],  # cache read, cache write
            1 if record["estimated"] else 0, usd, record["shadow_cost"],  # estimated, cost, shadow cost
            request.headers.get("User-Agent", "")[:200], request.remote)  # user_agent, client_ip
