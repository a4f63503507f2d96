"""No async generator of ours is left for asyncio to close: it would close each in a task of its
own (one more task per request) and run its cleanup late."""

from __future__ import annotations

import asyncio
import gc
import sys

import anthropic
import openai

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic

KEY = "sk-ant-api03-" + "g" * 40
MSG = [{"role": "user", "content": "hello there"}]


async def test_answers_leave_no_async_generator_for_asyncio_to_close(fake_web, start_proxy, clock):
    left: list[str] = []
    hooks = sys.get_asyncgen_hooks()

    def finalizer(agen) -> None:  # called for a generator dropped before it finished
        left.append(f"{agen.ag_code.co_qualname} ({agen.ag_code.co_filename})")
        hooks.finalizer(agen)
    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
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
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert len(fake_web.completions) == 4 and len(api.request_ids) >= 4  # every answer really ran
    assert [name for name in left if "clewdr_lite" in name] == []
