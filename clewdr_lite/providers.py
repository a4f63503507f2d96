"""Upstream providers as values: `[[providers]]` tables, presets and quirk flags (gateway.md §2).

Pure: plain tables in, frozen `Provider`s out. A problem goes to the `warn` callable and the
entry (or only the field, when the entry still makes sense without it) is skipped.

The built-in providers `claude_web`, `claude_code`, `gemini` and `vertex` always exist and come
first, in that order. Their credentials come from the ClewdR keys (`cookie_array`, `gemini_keys`,
`vertex`), so their `keys` stay empty, and an empty `base_url` means "from the flat keys"
(`rproxy`, `gemini_base`, `vertex_base`). A `[[providers]]` table with a built-in's name changes
that built-in's settings (priority, models, enabled …) in place.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable
from urllib.parse import urlsplit

TYPES = ("claude_web", "claude_code", "anthropic", "gemini", "vertex", "openai")
# Types whose credentials are the entry's own `keys`; the others exist only as built-ins, since
# their credentials (cookies, service accounts) have one place in the file.
KEYED_TYPES = ("anthropic", "gemini", "openai")
NAME_RE = re.compile(r"[a-z0-9_-]+")
DEFAULT_BASE = {
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "openai": "https://api.openai.com/v1",
}
DEFAULT_FIRST_BYTE_TIMEOUT = 120.0
# name (= type) → model globs claimed by default (gateway.md §3.3)
BUILTINS = (
    ("claude_web", ()),
    ("claude_code", ()),
    ("gemini", ("gemini-*", "gemma-*")),
    ("vertex", ()),
)

# OpenAI-compatible quirk flags and their defaults (gateway.md §2.4)
QUIRK_DEFAULTS = {
    "auth": "bearer",
    "max_tokens_field": "max_tokens",
    "max_tokens_cap": 0,
    "reasoning_field": "auto",
    "reasoning_request": "effort",
    "send_reasoning_back": False,
    "stream_usage": True,
    "supports_top_k": False,
    "max_stop_sequences": 4,
    "keep_cache_control": False,
    "strip_schema_keys": (),
    "fix_tool_ids": True,
    "repair_tool_json": True,
    "force_tool_mode": False,
    "drop_params": (),
    "extra_body": {},
    "image_url_only": False,
}
QUIRK_CHOICES = {
    "max_tokens_field": ("max_tokens", "max_completion_tokens"),
    "reasoning_field": ("reasoning_content", "reasoning", "auto", "none"),
    "reasoning_request": ("effort", "openrouter", "enable_thinking", "none"),
}
AUTH_FORMS = re.compile(r"bearer|none|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|query:[^\s&=]+")

# Presets of OpenAI-compatible servers (gateway.md §2.5). `model_quirks` holds per-model-glob
# overrides; explicit `quirks` in the provider table beat every preset value.
PRESETS = {
    "openai": {"base_url": "https://api.openai.com/v1",
               "quirks": {"max_tokens_field": "max_completion_tokens", "reasoning_request": "effort",
                          "max_stop_sequences": 4}},
    # HTTP-Referer / X-Title are optional attribution headers: set them in [providers.headers]
    "openrouter": {"base_url": "https://openrouter.ai/api/v1",
                   "quirks": {"reasoning_field": "reasoning", "reasoning_request": "openrouter"},
                   "model_quirks": (("anthropic/*", {"keep_cache_control": True}),)},
    # CCR's DeepSeek cap; DeepSeek rejects reasoning_content in its input
    "deepseek": {"base_url": "https://api.deepseek.com",
                 "quirks": {"reasoning_field": "reasoning_content", "max_tokens_cap": 8192,
                            "send_reasoning_back": False}},
    # a cold Ollama loads the model before the first byte
    "ollama": {"base_url": "http://127.0.0.1:11434/v1", "local": True, "first_byte_timeout": 300.0,
               "quirks": {"auth": "none", "supports_top_k": True}},
    "groq": {"base_url": "https://api.groq.com/openai/v1",
             "quirks": {"strip_schema_keys": ("$schema",), "fix_tool_ids": True}},
    "lmstudio": {"base_url": "http://127.0.0.1:1234/v1", "local": True,
                 "quirks": {"auth": "none", "supports_top_k": True}},
    "llamacpp": {"base_url": "http://127.0.0.1:8080/v1", "local": True,
                 "quirks": {"auth": "none", "supports_top_k": True}},
}


@dataclass(frozen=True)
class Provider:
    """One upstream provider, as configured (gateway.md §2.2)."""

    name: str
    type: str
    base_url: str = ""                   # "" on a built-in: from the flat keys
    keys: tuple = field(default=(), hash=False)  # strings or tables, as in the file
    models: tuple[str, ...] = ()         # globs (fnmatch, case-sensitive)
    priority: int = 0                    # lower is preferred
    weight: float = 1
    enabled: bool = True
    local: bool = False
    first_byte_timeout: float = DEFAULT_FIRST_BYTE_TIMEOUT
    headers: dict = field(default_factory=dict, hash=False)
    quirks: dict = field(default_factory=dict, hash=False)  # openai: every flag, merged
    preset: str | None = None
    prices: dict = field(default_factory=dict, hash=False)
    model_quirks: tuple = field(default=(), hash=False)    # ((glob, {flag: value}), …)

    @property
    def builtin(self) -> bool:
        """True for claude_web, claude_code, gemini and vertex."""
        return self.name in dict(BUILTINS) and self.type == self.name


def quirks_for(provider: Provider, model: str) -> dict:
    """The provider's quirk flags for one upstream model (preset per-model overrides applied)."""
    out = dict(provider.quirks)
    for glob, overrides in provider.model_quirks:
        if fnmatchcase(model, glob):
            out.update(overrides)
    return out


