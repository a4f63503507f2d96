"""Error answers of the fake OpenAI-compatible server, in each flavour's body shape."""

from __future__ import annotations

import math
from typing import Any

from tests.fakes.claude_web_wire import WireError, dumps
from tests.fakes.openai_wire import go_duration

BEHAVIOURS = ("invalid", "no_credit", "rate_limited", "server_error", "unavailable", "overloaded", "stream_error")

NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
          "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
          "accessing the API from your browser and are prompted for a username and password. You can obtain an API "
          "key from https://platform.openai.com/account/api-keys.")
QUOTA = ("You exceeded your current quota, please check your plan and billing details. For more information on this "
         "error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.")
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
DEEPSEEK_REASONING_BACK = ("The reasoning_content is an intermediate result for display purposes only and will not be "
                           "included in the context for inference. Please remove the reasoning_content from your "
                           "input messages.")
OPENROUTER_529 = dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
OPENROUTER_USER = "user_2fakeC1ewdrLiteUser0000"


class Bad(Exception):
    """A request the server refuses: status, message, OpenAI error type, param and code."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None,
                 err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.err_type = status, message, param, code, err_type


def error_body(flavour: str, status: int, message: str, *, err_type: str, param: str | None = None,
               code: Any = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAI and DeepSeek: `{"error": {message, type, param, code}}`; OpenRouter: a numeric code and metadata."""
    if flavour == "openrouter":
        error: dict[str, Any] = {"message": message, "code": status}
        if metadata is not None:
            error["metadata"] = metadata
        body: dict[str, Any] = {"error": error}
        if status != 401:
            body["user_id"] = OPENROUTER_USER
        return body
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def wire(flavour: str, status: int, message: str, *, err_type: str, param: str | None = None, code: Any = None,
         headers: dict[str, str] | None = None, metadata: dict[str, Any] | None = None) -> WireError:
    """An error answer as a WireError."""
    body = error_body(flavour, status, message, err_type=err_type, param=param, code=code, metadata=metadata)
    return WireError(status, {"Content-Type": "application/json", **(headers or {})}, dumps(body))


def from_bad(flavour: str, bad: Bad, request_id: str) -> WireError:
    """A validation refusal as a WireError."""
    return wire(flavour, bad.status, bad.message, err_type=bad.err_type, param=bad.param, code=bad.code,
                headers={"x-request-id": request_id})


def mask(key: str) -> str:
    """A key as OpenAI's 401 message shows it: head, stars, last four."""
    return key[:8] + "*" * max(4, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)


def missing_key(flavour: str) -> WireError:
    """401 for a request without credentials."""
    if flavour == "openrouter":
        return wire(flavour, 401, "No auth credentials found", err_type="")
    if flavour == "deepseek":
        return wire(flavour, 401, "Authentication Fails, no api key provided", err_type="authentication_error",
                    code="invalid_request_error")
    return wire(flavour, 401, NO_KEY, err_type="invalid_request_error")


def invalid_key(flavour: str, key: str) -> WireError:
    """401 for a key the server does not know (or that behaves `invalid`)."""
    if flavour == "openrouter":
        return wire(flavour, 401, "User not found.", err_type="")
    if flavour == "deepseek":
        return wire(flavour, 401, f"Authentication Fails, Your api key: ****{key[-4:]} is invalid",
                    err_type="authentication_error", code="invalid_request_error")
    message = (f"Incorrect API key provided: {mask(key)}. You can find your API key at "
               "https://platform.openai.com/account/api-keys.")
    return wire(flavour, 401, message, err_type="invalid_request_error", code="invalid_api_key")


def rate_headers(retry_after: float | None, reset_after: float | None) -> dict[str, str]:
    """429 headers: retry-after (whole seconds) and the x-ratelimit family with Go-style durations."""
    reset = go_duration(reset_after if reset_after is not None else retry_after if retry_after is not None else 360)
    headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": reset, "x-ratelimit-limit-tokens": "30000",
               "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": reset}
    if retry_after is not None:
        headers["retry-after"] = str(max(0, math.ceil(retry_after)))
    return headers


def behaviour_error(flavour: str, behaviour: str, *, model: str, retry_after: float | None,
                    reset_after: float | None, now: float) -> WireError:
    """The answer of a key's failure behaviour (not `invalid`, which strikes at authentication)."""
    if behaviour == "no_credit":
        if flavour == "openrouter":
            return wire(flavour, 402, "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                        err_type="")
        if flavour == "deepseek":
            return wire(flavour, 402, "Insufficient Balance", err_type="unknown_error", code="invalid_request_error")
        return wire(flavour, 429, QUOTA, err_type="insufficient_quota", code="insufficient_quota")
    if behaviour == "rate_limited":
        headers = rate_headers(retry_after, reset_after)
        wait = go_duration(retry_after if retry_after is not None else 360)
        if flavour == "openrouter":
            reset_ms = str(int((now + (retry_after or 60)) * 1000))
            meta = {"headers": {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": reset_ms}}
            return wire(flavour, 429, "Rate limit exceeded: free-models-per-min. ", err_type="", headers=headers,
                        metadata=meta)
        if flavour == "deepseek":
            return wire(flavour, 429, "Rate Limit Reached", err_type="rate_limit_error", code="rate_limit_exceeded",
                        headers=headers)
        message = (f"Rate limit reached for {model} in organization org-c1ewdrlitefake on requests per min (RPM): "
                   f"Limit 500, Used 500, Requested 1. Please try again in {wait}. Visit "
                   "https://platform.openai.com/account/rate-limits to learn more.")
        return wire(flavour, 429, message, err_type="requests", code="rate_limit_exceeded", headers=headers)
    return server_error(flavour, {"server_error": 500, "stream_error": 500, "unavailable": 503,
                                  "overloaded": 529}[behaviour])


def server_error(flavour: str, status: int) -> WireError:
    """5xx answers: 500, 503, and 529 (Anthropic models behind OpenRouter)."""
    if flavour == "openrouter":
        if status == 529:
            meta = {"raw": OPENROUTER_529, "provider_name": "Anthropic"}
            return wire(flavour, 529, "Provider returned error", err_type="", metadata=meta)
        message = "Internal Server Error" if status == 500 else "No instances available"
        return wire(flavour, status, message, err_type="")
    if flavour == "deepseek":
        message = {500: "Server Error", 503: "Server Overloaded"}.get(status, "Overloaded")
        return wire(flavour, status, message, err_type="server_error", code="server_error")
    message = {500: SERVER_ERROR, 503: "The server is overloaded or not ready yet."}.get(status, "Overloaded")
    return wire(flavour, status, message, err_type="server_error")


def stream_error_chunk(flavour: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """The chunk a 200 stream sends when the model fails mid-way."""
    if flavour == "openrouter":
        # OpenRouter keeps the chunk envelope and finishes the choice with "error".
        choice = {"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}
        return {**envelope, "error": {"code": "server_error", "message": "Provider disconnected"}, "choices": [choice]}
    return {"error": {"message": SERVER_ERROR, "type": "server_error", "param": None, "code": None}}
