"""clewdr.toml on disk: where it is, reading it, and saving it without losing the user's edits.

Saves edit the tomlkit document in place (comments, key order and formatting survive; only
changed keys are rewritten), never write environment values (compat.md quirk 4), merge an edit
made on disk while we ran (quirk 6), and replace the file atomically with mode 0600 (§4.4).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.container import Container
from tomlkit.items import AoT, Array, Comment, InlineTable, Table

from clewdr_lite.config import DEFAULTS, KINDS, MASK, Config, parse

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
# The field that tells two entries of an array of tables apart
_IDENTITY_FIELDS = ("cookie", "key", "client_email", "name", "id")

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


def parse_text(path: Path, data: bytes) -> tomlkit.TOMLDocument:
    """The tomlkit document of a file's bytes; ConfigError with the line and column."""
    try:
        text = data.decode("utf-8-sig")  # Windows editors may add a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(path, "not UTF-8 text", line, column) from None
    try:
        doc = tomlkit.parse(text)
        doc.unwrap()  # some structural errors only show when the values are built
    except ParseError as exc:
        raise ConfigError(path, str(exc), exc.line, exc.col) from None
    except (TOMLKitError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from None
    return doc


class ConfigFile:
    """clewdr.toml: load it, save changes in place and atomically, notice external edits."""

    def __init__(self, path: Path, *, no_fs: bool, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._no_fs = no_fs
        self._clock = clock
        self._lock = threading.Lock()
        self._document: tomlkit.TOMLDocument | None = None  # parsed by load(); the template until then
        self._seen: tuple[tuple | None, bytes | None] = (None, None)  # (stat, bytes) last read/written
        self._pending: list[tuple[str, object]] = []  # edits made in memory, not yet on disk
        self._env_locked: frozenset[str] = frozenset()
        self._writes = self._errors = 0
        self._write_ms = 0.0
        self._last_write_ts = 0

    @property
    def _doc(self) -> tomlkit.TOMLDocument:
        if self._document is None:  # the commented template costs tens of ms to parse: only if used
            self._document = tomlkit.parse(DEFAULT_TOML)
        return self._document

    @_doc.setter
    def _doc(self, doc: tomlkit.TOMLDocument) -> None:
        self._document = doc

    @property
    def no_fs(self) -> bool:
        """True when nothing may touch the disk (constructor flag or the config's no_fs)."""
        return self._no_fs

    def load(self, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
        """Read the file (the default document when missing) and parse it; ConfigError if corrupt."""
        with self._lock:
            doc, seen = self._read()
            for key, value in self._pending:  # edits a failed write left behind
                _apply(doc, key, value)
            self._doc, self._seen = doc, seen
            cfg, warnings = parse(self._doc, environ)
            self._env_locked = cfg.env_locked
            self._no_fs = self._no_fs or cfg.no_fs
            # generated passwords go into the document, so later parses keep them and a save stores them
            for key in sorted(cfg.generated - cfg.env_locked):
                self._edit(key, getattr(cfg, key))
        return cfg, warnings

    def snapshot(self, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
        """Parse the in-memory document again (after a save), without reading the disk."""
        with self._lock:
            cfg, warnings = parse(self._doc, environ)
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
        changed = _apply(self._doc, key, value)
        if changed:
            self._pending.append((key, value))
        return changed

    def _read(self) -> tuple[tomlkit.TOMLDocument, tuple[tuple | None, bytes | None]]:
        try:
            # stat before reading: a change in between then shows up as a change next time
            stat = _signature(self.path)
            data = self.path.read_bytes()
        except FileNotFoundError:
            return tomlkit.parse(DEFAULT_TOML), (None, None)
        except OSError as exc:
            raise ConfigError(self.path, f"cannot be read: {exc.strerror or exc}") from None
        return parse_text(self.path, data), (stat, data)

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
                doc, _ = self._read()
            except ConfigError:
                self._errors += 1
                raise
            for key, value in self._pending:
                _apply(doc, key, value)
            self._doc, merged = doc, True
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


# ── in-place document edits ─────────────────────────────────────────────────────────────────


def _apply(doc, key: str, value) -> bool:
    """Set a top-level key (or vertex.credentials) in the document; True if anything changed."""
    if key != "vertex.credentials":
        if key not in doc and value == DEFAULTS.get(key, object()):
            return False  # a default is not pinned into a file that never set it
        return _sync_key(doc, key, value)
    if "vertex" not in doc:
        if not value:
            return False
        doc.append("vertex", tomlkit.table(is_super_table=True))
    vertex = doc["vertex"]
    changed = _sync_key(vertex, "credentials", value)
    if "credential" in vertex:  # the legacy single account is merged into the list on load
        del vertex["credential"]
        changed = True
    return changed


def _sync_key(container, key: str, value) -> bool:
    """Make container[key] equal value, editing as little of the document as possible."""
    old = container.get(key)
    if value is None or (value in ([], {}) and (old is None or isinstance(old, AoT))):
        if old is None:
            return False
        del container[key]  # TOML has no null; an empty array of tables is no key at all
        return True
    if old is None:
        top = isinstance(value, dict) and isinstance(container, tomlkit.TOMLDocument)
        _add(container, key, _table(value, header=True) if top else _item(value, None))
        return True
    if _unwrap(old) == value:
        return False
    if isinstance(value, dict) and isinstance(old, (Table, InlineTable)):
        _sync_table(old, value)
    elif isinstance(old, AoT) and _is_records(value):
        _sync_aot(old, value)
    else:
        container[key] = _item(value, old)
    return True


def _sync_table(table, value: dict) -> None:
    for key in [k for k in table if k not in value]:
        del table[key]
    for key, item in value.items():
        _sync_key(table, key, item)


def _sync_aot(aot: AoT, entries: list[dict]) -> None:
    """Update an array of tables, reusing each entry's table (and its comments) by identity."""
    old_ids = [_identity(t) for t in aot]
    if old_ids == [_identity(e) for e in entries[: len(old_ids)]]:
        # the usual pool change: same entries, maybe new ones at the end
        for table, entry in zip(aot, entries):
            _sync_table(table, entry)
        for entry in entries[len(old_ids):]:
            aot.append(_table(entry, header=True))
        return
    spare = {ident: table for ident, table in zip(old_ids, aot) if ident is not None}
    tables = []
    for entry in entries:
        table = spare.pop(_identity(entry), None)
        if table is None:
            table = _table(entry, header=True)
        else:
            _sync_table(table, entry)
        tables.append(table)
    while len(aot):
        del aot[0]
    for table in tables:
        aot.append(table)


def _identity(entry) -> tuple | None:
    for name in _IDENTITY_FIELDS:
        if name in entry:
            return (name, _unwrap(entry[name]))
    return None


def _add(container, key: str, item) -> None:
    """Add a new key under its commented-out example, else after the last plain key."""
    body = container if isinstance(container, Container) else container.value
    at = None
    if not isinstance(item, (Table, AoT)) and not isinstance(container, InlineTable):
        at = _example_line(body, key)
        if at is None:
            # not at the very end: that is often a comment heading the tables below
            plain = [i for i, (k, v) in enumerate(body.body)
                     if k is not None and not isinstance(v, (Table, AoT))]
            at = plain[-1] if plain else None
    if at is not None and at + 1 < len(body.body) and hasattr(body, "_insert_at"):
        body._insert_at(at + 1, key, item)  # private tomlkit API, guarded; a plain add works too
    else:
        container[key] = item


def _example_line(body: Container, key: str) -> int | None:
    example = re.compile(rf"#\s*{re.escape(key)}\s*=")
    for index, (name, item) in enumerate(body.body):
        if name is None and isinstance(item, Comment) and example.match(item.trivia.comment):
            return index
    return None


def _item(value, like):
    """A tomlkit item for a plain value, in the style of the item it replaces."""
    if isinstance(value, dict):
        if isinstance(like, InlineTable) or (len(value) == 1 and not _nested(value)):
            # short externally tagged values ({ Restricted = ts }) read best inline, as ClewdR writes
            return _inline(value)
        return _table(value)
    if _is_records(value):
        if isinstance(like, Array):
            array = tomlkit.array().multiline(True)
            array.extend(_inline(v) for v in value)
            return array
        aot = tomlkit.aot()
        for entry in value:
            aot.append(_table(entry, header=True))
        return aot
    return tomlkit.item(value)


def _table(value: dict, *, header: bool = False) -> Table:
    table = tomlkit.table()
    if header:
        table.trivia.indent = "\n"  # a blank line before a [header] or [[header]] of our own
    # plain keys before sub-tables, so the table reads like ClewdR's own output
    for key in sorted(value, key=lambda k: isinstance(value[k], dict) or _is_records(value[k])):
        table.append(key, _item(value[key], None))
    return table


def _inline(value: dict) -> InlineTable:
    table = tomlkit.inline_table()
    for key, item in value.items():
        if isinstance(item, dict):
            table.append(key, _inline(item))
        elif _is_records(item):
            array = tomlkit.array()
            array.extend(_inline(v) for v in item)
            table.append(key, array)
        else:
            table.append(key, tomlkit.item(item))
    return table


def _nested(value: dict) -> bool:
    return any(isinstance(v, (dict, list)) for v in value.values())


def _is_records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _unwrap(item):
    return item.unwrap() if hasattr(item, "unwrap") else item
