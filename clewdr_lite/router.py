"""Model resolution (gateway.md §3.3): which provider serves a request, under which model name.

Pure. For each name, the first step that applies wins:

1. explicit provider: `provider,model` (CCR's form; provider and model compared lower-cased, the
   configured casing restored), then `provider/model`; either only when the prefix is a
   configured provider name (case-insensitive), else the whole string is a model id;
2. alias: exact, case-sensitive; restart at step 1 with the target; a list target is a group;
3. open routes only: scenario routing (gateway.md §4). This module only calls the `scenario`
   hook it is given: `scenario(model, route_kind)` returns a target (`"provider,model"`, a bare
   model or a list, resolved like an alias target) or None to go on;
4. open routes only: every enabled provider whose `models` globs match, by priority then config
   order (the first serves, the rest are fallbacks). Globs are case-sensitive (fnmatchcase),
   like the upstream model ids they stand for;
5. the route's default provider (on a bound route, the bound provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Callable, Iterable, Union

from clewdr_lite.pool import weighted_choice
from clewdr_lite.providers import Provider

MAX_ALIAS_DEPTH = 3  # alias substitutions per name (gateway.md §3.2)
GLOB_CHARS = "*?["
ROUTES_CACHED = 512  # resolved names kept per config (clients may send any model name)

Target = Union[str, list]
Scenario = Callable[[str, str], Union[Target, None]]


class RouteError(ValueError):
    """No route: an alias loop or chain too deep, or no enabled provider for the model."""


@dataclass(frozen=True)
class Route:
    """The chosen (provider, model) and every candidate in fallback order (first = the choice)."""

    provider: str
    model: str
    candidates: tuple[tuple[str, str], ...]
    via: str = ""  # the step that decided: explicit, alias, scenario, models, default, bound


@dataclass(frozen=True)
class _Context:
    by_name: dict        # lower-cased name → Provider
    order: tuple         # enabled providers by priority, then config order
    aliases: dict
    casing: dict         # lower-cased model id → configured spelling
    route_kind: str
    bound: str | None
    default: str
    scenario: Scenario | None


def resolve(model: str, *, route_kind: str, bound: str | None, providers: tuple[Provider, ...],
            aliases: dict, default: str, scenario: Scenario | None = None,
            known: Iterable[str] = (), rand: float = 0.0) -> Route:
    """Resolve a requested model name to a Route; RouteError when there is none.

    `route_kind` is the request's dialect (anthropic, openai, gemini), handed to `scenario`;
    `bound` the provider of a bound route, else None; `default` the open route's default
    provider. `known` adds model ids whose casing `provider,model` restores (router targets,
    upstream model lists) to the `models` entries and aliases. `rand` in [0, 1) draws a group's
    first choice by provider weight (gateway.md §5.2).
    """
    by_name, ordered, casing, routes = _tables(providers, aliases, tuple(known))
    key = (model, route_kind, bound, default)
    if scenario is None:  # without a scenario hook the answer depends on the config alone
        hit = routes.get(key)
        if hit is not None:
            return hit
    ctx = _Context(by_name, ordered, aliases, casing, route_kind, bound, default, scenario)
    pairs, via, group = _name(ctx, model, (), scenario_ok=True)
    pairs = _usable(ctx, pairs, model)
    if group:
        pairs = _rank(ctx, pairs, rand)
    route = Route(pairs[0][0], pairs[0][1], tuple(pairs), via)
    if scenario is None and not group:  # a group's first choice is drawn afresh each time
        if len(routes) >= ROUTES_CACHED:
            routes.clear()
        routes[key] = route
    return route


_TABLES: dict = {}  # (id(providers), id(aliases), known) → (providers, aliases, tables); holds both alive


def _tables(providers: tuple, aliases: dict, known: tuple) -> tuple:
    """By-name map, priority order, casing and resolved routes of a provider set: built once per
    config, not per request.

    Providers are frozen and a config change brings new objects, so identity is the cache key; the
    entry keeps its objects alive, so an id cannot be reused while it is cached.
    """
    key = (id(providers), id(aliases), known)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is providers and hit[1] is aliases:
        return hit[2]
    ordered = tuple(sorted((p for p in providers if p.enabled), key=lambda p: p.priority))  # stable
    tables = ({p.name.lower(): p for p in providers}, ordered, _casing(providers, aliases, known), {})
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[key] = (providers, aliases, tables)
    return tables


def _name(ctx: _Context, name: str, path: tuple, *, scenario_ok: bool) -> tuple[list, str, bool]:
    """([(provider, model)], via, is_group) for one name: steps 1–5."""
    explicit = split_explicit(name, ctx.by_name, ctx.casing)
    if explicit is not None:
        return [explicit], "explicit", False
    members = alias_members(ctx.aliases, name, path)
    if members is not None:
        pairs, _, group = _members(ctx, members, (*path, name), scenario_ok=scenario_ok)
        return pairs, "alias", group
    if ctx.bound is not None:
        return [(ctx.bound, name)], "bound", False
    choice = ctx.scenario(name, ctx.route_kind) if scenario_ok and ctx.scenario else None
    if choice is not None:
        pairs, _, group = _members(ctx, _as_members(choice), path, scenario_ok=False)
        return pairs, "scenario", group
    matches = [(p.name, name) for p in ctx.order if any(fnmatchcase(name, g) for g in p.models)]
    if matches:
        return matches, "models", False
    return [(ctx.default, name)], "default", False


def _members(ctx: _Context, members: list, path: tuple, *, scenario_ok: bool) -> tuple[list, str, bool]:
    """A target's pairs: one member resolved, or a group's members flattened without repeats."""
    if len(members) == 1:
        return _name(ctx, members[0], path, scenario_ok=scenario_ok)
    pairs: list = []
    for member in members:
        for pair in _name(ctx, member, path, scenario_ok=scenario_ok)[0]:
            if pair not in pairs:
                pairs.append(pair)
    return pairs, "group", True


def _usable(ctx: _Context, pairs: list, model: str) -> list:
    """The pairs whose provider exists and is enabled, spelled as configured; else RouteError."""
    out = []
    for name, upstream in pairs:
        provider = ctx.by_name.get(name.lower())
        if provider is not None and provider.enabled and (provider.name, upstream) not in out:
            out.append((provider.name, upstream))
    if out:
        return out
    missing = sorted({name for name, _ in pairs})
    raise RouteError(f"no enabled provider for model {model!r} (tried {', '.join(missing)})")


def _rank(ctx: _Context, pairs: list, rand: float) -> list:
    """A group's pairs: first the weighted draw of the best tier, then the rest by tier.

    As in the key pool, weight-0 providers are a reserve, ranked after every positive one.
    """
    def tier(pair):
        provider = ctx.by_name[pair[0].lower()]
        return provider.weight == 0, provider.priority

    ranked = sorted(pairs, key=tier)
    best = [pair for pair in ranked if tier(pair) == tier(ranked[0])]
    chosen = best[weighted_choice([ctx.by_name[p.lower()].weight for p, _ in best], rand)]
    return [chosen, *(pair for pair in ranked if pair != chosen)]


# ── explicit names and aliases (shared with check_aliases) ──────────────────────────────────


def split_explicit(name: str, by_name: dict, casing: dict | None = None) -> tuple[str, str] | None:
    """(provider, model) when `name` starts with a configured provider and `,` or `/`, else None."""
    for separator in (",", "/"):
        prefix, found, model = name.partition(separator)
        provider = by_name.get(prefix.lower()) if found and model else None
        if provider is not None:
            # Claude Code lower-cases `/model provider,model`; only that form gets casing back
            if separator == "," and casing:
                model = casing.get(model.lower(), model)
            return provider.name, model
    return None


def alias_members(aliases: dict, name: str, path: tuple) -> list | None:
    """The members of alias `name` (None when it is not a usable alias); RouteError on loops."""
    target = aliases.get(name) if isinstance(name, str) else None
    members = _as_members(target) if target is not None else None
    if not members:
        return None
    if name in path:
        raise RouteError(f"alias loop: {' → '.join((*path, name))}")
    if len(path) >= MAX_ALIAS_DEPTH:
        raise RouteError(f"alias chain deeper than {MAX_ALIAS_DEPTH} levels: "
                         f"{' → '.join((*path, name))}")
    return members


def _as_members(target) -> list | None:
    """A target as a list of names; None when it is neither a string nor a list of strings."""
    if isinstance(target, str) and target:
        return [target]
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, str) and t for t in target):
        return list(target)
    return None


def _casing(providers: tuple, aliases: dict, known: Iterable[str]) -> dict:
    """Lower-cased model id → its configured spelling (first seen wins)."""
    spellings = [m for p in providers for m in p.models if not any(c in m for c in GLOB_CHARS)]
    for target in aliases.values():  # targets name upstream models; alias keys do not
        for text in _as_members(target) or ():
            spellings.append(text)
            spellings += [text.partition(sep)[2] for sep in (",", "/") if sep in text]
    spellings += list(known)
    out: dict = {}
    for text in spellings:
        if isinstance(text, str) and text:
            out.setdefault(text.lower(), text)
    return out


def check_aliases(aliases: dict, providers: tuple[Provider, ...] = ()) -> list[str]:
    """Config errors of `[aliases]`: bad targets, loops, chains deeper than MAX_ALIAS_DEPTH."""
    by_name = {p.name.lower(): p for p in providers}
    errors = []
    for name, target in aliases.items():
        if _as_members(target) is None:
            errors.append(f"aliases.{name}: expected a model name or an array of model names")
            continue
        try:
            _walk(aliases, name, (), by_name)
        except RouteError as exc:
            errors.append(f"aliases.{name}: {exc}")
    return errors


def _walk(aliases: dict, name: str, path: tuple, by_name: dict) -> None:
    """Follow every alias chain from `name` as resolve() would; RouteError on the first problem."""
    if split_explicit(name, by_name) is not None:
        return
    for member in alias_members(aliases, name, path) or ():
        _walk(aliases, member, (*path, name), by_name)
