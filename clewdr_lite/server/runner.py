"""Running the server: start-up banner, signals, graceful shutdown; the check-cookies command."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from clewdr_lite import __version__, logs

log = logging.getLogger("clewdr_lite")
SHUTDOWN_GRACE_S = 10.0
FREEZE_AFTER_S = 1.0  # off the path of the first requests


def _freeze() -> None:
    """What is alive once start-up is over lives as long as the process: keep it out of every
    cyclic-GC pass (each would otherwise walk all of it again)."""
    gc.collect()
    gc.freeze()


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, found without sending any packet."""
    found = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = info[4][0]
            if not addr.startswith("127.") and addr not in found:
                found.append(addr)
    except OSError:
        pass
    return found


def _secret(value: str, full: bool) -> str:
    return value if full else f"…{value[-4:]} (run with --show-passwords to print it)"


def banner(config, path: Path, host: str, port: int, *, show: bool, backend: str) -> str:
    """The start-up banner with ClewdR's labels, so log greps keep working (compat.md §10.2)."""
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    full_pw = show or config.no_fs or "password" in config.generated
    full_admin = show or config.no_fs or "admin_password" in config.generated
    lines = [f"clewdr-lite v{__version__}", f"Config dir: {path.parent}",
             f"Claude(Claude and OpenAI format) Endpoint: {base}/v1",
             f"Claude Code(Claude and OpenAI format) Endpoint: {base}/code/v1",
             f"API Password: {_secret(config.password, full_pw)}",
             f"Web Admin Endpoint: {base}/",
             f"Web Admin Password: {_secret(config.admin_password, full_admin)}"]
    if config.proxy:
        lines.append(f"Proxy: {config.proxy.split('@')[-1]}")
    if config.rproxy:
        lines.append(f"Reverse Proxy: {config.rproxy}")
    if host in ("0.0.0.0", "::"):
        lines += [f"LAN: http://{addr}:{port}/" for addr in lan_addresses()]
    lines.append(f"claude.ai client: {backend}" + ("" if backend == "curl_cffi" else
                 " (curl_cffi not installed: no browser fingerprint; claude.ai itself may block "
                 "requests, mirrors and rproxy hosts work)"))
    return "\n".join(lines)


def serve(config, file, path: Path, args) -> int:
    """Run until SIGINT/SIGTERM; SIGHUP re-reads clewdr.toml."""
    host = args.host or config.ip
    port = args.port or config.port
    if not config.no_fs:
        file.ensure_written()  # first start, or passwords generated: persist before the banner
    return asyncio.run(_serve(config, file, path, host, port, show=args.show_passwords)) or 0


async def _serve(config, file, path: Path, host: str, port: int, *, show: bool) -> int:
    from clewdr_lite.server.app import STATE, make_app

    app = make_app(config, config_file=None if config.no_fs else file)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        await runner.cleanup()
        return 1
    logs.flush_all()  # the lines logged so far come before the banner, as they were written
    print(banner(config, path, host, port, show=show, backend=app[STATE].http_backend), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(FREEZE_AFTER_S, _freeze)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app, file))
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0


def _reload(app, file) -> None:
    """SIGHUP: re-read the file and swap the settings in (the pool keeps its live state)."""
    from clewdr_lite.config import ConfigError
    from clewdr_lite.server.app import STATE

    try:
        config, warnings = file.load(os.environ)
    except ConfigError as exc:
        log.error("reload refused: %s", exc)
        return
    for warning in warnings:
        log.warning("%s", warning)
    app[STATE].set_config(config)
    log.info("configuration reloaded")


async def check_cookies(config, file) -> int:
    """Bootstrap every cookie once, classify it, save the pool, print a summary (gateway.md §14)."""
    from clewdr_lite.protocol.claude_web_account import mask_log
    from clewdr_lite.server.app import STATE, make_app, save_pool
    from clewdr_lite.upstream.claude_web import AttemptFailed

    app = make_app(config, config_file=None if config.no_fs else file)
    state = app[STATE]
    for record in list(state.pool.valid) + list(state.pool.exhausted):
        cookie = record["cookie"]
        try:
            acct = await state.web.account(cookie)
            print(f"{mask_log(cookie)}  valid  ({'pro' if acct.pro else 'free'})")
        except AttemptFailed as exc:
            state.web._settle(cookie, exc.outcome)
            print(f"{mask_log(cookie)}  {exc.outcome.action}: {exc.outcome.error.message if exc.outcome.error else ''}")
    valid, exhausted, invalid = state.pool.counts()
    print(f"Valid: {valid}, Exhausted: {exhausted}, Invalid: {invalid}")
    await save_pool(state)
    for client in state.clients.values():
        await client.close()
    return 0


def init_config(args) -> int:
    """Write a commented default clewdr.toml; never overwrites an existing file."""
    from clewdr_lite import config as cfgmod

    path = cfgmod.resolve_path(args.config, exe_dir=None, cwd=Path.cwd(), environ=os.environ)
    if path.exists():
        print(f"{path} exists; not overwriting it", file=sys.stderr)
        return 1
    file = cfgmod.ConfigFile(path, no_fs=False)
    file.load(os.environ)
    file.ensure_written()
    print(f"wrote {path}")
    return 0
