"""Pool state written back into clewdr.toml, comments kept; admin cookie and config endpoints."""

from __future__ import annotations

import os

import aiohttp
import anthropic
import tomlkit

from clewdr_lite.config_file import ConfigFile
from clewdr_lite.server.app import save_pool
from tests.conftest import ADMIN_PASSWORD, PASSWORD, make_cookie

MODEL = "claude-sonnet-4-6"
ADMIN = {"Authorization": f"Bearer {ADMIN_PASSWORD}"}


def write_config(path, fake_web, cookies) -> ConfigFile:
    path.write_text(
        "# my proxy\n"
        f'password = "{PASSWORD}"  # keep this\n'
        f'admin_password = "{ADMIN_PASSWORD}"\n'
        f'rproxy = "{fake_web.base_url}"\n'
        "max_retries = 5\n\n# cookies below\n"
        + "".join(f'[[cookie_array]]\ncookie = "sessionKey={c}"\n' for c in cookies))
    return ConfigFile(path, no_fs=False)


async def start_from_file(start_proxy, file):
    config, _ = file.load(os.environ)
    return await start_proxy(settings={k: getattr(config, k) for k in ("rproxy",)},
                             cookies=[dict(r) for r in config.cookie_array], config_file=file)


async def test_pool_changes_are_saved_keeping_comments(tmp_path, fake_web, start_proxy, clock):
    banned, limited, good = make_cookie("banned"), make_cookie("limited"), make_cookie("good")
    fake_web.add_account(banned, flags=[("banned", 4102444800)])
    fake_web.add_account(limited, behaviour="rate_limited", resets_at=int(clock.now) + 60)
    fake_web.add_account(good)
    path = tmp_path / "clewdr.toml"
    file = write_config(path, fake_web, [banned, limited, good])
    proxy = await start_from_file(start_proxy, file)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        await c.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hey"}])
    await save_pool(proxy.state)
    text = path.read_text()
    assert text.startswith("# my proxy\n") and "# keep this" in text and "# cookies below" in text
    doc = tomlkit.parse(text)
    array = {t["cookie"]: t for t in doc["cookie_array"]}
    assert set(array) == {limited, good}  # stored in the current form, sessionKey= dropped
    assert array[limited]["reset_time"] == int(clock.now) + 60
    assert array[good]["session_usage"]["total_input_tokens"] > 0
    assert [(t["cookie"], t["reason"]) for t in doc["wasted_cookie"]] == [(banned, "Banned")]
    # un-parked at its reset time, and that is saved too
    clock.now += 61
    proxy.state.pool.unpark_due(clock.now)
    await save_pool(proxy.state)
    doc = tomlkit.parse(path.read_text())
    assert all("reset_time" not in t for t in doc["cookie_array"])


async def test_admin_cookie_endpoints(tmp_path, fake_web, start_proxy):
    path = tmp_path / "clewdr.toml"
    file = write_config(path, fake_web, [])
    proxy = await start_from_file(start_proxy, file)
    new = make_cookie("new")
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.get(proxy.url + "/api/auth") as r:
            assert r.status == 200
        async with s.post(proxy.url + "/api/cookie", json={"cookie": f"sessionKey={new}; other=1"}) as r:
            assert r.status == 200
        async with s.post(proxy.url + "/api/cookie", json={"cookie": new}) as r:
            assert r.status == 200  # duplicates are fine
        async with s.post(proxy.url + "/api/cookie", json={"cookie": "nope"}) as r:
            assert r.status == 422 and "Invalid cookie" in await r.text()
        async with s.get(proxy.url + "/api/cookies") as r:
            listing = await r.json()
            assert r.headers["X-Cache-Status"] == "MISS"
        assert [c["cookie"] for c in listing["valid"]] == [new]
        assert tomlkit.parse(path.read_text())["cookie_array"][0]["cookie"] == new
        async with s.delete(proxy.url + "/api/cookie", json={"cookie": new}) as r:
            assert r.status == 204
        async with s.delete(proxy.url + "/api/cookie", json={"cookie": new}) as r:
            assert r.status == 404 and await r.json() == {"error": "Cookie not found"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {PASSWORD}"}) as s:
        async with s.get(proxy.url + "/api/cookies") as r:
            assert r.status == 401  # the API password is not the admin password


async def test_admin_config_masks_and_merges(tmp_path, fake_web, start_proxy):
    path = tmp_path / "clewdr.toml"
    file = write_config(path, fake_web, [])
    proxy = await start_from_file(start_proxy, file)
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        async with s.get(proxy.url + "/api/config") as r:
            shown = await r.json()
        assert shown["password"] == "********" + PASSWORD[-4:] and "env_locked" in shown
        shown.update(custom_h="User", max_retries=2)
        async with s.post(proxy.url + "/api/config", json=shown) as r:
            assert r.status == 200 and (await r.json())["message"] == "Config updated successfully"
    config = proxy.state.config
    assert config.custom_h == "User" and config.max_retries == 2 and config.password == PASSWORD
    text = path.read_text()
    assert 'custom_h = "User"' in text and "max_retries = 2" in text and "# keep this" in text
    assert "********" not in text


async def test_the_request_log_opens_without_starting_an_executor_thread(tmp_path, fake_web, start_proxy):
    # an idle executor thread would be kept for the life of the process just to open a file
    import asyncio

    proxy = await start_from_file(start_proxy, write_config(tmp_path / "clewdr.toml", fake_web, []))
    assert proxy.state.store is not None and proxy.state.store.path == tmp_path / "clewdr.db"
    assert (tmp_path / "clewdr.db").exists()
    assert asyncio.get_running_loop()._default_executor is None


async def test_a_failed_save_is_told_once_never_overwrites_and_is_retried(tmp_path, fake_web, start_proxy, caplog):
    good = make_cookie("good")
    fake_web.add_account(good)
    path = tmp_path / "clewdr.toml"
    file = write_config(path, fake_web, [good])
    proxy = await start_from_file(start_proxy, file)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        await c.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hey"}])
    good_text = path.read_text()
    path.write_text(good_text + "max_retries = [oops\n")  # a hand edit gone wrong, while it runs
    broken = path.read_text()
    with caplog.at_level("INFO", logger="clewdr_lite"):
        await save_pool(proxy.state)  # the persister's call: no exception escapes to end its loop
        await save_pool(proxy.state)
    assert path.read_text() == broken  # a file that cannot be read is never overwritten
    failures = [r for r in caplog.records if "saving clewdr.toml failed" in r.getMessage()]
    assert len(failures) == 1 and "line" in failures[0].getMessage()  # told once, with where
    caplog.clear()
    path.write_text(good_text.replace("max_retries = 5", "max_retries = 4  # fixed by hand"))
    with caplog.at_level("INFO", logger="clewdr_lite"):
        await save_pool(proxy.state)
    text = path.read_text()
    assert "max_retries = 4  # fixed by hand" in text  # the edit is merged, the usage written
    assert tomlkit.parse(text)["cookie_array"][0]["session_usage"]["total_input_tokens"] > 0
    assert any("saved again" in r.getMessage() for r in caplog.records)
