"""Providers (gateway.md §2): built-ins, `[[providers]]` validation, presets and quirk flags."""

from __future__ import annotations

import pytest

from clewdr_lite import providers as mod
from clewdr_lite.providers import (
    DEFAULT_BASE,
    PRESETS,
    QUIRK_DEFAULTS,
    Provider,
    parse_providers,
    quirks_for,
)
from tests.test_layering import IMPURE, PACKAGE, check

BUILTIN_NAMES = ["claude_web", "claude_code", "gemini", "vertex"]


def parse(*entries) -> tuple[tuple[Provider, ...], list[str]]:
    warnings: list[str] = []
    return parse_providers({"providers": list(entries)}, warn=warnings.append), warnings


def one(entry: dict) -> tuple[Provider | None, list[str]]:
    """The declared provider built from `entry` (None when skipped), and the warnings."""
    result, warnings = parse(entry)
    declared = [p for p in result if p.name not in BUILTIN_NAMES]
    return (declared[0] if declared else None), warnings


def by_name(result) -> dict[str, Provider]:
    return {p.name: p for p in result}


def test_the_module_is_pure():
    assert check(PACKAGE / "providers.py", IMPURE) == []


# ---------------------------------------------------------------- built-ins


@pytest.mark.parametrize("tables", [{}, {"providers": []}, {"providers": None}])
def test_builtins_always_exist_in_order(tables):
    result = parse_providers(tables, warn=pytest.fail)
    assert [(p.name, p.type) for p in result] == [(n, n) for n in BUILTIN_NAMES]
    assert all(p.keys == () and p.base_url == "" and p.enabled and p.builtin for p in result)
    assert by_name(result)["gemini"].models == ("gemini-*", "gemma-*")
    assert {p.name for p in result if p.models} == {"gemini"}


def test_a_providers_value_that_is_not_an_array_is_ignored():
    warnings: list[str] = []
    result = parse_providers({"providers": {"name": "x"}}, warn=warnings.append)
    assert [p.name for p in result] == BUILTIN_NAMES
    assert warnings == ["providers: expected an array of tables; ignored"]


def test_a_table_named_like_a_builtin_overrides_its_settings_in_place():
    result, warnings = parse({"name": "x", "type": "anthropic"},
                             {"name": "gemini", "priority": 2, "models": ["gemini-2.5-*"],
                              "weight": 3, "first_byte_timeout": 30},
                             {"name": "claude_web", "enabled": False, "type": "claude_web"})
    assert warnings == []
    assert [p.name for p in result] == [*BUILTIN_NAMES, "x"]
    gemini = by_name(result)["gemini"]
    assert (gemini.type, gemini.priority, gemini.models, gemini.weight, gemini.first_byte_timeout) == \
        ("gemini", 2, ("gemini-2.5-*",), 3, 30.0)
    assert by_name(result)["claude_web"].enabled is False


@pytest.mark.parametrize("entry, warning", [
    ({"name": "gemini", "type": "openai", "priority": 5},
     "providers.gemini: the built-in provider has type 'gemini'; entry skipped"),
    ({"name": "vertex", "base_url": "not a url", "priority": 5},
     "providers.vertex.base_url: expected an http(s) URL, got 'not a url'; entry skipped"),
])
def test_a_builtin_override_that_cannot_apply_keeps_the_builtin(entry, warning):
    result, warnings = parse(entry)
    assert warnings == [warning]
    assert by_name(result)[entry["name"]] == Provider(entry["name"], entry["name"],
                                                      models=by_name(result)[entry["name"]].models)
    assert by_name(result)[entry["name"]].priority == 0


