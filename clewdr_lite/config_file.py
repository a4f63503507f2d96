"""clewdr.toml on disk: where it is, reading it, and saving it without losing the user's edits.

The file is read with tomllib. Saves edit the tomlkit document in place (config_doc.py: comments,
key order and formatting survive; only changed keys are rewritten), never write environment values
(compat.md quirk 4), merge an edit made on disk while we ran (quirk 6), and replace the file
atomically with mode 0600 (§4.4).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from clewdr_lite import lazy
from clewdr_lite.config import KINDS, MASK, Config, parse

try:  # Python 3.11+: reading needs no tomlkit (about a megabyte resident with its document)
    import tomllib
except ImportError:  # Python 3.10 reads with tomlkit
    tomllib = None

docs = lazy.module("clewdr_lite.config_doc")  # tomlkit: only to write the file, or explain an error

_log = logging.getLogger(__name__)

FILE_NAME = "clewdr.toml"
APP_DIR = "clewdr-lite"
# A pool save must not write cookies that came from the environment (compat quirk 4)
_POOL_LOCKS = {
    "cookie_array": ("cookie_array", "wasted_cookie"),
    "wasted_cookie": ("cookie_array", "wasted_cookie"),
    "gemini_keys": ("gemini_keys",),
    "vertex.credentials": ("vertex",),
}

DEFAULT_TOML = '''\
# clewdr-lite configuration. A ClewdR clewdr.toml loads unchanged, and ClewdR can load this one.
#
# Every key can also be set in the environment: CLEWDR_<KEY>, for example CLEWDR_PORT=8484;
# keys inside tables with a double underscore: CLEWDR_RETRY__MAX_DELAY=8. The environment wins
# over this file, and its values are never written into it.
# clewdr-lite keeps your comments and key order when it saves this file.

# ── Server (changes need a restart) ──
ip = "127.0.0.1"              # bind address; "0.0.0.0" serves the LAN
port = 8484

# ── Passwords: left blank, a random one is generated, saved here and printed once ──
# API password for every LLM endpoint
password = ""
# password of the admin UI and /api/*
admin_password = ""

# ── App ──
check_update = true           # look for a newer release in the background
auto_update = false           # not supported: clewdr-lite never replaces its own binary
no_fs = false                 # never touch the disk: no saves, no log files, in-memory database
log_to_file = false           # also log to <config dir>/log/clewdr.log
# log_level = "info"          # debug | info | warning | error | critical
# max_body_mb = 32            # request body limit in MiB
# db_path = "clewdr.db"       # usage and request-log database; default: next to this file

# ── Network ──
# Outbound proxy: http, https, socks4, socks4a, socks5 or socks5h; unset, HTTPS_PROXY or
# ALL_PROXY of the environment is used. rproxy replaces the claude.ai web base (mirrors).
# proxy = "socks5h://127.0.0.1:1080"
# rproxy = "https://mirror.example/"
max_retries = 5               # attempts per request = max_retries + 1

# ── claude.ai web ──
preserve_chats = false        # keep conversations instead of temporary ones
web_search = false            # add the web-search tool to every request
enable_web_count_tokens = false   # exact token counts through Claude Code's count_tokens
sanitize_messages = false     # trim text and drop empty assistant turns
# web_timezone = "America/New_York"
# web_rendering_mode = "messages"     # "raw" = ClewdR's non-streaming mode
# web_bootstrap_ttl = 600             # seconds to cache an account's bootstrap
# web_max_concurrent_per_cookie = 0   # 0 = unlimited
# allow_external_images = false       # download http(s) image URLs for the upload
# st_expressions_shortcut = false     # answer SillyTavern's expression classifier locally

# ── Which cookies to use ──
skip_first_warning = false
skip_second_warning = false
skip_restricted = false
skip_non_pro = false          # reject free accounts
skip_rate_limit = true        # kept for ClewdR; has no effect
skip_normal_pro = false

# ── Prompt ──
use_real_roles = true         # mark role labels so the web model sees real turns
# custom_h = "Human"          # user label of the flattened web prompt
# custom_a = "Assistant"      # assistant label
custom_prompt = ""            # the visible prompt field of web requests
# custom_system = ""          # Claude Code: an extra system block
# first_user_placeholder = "(continue)"   # when a conversation starts with the assistant
# thinking_output = "reasoning_content"   # OpenAI routes: reasoning_content | think_tags | drop

# ── Claude Code (OAuth from cookies) ──
# claude_code_client_id = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# claude_code_version = "2.1.76"
# claude_code_user_agent = "claude-cli/{version} (external, cli)"
# claude_code_token_url = "https://api.anthropic.com/v1/oauth/token"
# claude_code_redirect_uri = "https://console.anthropic.com/oauth/code/callback"
# claude_code_scope = "user:profile user:inference"
# claude_code_betas = []             # extra anthropic-beta tokens
# claude_code_usage_url = "https://api.anthropic.com/api/oauth/usage"

# ── Gemini (AI Studio keys) and Vertex AI ──
# gemini_base = "https://generativelanguage.googleapis.com"
# gemini_api_version = "v1beta"
# gemini_safety = "off"              # off | block_none | client
# gemini_keepalive = false           # keep-alive bytes for slow non-streaming answers
# gemini_keepalive_max = 360
# gemini_max_403 = 3                 # consecutive 403s before a key is disabled
# vertex_location = "global"
# vertex_base = "https://aiplatform.googleapis.com"
# gemini_keys = [{ key = "AIzaSy…" }]
# [vertex]
# credentials = [ { …service-account JSON fields… } ]

# ── Gateway tables: [[providers]], [[client_keys]], [aliases], [router], [retry], [breaker],
#    [budgets], [log], [metrics], [edge]; see the README. Example:
# [[providers]]
# name = "openrouter"
# type = "openai"
# preset = "openrouter"
# keys = ["sk-or-v1-…"]
# models = ["openai/*", "anthropic/*"]

# Cookies ([[cookie_array]], [[wasted_cookie]]) are added below by the admin UI or --file.
'''


def resolve_path(cli_path: str | None, *, exe_dir: Path | None, cwd: Path,
                 environ: Mapping[str, str]) -> Path:
    """The config file to use, first match wins (compat.md §2)."""
    if cli_path:
        path = Path(cli_path).expanduser()
        return path if path.is_absolute() else cwd / path
    if exe_dir is not None:
        return exe_dir / FILE_NAME
    if (cwd / FILE_NAME).exists():
        return cwd / FILE_NAME
    xdg = environ.get("XDG_CONFIG_HOME", "")
    # the XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else _home(environ) / ".config"
    return base / APP_DIR / FILE_NAME


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


class ConfigError(Exception):
    """A config file that cannot be read or parsed; it is reported and never overwritten."""

    def __init__(self, path: Path, message: str, line: int | None = None,
                 column: int | None = None) -> None:
        where = f"{path}" + (f", line {line}" if line else "") + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")
        self.path, self.message, self.line, self.column = path, message, line, column


def decode(path: Path, data: bytes) -> str:
    """A file's text; ConfigError with the line and column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")  # Windows editors may add a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(path, "not UTF-8 text", line, column) from None


