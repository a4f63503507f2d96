"""Config: parse() defaults, env rules, validation, ClewdR files, and the file layer's saves."""

from __future__ import annotations

import json
import os
import random
import re
import stat
import string

import pytest
import tomlkit

from clewdr_lite.config import (DEFAULTS, FLAT_KEYS, PASSWORD_ALPHABET, Config, generate_password,
                                mask_secret, parse)
from clewdr_lite.config_file import DEFAULT_TOML, ConfigError, ConfigFile, parse_text, resolve_path

_RNG = random.Random(1234)
_COOKIE_CHARS = string.ascii_letters + string.digits + "_-"


def make_cookie(rng: random.Random = _RNG) -> str:
    """A realistic claude.ai sessionKey: sk-ant-sid01- + 86 chars + - + 6 chars + AA."""
    body = "".join(rng.choice(_COOKIE_CHARS) for _ in range(86))
    tail = "".join(rng.choice(_COOKIE_CHARS) for _ in range(6))
    return f"sk-ant-sid01-{body}-{tail}AA"


C1, C2, C3, C4 = (make_cookie() for _ in range(4))
PW = "Zt5pQ" * 12 + "abcd"  # 64 characters

CURRENT_TOML = f'''\
ip = "127.0.0.1"
port = 8484
password = "{PW}"
admin_password = "admin-pass-9876"
max_retries = 5
check_update = false
skip_rate_limit = true
sanitize_messages = true
custom_h = "Human"

[[cookie_array]]
cookie = "{C1}"
reset_time = 1760000000
count_tokens_allowed = true
[cookie_array.session_usage]
total_input_tokens = 0
total_output_tokens = 12
[cookie_array.token]
access_token = "sk-ant-oat01-abc"
expires_in = 28800
refresh_token = "sk-ant-ort01-def"
expires_at = 1760000000.25
[cookie_array.token.organization]
uuid = "0b5f2d6e-1111-2222-3333-444455556666"

[[cookie_array]]
cookie = "{C2}"

[[wasted_cookie]]
cookie = "{C3}"
reason = "Banned"

[[wasted_cookie]]
cookie = "{C4}"
reason = {{ Restricted = 1760000000 }}
'''

OLDER_TOML = f'''\
ip = "0.0.0.0"
port = 8484
password = "older-password-1"
admin_password = "older-admin-1"
proxy = "socks5://127.0.0.1:1080"
gemini_keys = [{{ key = "AIzaSyA1234567890abcdefghijklmnopqrstu", count_403 = 2 }}, "AIzaSyB1234567890abcdefghijklmnopqrstu"]

[[cookie_array]]
cookie = "sessionKey={C1}"

[[wasted_cookie]]
cookie = "sessionKey={C2}"
reason = "NonPro"

[vertex]
credential = {{ type = "service_account", project_id = "p1", client_email = "a@p1.iam.gserviceaccount.com", private_key = "-----BEGIN PRIVATE KEY-----\\nMII\\n-----END PRIVATE KEY-----\\n" }}
credentials = [{{ type = "service_account", project_id = "p2", client_email = "b@p2.iam.gserviceaccount.com" }}, {{ type = "service_account", project_id = "p1", client_email = "A@p1.iam.gserviceaccount.com" }}]

[persistence]
mode = "file"
'''

COMMENTED_TOML = f'''\
# My own notes about this proxy.
# Keep them!

port = 9000            # I moved it off 8484
ip = "127.0.0.1"

# ── secrets ──
admin_password = "my-admin-password"
password = "my-api-password"   # shared with the family

web_search = false
skip_non_pro = true    # only pro accounts

[router]
# the default route
default = "claude_code,claude-sonnet-4-6"

# cookies are below
[[cookie_array]]
cookie = "{C1}"   # the work account

[[cookie_array]]
cookie = "{C2}"
'''


# ── parse(): defaults ───────────────────────────────────────────────────────────────────────


def test_empty_document_gives_every_default_and_generated_passwords():
    cfg, warnings = parse({}, {})
    assert warnings == []
    for key in FLAT_KEYS:
        if key not in ("password", "admin_password"):
            assert getattr(cfg, key) == DEFAULTS[key], key
    assert (cfg.ip, cfg.port, cfg.max_retries, cfg.proxy, cfg.web_bootstrap_ttl) == ("127.0.0.1", 8484, 5, None, 600)
    assert cfg.generated == {"password", "admin_password"}
    assert cfg.password != cfg.admin_password
    assert cfg.cookie_array == cfg.wasted_cookie == cfg.gemini_keys == ()
    assert cfg.vertex == {"credentials": []}
    assert set(cfg.tables) == {"providers", "client_keys", "aliases", "router", "retry", "breaker",
                               "budgets", "log", "metrics", "edge", "persistence", "claude_code_tokens"}
    assert cfg.env_locked == frozenset()


def test_generated_password_shape():
    first, second = generate_password(), generate_password()
    assert len(PASSWORD_ALPHABET) == 57
    assert len(first) == 64 and set(first) <= set(PASSWORD_ALPHABET)
    assert not set("0O1lI") & set(PASSWORD_ALPHABET)
    assert first != second


