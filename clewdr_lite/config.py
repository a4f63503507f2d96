"""clewdr.toml as a value: the frozen `Config`, the pure `parse()`, and the default file.

`parse(doc, environ)` turns a TOML document (tomlkit or plain dict) and an environment into a
`Config` plus warnings; it never fails on content (compat.md §4). Env overrides (`CLEWDR_*`,
compat.md §4.2) are applied here and recorded in `env_locked`, so the file layer never writes
them back. The file itself (paths, atomic saves, external edits) lives in `config_file.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:  # Python 3.11+; tomlkit (imported when needed) reads on 3.10
    import tomllib
except ImportError:
    tomllib = None

PASSWORD_ALPHABET = "23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
PASSWORD_LENGTH = 64
MASK = "********"
_PASSWORD_KEYS = ("password", "admin_password")


@dataclass(frozen=True)
class Config:
    """The running configuration: one immutable value, built by parse()."""

    # ClewdR flat keys (compat.md §3.1), in ClewdR's order
    ip: str = "127.0.0.1"
    port: int = 8484
    check_update: bool = True
    auto_update: bool = False
    no_fs: bool = False
    log_to_file: bool = False
    password: str = ""
    admin_password: str = ""
    proxy: str | None = None
    rproxy: str | None = None
    max_retries: int = 5
    preserve_chats: bool = False
    web_search: bool = False
    enable_web_count_tokens: bool = False
    sanitize_messages: bool = False
    skip_first_warning: bool = False
    skip_second_warning: bool = False
    skip_restricted: bool = False
    skip_non_pro: bool = False
    skip_rate_limit: bool = True
    skip_normal_pro: bool = False
    use_real_roles: bool = True
    custom_h: str | None = None
    custom_a: str | None = None
    custom_prompt: str = ""
    claude_code_client_id: str | None = None
    custom_system: str | None = None
    # clewdr-lite flat keys (compat.md §3.4)
    web_timezone: str = "America/New_York"
    web_rendering_mode: str = "messages"
    web_bootstrap_ttl: int = 600
    web_max_concurrent_per_cookie: int = 0
    allow_external_images: bool = False
    st_expressions_shortcut: bool = False
    first_user_placeholder: str = "(continue)"
    thinking_output: str = "reasoning_content"
    claude_code_version: str = "2.1.76"
    claude_code_user_agent: str = "claude-cli/{version} (external, cli)"
    claude_code_token_url: str = "https://api.anthropic.com/v1/oauth/token"
    claude_code_redirect_uri: str = "https://console.anthropic.com/oauth/code/callback"
    claude_code_scope: str = "user:profile user:inference"
    claude_code_betas: tuple[str, ...] = ()
    claude_code_usage_url: str = "https://api.anthropic.com/api/oauth/usage"
    gemini_base: str = "https://generativelanguage.googleapis.com"
    gemini_api_version: str = "v1beta"
    gemini_safety: str = "off"
    gemini_keepalive: bool = False
    gemini_keepalive_max: int = 360
    gemini_max_403: int = 3
    vertex_location: str = "global"
    vertex_base: str | None = None
    db_path: str | None = None
    max_body_mb: int = 32
    log_level: str = "info"
    # credential pools: plain dicts as written in the file; pool modules validate entries
    cookie_array: tuple[dict, ...] = ()
    wasted_cookie: tuple[dict, ...] = ()
    gemini_keys: tuple[dict, ...] = ()
    vertex: dict = field(default_factory=lambda: {"credentials": []})
    # gateway tables (compat.md §3.4), raw: providers, router, retry … parsed by their modules
    tables: dict = field(default_factory=dict)
    # provenance, not file keys
    env_locked: frozenset[str] = frozenset()
    generated: frozenset[str] = frozenset()
    env_proxy: str | None = field(default=None, metadata={"derived": True})
    claude_code_entrypoint: str = field(default="cli", metadata={"derived": True})

    def replace(self, **changes) -> Config:
        """A copy with some attributes changed."""
        return dataclasses.replace(self, **changes)

    @property
    def effective_proxy(self) -> str | None:
        """`proxy`, else the HTTPS_PROXY / ALL_PROXY of the environment."""
        return self.proxy or self.env_proxy

    def public_dict(self) -> dict:
        """The `GET /api/config` body (compat §7.6): flat keys, masked passwords, env_locked."""
        out = {key: _jsonable(getattr(self, key)) for key in FLAT_KEYS}
        for key in _PASSWORD_KEYS:
            out[key] = mask_secret(out[key])
        out["env_locked"] = sorted(self.env_locked)
        return out


# Kind of each file key, read off the dataclass annotations so a new attribute needs no second
# table; `tables`, provenance and derived fields are not file keys.
_ANNOTATION_KINDS = {
    "str": "str", "str | None": "opt_str", "bool": "bool", "int": "int", "float": "float",
    "tuple[str, ...]": "str_list", "tuple[dict, ...]": "records", "dict": "table",
}
_NOT_FILE_KEYS = {"tables", "env_locked", "generated", "env_proxy", "claude_code_entrypoint"}
_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in _NOT_FILE_KEYS}
KINDS: dict[str, str] = {name: _ANNOTATION_KINDS[str(f.type)] for name, f in _FIELDS.items()}
FLAT_KEYS: tuple[str, ...] = tuple(k for k, kind in KINDS.items() if kind not in ("records", "table"))
DEFAULTS: dict = {k: f.default for k, f in _FIELDS.items() if k in FLAT_KEYS}
# Gateway tables kept raw in Config.tables (gateway.md); [persistence] is ClewdR [older]
TABLE_KINDS = {
    "providers": "records", "client_keys": "records", "aliases": "table", "router": "table",
    "retry": "table", "breaker": "table", "budgets": "table", "log": "table", "metrics": "table",
    "edge": "table", "persistence": "table",
    "claude_code_tokens": "records",  # imported Claude Code OAuth logins (claude-code.md §5)
}
KINDS.update(TABLE_KINDS)
# Older files and hand edits may list a cookie or key as a bare string
_STRING_FORM = {"cookie_array": "cookie", "wasted_cookie": "cookie", "gemini_keys": "key"}

_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_CHOICES = {
    "web_rendering_mode": ("messages", "raw"),
    "thinking_output": ("reasoning_content", "think_tags", "drop"),
    "gemini_safety": ("off", "block_none", "client"),
    "log_level": ("debug", "info", "warning", "error", "critical"),
}
_RANGES = {
    "port": (0, 65535), "max_retries": (0, None), "web_bootstrap_ttl": (0, None),
    "web_max_concurrent_per_cookie": (0, None), "gemini_keepalive_max": (0, None),
    "gemini_max_403": (1, None), "max_body_mb": (1, None),
}
# URL keys: a value that is not an http(s) URL falls back to the default (rproxy: none)
_URL_KEYS = ("rproxy", "vertex_base", "gemini_base", "claude_code_token_url",
             "claude_code_usage_url", "claude_code_redirect_uri")
_PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
# CCR spells router keys in camelCase; env names arrive lower-cased
_NESTED_SPELLING = {"longcontext": "longContext", "longcontextthreshold": "longContextThreshold",
                    "websearch": "webSearch", "forceuseimageagent": "forceUseImageAgent"}


def generate_password() -> str:
    """64 characters from the unambiguous 57-character alphabet (compat §4.3)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def mask_secret(value: str | None) -> str:
    """`********` plus the last 4 characters (only the mask for short secrets)."""
    if not value:
        return MASK
    return MASK + value[-4:] if len(value) > 8 else MASK


