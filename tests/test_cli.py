"""The command line as a user runs it: first start, banner, signals, check-config, -f, check-cookies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys

import aiohttp
import tomlkit

from clewdr_lite.server.runner import lan_addresses
from tests.conftest import make_cookie

ENV = {k: v for k, v in os.environ.items() if not k.upper().startswith("CLEWDR_")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(*args, env=None, timeout=60):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clewdr_lite", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**ENV, **(env or {})})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()


class Server:
    """A `clewdr-lite serve` child process, read until its banner is complete."""

    def __init__(self, *args, env=None) -> None:
        self.args, self.env, self.lines = args, env, []

    async def __aenter__(self):
        self.port = free_port()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clewdr_lite", *self.args, "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**ENV, **(self.env or {})})
        while not any(line.startswith("claude.ai client:") for line in self.lines):
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            assert line, "server exited early:\n" + "".join(self.lines)
            self.lines.append(line.decode())
        return self

    def line(self, prefix: str) -> str:
        return next(x for x in self.lines if x.startswith(prefix)).split(": ", 1)[1].strip()

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(self.proc.stdout.read(), 20)
        self.lines.append(rest.decode())
        return await self.proc.wait()

    async def __aexit__(self, *exc):
        if self.proc.returncode is None:
            await self.stop()


async def test_version():
    code, out = await run("version")
    assert code == 0 and out.startswith("clewdr-lite v") and "no_fs: false" in out
    code, out = await run("-V")
    assert code == 0 and out.startswith("clewdr-lite v")


async def test_first_start_writes_config_and_prints_passwords(tmp_path):
    path = tmp_path / "conf" / "clewdr.toml"
    async with Server("-c", str(path)) as server:
        password = server.line("API Password")
        assert len(password) == 64 and set(password) <= set("23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ")
        assert server.line("Claude(Claude and OpenAI format) Endpoint") == f"http://127.0.0.1:{server.port}/v1"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{server.port}/health") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{server.port}/v1/models",
                             headers={"Authorization": f"Bearer {password}"}) as r:
                assert r.status == 200 and (await r.json())["data"]
        assert await server.stop() == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = tomlkit.parse(path.read_text())
    assert doc["password"] == password and len(doc["admin_password"]) == 64
    # second start: the password is not printed again
    async with Server("-c", str(path)) as again:
        shown = again.line("API Password")
        assert password not in "".join(again.lines) and shown.startswith(f"…{password[-4:]}")
        assert "--show-passwords" in shown


async def test_env_overrides_are_used_and_never_written(tmp_path):
    path = tmp_path / "clewdr.toml"
    async with Server("-c", str(path), env={"CLEWDR_PASSWORD": "12345", "CLEWDR_NO_FS": "no"}) as server:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{server.port}/v1/models", headers={"x-api-key": "12345"}) as r:
                assert r.status == 200
    assert "12345" not in path.read_text()


async def test_lan_banner_when_bound_to_all(tmp_path):
    async with Server("-c", str(tmp_path / "c.toml"), "--host", "0.0.0.0") as server:
        lan = [x.strip() for x in server.lines if x.startswith("LAN:")]
    assert lan == [f"LAN: http://{addr}:{server.port}/" for addr in lan_addresses()]


async def test_corrupt_config_is_reported_and_kept(tmp_path):
    path = tmp_path / "clewdr.toml"
    text = 'ip = "127.0.0.1"\nport = 8484\npassword = "unterminated\n'
    path.write_text(text)
    code, out = await run("-c", str(path), "--port", str(free_port()))
    assert code == 2 and "line 3" in out and "will not overwrite" in out
    assert path.read_text() == text


async def test_check_config(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text('port = 9000\nmystery_key = 1\n[[cookie_array]]\ncookie = "sessionKey=%s"\n' % make_cookie(1))
    code, out = await run("check-config", "-c", str(path))
    assert code == 0 and "OK (1 warnings)" in out and "mystery_key" in out


async def test_cookie_file_is_merged_with_bad_lines_reported(tmp_path):
    path, cookies = tmp_path / "clewdr.toml", tmp_path / "cookies.txt"
    good1, good2 = make_cookie("a"), make_cookie("b")
    cookies.write_text(f"{good1}\nnot a cookie\n\nsessionKey={good2}; lastActiveOrg=x\n{good1}\n")
    async with Server("-c", str(path), "-f", str(cookies)) as server:
        assert any("cookies.txt:2: not a cookie" in x for x in server.lines)
        # an INFO line logged before the banner is flushed before it, though stdout is a pipe
        added = next(i for i, x in enumerate(server.lines) if "2 new cookies from" in x)
        assert added < next(i for i, x in enumerate(server.lines) if x.startswith("clewdr-lite v"))
        await server.stop()
    saved = [t["cookie"] for t in tomlkit.parse(path.read_text())["cookie_array"]]
    assert saved == [good1, good2]


async def test_check_cookies_classifies_and_saves(tmp_path, fake_web):
    good, banned, gone = make_cookie("good"), make_cookie("banned"), make_cookie("gone")
    fake_web.add_account(good)
    fake_web.add_account(banned, flags=[("banned", 4102444800)])
    fake_web.add_account(gone, behaviour="unauthorized")
    path = tmp_path / "clewdr.toml"
    path.write_text(f'# my cookies\nrproxy = "{fake_web.base_url}"\n' + "".join(
        f'[[cookie_array]]\ncookie = "{c}"\n' for c in (good, banned, gone)))
    code, out = await run("check-cookies", "-c", str(path))
    assert code == 0 and "Valid: 1, Exhausted: 0, Invalid: 2" in out
    doc = tomlkit.parse(path.read_text())
    assert [t["cookie"] for t in doc["cookie_array"]] == [good]
    assert {t["cookie"]: t["reason"] for t in doc["wasted_cookie"]} == {banned: "Banned", gone: "Null"}
    assert path.read_text().startswith("# my cookies\n")


async def test_no_fs_writes_nothing(tmp_path):
    path = tmp_path / "clewdr.toml"
    async with Server("-c", str(path), env={"CLEWDR_NO_FS": "true", "CLEWDR_LOG_TO_FILE": "true"}) as server:
        password = server.line("API Password")
        assert len(password) == 64  # regenerated every start, so always shown
        await server.stop()
    assert list(tmp_path.iterdir()) == []


async def test_log_to_file_in_log_dir(tmp_path):
    path, logs = tmp_path / "clewdr.toml", tmp_path / "logs"
    async with Server("-c", str(path), "-l", str(logs), env={"CLEWDR_LOG_TO_FILE": "true"}) as server:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{server.port}/v1/messages", json={}) as r:
                assert r.status == 401
        await server.stop()
    text = (logs / "clewdr.log").read_text()
    assert "401 on POST /v1/messages" in text
