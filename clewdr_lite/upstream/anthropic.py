"""Anthropic API-key provider: a key pool, pass-through relay, cool-downs (gateway.md §2.3, §7, §8)."""

from __future__ import annotations

import json
import logging
from typing import Mapping

from clewdr_lite import errors
from clewdr_lite.protocol import anthropic as hub
from clewdr_lite.protocol import anthropic_headers as ah
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol.claude_code_response import classify_api_key
from clewdr_lite.protocol.sse import loads_bytes
from clewdr_lite.upstream.http import TRANSPORT_ERRORS
from clewdr_lite.upstream.keyed import KeyedProvider, KeyFailed
from clewdr_lite.upstream.relay import EarlyError, MessagesStream

log = logging.getLogger("clewdr_lite.anthropic")

DEFAULT_BASE = "https://api.anthropic.com"
MID_CONVERSATION_SYSTEM = "mid-conversation-system"


def prepare(req: dict, model: str, client_betas: str | None) -> dict:
    """Body rules for API upstreams: model rules, thinking hygiene, system placement (§2.3)."""
    body = hub.apply_model_rules(req if req.get("model") == model else {**req, "model": model})
    body = hub.strip_foreign_thinking(body)
    if MID_CONVERSATION_SYSTEM not in (client_betas or ""):
        body = hub.prepare_for_api(body)
    return body


class AnthropicKeys(KeyedProvider):
    """One `type = "anthropic"` provider and its keys."""

    def _url(self, path: str) -> str:
        return (self.provider.base_url or DEFAULT_BASE).rstrip("/") + "/" + path

    async def _send(self, key: str, path: str, body: dict | bytes, client_headers):
        betas = ah.merge_betas(client_headers.get("anthropic-beta"), base=None)
        headers = ah.upstream_headers(client_headers, auth={"x-api-key": key}, betas=betas,
                                      user_agent=None, oauth=False)
        headers.update(self.provider.headers or {})
        return await self._post(key, self._url(path), headers, body, classify=classify_api_key)

    async def open(self, req: dict, *, model: str, stream: bool, echo_model: str,
                   client_headers: Mapping[str, str], raw: bytes | None = None):
        """A started MessagesStream (stream) or the response body, after key rotation and retries.

        `raw` is the client's body when `req` is that body parsed: when the rules leave the request
        as it is, those bytes go upstream unchanged (no re-serialising on pass-through, gateway.md §8).
        """
        body = prepare(req, model, client_headers.get("anthropic-beta"))
        wire = raw if raw is not None and body == req else body

        async def attempt(key: str):
            resp = await self._send(key, "v1/messages", wire, client_headers)
            return await self._success(resp, stream=stream, echo_model=echo_model)
        return await self.attempts(attempt)

    async def _success(self, resp, *, stream: bool, echo_model: str):
        if stream:
            relay = MessagesStream(resp, echo_model=echo_model, on_done=lambda i, o: None)
            try:
                await relay.prime()
            except EarlyError as exc:
                raise KeyFailed(exc.outcome) from None
            return relay
        try:
            raw = await resp.read()
            data = loads_bytes(raw)
        except (ValueError, *TRANSPORT_ERRORS) as exc:
            raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                f"unreadable answer from {self.provider.name}: {exc}"))) from None
        finally:
            await resp.close()
        problem = hub.answer_problem(data)
        if problem is not None:  # a compatible provider's odd answer: a failed attempt, never a crash later
            raise KeyFailed(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                f"{self.provider.name} sent an answer that is not a Messages answer: {problem}")))
        if data.get("model") == echo_model:
            return hub.Answer(data, raw)  # the client may get the upstream's bytes as they are
        data["model"] = echo_model
        return data

    async def count_tokens(self, req: dict, *, model: str, client_headers: Mapping[str, str]) -> dict:
        """Upstream count_tokens; a local estimate when the upstream cannot count."""
        body = prepare(req, model, client_headers.get("anthropic-beta"))
        for key in ("stream", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata"):
            body.pop(key, None)

        async def attempt(key: str) -> dict:
            resp = await self._send(key, "v1/messages/count_tokens", body, client_headers)
            try:
                return json.loads(await resp.read())
            finally:
                await resp.close()
        try:
            return await self.attempts(attempt)
        except errors.ProxyError as err:
            if err.status in (403, 404):
                return {"input_tokens": tokens.estimate_request(body)}
            raise
