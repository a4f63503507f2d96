"""The real Claude Code CLI (`claude -p`) through the proxy's /code route to the fake api.anthropic.com.

The CLI is installed by the README's test command (npm, into tests/.node). If it is missing the
test fails: it must never silently skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic, Script

HERE = Path(__file__).resolve().parent
MODEL = "claude-sonnet-4-6"


def claude_binary() -> str:
    """The CLI from tests/.node, $CLEWDR_TEST_CLAUDE, or PATH; a loud failure when absent."""
    for candidate in (os.environ.get("CLEWDR_TEST_CLAUDE"), HERE / ".node/node_modules/.bin/claude",
                      shutil.which("claude")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail("Claude Code CLI not installed: run `npm install --no-save --prefix tests/.node "
                "@anthropic-ai/claude-code` (part of the README's test command)")


@pytest.fixture
async def api(clock):
    async with FakeAnthropic(clock=clock) as fake:
        yield fake


async def run_claude(proxy_url: str, home: Path, *args: str, prefix: str = "/code") -> tuple[int, str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "ANTHROPIC_BASE_URL": proxy_url + prefix, "ANTHROPIC_API_KEY": PASSWORD,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
           "NO_PROXY": "127.0.0.1", "CI": "1"}
    proc = await asyncio.create_subprocess_exec(
        claude_binary(), "-p", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, cwd=str(home), env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_claude_code_cli_end_to_end(api, start_proxy, tmp_path):
    cookie = make_cookie("cli")
    api.add_account(cookie)
    api.reply = Script(text=["Hello ", "from the fake ", "through clewdr-lite."])
    proxy = await start_proxy({"rproxy": api.base_url, "claude_code_token_url": api.url("v1/oauth/token"),
                               "claude_code_usage_url": api.url("api/oauth/usage")}, cookies=[cookie])
    code, out, err = await run_claude(proxy.url, tmp_path, "--model", MODEL, "say hi")
    assert code == 0, f"claude exited {code}\nstdout: {out}\nstderr: {err}"
    assert "Hello from the fake through clewdr-lite." in out
    calls = api.requests_to("messages")
    assert calls, "the CLI's request never reached the upstream"
    sent = calls[-1]
    betas = sent.headers["anthropic-beta"].split(",")
    assert betas[0] == "oauth-2025-04-20" and "claude-code-20250219" in betas
    billing = [b for b in sent.json["system"] if b.get("text", "").startswith("x-anthropic-billing-header")]
    assert len(billing) == 1 and "cc_version=2.1.76." in billing[0]["text"]  # the CLI's own block replaced
    assert sent.json["model"] == MODEL and sent.headers.get("x-app") == "cli"
    assert api.exchanges == 1 and api.violations == []


async def test_claude_code_cli_json_output_reports_usage(api, start_proxy, tmp_path):
    cookie = make_cookie("cli-json")
    api.add_account(cookie)
    api.reply = Script(text="four", input_tokens=321, output_tokens=2)
    proxy = await start_proxy({"rproxy": api.base_url, "claude_code_token_url": api.url("v1/oauth/token"),
                               "claude_code_usage_url": api.url("api/oauth/usage")}, cookies=[cookie])
    code, out, err = await run_claude(proxy.url, tmp_path, "--model", MODEL, "--output-format", "json",
                                      "what is 2+2?")
    assert code == 0, f"claude exited {code}\nstdout: {out}\nstderr: {err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["result"] == "four" and result["is_error"] is False
    assert result["usage"]["output_tokens"] == 2


async def test_claude_code_cli_routed_to_an_openai_compatible_provider(start_proxy, tmp_path, clock):
    from tests.fakes.openai_api import FakeOpenAI, OScript

    async with FakeOpenAI(clock=clock, flavour="deepseek") as fake:
        fake.add_key("sk-deep-" + "d" * 30)
        fake.reply = OScript(text=["Routed ", "to DeepSeek."])
        proxy = await start_proxy({
            "providers": [{"name": "deep", "preset": "deepseek", "base_url": fake.base_url,
                           "keys": ["sk-deep-" + "d" * 30]}],
            "router": {"default": "deep,deepseek-chat", "background": "deep,deepseek-chat"}})
        # the root route: the router decides (gateway.md §14 `activate`)
        code, out, err = await run_claude(proxy.url, tmp_path, "--model", MODEL, "say hi", prefix="")
    assert code == 0, f"claude exited {code}\nstdout: {out}\nstderr: {err}"
    assert "Routed to DeepSeek." in out
    sent = fake.requests_to("chat")[-1].json
    assert sent["model"] == "deepseek-chat" and any(m["role"] == "system" for m in sent["messages"])
    assert sent.get("tools"), "Claude Code's tools reach the OpenAI-compatible provider as functions"
