"""Import layering (DESIGN.md §2, §5.11): pure modules stay pure, imports run one way.

`errors ← protocol ← router, pool ← upstream ← server ← cli`. The pure layer (protocol/, router.py,
pool.py) imports no I/O, clock, logging or config module; curl_cffi is imported on first use only.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clewdr_lite"

# Neither the pure layer's own imports nor anything it reaches for by name.
IMPURE = ("aiohttp", "asyncio", "logging", "time", "tomlkit", "curl_cffi",
          "clewdr_lite.config", "clewdr_lite.config_file")
ABOVE_PROTOCOL = ("clewdr_lite.upstream", "clewdr_lite.server", "clewdr_lite.cli",
                  "clewdr_lite.pool", "clewdr_lite.router")
ABOVE_POOL = ("clewdr_lite.upstream", "clewdr_lite.server", "clewdr_lite.cli")
ABOVE_UPSTREAM = ("clewdr_lite.server", "clewdr_lite.cli")


def module_name(path: Path) -> str:
    """`clewdr_lite/protocol/sse.py` → `clewdr_lite.protocol.sse` (a package → its own name)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every (line, absolute module) that `source`, the text of `module`, may import.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are
    resolved against `module`; `importlib.import_module("x")` / `__import__("x")` with a literal
    count too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.append((node.lineno, stem))
            found += [(node.lineno, f"{stem}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(source: str, module: str, banned, *, is_package: bool = False) -> list[str]:
    """`line: module` for each import of a banned module or of anything inside it."""
    return sorted({f"{line}: {name}" for line, name in imported_modules(source, module,
                                                                       is_package=is_package)
                   if any(name == b or name.startswith(b + ".") for b in banned)})


def sources(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in PACKAGE.glob(pattern))


def check(path: Path, banned) -> list[str]:
    return violations(path.read_text(encoding="utf-8"), module_name(path), banned,
                      is_package=path.name == "__init__.py")


PURE = sources("protocol/*.py", "router.py", "pool.py")
PROTOCOL = sources("protocol/*.py")
UPSTREAM = sources("upstream/*.py")


def ids(paths):
    return [str(p.relative_to(PACKAGE)) for p in paths]


# ---------------------------------------------------------------- the checker can fail


@pytest.mark.parametrize("source, module, expected", [
    ("import asyncio\n", "clewdr_lite.protocol.x", ["1: asyncio"]),
    ("import json\nimport time as _t\n", "clewdr_lite.pool", ["2: time"]),
    ("from logging import getLogger\n", "clewdr_lite.router", ["1: logging", "1: logging.getLogger"]),
    ("import aiohttp.web\n", "clewdr_lite.protocol.x", ["1: aiohttp.web"]),
    ("from aiohttp import web\n", "clewdr_lite.protocol.x", ["1: aiohttp", "1: aiohttp.web"]),
    ("def f():\n    import curl_cffi\n", "clewdr_lite.protocol.x", ["2: curl_cffi"]),
    ("from ..config import Config\n", "clewdr_lite.protocol.x",
     ["1: clewdr_lite.config", "1: clewdr_lite.config.Config"]),
    ("from .. import config\n", "clewdr_lite.protocol.x", ["1: clewdr_lite.config"]),
    ("from . import config_file\n", "clewdr_lite.pool", ["1: clewdr_lite.config_file"]),
    ("from clewdr_lite import config\n", "clewdr_lite.router", ["1: clewdr_lite.config"]),
    ("import clewdr_lite.config as c\n", "clewdr_lite.router", ["1: clewdr_lite.config"]),
    ("import importlib\nm = importlib.import_module('tomlkit')\n", "clewdr_lite.pool", ["2: tomlkit"]),
    ("x = __import__('asyncio')\n", "clewdr_lite.pool", ["1: asyncio"]),
    # Look-alikes are not flagged.
    ("import datetime\nfrom datetime import timezone\nimport timeit\n", "clewdr_lite.pool", []),
    ("from . import errors\nfrom ..errors import BadRequest\nfrom .configure import x\n",
     "clewdr_lite.protocol.x", []),
    ("import json, re\nfrom typing import Any\n", "clewdr_lite.protocol.x", []),
])
def test_checker_flags_impure_imports(source, module, expected):
    assert violations(source, module, IMPURE) == expected


@pytest.mark.parametrize("source, module, banned, expected", [
    ("from ..upstream import http\n", "clewdr_lite.protocol.x", ABOVE_PROTOCOL,
     ["1: clewdr_lite.upstream", "1: clewdr_lite.upstream.http"]),
    ("from clewdr_lite.pool import CookiePool\n", "clewdr_lite.protocol.x", ABOVE_PROTOCOL,
     ["1: clewdr_lite.pool", "1: clewdr_lite.pool.CookiePool"]),
    ("from .. import router\n", "clewdr_lite.protocol.x", ABOVE_PROTOCOL, ["1: clewdr_lite.router"]),
    ("from ..server.app import State\n", "clewdr_lite.upstream.x", ABOVE_UPSTREAM,
     ["1: clewdr_lite.server.app", "1: clewdr_lite.server.app.State"]),
    ("from . import cli\n", "clewdr_lite", ABOVE_UPSTREAM, ["1: clewdr_lite.cli"]),
    ("from ..protocol import sse\nfrom clewdr_lite.pool import x\n", "clewdr_lite.upstream.x",
     ABOVE_UPSTREAM, []),
])
def test_checker_flags_upward_imports(source, module, banned, expected):
    is_package = module == "clewdr_lite"
    assert violations(source, module, banned, is_package=is_package) == expected


def test_the_pure_layer_was_found():
    assert PACKAGE / "pool.py" in PURE
    assert PACKAGE / "protocol" / "upstream_errors.py" in PURE
    assert PACKAGE / "upstream" / "http.py" in UPSTREAM


# ---------------------------------------------------------------- the real package


@pytest.mark.parametrize("path", PURE, ids=ids(PURE))
def test_pure_modules_import_nothing_impure(path):
    assert check(path, IMPURE) == []


@pytest.mark.parametrize("path", PROTOCOL, ids=ids(PROTOCOL))
def test_protocol_imports_nothing_above_it(path):
    assert check(path, ABOVE_PROTOCOL) == []


@pytest.mark.parametrize("path", sources("router.py", "pool.py"), ids=ids(sources("router.py", "pool.py")))
def test_router_and_pool_import_nothing_above_them(path):
    assert check(path, ABOVE_POOL) == []


@pytest.mark.parametrize("path", UPSTREAM, ids=ids(UPSTREAM))
def test_upstream_imports_neither_server_nor_cli(path):
    assert check(path, ABOVE_UPSTREAM) == []


def test_errors_is_the_bottom_layer():
    assert check(PACKAGE / "errors.py", ("clewdr_lite",) + IMPURE) == []


# ---------------------------------------------------------------- curl_cffi stays lazy

PROBE = "import sys, {module}; print('curl_cffi' in sys.modules)"


def loads_curl_cffi(module: str) -> bool:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_importing_the_app_does_not_import_curl_cffi():
    assert loads_curl_cffi("clewdr_lite.server.app") is False


LAZY_PROBE = """
import sys
from clewdr_lite.config import parse
from clewdr_lite.server.app import make_app
config, _ = parse({"password": "p" * 20, "providers": [
    {"name": "a", "type": "anthropic", "base_url": "http://127.0.0.1:9", "keys": ["sk-ant-api03-x"]}]}, {})
app = make_app(config)
print(sorted(m for m in sys.modules if m.startswith(("clewdr_lite.protocol.", "clewdr_lite.upstream."))
             and m.split(".")[-1].startswith(("gemini", "vertex", "google", "openai"))
             or m == "clewdr_lite.scenarios"
             # an API-key gateway needs the header helpers, not Claude Code's OAuth, billing,
             # sticky-key and usage-window code
             or m.split(".")[-1] in ("claude_code", "claude_code_oauth", "claude_code_sticky", "claude_code_usage")))
print("clewdr_lite.protocol.anthropic_headers" in sys.modules)
"""


def test_providers_that_are_not_configured_cost_no_import():
    done = subprocess.run([sys.executable, "-c", LAZY_PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]


def test_the_probe_sees_curl_cffi_when_it_is_imported():
    pytest.importorskip("curl_cffi")
    assert loads_curl_cffi("curl_cffi") is True


TOML_PROBE = """
import sys, pathlib, tempfile
from clewdr_lite.config_file import ConfigFile
path = pathlib.Path(tempfile.mkdtemp()) / "clewdr.toml"
path.write_text('# mine\\npassword = "{p}"\\nadmin_password = "{p}"\\nport = 8484  # keep\\n')
file = ConfigFile(path, no_fs=False)
config, _ = file.load({{}})
read_only = "tomlkit" in sys.modules
file.save(settings={{"port": 9000}})
config, _ = file.snapshot({{}})
print(read_only, "tomlkit" in sys.modules, config.port, path.read_text().splitlines()[0],
      path.read_text().splitlines()[3])
""".format(p="p" * 24)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11; 3.10 reads with tomlkit")
def test_reading_the_config_leaves_tomlkit_for_the_first_save():
    done = subprocess.run([sys.executable, "-c", TOML_PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "9000", "#", "mine", "port", "=", "9000", "#", "keep"]


WEB_PROBE = """
import sys
from clewdr_lite.config import parse
from clewdr_lite.server.app import STATE, make_app
config, _ = parse({"password": "p" * 20, "cookie_array": [{"cookie": "sk-ant-sid01-" + "a" * 86 + "-" + "b" * 6 + "AA"}]}, {})
state = make_app(config)[STATE]
before = sorted(m for m in sys.modules if m in ("clewdr_lite.upstream.claude_web", "clewdr_lite.upstream.claude_code",
                                                "clewdr_lite.protocol.claude_web", "clewdr_lite.protocol.claude_web_stream"))
web, code = state.web, state.code
print(before, type(web).__name__, type(code).__name__, code.web is web, state.web is web)
"""


def test_the_claude_ai_and_claude_code_upstreams_are_built_when_first_used():
    done = subprocess.run([sys.executable, "-c", WEB_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "ClaudeWeb", "ClaudeCode", "True", "True"]


STDCXX_PROBE = """
import sys
from clewdr_lite import cli
cli.lean_imports()
import aiohttp.web
from clewdr_lite.server import runner
maps = open("/proc/self/maps").read()
print("frozenlist._frozenlist" in sys.modules, "libstdc++" in maps)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_server_maps_no_cxx_runtime():
    done = subprocess.run([sys.executable, "-c", STDCXX_PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "FROZENLIST_NO_EXTENSIONS"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