def test_default_toml_lists_every_flat_key_and_parses_to_the_defaults():
    cfg, warnings = parse(tomlkit.parse(DEFAULT_TOML), {})
    assert warnings == []
    for key in FLAT_KEYS:
        assert re.search(rf"^(# )?{key} = ", DEFAULT_TOML, re.M), key
        if key not in ("password", "admin_password"):
            assert getattr(cfg, key) == DEFAULTS[key], key


def test_replace_and_frozen():
    cfg, _ = parse({"password": "p" * 20, "admin_password": "a" * 20}, {})
    changed = cfg.replace(port=9999)
    assert (changed.port, cfg.port, changed.password) == (9999, 8484, "p" * 20)
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


def test_public_dict_masks_passwords_and_lists_env_locked():
    cfg, _ = parse({"password": "secret-password-1234", "admin_password": "admin-password-5678"},
                   {"CLEWDR_PORT": "9000"})
    body = cfg.public_dict()
    current = ["ip", "port", "check_update", "auto_update", "password", "admin_password", "proxy",
               "rproxy", "max_retries", "preserve_chats", "web_search", "enable_web_count_tokens",
               "sanitize_messages", "skip_first_warning", "skip_second_warning", "skip_restricted",
               "skip_non_pro", "skip_rate_limit", "skip_normal_pro", "use_real_roles", "custom_h",
               "custom_a", "custom_prompt", "claude_code_client_id", "custom_system"]
    assert set(current) <= set(body)
    assert {"web_timezone", "claude_code_betas", "max_body_mb", "log_level", "db_path"} <= set(body)
    assert not {"cookie_array", "wasted_cookie", "gemini_keys", "vertex", "tables"} & set(body)
    assert body["password"] == "********1234" and body["admin_password"] == "********5678"
    assert body["env_locked"] == ["port"] and body["port"] == 9000
    json.dumps(body)
    assert mask_secret("short") == "********"


# ── parse(): environment rules (compat §4.2) ────────────────────────────────────────────────


def env_parse(environ: dict, doc: dict | None = None):
    return parse(doc or {"password": "file-password-1", "admin_password": "file-admin-1"}, environ)


def test_numeric_password_stays_a_string():
    cfg, warnings = env_parse({"CLEWDR_PASSWORD": "12345"})
    assert cfg.password == "12345" and warnings == []
    assert "password" in cfg.env_locked and "password" not in cfg.generated


@pytest.mark.parametrize(("raw", "expected"), [
    ('"12345"', "12345"),
    ('  "quoted \\"inner\\" \\u00e9"  ', 'quoted "inner" é'),
    ("'single'", "'single'"),
    ('say "hi"', 'say "hi"'),
    ('"a" "b"', '"a" "b"'),
    ("  spaced  ", "spaced"),
])
def test_string_values_are_trimmed_and_one_double_quoted_string_unwrapped(raw, expected):
    cfg, _ = env_parse({"CLEWDR_CUSTOM_PROMPT": raw})
    assert cfg.custom_prompt == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("TRUE", True), ("Yes", True), ("on", True), ("1", True),
    ("false", False), ("FALSE", False), ("no", False), ("OFF", False), ("0", False), ('"yes"', True),
])
def test_bool_spellings(raw, expected):
    cfg, warnings = env_parse({"CLEWDR_WEB_SEARCH": raw, "CLEWDR_CHECK_UPDATE": raw})
    assert cfg.web_search is expected and cfg.check_update is expected and warnings == []


def test_prefix_is_case_insensitive_and_ints_are_trimmed():
    cfg, warnings = env_parse({"clewdr_Port": " 9000 ", "Clewdr_MAX_RETRIES": '"2"'})
    assert (cfg.port, cfg.max_retries, warnings) == (9000, 2, [])
    assert cfg.env_locked == {"port", "max_retries"}


def test_values_that_do_not_fit_are_ignored_with_a_warning():
    doc = {"password": "p-1", "admin_password": "a-1", "port": 9100, "web_search": True}
    cfg, warnings = env_parse({"CLEWDR_PORT": "80a", "CLEWDR_WEB_SEARCH": "maybe",
                               "CLEWDR_COOKIE_ARRAY": "[not toml", "CLEWDR_ROUTER": "[1, 2]"}, doc)
    assert (cfg.port, cfg.web_search, cfg.cookie_array, cfg.tables["router"]) == (9100, True, (), {})
    assert len(warnings) == 4 and all("ignored" in w for w in warnings)
    assert cfg.env_locked == frozenset()


def test_optional_strings_and_blank_values():
    cfg, warnings = env_parse({"CLEWDR_PROXY": "socks5h://127.0.0.1:1080", "CLEWDR_CUSTOM_H": "H",
                               "CLEWDR_ADMIN_PASSWORD": "   "})
    assert (cfg.proxy, cfg.custom_h, cfg.admin_password) == ("socks5h://127.0.0.1:1080", "H", "file-admin-1")
    # a blank variable (compose passes unset ones as "") must not wipe the file's password
    assert warnings == ["CLEWDR_ADMIN_PASSWORD is blank; ignored"]