def parse(doc, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Document + environment → Config and warnings; never raises on content."""
    raw = doc.unwrap() if hasattr(doc, "unwrap") else copy.deepcopy(dict(doc))
    warnings: list[str] = []
    values = _file_values(raw, warnings)
    locked = _apply_env(environ, values, warnings)
    _env_only(environ, raw, values, locked, warnings)
    generated = _validate(values, warnings)
    tables = {key: values.pop(key) for key in TABLE_KINDS}
    for key in ("cookie_array", "wasted_cookie", "gemini_keys", "claude_code_betas"):
        values[key] = tuple(values[key])
    cfg = Config(**values, tables=tables, env_locked=frozenset(locked),
                 generated=frozenset(generated))
    return cfg, warnings


# ── file values ─────────────────────────────────────────────────────────────────────────────


def _file_values(raw: dict, warnings: list[str]) -> dict:
    """Typed values of every known key: the file's where it fits, else the default."""
    values = {key: _default(key) for key in KINDS}
    for key, value in raw.items():
        if key not in KINDS:
            warnings.append(f"unknown key {key!r} in the config file ignored")
            continue
        try:
            values[key] = _coerce(key, value, warnings)
        except ValueError as exc:
            warnings.append(f"config key {key!r}: {exc}; using the default")
    return values


def _default(key: str):
    kind = KINDS[key]
    if kind == "records":
        return []
    if kind == "table":
        return {"credentials": []} if key == "vertex" else {}
    return DEFAULTS[key]


def _coerce(key: str, value, warnings: list[str]):
    """The value converted to the kind of `key`; ValueError when it does not fit."""
    kind = KINDS[key]
    if kind == "records":
        return _records(key, value, warnings)
    return _COERCE[kind](value)


def _as_str(value) -> str:
    if isinstance(value, str):
        return value
    # an unquoted numeric password in a hand-written file is still meant as text
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {_type_name(value)}")


def _as_opt_str(value) -> str | None:
    if value is None:
        return None
    text = _as_str(value)
    return text if text.strip() else None


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise ValueError(f"expected true or false, got {value!r}")


def _as_int(value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _as_float(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _as_str_list(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = _structured(value)
        except ValueError:
            # CLEWDR_CLAUDE_CODE_BETAS=a,b is friendlier than a TOML array in a shell
            value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected an array of strings, got {value!r}")


def _as_table(value) -> dict:
    if isinstance(value, str):
        value = _structured(value)
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a table, got {_type_name(value)}")


_COERCE = {"str": _as_str, "opt_str": _as_opt_str, "bool": _as_bool, "int": _as_int,
           "float": _as_float, "str_list": _as_str_list, "table": _as_table}


def _records(key: str, value, warnings: list[str]) -> list[dict]:
    """An array of tables; bad entries are dropped one by one, bare strings wrapped."""
    if isinstance(value, str):
        value = _structured(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected an array of tables, got {_type_name(value)}")
    out = []
    for index, entry in enumerate(value):
        if isinstance(entry, dict):
            out.append(entry)
        elif isinstance(entry, str) and key in _STRING_FORM:
            out.append({_STRING_FORM[key]: entry})
        else:
            warnings.append(f"{key}[{index}]: expected a table, got {_type_name(entry)}; skipped")
    return out


def _structured(text: str):
    """A TOML value fragment (`[{cookie="…"}]`), or JSON, as plain Python."""
    try:
        return _fragment(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"not a TOML or JSON value: {text[:40]!r}") from None


def _fragment(text: str):
    """One TOML value written as text; ValueError when it is not exactly one value."""
    if tomllib is None:
        import tomlkit
        loads, failure = (lambda t: tomlkit.parse(t).unwrap()), tomlkit.exceptions.TOMLKitError
    else:
        loads, failure = tomllib.loads, tomllib.TOMLDecodeError
    try:
        doc = loads("v = " + text)
    except (failure, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if list(doc) != ["v"]:
        raise ValueError("not a single TOML value")
    return doc["v"]


def _type_name(value) -> str:
    return type(value).__name__


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value



# ── environment (compat.md §4.2) ────────────────────────────────────────────────────────────


def _apply_env(environ: Mapping[str, str], values: dict, warnings: list[str]) -> set[str]:
    """Apply the CLEWDR_* overrides to `values`; return the top-level keys they set."""
    locked: set[str] = set()
    for name in sorted(environ):
        if name[:7].upper() != "CLEWDR_":
            continue
        rest, text = name[7:].lower(), _unquote(environ[name].strip())
        path = rest.split("__")
        top = "vertex" if rest == "vertex_credential" else path[0]
        if top not in KINDS or not all(path) or (len(path) > 1 and KINDS[top] != "table"):
            warnings.append(f"unknown environment variable {name} ignored")
            continue
        if not text:
            # compose files pass unset variables as "": that must not wipe a password or proxy
            warnings.append(f"{name} is blank; ignored")
            continue
        try:
            if rest == "vertex_credential":
                values["vertex"] = {**values["vertex"], "credential": _as_table(text)}
            elif len(path) > 1:
                _set_nested(values[top], path[1:], text)
            else:
                values[top] = _coerce(top, text, warnings)
        except ValueError as exc:
            warnings.append(f"{name}: {exc}; ignored")
            continue
        locked.add(top)
    return locked


def _unquote(text: str) -> str:
    """`"12345"` → `12345` with TOML escapes; anything else unchanged."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = _fragment(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text


def _set_nested(table: dict, path: list[str], text: str) -> None:
    """CLEWDR_RETRY__MAX_DELAY=8 → table["max_delay"] = 8 (the [older] figment nesting)."""
    for part in path[:-1]:
        table = table.setdefault(_spelling(table, part), {})
        if not isinstance(table, dict):
            raise ValueError(f"{part!r} is not a table")
    leaf = _spelling(table, path[-1])
    table[leaf] = _guess(text, table.get(leaf))


def _spelling(table: dict, part: str) -> str:
    for key in table:
        if key.lower() == part:
            return key
    return _NESTED_SPELLING.get(part, part)


def _guess(text: str, existing):
    """Type a nested value like the file's value, else by TOML syntax, else as text."""
    if isinstance(existing, bool):
        return _as_bool(text)
    if isinstance(existing, (int, float)):
        number = _as_float(text)
        return int(number) if isinstance(existing, int) and number.is_integer() else number
    if isinstance(existing, str):
        return text
    if isinstance(existing, (list, dict)):
        value = _structured(text)
        if not isinstance(value, type(existing)):
            raise ValueError(f"expected {_type_name(existing)}, got {value!r}")
        return value
    try:
        value = _fragment(text)
    except ValueError:
        return text
    return value if isinstance(value, (bool, int, float, list, dict)) else text


def _env_only(environ: Mapping[str, str], raw: dict, values: dict, locked: set[str],
              warnings: list[str]) -> None:
    """Settings that come from plain environment variables, not CLEWDR_* ones."""
    entrypoint = environ.get("CLAUDE_CODE_ENTRYPOINT", "").strip()
    values["claude_code_entrypoint"] = entrypoint or "cli"
    console = environ.get("CLAUDE_CONSOLE_ENDPOINT", "").strip()
    if console and "claude_code_redirect_uri" not in raw and "claude_code_redirect_uri" not in locked:
        # [older] ClewdR derived the redirect URI from this variable
        values["claude_code_redirect_uri"] = console.rstrip("/") + "/oauth/code/callback"
        locked.add("claude_code_redirect_uri")
    proxy = next((environ[k].strip() for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if environ.get(k, "").strip()), None)
    if proxy and not _valid_url(proxy, _PROXY_SCHEMES):
        warnings.append(f"proxy from the environment {proxy!r} is not a valid proxy URL; ignored")
        proxy = None
    values["env_proxy"] = proxy
    termux = "TERMUX_VERSION" in environ or "com.termux" in environ.get("PREFIX", "")
    if termux and "check_update" not in raw and "check_update" not in locked:
        values["check_update"] = False  # compat §3.1: no update checks on phones unless asked


# ── validation (compat.md §4.3) ─────────────────────────────────────────────────────────────


def _validate(values: dict, warnings: list[str]) -> set[str]:
    """Fix values that cannot be used, with a warning each; return the generated passwords."""
    for key, allowed in _CHOICES.items():
        value = values[key].strip().lower()
        if value not in allowed:
            warnings.append(f"{key} = {values[key]!r} is not one of {', '.join(allowed)}; "
                            f"using {DEFAULTS[key]!r}")
            value = DEFAULTS[key]
        values[key] = value
    for key, (low, high) in _RANGES.items():
        if values[key] < low or (high is not None and values[key] > high):
            warnings.append(f"{key} = {values[key]} is out of range; using {DEFAULTS[key]}")
            values[key] = DEFAULTS[key]
    if not _valid_ip(values["ip"]):
        warnings.append(f"ip = {values['ip']!r} is not an IP address; using 127.0.0.1")
        values["ip"] = DEFAULTS["ip"]
    if values["proxy"] is not None and not _valid_url(values["proxy"], _PROXY_SCHEMES):
        warnings.append(f"proxy = {values['proxy']!r} cannot be parsed; no proxy is used")
        values["proxy"] = None
    for key in _URL_KEYS:
        if values[key] is not None and not _valid_url(values[key], ("http", "https")):
            warnings.append(f"{key} = {values[key]!r} is not an http(s) URL; using the default")
            values[key] = DEFAULTS[key]
    if values["auto_update"]:
        warnings.append("auto_update is not supported: clewdr-lite never replaces its binary")
    mode = values["persistence"].get("mode", "file")
    if str(mode).lower() != "file":
        warnings.append(f"persistence.mode = {mode!r} is not supported; "
                        "configuration stays in clewdr.toml")
    values["vertex"] = _merge_vertex(values["vertex"], warnings)
    return _fill_passwords(values)


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def _valid_url(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.hostname)


def _merge_vertex(vertex: dict, warnings: list[str]) -> dict:
    """Fold the legacy single `credential` into `credentials`, deduplicated by client_email."""
    vertex = dict(vertex)
    entries = vertex.get("credentials") or []
    if not isinstance(entries, list):
        warnings.append("vertex.credentials is not an array; ignored")
        entries = []
    legacy = vertex.pop("credential", None)
    if legacy:
        entries = [*entries, legacy]
    out, seen = [], set()
    for entry in entries:
        if isinstance(entry, str):
            try:
                entry = json.loads(entry)
            except ValueError:
                pass
        if not isinstance(entry, dict):
            warnings.append("a vertex credential is not a service-account object; skipped")
            continue
        email = str(entry.get("client_email", "")).lower()
        if email and email in seen:
            continue
        seen.add(email)
        out.append(entry)
    vertex["credentials"] = out
    return vertex


def _fill_passwords(values: dict) -> set[str]:
    generated = set()
    for key in _PASSWORD_KEYS:
        if not values[key].strip():
            values[key] = generate_password()
            generated.add(key)
    return generated


# The file layer lives in config_file.py (it imports this module); callers may still reach it
# here, as `config.ConfigFile`, without an import cycle.
_FILE_API = ("ConfigFile", "ConfigError", "DEFAULT_TOML", "resolve_path", "parse_text", "write_atomic")


def __getattr__(name: str):
    if name in _FILE_API:
        from clewdr_lite import config_file

        return getattr(config_file, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
