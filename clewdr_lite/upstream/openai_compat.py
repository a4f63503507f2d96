"""OpenAI-compatible providers (OpenAI, OpenRouter, DeepSeek, Ollama, llama.cpp …), gateway.md §2.

OpenAI clients get the upstream's bytes (only the model and the auth change: the fast path of
§8); Anthropic and Gemini clients go through `open`, which converts the hub request to OpenAI and
the answer back to hub events (conversions.md §6–§8).
"""

from __future__ import annotations

from typing import Mapping

from clewdr_lite import errors
from clewdr_lite.protocol import openai_upstream as ou
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.providers import quirks_for
from clewdr_lite.protocol.sse import SSEDecoder, loads, loads_bytes
from clewdr_lite.upstream.http import TRANSPORT_ERRORS, drain
from clewdr_lite.upstream.keyed import KeyedProvider, KeyFailed
from clewdr_lite.upstream.relay import (LOST, EarlyError, converted_events, hold_events, new_msg_id,
                                       synthetic_signature)


class Answer:
    """A finished non-streaming answer: status and body bytes."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body


class OpenAICompat(KeyedProvider):
    """One `type = "openai"` provider and its keys (keys are optional for local servers)."""

    def _url(self) -> str:
        return self.provider.base_url.rstrip("/") + "/chat/completions"

    def _headers(self, key: str | None) -> dict:
        headers = {"Content-Type": "application/json", **(self.provider.headers or {})}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _send(self, key: str | None, body: dict):
        return await self._post(key, self._url(), self._headers(key), body, classify=ou.classify_openai)

    async def _each_key(self, attempt):
        if not self.provider.keys:  # a local server without auth: one anonymous credential
            try:
                return await attempt(None)
            except KeyFailed as exc:
                raise exc.outcome.error from None
        return await self.attempts(attempt)

    async def passthrough(self, body: dict, *, model: str, stream: bool):
        """An OpenAI client's body with the upstream model: a streaming Response or an Answer."""
        quirks = quirks_for(self.provider, model)
        body = {**body, "model": model}
        if stream and quirks.get("stream_usage", True):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

        async def attempt(key):
            resp = await self._send(key, body)
            if not stream:
                answer = Answer(resp.status, await drain(resp))
                if answer.body.lstrip()[:1] != b"{":  # a 200 page (a portal, a proxy): not an answer
                    raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                        f"{self.provider.name} answered 200 with something that is not JSON")))
                return answer
            try:  # held until the answer begins: a failure before it goes to the next key or provider
                return await hold_events(_raw_items(resp))
            except EarlyError as exc:
                raise KeyFailed(exc.outcome) from None
        return await self._each_key(attempt)

    async def open(self, req: dict, *, model: str, stream: bool, echo_model: str,
                   client_headers: Mapping[str, str] | None = None):
        """Hub request in; hub events (stream) or a hub message out."""
        quirks = quirks_for(self.provider, model)
        body = ou.hub_to_openai(req, model=model, quirks=quirks)
        body["stream"] = stream
        estimate = tokens.estimate_request(req)

        async def attempt(key):
            resp = await self._send(key, body)
            if stream:  # held until content: a failure before it goes to the next key or provider
                try:
                    return await hold_events(_hub_events(resp, echo_model, quirks, estimate))
                except EarlyError as exc:
                    raise KeyFailed(exc.outcome) from None
            raw = await drain(resp)
            try:
                data = loads_bytes(raw)
            except ValueError:
                raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                    f"{self.provider.name} sent an unreadable answer"))) from None
            return ou.openai_to_hub_message(data, model=echo_model, msg_id=new_msg_id(), signature=synthetic_signature(),
                                            quirks=quirks)
        return await self._each_key(attempt)


async def _raw_items(resp):
    """A relayed stream's chunks as items for hold_events: `{"type": …, "raw": chunk}`, typed by
    what the chunk's events mean (ou.stream_signal) until the answer begins, untyped and undecoded
    after; a lost connection is the LOST error event (send_stream's relay renders it)."""
    decoder, begun = SSEDecoder(), False
    try:
        async for chunk in resp.chunks():
            item = {"type": "raw", "raw": chunk}
            for ev in () if begun else decoder.feed(chunk):
                try:
                    signal = ou.stream_signal(loads(ev.data))
                except (ValueError, AttributeError):  # [DONE], a keep-alive, not an object
                    continue
                if signal is not None:
                    item.update(signal)
                    begun = signal["type"] != "error"
                    break
            yield item
    except TRANSPORT_ERRORS:
        yield LOST
    finally:
        await resp.close()


def _hub_events(resp, model: str, quirks: dict, estimate: int):
    conv = ou.OpenAIToHub(model=model, msg_id=new_msg_id(), signature=synthetic_signature(),
                          input_tokens=estimate, quirks=quirks)
    return converted_events(resp, conv)