def test_arrays_and_tables_as_toml_fragments_or_json():
    cfg, warnings = env_parse({
        "CLEWDR_COOKIE_ARRAY": f'[{{cookie="{C1}"}}, {{cookie="{C2}", reset_time=5}}]',
        "CLEWDR_GEMINI_KEYS": '[{"key": "AIzaSyX", "count_403": 1}]',
        "CLEWDR_PROVIDERS": '[{name="ollama", type="openai", models=["qwen3*"]}]',
        "CLEWDR_CLAUDE_CODE_BETAS": "context-1m-2025-08-07, foo",
        "CLEWDR_ALIASES": '{sonnet = "claude_code/claude-sonnet-4-6"}',
    })
    assert warnings == []
    assert cfg.cookie_array == ({"cookie": C1}, {"cookie": C2, "reset_time": 5})
    assert cfg.gemini_keys == ({"key": "AIzaSyX", "count_403": 1},)
    assert cfg.tables["providers"] == [{"name": "ollama", "type": "openai", "models": ["qwen3*"]}]
    assert cfg.claude_code_betas == ("context-1m-2025-08-07", "foo")
    assert cfg.tables["aliases"] == {"sonnet": "claude_code/claude-sonnet-4-6"}
    assert {"cookie_array", "gemini_keys", "providers", "claude_code_betas", "aliases"} <= cfg.env_locked


def test_double_underscore_nesting_for_tables():
    doc = {"password": "p-1", "admin_password": "a-1",
           "retry": {"base_delay": 0.5, "max_delay": 8}, "metrics": {"public": False},
           "router": {"longContext": "gemini,gemini-2.5-pro"}}
    cfg, warnings = env_parse({
        "CLEWDR_PERSISTENCE__MODE": "postgres",
        "CLEWDR_PERSISTENCE__SQLITE_PATH": "/data/x.db",
        "CLEWDR_RETRY__MAX_DELAY": "4",
        "CLEWDR_RETRY__BASE_DELAY": "1",
        "CLEWDR_RETRY__BUDGET_S": "30",
        "CLEWDR_METRICS__PUBLIC": "yes",
        "CLEWDR_ROUTER__DEFAULT": "claude_code,claude-sonnet-4-6",
        "CLEWDR_ROUTER__LONGCONTEXT": "gemini,gemini-2.5-flash",
        "CLEWDR_ROUTER__LONGCONTEXTTHRESHOLD": "60000",
        "CLEWDR_EDGE__GUARDRAILS__WARN": "75",
    }, doc)
    t = cfg.tables
    assert t["persistence"] == {"mode": "postgres", "sqlite_path": "/data/x.db"}
    assert t["retry"] == {"base_delay": 1.0, "max_delay": 4, "budget_s": 30}
    assert isinstance(t["retry"]["base_delay"], float) and isinstance(t["retry"]["max_delay"], int)
    assert t["metrics"] == {"public": True}
    assert t["router"] == {"longContext": "gemini,gemini-2.5-flash", "default": "claude_code,claude-sonnet-4-6",
                           "longContextThreshold": 60000}
    assert t["edge"] == {"guardrails": {"warn": 75}}
    assert warnings == ["persistence.mode = 'postgres' is not supported; configuration stays in clewdr.toml"]
    assert {"persistence", "retry", "metrics", "router", "edge"} <= cfg.env_locked


def test_nested_value_that_does_not_fit_the_file_type_is_ignored():
    doc = {"password": "p-1", "admin_password": "a-1", "metrics": {"public": False}}
    cfg, warnings = env_parse({"CLEWDR_METRICS__PUBLIC": "perhaps"}, doc)
    assert cfg.tables["metrics"] == {"public": False}
    assert len(warnings) == 1 and "CLEWDR_METRICS__PUBLIC" in warnings[0]


def test_unknown_variables_warn_once_each():
    cfg, warnings = env_parse({"CLEWDR_NOPE": "1", "CLEWDR_PORT__X": "1", "CLEWDR_RETRY__": "1",
                               "OTHER_PORT": "1"})
    assert sorted(warnings) == ["unknown environment variable CLEWDR_NOPE ignored",
                                "unknown environment variable CLEWDR_PORT__X ignored",
                                "unknown environment variable CLEWDR_RETRY__ ignored"]
    assert cfg.env_locked == frozenset()


def test_vertex_credential_from_environment_is_merged():
    sa = {"type": "service_account", "project_id": "p9", "client_email": "z@p9.iam.gserviceaccount.com",
          "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"}
    doc = {"password": "p-1", "admin_password": "a-1",
           "vertex": {"credentials": [{"client_email": "y@p8.iam.gserviceaccount.com"}]}}
    cfg, warnings = env_parse({"CLEWDR_VERTEX_CREDENTIAL": json.dumps(sa)}, doc)
    assert warnings == []
    assert cfg.vertex == {"credentials": [{"client_email": "y@p8.iam.gserviceaccount.com"}, sa]}
    assert "vertex" in cfg.env_locked


