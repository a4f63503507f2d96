"""Claude Code Router-compatible scenario routing (gateway.md §4): which target serves a request.

Pure: the request (hub shape, Anthropic Messages), the `[router]` table, a token count and the
headers in; a (scenario, target) pair out. A target is a `provider,model` string, a bare model or
alias, or a list (a group), resolved by router.resolve like an alias target. First match wins:

0. image: `image` set, model not already that value, `forceUseImageAgent` false, and the last
   user message holds an image (directly or inside a tool_result) → scenario `image`;
1. explicit `provider,model` → that target, scenario `default`, nothing else checked;
   declarative `[[router.rules]]`, in order (§4.6) → scenario `rule`;
2. longContext: count > threshold, or last session input > threshold and count > 20000;
3. sub-agent tag at the start of any system text block → its text, scenario `default`;
4. background: model contains `claude` and `haiku`;
5. webSearch: a tool whose `type` starts with `web_search` (deliberately above think);
6. think: `thinking.type` is `enabled` or `adaptive` (§4.4 fix 2: never `disabled`);
7. default. Any error inside routing falls back to `default`. §4.4 fix 1: the hook strips the
   sub-agent tag from the prompt whichever rule wins.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Callable, Union

Target = Union[str, list]

DEFAULT_THRESHOLD = 60000
LAST_USAGE_FLOOR = 20000  # a session over the threshold re-routes only above this estimate
DEFAULT_APPLY_TO = ("anthropic",)
DIALECTS = ("anthropic", "openai", "gemini")
TAG_OPEN, TAG_CLOSE = "<CCR-SUBAGENT-MODEL>", "</CCR-SUBAGENT-MODEL>"
TAG_RE = re.compile(re.escape(TAG_OPEN) + r"(.*?)" + re.escape(TAG_CLOSE), re.S)
THINK_TYPES = frozenset({"enabled", "adaptive"})
SESSION_HEADER = "x-claude-code-session-id"
# CCR spells router keys in camelCase; snake_case and lower-case spellings are accepted too
KEYS = ("default", "background", "think", "longContext", "longContextThreshold", "webSearch",
        "image", "forceUseImageAgent", "apply_to", "fallback", "rules")
_SPELLING = {k.lower().replace("_", ""): k for k in KEYS}
SIMPLE_RULES = ("background", "webSearch", "think")  # rules 4–6, in order; also their keys
RULE_OPS = ("equals", "contains", "matches", "exists")


def router_keys(router: Mapping | None) -> dict:
    """The `[router]` table with CCR's key spellings (longcontext, long_context → longContext)."""
    if not isinstance(router, Mapping):
        return {}
    return {_SPELLING.get(str(k).lower().replace("_", ""), k): v for k, v in router.items()}


def _target(value) -> Target | None:
    """A usable target: a non-empty string or a non-empty list of non-empty strings."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def router_enabled(router: Mapping | None, dialect: str) -> bool:
    """True when `default` is set and `dialect` is in `apply_to` (default: anthropic only)."""
    if not router:  # no [router] table: the common case, answered before any parsing
        return False
    table = router_keys(router)
    apply_to = table.get("apply_to", DEFAULT_APPLY_TO)
    if isinstance(apply_to, str):
        apply_to = (apply_to,)
    return _target(table.get("default")) is not None and dialect in tuple(apply_to or ())


def threshold(table: dict) -> int:
    """`longContextThreshold`, default 60000 (a bad value counts as the default)."""
    value = table.get("longContextThreshold", DEFAULT_THRESHOLD)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return int(value) if ok else DEFAULT_THRESHOLD


# ── the precedence ──────────────────────────────────────────────────────────────────────────


def scenario_for(req: dict, *, dialect: str, router: Mapping | None, token_count: int,
                 last_input_tokens: int | None = None, headers: Mapping | None = None
                 ) -> tuple[str, Target | None]:
    """(scenario, target) by §4.3's precedence; target None when the router does not apply."""
    if not router_enabled(router, dialect):
        return "default", None
    table = router_keys(router)
    try:
        return _decide(req, table, token_count, last_input_tokens, headers or {})
    except Exception:  # §4.3: any exception inside routing falls back to default
        return "default", _target(table["default"])


def _decide(req: dict, table: dict, count: int, last: int | None, headers: Mapping
            ) -> tuple[str, Target | None]:
    """Rules 0–7 over a request known to be routed."""
    model = req.get("model") if isinstance(req.get("model"), str) else ""
    image = image_target(req, table)
    if image is not None:
        return "image", image
    if "," in model:
        return "default", model
    rule = declarative_rules(table.get("rules"), req, headers)
    if rule is not None:
        return "rule", rule
    if _target(table.get("longContext")) is not None and _long(table, count, last):
        return "longContext", _target(table["longContext"])
    tag = subagent_target(req)
    if tag is not None:
        return "default", tag
    for name in SIMPLE_RULES:
        if _target(table.get(name)) is not None and MATCHERS[name](req, model):
            return name, _target(table[name])
    return "default", _target(table["default"])