def test_a_builtin_override_ignores_keys_preset_and_quirks():
    result, warnings = parse({"name": "claude_code", "keys": ["k"], "preset": "openai",
                              "quirks": {"auth": "none"}, "priority": 1})
    code = by_name(result)["claude_code"]
    assert (code.keys, code.preset, code.quirks, code.priority) == ((), None, {}, 1)
    assert warnings == [f"providers.claude_code.{k}: not used by a built-in provider; ignored"
                        for k in ("keys", "preset", "quirks")]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("entry, warning", [
    ({"name": "OpenRouter", "type": "openai"}, "providers[0]: name 'OpenRouter' is not lower case [a-z0-9_-]+; skipped"),
    ({"name": "my provider", "type": "openai"}, "providers[0]: name 'my provider' is not lower case [a-z0-9_-]+; skipped"),
    ({"name": "a/b", "type": "openai"}, "providers[0]: name 'a/b' is not lower case [a-z0-9_-]+; skipped"),
    ({"name": "a,b", "type": "openai"}, "providers[0]: name 'a,b' is not lower case [a-z0-9_-]+; skipped"),
    ({"name": "", "type": "openai"}, "providers[0]: name '' is not lower case [a-z0-9_-]+; skipped"),
    ({"type": "openai"}, "providers[0]: name None is not lower case [a-z0-9_-]+; skipped"),
    ({"name": 3, "type": "openai"}, "providers[0]: name 3 is not lower case [a-z0-9_-]+; skipped"),
    ("openrouter", "providers[0]: name None is not lower case [a-z0-9_-]+; skipped"),
    ({"name": "x", "type": "grok"}, "providers.x: unknown type 'grok' (one of anthropic, gemini, openai); skipped"),
    ({"name": "x"}, "providers.x: unknown type None (one of anthropic, gemini, openai); skipped"),
    ({"name": "x", "type": "claude_web"}, "providers.x: type 'claude_web' exists only as the built-in provider 'claude_web'; skipped"),
    ({"name": "x", "type": "vertex"}, "providers.x: type 'vertex' exists only as the built-in provider 'vertex'; skipped"),
    ({"name": "x", "type": "openai", "base_url": "ftp://host"},
     "providers.x.base_url: expected an http(s) URL, got 'ftp://host'; skipped"),
    ({"name": "x", "type": "anthropic", "base_url": 5},
     "providers.x.base_url: expected an http(s) URL, got 5; skipped"),
])
def test_bad_entries_are_skipped_with_a_warning(entry, warning):
    provider, warnings = one(entry)
    assert provider is None
    assert warnings == [warning]


def test_names_are_unique():
    result, warnings = parse({"name": "x", "type": "anthropic", "priority": 1},
                             {"name": "x", "type": "openai"},
                             {"name": "gemini", "priority": 1}, {"name": "gemini", "priority": 2})
    assert [(p.name, p.type, p.priority) for p in result if p.name in ("x", "gemini")] == \
        [("gemini", "gemini", 1), ("x", "anthropic", 1)]
    assert warnings == ["providers.x: a second provider with this name; skipped",
                        "providers.gemini: a second provider with this name; skipped"]


def test_declared_providers_keep_config_order_after_the_builtins():
    result, _ = parse(*({"name": n, "type": "anthropic"} for n in ("zeta", "alpha", "mid")))
    assert [p.name for p in result] == [*BUILTIN_NAMES, "zeta", "alpha", "mid"]


@pytest.mark.parametrize("field, value, warning", [
    ("priority", "high", "providers.x.priority: expected an integer, got 'high'; using the default"),
    ("priority", 1.5, "providers.x.priority: expected an integer, got 1.5; using the default"),
    ("weight", -1, "providers.x.weight: expected a number ≥ 0, got -1; using the default"),
    ("enabled", "yes", "providers.x.enabled: expected true or false, got 'yes'; using the default"),
    ("local", 1, "providers.x.local: expected true or false, got 1; using the default"),
    ("first_byte_timeout", 0, "providers.x.first_byte_timeout: expected a number of seconds > 0, got 0; using the default"),
    ("models", "claude-*", "providers.x.models: expected an array of model names or globs; using the default"),
    ("models", ["ok", ""], "providers.x.models: expected an array of model names or globs; using the default"),
    ("headers", {"X-A": 1}, "providers.x.headers: expected a table of header names and string values; using the default"),
    ("prices", {"m": 3}, "providers.x.prices: expected a table of model → { input, output, … }; using the default"),
    ("modles", ["x"], "providers.x: unknown field 'modles' ignored"),
])
def test_a_bad_field_falls_back_to_its_default(field, value, warning):
    provider, warnings = one({"name": "x", "type": "anthropic", field: value})
    assert warnings == [warning]
    assert provider == Provider("x", "anthropic", base_url=DEFAULT_BASE["anthropic"])


def test_every_field_is_read():
    provider, warnings = one({
        "name": "lan", "type": "openai", "base_url": "http://192.168.1.5:8080/v1/",
        "keys": ["k1"], "models": ["qwen3*", "llama3*"], "priority": -1, "weight": 2.5,
        "enabled": False, "local": True, "first_byte_timeout": 45, "headers": {"X-Title": "t"},
        "prices": {"qwen3": {"input": 0, "output": 0}},
    })
    assert warnings == []
    assert provider == Provider(
        "lan", "openai", base_url="http://192.168.1.5:8080/v1", keys=("k1",), models=("qwen3*", "llama3*"),
        priority=-1, weight=2.5, enabled=False, local=True, first_byte_timeout=45.0,
        headers={"X-Title": "t"}, quirks=dict(QUIRK_DEFAULTS), preset=None,
        prices={"qwen3": {"input": 0, "output": 0}})