def test_plain_environment_variables():
    cfg, warnings = env_parse({"CLAUDE_CODE_ENTRYPOINT": "sdk-ts", "HTTPS_PROXY": "http://10.0.0.1:3128",
                               "CLAUDE_CONSOLE_ENDPOINT": "https://console.example/"})
    assert warnings == []
    assert cfg.claude_code_entrypoint == "sdk-ts"
    assert (cfg.proxy, cfg.env_proxy, cfg.effective_proxy) == (None, "http://10.0.0.1:3128", "http://10.0.0.1:3128")
    assert cfg.claude_code_redirect_uri == "https://console.example/oauth/code/callback"
    assert "claude_code_redirect_uri" in cfg.env_locked
    assert "env_proxy" not in cfg.public_dict()
    cfg, _ = env_parse({})
    assert (cfg.claude_code_entrypoint, cfg.env_proxy) == ("cli", None)


def test_termux_defaults_check_update_off_unless_set():
    termux = {"PREFIX": "/data/data/com.termux/files/usr"}
    assert env_parse(termux)[0].check_update is False
    assert env_parse(termux, {"check_update": True})[0].check_update is True
    assert env_parse({**termux, "CLEWDR_CHECK_UPDATE": "on"})[0].check_update is True


# ── parse(): file values and validation (compat §4.3) ───────────────────────────────────────


def test_wrong_typed_file_values_warn_and_use_the_default():
    cfg, warnings = parse({"port": "abc", "web_search": "sometimes", "max_retries": 2.5,
                           "password": 12345, "admin_password": "x" * 10, "max_body_mb": "16",
                           "custom_h": ["x"], "router": "nope", "cookie_array": [C1, 7]}, {})
    assert (cfg.port, cfg.web_search, cfg.max_retries, cfg.max_body_mb) == (8484, False, 5, 16)
    assert cfg.password == "12345" and cfg.custom_h is None and cfg.tables["router"] == {}
    assert cfg.cookie_array == ({"cookie": C1},)
    assert len(warnings) == 6


def test_unknown_file_keys_warn_never_fail():
    cfg, warnings = parse({"frobnicate": 1, "port": 9001, "padtxt_len": 1000}, {})
    assert cfg.port == 9001
    assert warnings == ["unknown key 'frobnicate' in the config file ignored",
                        "unknown key 'padtxt_len' in the config file ignored"]


@pytest.mark.parametrize(("doc", "attr", "expected"), [
    ({"ip": "localhost"}, "ip", "127.0.0.1"),
    ({"ip": "999.1.1.1"}, "ip", "127.0.0.1"),
    ({"proxy": "ftp://x:21"}, "proxy", None),
    ({"proxy": "socks5://"}, "proxy", None),
    ({"proxy": "http://h:99999"}, "proxy", None),
    ({"rproxy": "mirror.example"}, "rproxy", None),
    ({"port": 70000}, "port", 8484),
    ({"max_retries": -1}, "max_retries", 5),
    ({"web_rendering_mode": "fancy"}, "web_rendering_mode", "messages"),
    ({"claude_code_token_url": "not a url"}, "claude_code_token_url", DEFAULTS["claude_code_token_url"]),
])
def test_invalid_values_fall_back_with_a_warning(doc, attr, expected):
    cfg, warnings = parse(doc, {})
    assert getattr(cfg, attr) == expected and len(warnings) == 1


@pytest.mark.parametrize("proxy", ["http://u:p@proxy:8080", "https://p", "socks4://p:1080",
                                   "socks4a://p:1080", "socks5://p:1080", "SOCKS5H://[::1]:1080"])
def test_valid_proxies_are_kept(proxy):
    cfg, warnings = parse({"proxy": proxy, "ip": "::", "log_level": "DEBUG"}, {})
    assert (cfg.proxy, cfg.ip, cfg.log_level, warnings) == (proxy, "::", "debug", [])


def test_blank_passwords_are_generated_and_auto_update_warns():
    cfg, warnings = parse({"password": "  ", "admin_password": "kept-admin", "auto_update": True}, {})
    assert cfg.generated == {"password"} and len(cfg.password) == 64 and cfg.admin_password == "kept-admin"
    assert warnings == ["auto_update is not supported: clewdr-lite never replaces its binary"]


# ── ClewdR files load unchanged ─────────────────────────────────────────────────────────────


