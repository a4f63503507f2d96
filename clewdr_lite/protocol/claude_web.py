"""Messages → claude.ai web: prompt flattening (claude-web.md §7) and the request bodies (§6).

The whole chat goes to claude.ai as one `paste.txt` attachment; images and PDFs are uploaded
separately. Account logic lives in claude_web_account.py, stream logic in claude_web_stream.py.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import BadRequest
# re-exported: the web upstream's pure logic in one namespace, the parts in their own modules
from .claude_web_account import (  # noqa: F401
    Bootstrap, Reason, check_flags, choose_org, mask_log, mask_ui, parse_cookie, read_bootstrap,
    reason_from_toml, reason_parts, reason_text, reason_to_toml,
)
from .claude_web_stream import RawEvents, WebEvents  # noqa: F401
from .model_rules import split_model_suffixes
from .sse import dumps

SEP_REAL_ROLES = "\n\n\x08"  # the backspace keeps claude.ai from reading labels as turn markers
SEP_PLAIN = "\n\n"
DEFAULT_H, DEFAULT_A, SYSTEM_LABEL = "Human", "Assistant", "System"
DEFAULT_TIMEZONE = "America/New_York"
WEB_SEARCH_TOOL = {"name": "web_search", "type": "web_search_v0"}
# §6.3: upload file name by MIME type (the part before `;`, case-insensitive)
UPLOAD_NAMES = {
    "image/png": "image.png", "image/jpeg": "image.jpg", "image/jpg": "image.jpg",
    "image/gif": "image.gif", "image/webp": "image.webp", "application/pdf": "document.pdf",
}
_THINKING_TYPES = ("enabled", "adaptive")


class Attachment(NamedTuple):
    """A file to upload before the completion: base64 data and the name claude.ai gets."""

    media_type: str
    data_b64: str
    name: str


class Flattened(NamedTuple):
    """The flattened prompt, the files to upload, external image URLs, and warnings to log."""

    text: str
    files: list[Attachment]
    urls: list[str]
    warnings: list[str]


def upload_name(mime: str) -> str:
    """The upload file name for a MIME type; `file` for anything unknown."""
    return UPLOAD_NAMES.get(mime.split(";", 1)[0].strip().lower(), "file")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:<type>[;params];base64,<data>` → (media type, base64 data); None otherwise."""
    if not url.startswith("data:"):
        return None
    head, comma, data = url[5:].partition(",")
    params = head.split(";")
    if not comma or "base64" not in (p.strip().lower() for p in params[1:]):
        return None
    media_type = params[0].strip().lower() or "application/octet-stream"
    return ("image/jpeg" if media_type == "image/jpg" else media_type), data


class _Collector:
    """Walks one request's blocks: collects text pieces, files, URLs and warnings."""

    def __init__(self, sanitize: bool) -> None:
        self.sanitize = sanitize
        self.files: list[Attachment] = []
        self.urls: list[str] = []
        self.warnings: list[str] = []

    def add_file(self, media_type: str, data: str) -> None:
        """Queue a base64 file for upload."""
        self.files.append(Attachment(media_type, data, upload_name(media_type)))

    def add_url(self, url: str, what: str) -> None:
        """An http(s) URL for the caller, a data URL as a file, anything else a warning."""
        if url.startswith(("http://", "https://")):
            self.urls.append(url)  # the caller downloads these only if allow_external_images
            return
        found = parse_data_url(url)
        if found:
            self.add_file(*found)
        else:
            self.warnings.append(f"{what} with an unsupported URL dropped")

    def source(self, source, what: str) -> str:
        """Collect a base64 / URL source; return its text for a text document source."""
        kind = source.get("type") if isinstance(source, dict) else None
        if kind == "base64":
            self.add_file(str(source.get("media_type") or ""), str(source.get("data") or ""))
        elif kind == "url" and isinstance(source.get("url"), str):
            self.add_url(source["url"], what)
        elif kind == "text":
            return str(source.get("data") or "")
        elif kind == "content":
            return self.join(source.get("content"))
        elif kind == "file":
            self.warnings.append(f"{what} with a `file` source ignored (claude.ai cannot read it)")
        else:
            self.warnings.append(f"{what} with source type {kind!r} dropped")
        return ""

    def block(self, block) -> str | None:
        """The text a block contributes (None: nothing), collecting its files on the way."""
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            return str(block.get("text") or "")
        if kind == "image":
            self.source(block.get("source"), "image")
        elif kind == "image_url":
            url = block.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str):
                self.add_url(url, "image")
        elif kind == "document":
            return self.source(block.get("source"), "document") or None
        elif kind == "tool_use":
            args = dumps(block.get("input", {}))
            return f"[Tool call {block.get('name', '')} id={block.get('id', '')}] {args}"
        elif kind == "tool_result":
            flag = " error" if block.get("is_error") else ""
            body = self.join(block.get("content"))
            return f"[Tool result id={block.get('tool_use_id', '')}{flag}] {body}"
        # thinking, redacted_thinking, server tool blocks …: dropped (§7.2)
        return None

    def join(self, content) -> str:
        """Trimmed text of a string or block list, pieces joined with a newline."""
        if isinstance(content, str):
            return content.strip()
        pieces = []
        for block in content if isinstance(content, list) else []:
            text = self.block(block)
            if text is None:
                continue
            text = text.strip()
            if text or not self.sanitize:  # sanitize_messages: no blank text blocks
                pieces.append(text)
        return "\n".join(pieces)


