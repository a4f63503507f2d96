"""The tomlkit side of clewdr.toml: the document with its comments, and edits made in place.

Imported only when the file is written or cannot be read by tomllib: reading needs none of it,
and tomlkit with a parsed document is about a megabyte that an idle gateway does not need.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AoT, Array, Comment, InlineTable, Table, Whitespace

from clewdr_lite.config import DEFAULTS
from clewdr_lite.config_file import ConfigError, DEFAULT_TOML, decode

# The field that tells two entries of an array of tables apart
_IDENTITY_FIELDS = ("cookie", "key", "client_email", "name", "id")


def template() -> tomlkit.TOMLDocument:
    """The commented default document (tens of ms to parse: only when a file is written)."""
    return tomlkit.parse(DEFAULT_TOML)


def parse_text(path: Path, data: bytes) -> tomlkit.TOMLDocument:
    """The tomlkit document of a file's bytes; ConfigError with the line and column."""
    text = decode(path, data)
    try:
        doc = tomlkit.parse(text)
        doc.unwrap()  # some structural errors only show when the values are built
    except ParseError as exc:
        raise ConfigError(path, str(exc), exc.line, exc.col) from None
    except (TOMLKitError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from None
    return doc


# ── in-place document edits ─────────────────────────────────────────────────────────────────


def apply(doc, key: str, value) -> bool:
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
        _add(container, key, _table(value, header=True) if top
             else _inline_item(value) if isinstance(container, InlineTable) else _item(value, None))
        return True
    if _unwrap(old) == value:
        return False
    if isinstance(value, dict) and isinstance(old, (Table, InlineTable)):
        _sync_table(old, value)
    elif isinstance(old, AoT) and _is_records(value):
        _sync_records(old, value, lambda entry: _table(entry, header=True))
    elif _inline_records(old) and _is_records(value):
        _sync_records(old, value, _inline, lambda tables: _replace(container, key, tables))
    else:
        container[key] = _inline_item(value) if isinstance(container, InlineTable) else _item(value, old)
    return True


def _sync_table(table, value: dict) -> None:
    for key in [k for k in table if k not in value]:
        del table[key]
    for key, item in value.items():
        _sync_key(table, key, item)


def _sync_records(seq, entries: list[dict], make, reorder=None) -> None:
    """Update an array of tables, or an array of inline tables, in place: each entry's table (with
    its comments) is found by identity and only its changed keys are edited, so a pool save costs
    what changed, not a rebuild of every entry. `make` builds a table for a new entry; `reorder`
    (default: empty `seq` and append) puts the tables in the entries' order."""
    old_ids = [_identity(t) for t in seq]
    if old_ids == [_identity(e) for e in entries[: len(old_ids)]]:
        # the same entries, maybe new ones at the end
        for table, entry in zip(seq, entries):
            _sync_table(table, entry)
        for entry in entries[len(old_ids):]:
            seq.append(make(entry))
        return
    spare = {ident: table for ident, table in zip(old_ids, seq) if ident is not None}
    tables = []
    for entry in entries:
        table = spare.pop(_identity(entry), None)
        if table is None:
            table = make(entry)
        else:
            _sync_table(table, entry)
        tables.append(table)
    if reorder is not None:
        reorder(tables)
        return
    while len(seq):
        del seq[0]
    for table in tables:
        seq.append(table)


def _inline_records(item) -> bool:
    return isinstance(item, Array) and bool(item) and all(isinstance(v, InlineTable) for v in item)


def _replace(container, key: str, tables: list) -> None:
    """A multi-line array of the given inline tables in place of container[key]."""
    array = tomlkit.array().multiline(True)
    array.extend(tables)
    container[key] = array


def _identity(entry) -> tuple | None:
    for name in _IDENTITY_FIELDS:
        if name in entry:
            return (name, _unwrap(entry[name]))
    return None


def _add(container, key: str, item) -> None:
    """Add a new key under its commented-out example, else after the last plain key."""
    body = container if isinstance(container, Container) else container.value
    if isinstance(container, InlineTable):
        # append() spaces the key as tomlkit writes; the blank a file's `{ a = 1 }` closes with
        # stays last (else the new key would follow it: `{ a = 1,  b = 2}`)
        items = body.body
        last = items[-1] if items else (None, None)
        closing = items.pop()[1] if last[0] is None and isinstance(last[1], Whitespace) \
            and not last[1].s.strip() else None
        container.append(key, item)
        if closing is not None:
            container.append(None, closing)
        return
    at = None
    if not isinstance(item, (Table, AoT)):
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
        table.append(key, _inline_item(item))
    return table


def _inline_item(value):
    """A tomlkit item for a value inside an inline table (no [table] headers can go there)."""
    if isinstance(value, dict):
        return _inline(value)
    if _is_records(value):
        array = tomlkit.array()
        array.extend(_inline(v) for v in value)
        return array
    return tomlkit.item(value)


def _nested(value: dict) -> bool:
    return any(isinstance(v, (dict, list)) for v in value.values())


def _is_records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _unwrap(item):
    return item.unwrap() if hasattr(item, "unwrap") else item
