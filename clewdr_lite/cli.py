"""Command line: serve (default), check-config, check-cookies, init-config, version (compat.md §2)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from clewdr_lite import __version__

log = logging.getLogger("clewdr_lite")
COMMANDS = ("serve", "check-config", "check-cookies", "init-config", "version")


def version_text(no_fs: bool = False) -> str:
    """compat.md §10.1."""
    return f"clewdr-lite v{__version__}\nprofile: release\nmode: prod\nno_fs: {str(no_fs).lower()}"


def build_parser() -> argparse.ArgumentParser:
    """ClewdR's flags plus --host/--port and sub-commands."""
    p = argparse.ArgumentParser(prog="clewdr-lite", description="A lean, private LLM gateway.")
    p.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    p.add_argument("-c", "--config", help="config file (default: see README)")
    p.add_argument("-l", "--log-dir", help="log directory (default: <config dir>/log)")
    p.add_argument("-f", "--file", help="file of cookies, one a line, merged into the pool")
    p.add_argument("-u", "--update", action="store_true", help="(self-update is not supported)")
    p.add_argument("-V", "--version", action="store_true", help="print the version and exit")
    p.add_argument("--host", help="listen address for this run (overrides `ip`)")
    p.add_argument("--port", type=int, help="listen port for this run (overrides `port`)")
    p.add_argument("--show-passwords", action="store_true", help="print both passwords in full")
    return p


def _exe_dir() -> Path | None:
    """The executable's folder for single-file builds (Nuitka sets __compiled__)."""
    if "__compiled__" in globals() or getattr(sys, "frozen", False):
        return Path(sys.argv[0]).resolve().parent
    return None


def load(args) -> tuple:
    """Resolve, read and parse the config; a corrupt file stops here and is never overwritten."""
    from clewdr_lite import config as cfgmod

    path = cfgmod.resolve_path(args.config, exe_dir=_exe_dir(), cwd=Path.cwd(), environ=os.environ)
    file = cfgmod.ConfigFile(path, no_fs=False)
    try:
        config, warnings = file.load(os.environ)
    except cfgmod.ConfigError as exc:
        print(f"error: {exc}\nFix the file (or move it away); clewdr-lite will not overwrite it.",
              file=sys.stderr)
        raise SystemExit(2) from None
    return path, file, config, warnings


def merge_cookie_file(config, name: str):
    """`-f FILE`: cookies one a line; bad lines reported with their number (compat.md §2)."""
    from clewdr_lite.protocol.claude_web_account import parse_cookie

    known = {str(r.get("cookie")) for r in (*config.cookie_array, *config.wasted_cookie)}
    added = []
    for number, line in enumerate(Path(name).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cookie = parse_cookie(line)
        except ValueError:
            log.warning("%s:%d: not a cookie (Invalid cookie format), skipped", name, number)
            continue
        if cookie not in known:
            known.add(cookie)
            added.append({"cookie": cookie})
    log.info("%d new cookies from %s", len(added), name)
    return config.replace(cookie_array=tuple(config.cookie_array) + tuple(added)), bool(added)


def setup_logging(config, log_dir: Path | None) -> None:
    """Console logging at `log_level`; a daily file too when `log_to_file` (never under no_fs)."""
    from clewdr_lite import logs

    level = getattr(logging, str(config.log_level).upper(), logging.INFO)
    logs.lean_records()
    fmt = logs.ClockFormatter()
    handlers = [logs.StreamHandler(logs.console(sys.stdout))]
    if config.log_to_file and not config.no_fs and log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handlers.append(logs.file_handler(log_dir / "clewdr.log"))
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def lean_imports() -> None:
    """Choices for dependencies not imported yet. aiohttp keeps its signal and middleware lists in
    frozenlist, whose C extension is C++ and maps libstdc++ (about 0.9 MiB resident) for a list
    wrapper read at start-up; frozenlist's pure-Python class is the same class, and nothing per
    request notices. An explicit FROZENLIST_NO_EXTENSIONS in the environment wins."""
    os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `clewdr-lite` and `python -m clewdr_lite`."""
    lean_imports()
    args = build_parser().parse_args(argv)
    if args.version or args.command == "version":
        print(version_text())
        return 0
    if args.command == "init-config":
        from clewdr_lite.server.runner import init_config
        return init_config(args)
    path, file, config, warnings = load(args)
    setup_logging(config, Path(args.log_dir) if args.log_dir else path.parent / "log")
    for warning in warnings:
        log.warning("%s", warning)
    if args.update:
        log.warning("self-update is not supported; install a new release instead. Continuing.")
    if args.file:
        config, added = merge_cookie_file(config, args.file)
        if added and not config.no_fs and args.command != "check-config":
            file.save(cookies=[dict(r) for r in config.cookie_array])
    if args.command == "check-config":
        print(f"{path}: OK ({len(warnings)} warnings)")
        return 0
    from clewdr_lite.server import runner
    if args.command == "check-cookies":
        return asyncio.run(runner.check_cookies(config, file))
    return runner.serve(config, file, path, args)


if __name__ == "__main__":
    raise SystemExit(main())
