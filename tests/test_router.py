"""Model resolution (gateway.md §3.3): explicit providers, aliases, globs, defaults, bound routes."""

from __future__ import annotations

from collections import Counter

import pytest

from clewdr_lite.providers import parse_providers
from clewdr_lite.router import MAX_ALIAS_DEPTH, Route, RouteError, check_aliases, resolve


def build(*entries):
    return parse_providers({"providers": list(entries)}, warn=pytest.fail)


PROVIDERS = build(
    {"name": "openrouter", "preset": "openrouter", "models": ["openai/*", "google/*", "anthropic/*", "qwen3*"],
     "priority": 1},
    {"name": "ollama", "preset": "ollama", "models": ["qwen3*", "llama3*"]},
    {"name": "lan", "preset": "llamacpp", "models": ["qwen3*", "MiniMax-M1"]},
    {"name": "off", "preset": "lmstudio", "models": ["qwen3*", "llama3*"], "priority": -5, "enabled": False},
    {"name": "fast", "preset": "groq", "models": ["llama3*"], "priority": -1},
    {"name": "deepseek", "preset": "deepseek", "models": ["deepseek-*"]},
)
ALIASES = {
    "sonnet": "claude_code/claude-sonnet-4-6",
    "cheap": ["gemini/gemini-2.5-flash", "openrouter/google/gemini-2.5-flash"],
    "gemini-3.8-flash": "gemini/gemini-2.5-flash",
    "openrouter/x": "sonnet",                 # never reached: explicit provider beats alias
    "chain1": "chain2", "chain2": "chain3", "chain3": "gemini/gemini-2.5-pro",
    "deep1": "deep2", "deep2": "deep3", "deep3": "deep4", "deep4": "gemini-2.5-pro",
    "loop-a": "loop-b", "loop-b": "loop-a",
    "self": "self",
    "bare": "qwen3-8b",
    "to-group": "cheap",
    "mixed": ["llama3-70b", "claude-sonnet-4-5"],
    "with-off": ["off/qwen3-8b", "lan/qwen3-8b"],
    "all-off": ["off/a", "off/b"],
    "coder": "OpenRouter,Qwen/Qwen3-Coder",
    "junk": 5,
    "empty": [],
}


def route(model, *, kind="anthropic", bound=None, providers=PROVIDERS, aliases=ALIASES,
          default="claude_web", **kw) -> Route:
    return resolve(model, route_kind=kind, bound=bound, providers=providers, aliases=aliases,
                   default=default, **kw)