@pytest.mark.parametrize("kind, base", [
    ("anthropic", "https://api.anthropic.com"),
    ("gemini", "https://generativelanguage.googleapis.com"),
])
def test_default_base_per_type(kind, base):
    provider, warnings = one({"name": "x", "type": kind, "keys": ["k"]})
    assert (provider.base_url, provider.preset, provider.quirks, warnings) == (base, None, {}, [])


def test_quirks_belong_to_openai_compatible_providers_only():
    provider, warnings = one({"name": "x", "type": "anthropic", "quirks": {"auth": "none"}})
    assert provider.quirks == {}
    assert warnings == ["providers.x.quirks: only OpenAI-compatible providers have quirk flags; ignored"]


def test_provider_values_are_hashable():
    provider, _ = one({"name": "x", "preset": "openrouter", "keys": [{"key": "k"}]})
    assert hash(provider) == hash(provider)


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize("keys, expected, warnings", [
    (None, (), []),
    ([], (), []),
    (["a", " b\n"], ("a", "b"), []),
    ([{"key": "a", "weight": 2}], ({"key": "a", "weight": 2},), []),
    (["a", "a", {"key": "a"}], ("a",), ["providers.x.keys[1]: duplicate key ignored",
                                        "providers.x.keys[2]: duplicate key ignored"]),
    (["a", "A"], ("a", "A"), []),
    ([5, "", {"weight": 1}, "ok"], ("ok",),
     [f"providers.x.keys[{i}]: expected a key string or a table with `key`; skipped" for i in range(3)]),
    ([{"key": "a", "weight": -1, "priority": "x", "enabled": "no", "count_403": 2}],
     ({"key": "a", "count_403": 2},),
     ["providers.x.keys[0].priority: expected an integer, got 'x'; using the default",
      "providers.x.keys[0].weight: expected a number ≥ 0, got -1; using the default",
      "providers.x.keys[0].enabled: expected true or false, got 'no'; using the default"]),
    ("sk-one", (), ["providers.x.keys: expected an array of keys; ignored"]),
])
def test_keys_are_strings_or_tables(keys, expected, warnings):
    provider, got = one({"name": "x", "type": "anthropic", "keys": keys})
    assert provider.keys == expected
    assert got == warnings


# ---------------------------------------------------------------- presets and quirks

# gateway.md §2.5, row by row
PRESET_TABLE = {
    "openai": ("https://api.openai.com/v1", {"max_tokens_field": "max_completion_tokens",
                                             "reasoning_request": "effort", "max_stop_sequences": 4}),
    "openrouter": ("https://openrouter.ai/api/v1", {"reasoning_field": "reasoning",
                                                    "reasoning_request": "openrouter"}),
    "deepseek": ("https://api.deepseek.com", {"reasoning_field": "reasoning_content",
                                              "max_tokens_cap": 8192, "send_reasoning_back": False}),
    "ollama": ("http://127.0.0.1:11434/v1", {"auth": "none", "supports_top_k": True}),
    "groq": ("https://api.groq.com/openai/v1", {"strip_schema_keys": ("$schema",), "fix_tool_ids": True}),
    "lmstudio": ("http://127.0.0.1:1234/v1", {"auth": "none", "supports_top_k": True}),
    "llamacpp": ("http://127.0.0.1:8080/v1", {"auth": "none", "supports_top_k": True}),
}
LOCAL = {"ollama", "lmstudio", "llamacpp"}


def test_the_preset_table_is_complete():
    assert set(PRESETS) == set(PRESET_TABLE)


@pytest.mark.parametrize("preset", PRESET_TABLE)
def test_presets_fill_base_url_quirks_and_settings(preset):
    base, quirks = PRESET_TABLE[preset]
    provider, warnings = one({"name": "x", "type": "openai", "preset": preset})
    assert warnings == []
    assert (provider.base_url, provider.preset, provider.local) == (base, preset, preset in LOCAL)
    assert provider.quirks == {**QUIRK_DEFAULTS, **quirks}
    assert provider.first_byte_timeout == (300.0 if preset == "ollama" else 120.0)


def test_explicit_settings_beat_the_preset():
    provider, warnings = one({"name": "x", "preset": "ollama", "base_url": "http://10.0.0.2:11434/v1",
                              "local": False, "first_byte_timeout": 60,
                              "quirks": {"auth": "bearer", "max_tokens_cap": 100}})
    assert warnings == []
    assert (provider.type, provider.base_url, provider.local, provider.first_byte_timeout) == \
        ("openai", "http://10.0.0.2:11434/v1", False, 60.0)
    assert provider.quirks == {**QUIRK_DEFAULTS, "auth": "bearer", "supports_top_k": True,
                               "max_tokens_cap": 100}