def system_text(system) -> str:
    """§7.1 step 1: a string, or every element's trimmed `text` joined by newlines; trimmed."""
    if isinstance(system, str):
        return system.strip()
    if isinstance(system, list):
        texts = [b.get("text") for b in system if isinstance(b, dict)]
        return "\n".join(t.strip() for t in texts if isinstance(t, str)).strip()
    return ""


def _folded(messages, collector: _Collector) -> list[tuple[str, str]]:
    """§7.1 steps 2–3: (role, text) per message, empty ones dropped, same roles folded."""
    turns: list[tuple[str, str]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        text = collector.join(msg.get("content"))
        if not text.strip():
            continue
        role = msg.get("role")
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n" + text)
        else:
            turns.append((role, text))
    return turns


def flatten(req: dict, *, custom_h: str | None = None, custom_a: str | None = None,
            use_real_roles: bool = True, sanitize: bool = False) -> Flattened:
    """The request as one prompt text plus the files to upload (claude-web.md §7.1, §7.2)."""
    collector = _Collector(sanitize)
    turns = _folded(req.get("messages") or [], collector)
    if not turns:
        raise BadRequest("Request body is empty")
    labels = {"user": custom_h or DEFAULT_H, "assistant": custom_a or DEFAULT_A,
              "system": SYSTEM_LABEL}
    sep = SEP_REAL_ROLES if use_real_roles else SEP_PLAIN
    system = system_text(req.get("system"))
    if system:
        out = [system]
    else:
        out, turns = [turns[0][1]], turns[1:]  # the first turn goes in without a label
    for role, text in turns:
        out.append(f"{sep}{labels.get(role, labels['user'])}: {text}")
    return Flattened("".join(out), collector.files, collector.urls, collector.warnings)


def thinking_wanted(req: dict) -> bool:
    """Thinking wanted: `thinking.type` enabled or adaptive after the model rules (§6.2)."""
    thinking = req.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in _THINKING_TYPES


def web_search_wanted(req: dict, global_switch: bool) -> bool:
    """On by the global switch, a `web_search*` tool, or OpenAI `web_search_options` (§11)."""
    if global_switch or req.get("web_search_options") is not None:
        return True
    tools = req.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and str(t.get("type") or "").startswith("web_search") for t in tools)


def completion_body(text: str, *, model: str | None, max_tokens: int, rendering_mode: str,
                    custom_prompt: str, timezone: str, web_search: bool,
                    file_uuids: list[str]) -> dict:
    """The completion request body (§6.4); `model` None (non-pro account) omits the key."""
    body = {
        "max_tokens_to_sample": max_tokens,
        "attachments": [{"extracted_content": text, "file_name": "paste.txt", "file_type": "txt",
                         "file_size": len(text.encode("utf-8"))}],
        "files": list(file_uuids),
    }
    if model is not None:
        body["model"] = split_model_suffixes(model)[0]
    body.update({
        "rendering_mode": rendering_mode,
        "prompt": custom_prompt,
        "timezone": timezone,
        "tools": [dict(WEB_SEARCH_TOOL)] if web_search else [],
    })
    return body


def create_body(uuid: str, *, temporary: bool, now_str: str) -> dict:
    """The create-conversation body (§6.1); `now_str` is `YYYY-MM-DD HH:MM:SS` in UTC."""
    return {"uuid": uuid, "name": "" if temporary else f"clewdr-lite-{now_str}",
            "is_temporary": temporary}


def settings_body(thinking: bool) -> dict:
    """The conversation settings body: extended thinking on or off (§6.2)."""
    return {"settings": {"paprika_mode": "extended" if thinking else None}}


def settings_needed(created, thinking: bool) -> bool:
    """False when the create answer's `paprika_mode` already matches (absent counts as null)."""
    settings = created.get("settings") if isinstance(created, dict) else None
    current = settings.get("paprika_mode") if isinstance(settings, dict) else None
    return current != settings_body(thinking)["settings"]["paprika_mode"]