# (model, expected provider, expected model, via): open route, default claude_web
OPEN = [
    # step 1: explicit provider, `provider/model`
    ("openrouter/openai/gpt-4o", "openrouter", "openai/gpt-4o", "explicit"),
    ("OpenRouter/openai/gpt-4o", "openrouter", "openai/gpt-4o", "explicit"),   # prefix case-insensitive
    ("gemini/gemini-2.5-pro", "gemini", "gemini-2.5-pro", "explicit"),
    ("claude_code/claude-opus-4-6", "claude_code", "claude-opus-4-6", "explicit"),
    ("openrouter/x", "openrouter", "x", "explicit"),                          # beats the alias
    # OpenRouter-style ids stay model ids unless a provider is named like the prefix
    ("anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5", "models"),
    ("mistral/large", "claude_web", "mistral/large", "default"),
    ("openrouter/", "claude_web", "openrouter/", "default"),                  # no model part
    ("/x", "claude_web", "/x", "default"),
    # step 1: `provider,model`
    ("openrouter,anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5", "explicit"),
    ("GEMINI,gemini-2.5-pro", "gemini", "gemini-2.5-pro", "explicit"),
    ("lan,minimax-m1", "lan", "MiniMax-M1", "explicit"),                      # casing from `models`
    ("openrouter,qwen/qwen3-coder", "openrouter", "Qwen/Qwen3-Coder", "explicit"),  # from an alias target
    ("lan,unknown-Model", "lan", "unknown-Model", "explicit"),                # unknown: as sent
    ("openrouter,a,b", "openrouter", "a,b", "explicit"),                      # a further comma stays
    ("openrouter,google/x,y", "openrouter", "google/x,y", "explicit"),
    ("nobody,model", "claude_web", "nobody,model", "default"),                # not a provider: a model id
    ("nobody/x,lan", "claude_web", "nobody/x,lan", "default"),
    ("lan/a,b", "lan", "a,b", "explicit"),                                    # `lan/a` is no provider: slash form
    # step 2: aliases, exact and case-sensitive
    ("sonnet", "claude_code", "claude-sonnet-4-6", "alias"),
    ("Sonnet", "claude_web", "Sonnet", "default"),
    ("gemini-3.8-flash", "gemini", "gemini-2.5-flash", "alias"),
    ("chain1", "gemini", "gemini-2.5-pro", "alias"),                          # three levels are fine
    ("bare", "ollama", "qwen3-8b", "alias"),                                   # target goes through step 4
    ("coder", "openrouter", "Qwen/Qwen3-Coder", "alias"),
    ("junk", "claude_web", "junk", "default"),                                 # unusable alias: ignored
    ("empty", "claude_web", "empty", "default"),
    # step 4: globs, by priority then config order; disabled providers skipped
    ("qwen3-8b", "ollama", "qwen3-8b", "models"),
    ("llama3-70b", "fast", "llama3-70b", "models"),
    ("deepseek-chat", "deepseek", "deepseek-chat", "models"),
    ("gemini-2.5-pro", "gemini", "gemini-2.5-pro", "models"),
    ("gemma-3-27b-it", "gemini", "gemma-3-27b-it", "models"),
    ("Qwen3-8b", "claude_web", "Qwen3-8b", "default"),                        # globs are case-sensitive
    ("minimax-m1", "claude_web", "minimax-m1", "default"),
    # step 5: the route's default
    ("claude-sonnet-4-5", "claude_web", "claude-sonnet-4-5", "default"),
    ("", "claude_web", "", "default"),
]


@pytest.mark.parametrize("model, provider, upstream, via", OPEN)
def test_open_route_resolution(model, provider, upstream, via):
    got = route(model)
    assert (got.provider, got.model, got.via) == (provider, upstream, via)
    assert got.candidates[0] == (provider, upstream)


@pytest.mark.parametrize("model, candidates", [
    ("qwen3-8b", [("ollama", "qwen3-8b"), ("lan", "qwen3-8b"), ("openrouter", "qwen3-8b")]),
    ("llama3-8b", [("fast", "llama3-8b"), ("ollama", "llama3-8b")]),
    ("gemini-2.5-pro", [("gemini", "gemini-2.5-pro")]),
    ("sonnet", [("claude_code", "claude-sonnet-4-6")]),
    ("claude-opus-4-6", [("claude_web", "claude-opus-4-6")]),
])
def test_every_matching_provider_is_a_fallback_in_order(model, candidates):
    assert list(route(model).candidates) == candidates


def test_provider_with_the_prefix_name_makes_the_prefix_explicit():
    providers = build({"name": "anthropic", "type": "anthropic", "keys": ["k"]},
                      {"name": "openrouter", "preset": "openrouter", "models": ["anthropic/*"]})
    got = route("anthropic/claude-sonnet-4.5", providers=providers)
    assert (got.provider, got.model, got.via) == ("anthropic", "claude-sonnet-4.5", "explicit")
    got = route("Anthropic,claude-sonnet-4.5", providers=providers)
    assert (got.provider, got.model) == ("anthropic", "claude-sonnet-4.5")


def test_known_restores_casing_of_router_targets():
    got = route("gemini,gemini-2.5-pro-preview", known=("Gemini-2.5-Pro-Preview",))
    assert got.model == "Gemini-2.5-Pro-Preview"
    assert route("gemini/gemini-2.5-pro-preview", known=("Gemini-2.5-Pro-Preview",)).model == \
        "gemini-2.5-pro-preview"                                             # only the comma form