def _long(table: dict, count: int, last: int | None) -> bool:
    """Rule 2's test: over the threshold, or a long session whose estimate is over 20000."""
    limit = threshold(table)
    return count > limit or (last is not None and last > limit and count > LAST_USAGE_FLOOR)


def _has_web_search(req: dict, model: str) -> bool:
    tools = req.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and isinstance(t.get("type"), str) and t["type"].startswith("web_search")
        for t in tools)


# rules 4–6: (request, model) → does the scenario fire
MATCHERS: dict[str, Callable[[dict, str], bool]] = {
    "background": lambda req, model: "claude" in model.lower() and "haiku" in model.lower(),
    "webSearch": _has_web_search,
    "think": lambda req, model: isinstance(req.get("thinking"), dict)
    and req["thinking"].get("type") in THINK_TYPES,
}


def image_target(req: dict, table: Mapping) -> Target | None:
    """Rule 0: the `image` target when the last user message holds an image, else None."""
    image = _target(table.get("image"))
    if image is None or table.get("forceUseImageAgent") is True or req.get("model") == image:
        return None
    users = [m for m in req.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    return image if users and _holds_image(users[-1].get("content")) else None


def _holds_image(content) -> bool:
    """An image block in `content`, or inside a tool_result block's content."""
    if not isinstance(content, list):
        return False
    return any(isinstance(b, dict) and (b.get("type") == "image" or (
        b.get("type") == "tool_result" and _holds_image(b.get("content")))) for b in content)


# ── the sub-agent tag ───────────────────────────────────────────────────────────────────────


def _system_texts(system) -> list:
    """(index, text) of each system text block; a string system is block None."""
    if isinstance(system, str):
        return [(None, system)]
    if not isinstance(system, list):
        return []
    return [(i, b["text"]) for i, b in enumerate(system)
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]


def subagent_target(req: dict) -> str | None:
    """The text between the tags that start the first tagged system text block (any block)."""
    for _, text in _system_texts(req.get("system")):
        if text.startswith(TAG_OPEN):
            found = TAG_RE.match(text)
            if found and found.group(1).strip():
                return found.group(1).strip()
    return None


def strip_subagent_tag(req: dict) -> dict:
    """A copy of `req` with the leading tag removed from every system text block (§4.4 fix 1)."""
    system = req.get("system")
    blocks = [(i, t) for i, t in _system_texts(system) if t.startswith(TAG_OPEN) and TAG_RE.match(t)]
    if not blocks:
        return req
    if isinstance(system, str):
        return {**req, "system": TAG_RE.sub("", system, count=1)}
    new = list(system)
    for index, text in blocks:
        new[index] = {**new[index], "text": TAG_RE.sub("", text, count=1)}
    return {**req, "system": new}


# ── declarative rules (§4.6) ────────────────────────────────────────────────────────────────

_MISSING = object()


def declarative_rules(rules, req: dict, headers: Mapping | None = None) -> Target | None:
    """The `set_model` of the first `[[router.rules]]` entry whose `when` holds, else None."""
    if not isinstance(rules, list):
        return None
    lowered = {str(k).lower(): v for k, v in (headers or {}).items()}
    for rule in rules:
        if not isinstance(rule, Mapping) or _target(rule.get("set_model")) is None:
            continue
        when = rule.get("when")
        conditions = when if isinstance(when, list) else [when]
        if all(_holds(c, req, lowered) for c in conditions):
            return _target(rule["set_model"])
    return None


def _holds(cond, req: dict, headers: dict) -> bool:
    """One condition: `header` or `body` (a dotted path) with every operator it names."""
    if not isinstance(cond, Mapping):
        return False
    if isinstance(cond.get("header"), str):
        value = headers.get(cond["header"].lower(), _MISSING)
    elif isinstance(cond.get("body"), str):
        value = body_value(req, cond["body"])
    else:
        return False
    ops = [op for op in RULE_OPS if op in cond] or ["exists"]
    return all(OPERATORS[op](value, cond.get(op, True)) for op in ops)


def body_value(req, path: str):
    """The value at a dotted path (`metadata.user_id`, `messages.0.role`), or a sentinel."""
    value = req
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _matches(value, pattern) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    try:
        return re.search(pattern, value) is not None
    except re.error:  # reported by check_router; a broken rule never matches
        return False


def _contains(value, needle) -> bool:
    if isinstance(value, str):
        return isinstance(needle, str) and needle in value
    return isinstance(value, (list, tuple)) and needle in value


OPERATORS = {
    "equals": lambda value, expected: value is not _MISSING and value == expected,
    "contains": _contains,
    "matches": _matches,
    "exists": lambda value, wanted: (value is not _MISSING) == bool(wanted),
}


# ── fallback (§4.7), sessions (§4.2) ────────────────────────────────────────────────────────


def fallbacks(router: Mapping | None, scenario: str) -> list[str]:
    """`fallback[scenario]`, then `fallback.default`, without repeats."""
    table = router_keys(router).get("fallback")
    if not isinstance(table, Mapping):
        return []
    out: list[str] = []
    for name in (scenario, "default"):
        value = table.get(name)
        for item in [value] if isinstance(value, str) else value or ():
            if isinstance(item, str) and item.strip() and item.strip() not in out:
                out.append(item.strip())
    return out


def session_id(req: dict, headers: Mapping | None = None) -> str | None:
    """The header, else `metadata.user_id`'s JSON `session_id`, else its `_session_` part."""
    for name, value in (headers or {}).items():
        if str(name).lower() == SESSION_HEADER and value:
            return str(value)
    user = body_value(req, "metadata.user_id")
    if not isinstance(user, str) or not user:
        return None
    try:
        parsed = json.loads(user)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str):
        return parsed["session_id"] or None
    _, found, tail = user.partition("_session_")
    return tail if found and tail else None