def test_current_clewdr_file_loads():
    cfg, warnings = parse(tomlkit.parse(CURRENT_TOML), {})
    assert warnings == [] and cfg.generated == frozenset()
    assert (cfg.password, cfg.admin_password, cfg.check_update, cfg.sanitize_messages) == (PW, "admin-pass-9876", False, True)
    first = cfg.cookie_array[0]
    assert first["cookie"] == C1 and len(C1) == 13 + 86 + 1 + 6 + 2
    assert first["reset_time"] == 1760000000 and first["count_tokens_allowed"] is True
    assert first["token"]["expires_at"] == 1760000000.25
    assert first["token"]["organization"] == {"uuid": "0b5f2d6e-1111-2222-3333-444455556666"}
    assert type(first) is dict and type(first["token"]) is dict
    assert cfg.cookie_array[1] == {"cookie": C2}
    assert cfg.wasted_cookie == ({"cookie": C3, "reason": "Banned"},
                                 {"cookie": C4, "reason": {"Restricted": 1760000000}})


def test_older_clewdr_file_loads():
    cfg, warnings = parse(tomlkit.parse(OLDER_TOML), {})
    assert warnings == []
    assert cfg.ip == "0.0.0.0" and cfg.proxy == "socks5://127.0.0.1:1080"
    assert cfg.cookie_array == ({"cookie": f"sessionKey={C1}"},)  # the pool strips sessionKey=
    assert cfg.wasted_cookie == ({"cookie": f"sessionKey={C2}", "reason": "NonPro"},)  # the pool reads it as Free
    assert cfg.gemini_keys == ({"key": "AIzaSyA1234567890abcdefghijklmnopqrstu", "count_403": 2},
                               {"key": "AIzaSyB1234567890abcdefghijklmnopqrstu"})
    emails = [c["client_email"] for c in cfg.vertex["credentials"]]
    assert emails == ["b@p2.iam.gserviceaccount.com", "A@p1.iam.gserviceaccount.com"]  # legacy one deduplicated
    assert "credential" not in cfg.vertex
    assert cfg.tables["persistence"] == {"mode": "file"}


# ── resolve_path (compat §2) ────────────────────────────────────────────────────────────────