def parse_providers(tables: dict, *, warn: Callable[[str], None]) -> tuple[Provider, ...]:
    """The built-in providers (maybe overridden), then the declared ones in config order."""
    entries = tables.get("providers") or []
    if not isinstance(entries, list):
        warn("providers: expected an array of tables; ignored")
        entries = []
    builtins = {name: Provider(name, name, models=globs) for name, globs in BUILTINS}
    declared, seen = [], set()
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            warn(f"providers[{index}]: name {name!r} is not lower case [a-z0-9_-]+; skipped")
            continue
        if name in seen:
            warn(f"providers.{name}: a second provider with this name; skipped")
            continue
        seen.add(name)
        if name in builtins:
            builtins[name] = _override(builtins[name], entry, warn) or builtins[name]
        else:
            provider = _declared(name, entry, warn)
            if provider is not None:
                declared.append(provider)
    return (*builtins.values(), *declared)


# ── fields ──────────────────────────────────────────────────────────────────────────────────


def _url(value) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _globs(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected an array of model names or globs")
    return tuple(value)


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _weight(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"expected a number ≥ 0, got {value!r}")
    return value


def _seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"expected a number of seconds > 0, got {value!r}")
    return float(value)


def _bool(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _headers(value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ValueError("expected a table of header names and string values")
    return dict(value)


def _prices(value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("expected a table of model → { input, output, … }")
    return copy.deepcopy(value)


# Settings every provider table may carry, with their checks
FIELDS = {
    "base_url": _url, "models": _globs, "priority": _int, "weight": _weight, "enabled": _bool,
    "local": _bool, "first_byte_timeout": _seconds, "headers": _headers, "prices": _prices,
}
DECLARED_ONLY = ("keys", "preset", "quirks")


def _settings(entry: dict, where: str, warn) -> dict:
    """The valid FIELDS of `entry`; a bad value is dropped with a warning, base_url excepted."""
    out = {}
    for key, value in entry.items():
        if key in ("name", "type") or key in DECLARED_ONLY:
            continue
        if key not in FIELDS:
            warn(f"{where}: unknown field {key!r} ignored")
            continue
        try:
            out[key] = FIELDS[key](value)
        except ValueError as exc:
            if key == "base_url":  # falling back to a default URL would send the keys elsewhere
                raise
            warn(f"{where}.{key}: {exc}; using the default")
    return out


def _override(builtin: Provider, entry: dict, warn) -> Provider | None:
    """A built-in provider with the settings of a table of the same name; None to keep it."""
    where = f"providers.{builtin.name}"
    if entry.get("type", builtin.type) != builtin.type:
        warn(f"{where}: the built-in provider has type {builtin.type!r}; entry skipped")
        return None
    for key in DECLARED_ONLY:
        if key in entry:
            warn(f"{where}.{key}: not used by a built-in provider; ignored")
    try:
        settings = _settings(entry, where, warn)
    except ValueError as exc:
        warn(f"{where}.base_url: {exc}; entry skipped")
        return None
    return Provider(**{**_plain(builtin), **settings})


def _declared(name: str, entry: dict, warn) -> Provider | None:
    """A provider declared in `[[providers]]`, or None (with a warning) when it cannot work."""
    where = f"providers.{name}"
    preset = entry.get("preset")
    kind = entry.get("type", "openai" if preset is not None else None)
    if kind not in TYPES:
        warn(f"{where}: unknown type {kind!r} (one of {', '.join(KEYED_TYPES)}); skipped")
        return None
    if kind not in KEYED_TYPES:
        warn(f"{where}: type {kind!r} exists only as the built-in provider {kind!r}; skipped")
        return None
    preset = _preset(kind, preset, entry, where, warn)
    try:
        settings = _settings(entry, where, warn)
    except ValueError as exc:
        warn(f"{where}.base_url: {exc}; skipped")
        return None
    base = PRESETS.get(preset, {})
    values = {"base_url": base.get("base_url", DEFAULT_BASE[kind]), "local": base.get("local", False),
              "first_byte_timeout": base.get("first_byte_timeout", DEFAULT_FIRST_BYTE_TIMEOUT),
              **settings}
    quirks, model_quirks = {}, ()
    if kind == "openai":
        quirks, model_quirks = _quirks(preset, entry.get("quirks"), where, warn)
    elif "quirks" in entry:
        warn(f"{where}.quirks: only OpenAI-compatible providers have quirk flags; ignored")
    return Provider(name, kind, keys=_keys(entry.get("keys"), where, warn), preset=preset,
                    quirks=quirks, model_quirks=model_quirks, **values)


def _preset(kind: str, preset, entry: dict, where: str, warn) -> str | None:
    """The preset that applies; a bare `type = "openai"` with no base_url means OpenAI itself."""
    if preset is not None and kind != "openai":
        warn(f"{where}.preset: presets are for OpenAI-compatible providers; ignored")
        preset = None
    elif preset is not None and preset not in PRESETS:
        warn(f"{where}.preset: unknown preset {preset!r} (one of {', '.join(PRESETS)}); ignored")
        preset = None
    if preset is None and kind == "openai" and "base_url" not in entry:
        preset = "openai"
    return preset


def _plain(provider: Provider) -> dict:
    return {name: getattr(provider, name) for name in provider.__dataclass_fields__}


# ── keys and quirks ─────────────────────────────────────────────────────────────────────────

KEY_FIELDS = {"priority": _int, "weight": _weight, "enabled": _bool}


def _keys(value, where: str, warn) -> tuple:
    """The entry's keys: strings or tables, bad items and duplicates dropped with a warning."""
    if value is None:
        return ()
    if not isinstance(value, list):
        warn(f"{where}.keys: expected an array of keys; ignored")
        return ()
    out, seen = [], set()
    for index, item in enumerate(value):
        key = item if isinstance(item, str) else item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key.strip():
            warn(f"{where}.keys[{index}]: expected a key string or a table with `key`; skipped")
            continue
        if key.strip() in seen:
            warn(f"{where}.keys[{index}]: duplicate key ignored")
            continue
        seen.add(key.strip())
        out.append(key.strip() if isinstance(item, str) else _key_table(item, where, index, warn))
    return tuple(out)


def _key_table(item: dict, where: str, index: int, warn) -> dict:
    table = copy.deepcopy(item)
    table["key"] = table["key"].strip()
    for name, check in KEY_FIELDS.items():
        if name in table:
            try:
                check(table[name])
            except ValueError as exc:
                warn(f"{where}.keys[{index}].{name}: {exc}; using the default")
                del table[name]
    return table


def _quirks(preset: str | None, raw, where: str, warn) -> tuple[dict, tuple]:
    """(every quirk flag: defaults ← preset ← explicit, the preset's per-model overrides)."""
    base = PRESETS.get(preset, {})
    quirks = {**copy.deepcopy(QUIRK_DEFAULTS), **copy.deepcopy(base.get("quirks", {}))}
    if raw is not None and not isinstance(raw, dict):
        warn(f"{where}.quirks: expected a table; ignored")
        raw = None
    explicit = {}
    for name, value in (raw or {}).items():
        if name not in QUIRK_DEFAULTS:
            warn(f"{where}.quirks: unknown flag {name!r} ignored")
            continue
        try:
            explicit[name] = _quirk(name, value)
        except ValueError as exc:
            warn(f"{where}.quirks.{name}: {exc}; using {quirks[name]!r}")
    quirks.update(explicit)
    model_quirks = tuple((glob, kept) for glob, overrides in base.get("model_quirks", ())
                         if (kept := {k: v for k, v in overrides.items() if k not in explicit}))
    return quirks, model_quirks


def _quirk(name: str, value):
    """A quirk value checked against the type of its default (and its allowed values)."""
    default = QUIRK_DEFAULTS[name]
    if isinstance(default, bool):
        return _bool(value)
    if isinstance(default, int):
        if _int(value) < 0:
            raise ValueError(f"expected an integer ≥ 0, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected an array of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ValueError(f"expected a table, got {value!r}")
        return copy.deepcopy(value)
    allowed = QUIRK_CHOICES.get(name)
    if not isinstance(value, str) or (allowed and value not in allowed) or (
            name == "auth" and not AUTH_FORMS.fullmatch(value)):
        raise ValueError(f"{value!r} is not allowed" + (f" (one of {', '.join(allowed)})" if allowed else ""))
    return value
