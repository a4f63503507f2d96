"""The floors: the least an aiohttp server can do per request with the upstream clients clewdr-lite
uses, so a ratio to the bare relay splits into what the client and the protocol cost and what the
proxy's own work costs.

    wire         relay.py's pass-through on clewdr-lite's lean HTTP/1.1 client (upstream/wire.py,
                 through upstream.http.AiohttpClient) in place of aiohttp's ClientSession
    web          claude.ai's two calls per request (new conversation; completion, read to its end)
                 on the lean curl path (upstream/curl_lean.py), impersonating Chrome, then a fixed
                 Anthropic answer: no flattening, event conversion, pool, log or accounting
    web-session  the same two calls on curl_cffi's AsyncSession, as curl_cffi is usually driven

Run: `python tests/bench/floor.py KIND PORT API_ORIGIN WEB_BASE` (WEB_BASE: the fake claude.ai).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from aiohttp import web  # noqa: E402

from clewdr_lite.protocol import claude_web as web_protocol  # noqa: E402
from clewdr_lite.protocol.sse import json_bytes  # noqa: E402
from clewdr_lite.upstream import http  # noqa: E402
from clewdr_lite.upstream.claude_web import call_headers  # noqa: E402
from tests.bench.relay import HOP  # noqa: E402
from tests.conftest import make_cookie  # noqa: E402

CLIENT = web.AppKey("client", object)
API = web.AppKey("api", str)
ANSWER = json.dumps({
    "id": "msg_floor", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 9}}).encode()


async def wire_relay(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    resp = await request.app[CLIENT].request(request.method, request.app[API] + request.path_qs,
                                             headers=headers, data=body)
    out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP and k.lower() != "content-encoding"}
    return web.Response(status=resp.status, body=await resp.read(), headers=out)


class WebCalls:
    """claude.ai's calls with the headers and bodies clewdr-lite sends (one account of the fake)."""

    def __init__(self, base: str, session: bool) -> None:
        self.base = base.rstrip("/") + "/"
        self.cookie = make_cookie(0)
        self.session = session
        self.org = ""
        if session:
            from curl_cffi.requests import AsyncSession
            self.client = AsyncSession(max_clients=64, impersonate="chrome", discard_cookies=True)
        else:
            self.client = http.CurlClient()

    async def call(self, method: str, path: str, referer: str, body: dict | None, *, stream: bool = False):
        """One call; the answer's JSON (None for a stream, read to its end)."""
        headers = {**call_headers(self.base, self.cookie, referer, stream=stream), "Content-Type": "application/json"}
        data = json_bytes(body) if body is not None else None
        if self.session:
            resp = await self.client.request(method, self.base + path, headers=headers, data=data, stream=True,
                                             allow_redirects=False, impersonate="chrome")
            status, pieces = resp.status_code, [piece async for piece in resp.aiter_content()]
            await resp.aclose()
        else:
            resp = await self.client.request(method, self.base + path, headers=headers, data=data)
            status, pieces = resp.status, [piece async for piece in resp.chunks()]
            await resp.close()
        if not 200 <= status < 300:
            raise web.HTTPBadGateway(text=f"fake claude.ai answered {status} to {path}")
        return None if stream else json.loads(b"".join(pieces))

    async def serve(self, request: web.Request) -> web.Response:
        await request.read()
        conv = str(uuid.uuid4())
        convs = f"api/organizations/{self.org}/chat_conversations"
        await self.call("POST", convs, "new?incognito", web_protocol.create_body(conv, temporary=True, now_str=""))
        body = web_protocol.completion_body(
            "\n\nHuman: Hello, how are you?\n\nAssistant:", model="claude-sonnet-4-5", max_tokens=256,
            rendering_mode="messages", custom_prompt="", timezone="UTC", web_search=False, file_uuids=[])
        await self.call("POST", f"{convs}/{conv}/completion", f"chat/{conv}", body, stream=True)
        return web.Response(body=ANSWER, content_type="application/json")


def make_app(kind: str, api: str, web_base: str) -> web.Application:
    app = web.Application()
    app[API] = api.rstrip("/")
    if kind == "wire":
        async def client(app: web.Application):
            app[CLIENT] = http.AiohttpClient()
            yield
            await app[CLIENT].close()
        app.cleanup_ctx.append(client)
        app.router.add_route("*", "/{tail:.*}", wire_relay)
        return app
    calls = WebCalls(web_base, session=kind == "web-session")

    async def account(app: web.Application):
        orgs = await calls.call("GET", "api/organizations", "new", None)
        calls.org = orgs[-1]["uuid"]  # the account's chat organization (the fake lists it last)
        yield
        await calls.client.close()
    app.cleanup_ctx.append(account)
    app.router.add_post("/{tail:.*}", calls.serve)
    return app


if __name__ == "__main__":
    kind, port, api, web_base = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if kind not in ("wire", "web", "web-session"):
        sys.exit(f"unknown floor {kind!r}: wire, web or web-session")
    web.run_app(make_app(kind, api, web_base), host="127.0.0.1", port=port, access_log=None, print=None,
                handler_cancellation=True)