def test_resolve_path_order(tmp_path):
    cwd, exe = tmp_path / "cwd", tmp_path / "exe"
    cwd.mkdir()
    env = {"HOME": str(tmp_path / "home")}
    assert resolve_path("my.toml", exe_dir=exe, cwd=cwd, environ=env) == cwd / "my.toml"
    assert resolve_path("/etc/clewdr/clewdr.toml", exe_dir=None, cwd=cwd, environ=env).as_posix() == "/etc/clewdr/clewdr.toml"
    assert resolve_path(None, exe_dir=exe, cwd=cwd, environ=env) == exe / "clewdr.toml"
    assert resolve_path(None, exe_dir=None, cwd=cwd, environ=env) == tmp_path / "home/.config/clewdr-lite/clewdr.toml"
    xdg = {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert resolve_path(None, exe_dir=None, cwd=cwd, environ=xdg) == tmp_path / "xdg/clewdr-lite/clewdr.toml"
    relative = {**env, "XDG_CONFIG_HOME": "rel"}
    assert resolve_path(None, exe_dir=None, cwd=cwd, environ=relative) == tmp_path / "home/.config/clewdr-lite/clewdr.toml"
    (cwd / "clewdr.toml").write_text("")
    assert resolve_path(None, exe_dir=None, cwd=cwd, environ=xdg) == cwd / "clewdr.toml"


# ── ConfigFile: load and first start ────────────────────────────────────────────────────────


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_writes_the_default_file_with_generated_passwords(tmp_path):
    path = tmp_path / "conf" / "clewdr.toml"
    cf = ConfigFile(path, no_fs=False)
    cfg, warnings = cf.load({})
    assert warnings == [] and cfg.generated == {"password", "admin_password"}
    assert not path.exists()  # load alone never writes
    assert cf.ensure_written() is True
    assert mode_of(path) == 0o600 and mode_of(path.parent) == 0o700
    text = path.read_text()
    assert f'password = "{cfg.password}"' in text and "# ── Server" in text
    again, _ = ConfigFile(path, no_fs=False).load({})
    assert (again.password, again.admin_password, again.generated) == (cfg.password, cfg.admin_password, frozenset())
    second = ConfigFile(path, no_fs=False)
    second.load({})
    assert second.ensure_written() is False


def test_snapshot_keeps_generated_passwords(tmp_path):
    cf = ConfigFile(tmp_path / "clewdr.toml", no_fs=True)
    cfg, _ = cf.load({})
    snap, _ = cf.snapshot({})
    assert (snap.password, snap.admin_password) == (cfg.password, cfg.admin_password)


def test_no_fs_never_touches_the_disk(tmp_path):
    path = tmp_path / "clewdr.toml"
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({"CLEWDR_NO_FS": "true"})
    assert cfg.no_fs and cf.no_fs
    assert cf.ensure_written() is False
    assert cf.save(settings={"port": 9999}, cookies=[{"cookie": C1}]) is False
    assert list(tmp_path.iterdir()) == []
    snap, _ = cf.snapshot({})
    assert snap.port == 9999 and snap.cookie_array == ({"cookie": C1},)


@pytest.mark.parametrize(("content", "line"), [
    (b'port = 8484\nip = "127.0.0.1\n', 2),
    (b'port = 8484\n\n[[cookie_array]]\ncookie = \n', 4),
    (b"port = 1\nport = 2\n", None),
    (b'port = 8484\ncustom_h = "\xff"\n', 2),
])
def test_corrupt_file_raises_with_its_line_and_stays_untouched(tmp_path, content, line):
    path = tmp_path / "clewdr.toml"
    path.write_bytes(content)
    before = os.stat(path)
    cf = ConfigFile(path, no_fs=False)
    with pytest.raises(ConfigError) as info:
        cf.load({})
    assert info.value.path == path
    if line is not None:
        assert info.value.line == line and f"line {line}" in str(info.value)
    assert path.read_bytes() == content and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert list(tmp_path.iterdir()) == [path]


def test_parse_text_accepts_a_byte_order_mark(tmp_path):
    doc = parse_text(tmp_path / "x.toml", b"\xef\xbb\xbfport = 1\n")
    assert doc.unwrap() == {"port": 1}


# ── ConfigFile: saving ──────────────────────────────────────────────────────────────────────


def test_round_trip_keeps_comments_order_and_formatting(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(COMMENTED_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, warnings = cf.load({})
    assert warnings == [] and cfg.port == 9000
    token = {"access_token": "sk-ant-oat01-x", "expires_at": 1760000000.5,
             "organization": {"uuid": "u-1"}}
    cookies = [{"cookie": C1, "token": token, "count_tokens_allowed": True},
               {"cookie": C2, "reset_time": 1760000000}, {"cookie": C3}]
    merged = cf.save(settings=_settings_from(cfg, web_search=True, port=9001), cookies=cookies)
    assert merged is False
    text = path.read_text()
    for line in ["# My own notes about this proxy.", "# Keep them!", "port = 9001            # I moved it off 8484",
                 'password = "my-api-password"   # shared with the family', "skip_non_pro = true    # only pro accounts",
                 "# the default route", "# cookies are below", f'cookie = "{C1}"   # the work account']:
        assert line in text, line
    keys = [m.group(1) for m in re.finditer(r"^(\w+) =", text, re.M)]
    assert keys[:7] == ["port", "ip", "admin_password", "password", "web_search", "skip_non_pro", "default"]
    assert "web_search = true" in text
    # defaults the file never set are not pinned into it
    assert "web_timezone" not in text and "max_body_mb" not in text
    reloaded, warnings = parse(tomlkit.parse(text), {})
    assert warnings == []
    assert reloaded.cookie_array == tuple(cookies)
    assert (reloaded.port, reloaded.web_search, reloaded.password) == (9001, True, "my-api-password")
    assert "[cookie_array.token]" in text and text.count("[[cookie_array]]") == 3


def _settings_from(cfg: Config, **changes) -> dict:
    """What the admin API hands to save(): the public shape, masked passwords included."""
    body = cfg.public_dict()
    del body["env_locked"]
    body.update(changes)
    return body


def test_only_changed_lines_are_rewritten(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({})
    cf.save(settings=_settings_from(cfg, max_retries=3), cookies=[dict(c) for c in cfg.cookie_array],
            wasted=[dict(c) for c in cfg.wasted_cookie])
    before, after = CURRENT_TOML.splitlines(), path.read_text().splitlines()
    assert [(a, b) for a, b in zip(before, after) if a != b] == [("max_retries = 5", "max_retries = 3")]
    assert len(before) == len(after)


def test_nothing_changed_means_no_write(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({})
    assert cf.save(settings=_settings_from(cfg)) is False
    assert cf.stats()["total_writes"] == 0


def test_none_removes_a_key_and_pool_changes_keep_entry_comments(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(COMMENTED_TOML)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    cf.save(settings={"skip_non_pro": None}, cookies=[{"cookie": C2}, {"cookie": C4}, {"cookie": C1}])
    text = path.read_text()
    assert "skip_non_pro" not in text
    assert f'cookie = "{C1}"   # the work account' in text
    cfg, _ = parse(tomlkit.parse(text), {})
    assert [c["cookie"] for c in cfg.cookie_array] == [C2, C4, C1]
    cf.save(cookies=[], wasted=[{"cookie": C1, "reason": {"TooManyRequest": 1760000000}}])
    cfg, _ = parse(tomlkit.parse(path.read_text()), {})
    assert cfg.cookie_array == ()
    assert cfg.wasted_cookie == ({"cookie": C1, "reason": {"TooManyRequest": 1760000000}},)
    assert "reason = {TooManyRequest = 1760000000}" in path.read_text()


INLINE_COOKIES_TOML = f'''\
password = "{PW}"
cookie_array = [
  {{ cookie = "{C1}" }},  # the work account
  {{ cookie = "{C2}", reset_time = 1760000000 }},
  {{cookie = "{C3}", count_tokens_allowed = true}},
]
'''


def _usage(inp: int, out: int) -> dict:
    return {"total_input_tokens": inp, "total_output_tokens": out, "sonnet_input_tokens": inp,
            "sonnet_output_tokens": out}


def test_an_inline_cookie_array_is_edited_entry_by_entry(tmp_path):
    # the ClewdR-style one-line entries: a usage save edits the entry that changed, in place,
    # and leaves every other line (spacing, comments) as the file had it
    path = tmp_path / "clewdr.toml"
    path.write_text(INLINE_COOKIES_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({})
    cookies = [dict(c) for c in cfg.cookie_array]
    cookies[0]["session_usage"] = _usage(10, 5)
    cookies[0]["weekly_usage"] = _usage(10, 5)
    cookies[2]["lifetime_usage"] = _usage(3, 1)
    cf.save(cookies=cookies)
    text = path.read_text()
    before, after = INLINE_COOKIES_TOML.splitlines(), text.splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert [a for a, _ in changed] == [before[2], before[4]]  # only the two entries that changed
    assert changed[0][1] == (f'  {{ cookie = "{C1}", session_usage = {{total_input_tokens = 10, '
                             "total_output_tokens = 5, sonnet_input_tokens = 10, sonnet_output_tokens = 5}, "
                             "weekly_usage = {total_input_tokens = 10, total_output_tokens = 5, "
                             "sonnet_input_tokens = 10, sonnet_output_tokens = 5} },  # the work account")
    assert changed[1][1].startswith(f'  {{cookie = "{C3}", count_tokens_allowed = true, lifetime_usage = {{')
    assert parse(tomlkit.parse(text), {})[0].cookie_array == tuple(cookies)
    # counters grow, a cookie is parked, another un-parked: still edits of those keys only
    cookies[0]["session_usage"] = _usage(20, 9)
    cookies[0]["reset_time"] = 1770000000
    del cookies[1]["reset_time"]
    cf.save(cookies=cookies)
    text = path.read_text()
    assert "# the work account" in text and "session_usage = {total_input_tokens = 20," in text
    assert "1760000000" not in text and text.count("reset_time = 1770000000") == 1
    assert parse(tomlkit.parse(text), {})[0].cookie_array == tuple(cookies)


def test_an_inline_cookie_array_follows_the_pool_order_and_takes_nested_values(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(INLINE_COOKIES_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({})
    token = {"access_token": "sk-ant-oat01-x", "expires_at": 1760000000.5, "organization": {"uuid": "u-1"}}
    # rotated (the queue's order), one cookie gone, one new, a nested table into an inline entry
    cookies = [dict(cfg.cookie_array[2], token=token), dict(cfg.cookie_array[0]), {"cookie": C4}]
    cf.save(cookies=cookies, wasted=[{"cookie": C2, "reason": {"TooManyRequest": 1760000000}}])
    text = path.read_text()
    assert "[cookie_array" not in text  # never a [table] inside the inline entries
    assert 'token = {access_token = "sk-ant-oat01-x", expires_at = 1760000000.5, organization = {uuid = "u-1"}}' in text
    cfg2, warnings = parse(tomlkit.parse(text), {})
    assert warnings == [] and cfg2.cookie_array == tuple(cookies)
    assert cfg2.wasted_cookie == ({"cookie": C2, "reason": {"TooManyRequest": 1760000000}},)


def test_a_new_nested_value_inside_a_hand_written_inline_table_stays_inline(tmp_path):
    # a [[cookie_array]] entry whose token the user wrote inline; the OAuth exchange then adds the
    # organization table: it goes into the inline table inline (a [table] there cannot exist)
    path = tmp_path / "clewdr.toml"
    path.write_text(f'password = "{PW}"\n[[cookie_array]]\ncookie = "{C1}"\ntoken = {{ access_token = "x" }}\n')
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    token = {"access_token": "x", "organization": {"uuid": "u-1", "name": "Org"}}
    cf.save(cookies=[{"cookie": C1, "token": token}])
    text = path.read_text()
    assert 'token = { access_token = "x", organization = {uuid = "u-1", name = "Org"} }' in text
    assert parse(tomlkit.parse(text), {})[0].cookie_array == ({"cookie": C1, "token": token},)


def test_gemini_keys_and_vertex_credentials_are_saved(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(OLDER_TOML)
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({})
    keys = [*cfg.gemini_keys, {"key": "AIzaSyC1234567890abcdefghijklmnopqrstu", "disabled_reason": "invalid"}]
    cf.save(gemini_keys=keys, vertex_credentials=cfg.vertex["credentials"])
    text = path.read_text()
    assert "gemini_keys = [" in text  # the file's inline style is kept
    again, warnings = parse(tomlkit.parse(text), {})
    assert warnings == [] and again.gemini_keys == tuple(keys)
    assert again.vertex == cfg.vertex and "credential =" not in text


def test_env_values_are_never_written(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    env = {"CLEWDR_PASSWORD": "env-secret-password", "CLEWDR_COOKIE_ARRAY": f'[{{cookie="{C3}"}}]',
           "CLEWDR_RETRY__MAX_DELAY": "3"}
    cfg, _ = cf.load(env)
    assert cfg.password == "env-secret-password" and cfg.cookie_array == ({"cookie": C3},)
    cf.save(settings={"password": "env-secret-password", "port": 9002, "retry": cfg.tables["retry"]},
            cookies=[{"cookie": C3}, {"cookie": C4}], wasted=[{"cookie": C3, "reason": "Banned"}])
    text = path.read_text()
    assert "env-secret-password" not in text and "max_delay" not in text
    assert f'password = "{PW}"' in text and "port = 9002" in text
    assert text.count("[[cookie_array]]") == 2 and C3 in text  # file cookies untouched: C3 only as wasted before
    assert parse(tomlkit.parse(text), {})[0].cookie_array == parse(tomlkit.parse(CURRENT_TOML), {})[0].cookie_array


def test_generated_password_is_not_persisted_for_an_env_locked_key(tmp_path):
    path = tmp_path / "clewdr.toml"
    cf = ConfigFile(path, no_fs=False)
    cfg, _ = cf.load({"CLEWDR_PASSWORD": "from-env-1"})
    cf.ensure_written()
    text = path.read_text()
    assert 'password = ""' in text and "from-env-1" not in text
    assert f'admin_password = "{cfg.admin_password}"' in text


def test_masked_password_is_never_stored_and_unknown_keys_raise(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    cf.save(settings={"password": "********abcd", "admin_password": "new-admin-password"})
    text = path.read_text()
    assert f'password = "{PW}"' in text and 'admin_password = "new-admin-password"' in text
    with pytest.raises(ValueError, match="env_locked"):
        cf.save(settings={"env_locked": []})


def test_saved_file_is_mode_0600_even_if_it_was_not(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    os.chmod(path, 0o644)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    cf.save(settings={"port": 9003})
    assert mode_of(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["clewdr.toml"]  # no temp file left


def test_external_edit_is_detected_and_merged(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(COMMENTED_TOML)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    assert cf.changed_on_disk() is False
    os.utime(path)  # touched, not edited
    assert cf.changed_on_disk() is False
    path.write_text(COMMENTED_TOML.replace("port = 9000", "port = 9100  # edited by hand")
                    + '\n[[cookie_array]]\ncookie = "hand-added"\n')
    assert cf.changed_on_disk() is True
    assert cf.save(settings={"web_search": True}) is True
    text = path.read_text()
    assert "port = 9100  # edited by hand" in text and "web_search = true" in text
    assert 'cookie = "hand-added"' in text
    assert cf.changed_on_disk() is False
    assert cf.save(settings={"web_search": False}) is False


def test_external_corruption_is_not_overwritten(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError):
        cf.save(settings={"port": 9004})
    assert path.read_text() == "port = = 1\n"
    assert cf.stats()["write_error_count"] == 1
    # fixed by hand: the pending change is applied on top of the fixed file
    path.write_text(CURRENT_TOML.replace("check_update = false", "check_update = true"))
    assert cf.save(settings={"web_search": True}) is True
    cfg, _ = parse(tomlkit.parse(path.read_text()), {})
    assert (cfg.port, cfg.web_search, cfg.check_update) == (9004, True, True)


def test_deleted_file_is_recreated_from_memory(tmp_path):
    path = tmp_path / "clewdr.toml"
    path.write_text(CURRENT_TOML)
    cf = ConfigFile(path, no_fs=False)
    cf.load({})
    path.unlink()
    cf.save(settings={"port": 9005})
    cfg, _ = parse(tomlkit.parse(path.read_text()), {})
    assert (cfg.port, cfg.password, len(cfg.cookie_array)) == (9005, PW, 2)


def test_write_stats(tmp_path):
    clock = iter([1000.0, 1001.0])
    cf = ConfigFile(tmp_path / "clewdr.toml", no_fs=False, clock=lambda: next(clock))
    assert cf.stats() == {"total_writes": 0, "last_write_ts": 0, "avg_write_ms": 0.0,
                          "write_error_count": 0, "failure_ratio": 0.0}
    cf.load({})
    cf.ensure_written()
    cf.save(settings={"port": 9006})
    stats = cf.stats()
    assert (stats["total_writes"], stats["last_write_ts"], stats["write_error_count"]) == (2, 1001, 0)
    assert stats["avg_write_ms"] >= 0


def test_symlinked_config_stays_a_symlink(tmp_path):
    real = tmp_path / "dotfiles" / "clewdr.toml"
    real.parent.mkdir()
    real.write_text(CURRENT_TOML)
    link = tmp_path / "clewdr.toml"
    link.symlink_to(real)
    cf = ConfigFile(link, no_fs=False)
    cf.load({})
    cf.save(settings={"port": 9007})
    assert link.is_symlink() and "port = 9007" in real.read_text()


def test_file_layer_is_reachable_from_the_config_module():
    from clewdr_lite import config, config_file

    for name in ("ConfigFile", "ConfigError", "DEFAULT_TOML", "resolve_path", "parse_text"):
        assert getattr(config, name) is getattr(config_file, name)
    with pytest.raises(AttributeError):
        config.nothing_here  # noqa: B018