class LastUsage:
    """An LRU of the last final `usage` of each session (CCR's lastUsage, 100 sessions)."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()

    def put(self, session: str | None, usage: Mapping) -> None:
        """Remember `usage` as the session's latest; the oldest session drops out when full."""
        if not session or not isinstance(usage, Mapping):
            return
        self._items[session] = dict(usage)
        self._items.move_to_end(session)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def input_tokens(self, session: str | None) -> int | None:
        """The session's last `input_tokens` (None when unknown)."""
        usage = self._items.get(session) if session else None
        if usage is not None:
            self._items.move_to_end(session)
        value = (usage or {}).get("input_tokens")
        return value if isinstance(value, int) else None


# ── the router.resolve hook ─────────────────────────────────────────────────────────────────


class ScenarioHook:
    """Step 3 of router.resolve for one request; keeps the stripped request and the scenario."""

    def __init__(self, router: Mapping | None, req: dict, *, dialect: str,
                 token_count_fn: Callable[[dict], int], headers: Mapping | None,
                 last_input_tokens: int | None) -> None:
        self.table = router_keys(router)
        self.active = router_enabled(self.table, dialect)
        self.original, self.headers, self.last = req, headers or {}, last_input_tokens
        self.token_count_fn = token_count_fn
        self.request = strip_subagent_tag(req) if self.active else req  # §4.4 fix 1
        self.model = req.get("model")  # what the caller resolves: rule 0 runs before the router
        self.scenario, self.target = "default", None
        image = image_target(req, self.table) if self.active else None
        if isinstance(image, str):
            self.model, self.scenario, self.target = image, "image", image

    def __call__(self, model: str, route_kind: str) -> Target | None:
        """The target for `model` (alias targets included), or None to let resolve go on."""
        if not self.active or not router_enabled(self.table, route_kind):
            return None
        if self.scenario == "image":
            return self.target  # rule 0 already chose, even if the caller resolved the old model
        try:
            count = self.token_count_fn(self.request) if "longContext" in self.table else 0
        except Exception:  # a counting failure must not fail the request (§4.3)
            count = 0
        req = {**self.original, "model": model}
        self.scenario, self.target = scenario_for(
            req, dialect=route_kind, router=self.table, token_count=count,
            last_input_tokens=self.last, headers=self.headers)
        return self.target


def make_scenario_hook(router_table: Mapping | None, *, token_count_fn: Callable[[dict], int],
                       req: dict, dialect: str = "anthropic", headers: Mapping | None = None,
                       last_input_tokens: int | None = None) -> ScenarioHook:
    """A `scenario` callable for router.resolve; send `hook.request`, resolve `hook.model`."""
    return ScenarioHook(router_table, req, dialect=dialect, token_count_fn=token_count_fn,
                        headers=headers, last_input_tokens=last_input_tokens)


def check_router(router: Mapping | None) -> list[str]:
    """Config problems of `[router]`: bad targets, threshold, apply_to, rules, patterns."""
    table = router_keys(router)
    problems = [f"router.{k}: expected \"provider,model\" or a list of them"
                for k in ("default", "background", "think", "longContext", "webSearch", "image")
                if k in table and _target(table[k]) is None]
    if "longContextThreshold" in table and threshold(table) != table["longContextThreshold"]:
        problems.append("router.longContextThreshold: expected a positive integer (60000 used)")
    apply_to = table.get("apply_to", DEFAULT_APPLY_TO)
    bad = [d for d in ([apply_to] if isinstance(apply_to, str) else apply_to or ()) if d not in DIALECTS]
    if bad:
        problems.append(f"router.apply_to: unknown dialects {bad} (anthropic, openai, gemini)")
    for i, rule in enumerate(table.get("rules") or ()):
        problems += [f"router.rules[{i}]: {p}" for p in _rule_problems(rule)]
    return problems


def _rule_problems(rule) -> list[str]:
    """Problems of one declarative rule."""
    if not isinstance(rule, Mapping) or _target(rule.get("set_model")) is None:
        return ["expected a table with `when` and `set_model`"]
    when = rule.get("when")
    problems = []
    for cond in when if isinstance(when, list) else [when]:
        if not isinstance(cond, Mapping) or not (isinstance(cond.get("header"), str)
                                                 or isinstance(cond.get("body"), str)):
            problems.append("`when` needs `header` or `body`")
            continue
        try:
            re.compile(cond.get("matches", ""))
        except (re.error, TypeError) as exc:
            problems.append(f"bad `matches` pattern: {exc}")
    return problems
