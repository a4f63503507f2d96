"""No async generator of ours is left for asyncio to close: it would close each in a task of its
own (one more task per request) and run its cleanup late."""

from __future__ import annotations

import asyncio
import gc
import sys

import anthropic
import openai
import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic

KEY = "sk-ant-api03-" + "g" * 40
MSG = [{"role": "user", "content": "hello there"}]


class Dropped:
    """Async generators dropped before they finished, which asyncio would close for us."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.hooks = sys.get_asyncgen_hooks()

    def __enter__(self) -> Dropped:
        def finalizer(agen) -> None:  # called for a generator dropped before it finished
            self.names.append(f"{agen.ag_code.co_qualname} ({agen.ag_code.co_filename})")
            self.hooks.finalizer(agen)
        sys.set_asyncgen_hooks(firstiter=self.hooks.firstiter, finalizer=finalizer)
        return self

    def __exit__(self, *exc) -> None:
        sys.set_asyncgen_hooks(*self.hooks)

    @property
    def ours(self) -> list[str]:
        return [name for name in self.names if "clewdr_lite" in name]


async def test_answers_leave_no_async_generator_for_asyncio_to_close(fake_web, start_proxy, clock):
    with Dropped() as dropped:
        async with FakeAnthropic(clock=clock) as api:
            api.add_key(KEY)
            fake_web.add_account(make_cookie(1))
            proxy = await start_proxy({"rproxy": fake_web.base_url, "providers": [
                {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": [KEY], "models": []}],
                "aliases": {"api": ["console/claude-sonnet-4-6"]}}, cookies=[make_cookie(1)])
            async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
                for model in ("claude-sonnet-4-6", "api"):  # claude.ai, then the API key
                    await c.messages.create(model=model, max_tokens=20, messages=MSG)
                    async with c.messages.stream(model=model, max_tokens=20, messages=MSG) as s:
                        await s.get_final_message()
            async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
                for model in ("claude-sonnet-4-6", "api"):
                    await c.chat.completions.create(model=model, messages=MSG)
                    async for _ in await c.chat.completions.create(model=model, messages=MSG, stream=True):
                        pass
            gc.collect()
            await asyncio.sleep(0.05)
    assert len(fake_web.completions) == 4 and len(api.request_ids) >= 4  # every answer really ran
    assert dropped.ours == []


async def test_a_converted_stream_ended_by_a_bad_event_closes_what_it_read(start_proxy, canned):
    events = (b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
              b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              b'"content_block":{"type":"text","text":""}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":"x"}\n\n')
    upstream = await canned(b"{}", "application/json", stream_body=events)
    proxy = await start_proxy({"providers": [{"name": "odd", "type": "anthropic", "base_url": upstream,
                                              "keys": [KEY], "models": ["claude-*"]}], "max_retries": 0})
    with Dropped() as dropped:
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            with pytest.raises(openai.APIError, match="malformed event"):
                async for _ in await c.chat.completions.create(model="claude-sonnet-4-6", messages=MSG, stream=True):
                    pass
        gc.collect()
        await asyncio.sleep(0.05)
    assert dropped.ours == []