def parse_text(path: Path, data: bytes):
    """The tomlkit document of a file's bytes; ConfigError with the line and column."""
    return docs.parse_text(path, data)


def read_values(path: Path, data: bytes):
    """The values of a file's bytes (a plain dict); tomlkit explains the error when it has one."""
    text = decode(path, data)
    if tomllib is not None:
        try:
            return tomllib.loads(text)
        except (tomllib.TOMLDecodeError, ValueError):
            pass  # tomlkit's message names the line and column, as it always did
    return docs.parse_text(path, data)


class ConfigFile:
    """clewdr.toml: load it, save changes in place and atomically, notice external edits."""

    def __init__(self, path: Path, *, no_fs: bool, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._no_fs = no_fs
        self._clock = clock
        self._lock = threading.Lock()
        # The file's values as last read (plain); the tomlkit document of the same bytes is built
        # by the first edit (the template when there is no file) and then holds the truth.
        self._values: dict | None = None
        self._document = None
        self._seen: tuple[tuple | None, bytes | None] = (None, None)  # (stat, bytes) last read/written
        self._pending: list[tuple[str, object]] = []  # edits made in memory, not yet on disk
        self._env_locked: frozenset[str] = frozenset()
        self._writes = self._errors = 0
        self._write_ms = 0.0
        self._last_write_ts = 0

    @property
    def _doc(self):
        """The tomlkit document, parsed from the bytes last read on first use."""
        if self._document is None:
            data = self._seen[1]
            self._document = docs.template() if data is None else parse_text(self.path, data)
        return self._document

    def _current(self):
        """What parse() reads: the document once built, else the values read."""
        if self._document is None and self._values is not None:
            return self._values
        return self._doc

    @property
    def no_fs(self) -> bool:
        """True when nothing may touch the disk (constructor flag or the config's no_fs)."""
        return self._no_fs

    def load(self, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
        """Read the file (the default document when missing) and parse it; ConfigError if corrupt."""
        with self._lock:
            data, seen = self._read()
            if data is None or self._pending:  # the template, or edits a failed write left behind
                doc = docs.template() if data is None else parse_text(self.path, data)
                for key, value in self._pending:
                    docs.apply(doc, key, value)
                values = None
            else:
                values = read_values(self.path, data)
                doc = None if type(values) is dict else values  # tomlkit's, after a tomllib error
            self._seen, self._values, self._document = seen, values, doc
            cfg, warnings = parse(self._current(), environ)
            self._env_locked = cfg.env_locked
            self._no_fs = self._no_fs or cfg.no_fs
            # generated passwords go into the document, so later parses keep them and a save stores them
            for key in sorted(cfg.generated - cfg.env_locked):
                self._edit(key, getattr(cfg, key))
        return cfg, warnings

    def snapshot(self, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
        """Parse the in-memory document again (after a save), without reading the disk."""
        with self._lock:
            cfg, warnings = parse(self._current(), environ)
            self._env_locked = cfg.env_locked
        return cfg, warnings

    def ensure_written(self) -> bool:
        """Write the file if it is missing or load() generated passwords; True if written."""
        with self._lock:
            if self._no_fs or (self._seen[0] is not None and not self._pending):
                return False
            self._flush()
            return True

    def save(self, *, settings: dict | None = None, cookies: list[dict] | None = None,
             wasted: list[dict] | None = None, gemini_keys: list[dict] | None = None,
             vertex_credentials: list[dict] | None = None) -> bool:
        """Apply changes and write them; True when an external edit of the file was merged."""
        edits = [(k, v) for k, v in (settings or {}).items() if not _masked(k, v)]
        for key, value in (("cookie_array", cookies), ("wasted_cookie", wasted),
                           ("gemini_keys", gemini_keys), ("vertex.credentials", vertex_credentials)):
            if value is not None:
                edits.append((key, value))
        unknown = [k for k, _ in edits if k not in KINDS and k not in _POOL_LOCKS]
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        with self._lock:
            for key, value in edits:
                if self._is_locked(key):
                    _log.debug("not saving %s: it is set by the environment", key)
                    continue
                self._edit(key, _plain(value))
            if self._no_fs:
                self._pending.clear()
                return False
            if not self._pending:
                return False
            return self._flush()

    def changed_on_disk(self) -> bool:
        """True when the file differs from what this process last read or wrote."""
        with self._lock:
            return self._changed()

    def stats(self) -> dict:
        """Write counters for GET /api/storage/status (compat §7.9)."""
        attempts = self._writes + self._errors
        return {
            "total_writes": self._writes,
            "last_write_ts": self._last_write_ts,
            "avg_write_ms": round(self._write_ms / self._writes, 3) if self._writes else 0.0,
            "write_error_count": self._errors,
            "failure_ratio": self._errors / attempts if attempts else 0.0,
        }

    # ── internals (called with the lock held) ──

    def _is_locked(self, key: str) -> bool:
        return any(k in self._env_locked for k in _POOL_LOCKS.get(key, (key,)))

    def _edit(self, key: str, value) -> bool:
        # only real changes are replayed over an external edit, so a hand edit of a key we did
        # not change survives the merge
        changed = docs.apply(self._doc, key, value)
        if changed:
            self._pending.append((key, value))
        return changed

    def _read(self) -> tuple[bytes | None, tuple[tuple | None, bytes | None]]:
        """The file's bytes (None when missing) and its signature."""
        try:
            # stat before reading: a change in between then shows up as a change next time
            stat = _signature(self.path)
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, (None, None)
        except OSError as exc:
            raise ConfigError(self.path, f"cannot be read: {exc.strerror or exc}") from None
        return data, (stat, data)

    def _changed(self) -> bool:
        stat, data = self._seen
        now = _signature(self.path)
        if now == stat:
            return False
        if now is None or stat is None:
            return now is not None
        try:
            current = self.path.read_bytes()
        except OSError:
            return True
        if current == data:
            self._seen = (now, data)  # touched, not edited
            return False
        return True

    def _flush(self) -> bool:
        merged = False
        if self._changed():
            try:
                data, _ = self._read()
                doc = docs.template() if data is None else parse_text(self.path, data)
            except ConfigError:
                self._errors += 1
                raise
            for key, value in self._pending:
                docs.apply(doc, key, value)
            self._document, merged = doc, True
            _log.warning("%s was edited while clewdr-lite ran; merged the edit with the pending "
                         "changes", self.path)
        data = self._doc.as_string().encode("utf-8")
        started = time.perf_counter()
        try:
            written = write_atomic(self.path, data)
        except OSError:
            self._errors += 1
            raise
        self._write_ms += (time.perf_counter() - started) * 1000
        self._writes += 1
        self._last_write_ts = int(self._clock())
        self._seen = (_signature(written), data)
        self._pending.clear()
        return merged


def _signature(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def write_atomic(path: Path, data: bytes) -> Path:
    """Temp file in the same directory (0600 from creation), fsync, os.replace, fsync the dir."""
    target = Path(os.path.realpath(path))  # a symlinked config stays a symlink
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a killed process with our pid; O_EXCL below needs it gone
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    # makes the rename itself durable; Windows cannot open directories, and there it is not needed
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _masked(key: str, value) -> bool:
    # a masked password from GET /api/config means "unchanged" (compat §7.7); never store the mask
    return key in ("password", "admin_password") and isinstance(value, str) and value.startswith(MASK)


def _plain(value):
    """Tuples to lists and None entries dropped, so values compare with the document's."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value if v is not None]
    return value