def test_priority_then_config_order_among_equal_globs():
    providers = build({"name": "b", "type": "openai", "models": ["m*"], "priority": 2},
                      {"name": "a", "type": "openai", "models": ["m*"], "priority": 2},
                      {"name": "c", "type": "openai", "models": ["m*"], "priority": 1})
    assert [p for p, _ in route("m1", providers=providers).candidates] == ["c", "b", "a"]


def test_a_builtin_can_lose_its_globs_or_yield_to_a_better_priority():
    providers = build({"name": "gemini", "models": []})
    assert route("gemini-2.5-pro", providers=providers).provider == "claude_web"
    providers = build({"name": "or", "preset": "openrouter", "models": ["gemini-*"], "priority": -1})
    assert [p for p, _ in route("gemini-2.5-pro", providers=providers).candidates] == ["or", "gemini"]


@pytest.mark.parametrize("kind, default, model, provider", [
    ("anthropic", "claude_web", "claude-sonnet-4-5", "claude_web"),
    ("openai", "claude_web", "claude-sonnet-4-5", "claude_web"),
    ("gemini", "gemini", "claude-sonnet-4-5", "gemini"),
    ("gemini", "gemini", "qwen3-8b", "ollama"),        # globs still come first on open routes
])
def test_route_defaults(kind, default, model, provider):
    assert route(model, kind=kind, default=default).provider == provider


# ---------------------------------------------------------------- bound routes

BOUND = [
    # bound provider, model, expected provider, expected model, via
    ("claude_code", "claude-sonnet-4-6", "claude_code", "claude-sonnet-4-6", "bound"),
    ("claude_code", "gemini-2.5-pro", "claude_code", "gemini-2.5-pro", "bound"),   # no step 4
    ("claude_code", "qwen3-8b", "claude_code", "qwen3-8b", "bound"),
    ("gemini", "gemini/gemini-2.5-pro", "gemini", "gemini-2.5-pro", "explicit"),
    ("gemini", "openrouter/google/gemini-2.5-pro", "openrouter", "google/gemini-2.5-pro", "explicit"),
    ("vertex", "ollama,qwen3-8b", "ollama", "qwen3-8b", "explicit"),
    ("gemini", "sonnet", "claude_code", "claude-sonnet-4-6", "alias"),   # explicit alias target
    ("gemini", "bare", "gemini", "qwen3-8b", "alias"),                   # bare alias target: bound
    ("vertex", "anthropic/claude-x", "vertex", "anthropic/claude-x", "bound"),
]


@pytest.mark.parametrize("bound, model, provider, upstream, via", BOUND)
def test_bound_routes(bound, model, provider, upstream, via):
    got = route(model, bound=bound, default=bound)
    assert (got.provider, got.model, got.via) == (provider, upstream, via)


def test_a_group_of_bare_models_on_a_bound_route_stays_on_the_bound_provider():
    got = route("mixed", bound="claude_code", default="claude_code")
    assert got.candidates == (("claude_code", "llama3-70b"), ("claude_code", "claude-sonnet-4-5"))


# ---------------------------------------------------------------- groups


def test_a_list_alias_is_a_group_with_fallbacks():
    got = route("cheap")
    assert got.via == "alias"
    assert got.candidates == (("gemini", "gemini-2.5-flash"), ("openrouter", "google/gemini-2.5-flash"))
    assert route("to-group").candidates == got.candidates                 # through another alias


def test_group_members_are_resolved_each_and_flattened():
    got = route("mixed")
    # every member's candidates, then ranked by provider priority (stable: list order inside)
    assert got.candidates == (("fast", "llama3-70b"), ("ollama", "llama3-70b"),
                              ("claude_web", "claude-sonnet-4-5"))


def test_disabled_group_members_are_skipped():
    assert route("with-off").candidates == (("lan", "qwen3-8b"),)


GROUPED = build(
    {"name": "a", "type": "openai", "priority": 1},
    {"name": "b", "type": "openai", "priority": 0, "weight": 1},
    {"name": "c", "type": "openai", "priority": 0, "weight": 3},
    {"name": "z", "type": "openai", "priority": -1, "weight": 0},
)
GROUP = {"g": ["a/m", "b/m", "c/m", "z/m"], "zeros": ["z/m", "a/m"]}