@pytest.mark.parametrize("entry, preset, base", [
    ({"type": "openai"}, "openai", "https://api.openai.com/v1"),       # bare: OpenAI itself
    ({"preset": "groq"}, "groq", "https://api.groq.com/openai/v1"),    # type implied by a preset
    ({"type": "openai", "base_url": "http://h:1/v1"}, None, "http://h:1/v1"),
])
def test_openai_type_defaults(entry, preset, base):
    provider, warnings = one({"name": "x", **entry})
    assert (provider.type, provider.preset, provider.base_url, warnings) == ("openai", preset, base, [])
    assert provider.quirks == {**QUIRK_DEFAULTS, **(PRESET_TABLE[preset][1] if preset else {})}


@pytest.mark.parametrize("entry, warning", [
    ({"type": "openai", "preset": "mistral", "base_url": "http://h/v1"},
     "providers.x.preset: unknown preset 'mistral' (one of openai, openrouter, deepseek, ollama, "
     "groq, lmstudio, llamacpp); ignored"),
    ({"type": "anthropic", "preset": "openrouter"},
     "providers.x.preset: presets are for OpenAI-compatible providers; ignored"),
])
def test_a_preset_that_does_not_apply_is_ignored(entry, warning):
    provider, warnings = one({"name": "x", **entry})
    assert provider.preset is None
    assert warnings == [warning]


@pytest.mark.parametrize("quirks, expected, warnings", [
    ({"auth": "header:api-key"}, {"auth": "header:api-key"}, []),
    ({"auth": "query:key"}, {"auth": "query:key"}, []),
    ({"auth": "none"}, {"auth": "none"}, []),
    ({"auth": "basic"}, {}, ["providers.x.quirks.auth: 'basic' is not allowed; using 'bearer'"]),
    ({"auth": "header:"}, {}, ["providers.x.quirks.auth: 'header:' is not allowed; using 'bearer'"]),
    ({"reasoning_field": "thoughts"}, {}, [
        "providers.x.quirks.reasoning_field: 'thoughts' is not allowed "
        "(one of reasoning_content, reasoning, auto, none); using 'auto'"]),
    ({"max_tokens_cap": -5}, {}, ["providers.x.quirks.max_tokens_cap: expected an integer ≥ 0, got -5; using 0"]),
    ({"stream_usage": "no"}, {}, ["providers.x.quirks.stream_usage: expected true or false, got 'no'; using True"]),
    ({"drop_params": ["temperature"]}, {"drop_params": ("temperature",)}, []),
    ({"drop_params": "temperature"}, {}, [
        "providers.x.quirks.drop_params: expected an array of strings, got 'temperature'; using ()"]),
    ({"extra_body": {"provider": {"only": ["a"]}}}, {"extra_body": {"provider": {"only": ["a"]}}}, []),
    ({"extra_body": []}, {}, ["providers.x.quirks.extra_body: expected a table, got []; using {}"]),
    ({"transformer": "x"}, {}, ["providers.x.quirks: unknown flag 'transformer' ignored"]),
])
def test_quirk_flags_are_checked(quirks, expected, warnings):
    provider, got = one({"name": "x", "type": "openai", "base_url": "http://h/v1", "quirks": quirks})
    assert provider.quirks == {**QUIRK_DEFAULTS, **expected}
    assert got == warnings


def test_quirks_are_not_shared_between_providers():
    result, _ = parse({"name": "a", "type": "openai"}, {"name": "b", "type": "openai"})
    a, b = by_name(result)["a"], by_name(result)["b"]
    a.quirks["extra_body"]["x"] = 1
    assert b.quirks["extra_body"] == {} and QUIRK_DEFAULTS["extra_body"] == {}


@pytest.mark.parametrize("entry, model, keep", [
    ({"preset": "openrouter"}, "anthropic/claude-sonnet-4.5", True),
    ({"preset": "openrouter"}, "openai/gpt-4o", False),
    ({"preset": "openrouter"}, "Anthropic/claude", False),          # globs are case-sensitive
    ({"preset": "openrouter", "quirks": {"keep_cache_control": False}}, "anthropic/claude", False),
    ({"preset": "openrouter", "quirks": {"keep_cache_control": True}}, "openai/gpt-4o", True),
    ({"preset": "deepseek"}, "anthropic/claude", False),
])
def test_openrouter_keeps_cache_control_for_anthropic_models_only(entry, model, keep):
    provider, _ = one({"name": "x", **entry})
    assert quirks_for(provider, model)["keep_cache_control"] is keep
    assert quirks_for(provider, model)["reasoning_request"] == provider.quirks["reasoning_request"]


def test_preset_tables_are_left_alone():
    before = repr(mod.PRESETS)
    one({"name": "x", "preset": "groq", "quirks": {"strip_schema_keys": ["a"]}})
    assert repr(mod.PRESETS) == before