def test_a_group_draws_its_first_choice_by_priority_and_weight():
    firsts = Counter(route("g", providers=GROUPED, aliases=GROUP, rand=i / 1000).provider
                     for i in range(1000))
    assert firsts == {"b": 250, "c": 750}
    got = route("g", providers=GROUPED, aliases=GROUP, rand=0.9)
    # the chosen one first, then by tier, weight-0 members last (a reserve), list order inside
    assert [p for p, _ in got.candidates] == ["c", "b", "a", "z"]
    assert [p for p, _ in route("g", providers=GROUPED, aliases=GROUP, rand=0.0).candidates] == \
        ["b", "c", "a", "z"]


def test_a_weight_zero_group_member_serves_only_as_the_last_reserve():
    assert route("zeros", providers=GROUPED, aliases=GROUP).provider == "a"
    zeros = build({"name": "a", "type": "openai", "weight": 0, "priority": 1},
                  {"name": "z", "type": "openai", "weight": 0})
    assert route("zeros", providers=zeros, aliases=GROUP, rand=0.9).candidates == \
        (("z", "m"), ("a", "m"))                     # all reserves: by priority, no draw


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("model, message", [
    ("loop-a", "alias loop: loop-a → loop-b → loop-a"),
    ("self", "alias loop: self → self"),
    ("deep1", f"alias chain deeper than {MAX_ALIAS_DEPTH} levels: deep1 → deep2 → deep3 → deep4"),
])
def test_alias_loops_and_deep_chains_are_errors(model, message):
    with pytest.raises(RouteError, match=message) as caught:
        route(model)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("model, kw, message", [
    ("off/qwen3-8b", {}, "no enabled provider for model 'off/qwen3-8b' (tried off)"),
    ("all-off", {}, "no enabled provider for model 'all-off' (tried off)"),
    ("x", {"default": "nowhere"}, "no enabled provider for model 'x' (tried nowhere)"),
    ("claude-x", {"providers": build({"name": "claude_web", "enabled": False})},
     "no enabled provider for model 'claude-x' (tried claude_web)"),
    ("x", {"bound": "claude_code", "providers": build({"name": "claude_code", "enabled": False})},
     "no enabled provider for model 'x' (tried claude_code)"),
])
def test_no_enabled_provider_is_an_error(model, kw, message):
    with pytest.raises(RouteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        route(model, **kw)


# ---------------------------------------------------------------- the scenario seam (step 3)


class Recorder:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, model, kind):
        self.calls.append((model, kind))
        return self.answer


@pytest.mark.parametrize("answer, provider, upstream, via", [
    ("gemini,gemini-2.5-pro", "gemini", "gemini-2.5-pro", "scenario"),
    ("sonnet", "claude_code", "claude-sonnet-4-6", "scenario"),           # an alias is fine too
    ("qwen3-8b", "ollama", "qwen3-8b", "scenario"),                        # a bare model: steps 4–5
    (["gemini,gemini-2.5-pro", "openrouter,google/gemini-2.5-pro"], "gemini", "gemini-2.5-pro", "scenario"),
    (None, "claude_web", "claude-sonnet-4-5", "default"),                  # no choice: go on
])
def test_scenario_hook_runs_at_step_3_on_open_routes(answer, provider, upstream, via):
    hook = Recorder(answer)
    got = route("claude-sonnet-4-5", kind="anthropic", scenario=hook)
    assert (got.provider, got.model, got.via) == (provider, upstream, via)
    assert hook.calls == [("claude-sonnet-4-5", "anthropic")]


def test_scenario_hook_sees_the_alias_target_and_beats_globs():
    hook = Recorder("claude_code,claude-opus-4-6")
    assert route("bare", kind="openai", scenario=hook).provider == "claude_code"
    assert hook.calls == [("qwen3-8b", "openai")]


@pytest.mark.parametrize("model, kw", [
    ("gemini,gemini-2.5-pro", {}),                  # explicit: the router is skipped (CCR rule 1)
    ("sonnet", {}),                                 # alias to an explicit target
    ("claude-x", {"bound": "claude_code"}),         # bound routes have no step 3
])
def test_scenario_hook_is_skipped(model, kw):
    hook = Recorder("ollama,qwen3-8b")
    assert route(model, scenario=hook, **kw).provider != "ollama"
    assert hook.calls == []


def test_scenario_answers_are_not_routed_again():
    hook = Recorder("claude-haiku-4-5")
    got = route("claude-sonnet-4-5", scenario=hook)
    assert (got.provider, got.model) == ("claude_web", "claude-haiku-4-5")
    assert len(hook.calls) == 1


# ---------------------------------------------------------------- check_aliases


@pytest.mark.parametrize("aliases, errors", [
    ({"sonnet": "claude_code/claude-sonnet-4-6", "g": ["a", "b"]}, []),
    ({"a": "b", "b": "c", "c": "d"}, []),
    ({"a": "b", "b": "c", "c": "d", "d": "e"},
     [f"aliases.a: alias chain deeper than {MAX_ALIAS_DEPTH} levels: a → b → c → d"]),
    ({"a": "b", "b": "a"}, ["aliases.a: alias loop: a → b → a", "aliases.b: alias loop: b → a → b"]),
    ({"a": "a"}, ["aliases.a: alias loop: a → a"]),
    ({"g": ["ok", "x"], "x": "g"}, ["aliases.g: alias loop: g → x → g", "aliases.x: alias loop: x → g → x"]),
    ({"a": 5, "b": [], "c": ["x", 3], "d": ""},
     [f"aliases.{k}: expected a model name or an array of model names" for k in "abcd"]),
])
def test_check_aliases(aliases, errors):
    assert check_aliases(aliases) == errors


def test_check_aliases_follows_resolve_about_explicit_names():
    aliases = {"gemini/x": "gemini/x", "y": "gemini,y"}
    assert check_aliases(aliases, PROVIDERS) == []                  # explicit: never an alias step
    assert check_aliases(aliases) == ["aliases.gemini/x: alias loop: gemini/x → gemini/x"]


def test_the_shipped_aliases_pass_except_the_broken_ones():
    assert check_aliases(ALIASES, PROVIDERS) == [
        f"aliases.deep1: alias chain deeper than {MAX_ALIAS_DEPTH} levels: deep1 → deep2 → deep3 → deep4",
        "aliases.loop-a: alias loop: loop-a → loop-b → loop-a",
        "aliases.loop-b: alias loop: loop-b → loop-a → loop-b",
        "aliases.self: alias loop: self → self",
        "aliases.junk: expected a model name or an array of model names",
        "aliases.empty: expected a model name or an array of model names",
    ]


# ---------------------------------------------------------------- the per-config route cache


def test_a_resolved_name_is_kept_per_config_route_kind_and_bound():
    first = route("llama3-70b")
    assert route("llama3-70b") is first                           # served from the cache
    assert route("llama3-70b", kind="openai") == first and route("llama3-70b", kind="openai") is not first
    assert route("llama3-70b", bound="ollama").via == "bound"      # a bound route is its own entry
    assert route("llama3-70b").via == "models"
    changed = build({"name": "ollama", "preset": "ollama", "models": ["llama3*"]})
    assert route("llama3-70b", providers=changed).candidates == (("ollama", "llama3-70b"),)  # a new config
    assert route("llama3-70b").candidates == first.candidates


def test_the_route_cache_is_bounded_and_skips_scenarios():
    from clewdr_lite import router
    for number in range(router.ROUTES_CACHED + 5):
        route(f"free-model-{number}")
    by_name, _, _, routes = router._tables(PROVIDERS, ALIASES, ())
    assert 0 < len(routes) <= router.ROUTES_CACHED
    calls = []
    hook = lambda model, kind: calls.append(model) or "deepseek/deepseek-chat"  # noqa: E731
    assert route("llama3-70b", scenario=hook).provider == "deepseek"
    assert route("llama3-70b", scenario=hook).provider == "deepseek"
    assert calls == ["llama3-70b", "llama3-70b"]                   # asked every time
