"""Vertex AI: service-account JWT, a pure-Python RS256 signer, token answers, URLs (gemini.md §5).

The signer exists for Termux, where `cryptography` may not build; `default_signer` prefers
`cryptography` when it imports, and imports it only when called (DESIGN.md §5.11).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from typing import Any, Callable, NamedTuple
from urllib.parse import quote
from .gemini import SAFETY_CATEGORIES  # one table for both Gemini surfaces (gemini.md §7)

TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 3600
TOKEN_MARGIN_S = 300
DEFAULT_TOKEN_LIFETIME_S = 3600
GLOBAL_HOST = "https://aiplatform.googleapis.com"
REQUIRED_FIELDS = ("client_email", "project_id", "private_key")
PUBLIC_FIELDS = ("client_email", "project_id", "private_key_id")
# gemini_safety mode -> threshold written for every category (§7); "client" writes nothing
SAFETY_THRESHOLDS = {"off": "OFF", "block_none": "BLOCK_NONE"}
# token endpoint errors that mean the account or its key is gone (§5.3)
DISABLING_TOKEN_ERRORS = frozenset({"invalid_grant", "invalid_client"})
# ...except the invalid_grant Google sends for a wrong local clock, which is not the account's fault
_CLOCK_SKEW = "reasonable timeframe"

_LOCATION_RE = re.compile(r"^[a-z0-9-]+$")
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
# DER tags
_INTEGER, _OCTET_STRING, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # OID 1.2.840.113549.1.1.1
# DER of DigestInfo{sha256, NULL} followed by the OCTET STRING header of the 32-byte hash (RFC 8017)
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class RsaKey(NamedTuple):
    """The fields of a PKCS#1 RSAPrivateKey."""

    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int


# ----------------------------------------------------------------- JWT (§5.3)

def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def jwt_assertion(credential: dict, *, now: float, signer: Callable[[bytes], bytes]) -> str:
    """The RS256 JWT a service account trades for an access token."""
    header = {"alg": "RS256", "typ": "JWT"}
    if credential.get("private_key_id"):
        header["kid"] = str(credential["private_key_id"])
    iat = int(now)
    claims = {"iss": credential["client_email"], "scope": SCOPE,
              "aud": credential.get("token_uri") or TOKEN_URI, "iat": iat, "exp": iat + JWT_LIFETIME_S}
    signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode('ascii')))}"


# ----------------------------------------------------------------- PEM and DER

def normalise_pem(pem: str) -> str:
    """Turn literal `\\n` pairs (a key pasted from JSON into TOML) back into newlines."""
    return pem.replace("\\n", "\n")


def _pem_der(pem: str) -> tuple[str, bytes]:
    """(label, DER bytes) of the first PEM block."""
    match = _PEM_RE.search(normalise_pem(pem))
    if not match:
        raise ValueError("private_key holds no PEM block")
    try:
        der = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("private_key PEM is not valid base64 (an encrypted key?)") from exc
    return match.group(1), der


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > len(data):  # 0 = BER indefinite length
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:pos + length], pos + length


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """Every (tag, content) inside a constructed value, in order."""
    items, pos = [], 0
    while pos < len(data):
        tag, content, pos = _der_read(data, pos)
        items.append((tag, content))
    return items


def _der_whole(data: bytes, tag: int) -> bytes:
    """The content of `data`, which must be exactly one element with `tag`."""
    found, content, end = _der_read(data, 0)
    if found != tag or end != len(data):
        raise ValueError("unexpected DER structure")
    return content


def _expect(item: tuple[int, bytes], tag: int) -> bytes:
    if item[0] != tag:
        raise ValueError(f"DER tag {item[0]:#x} where {tag:#x} was expected")
    return item[1]


def _der_int(item: tuple[int, bytes]) -> int:
    content = _expect(item, _INTEGER)
    if not content:
        raise ValueError("empty DER INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _pkcs8_inner(der: bytes) -> bytes:
    """The RSAPrivateKey DER inside a PKCS#8 PrivateKeyInfo."""
    items = _der_items(_der_whole(der, _SEQUENCE))
    if len(items) < 3 or _der_int(items[0]) not in (0, 1):
        raise ValueError("not a PKCS#8 PrivateKeyInfo")
    algorithm = _der_items(_expect(items[1], _SEQUENCE))
    if not algorithm or algorithm[0] != (_OID, _RSA_ENCRYPTION):
        raise ValueError("not an RSA private key")
    if len(algorithm) > 1 and algorithm[1] != (_NULL, b""):
        raise ValueError("unexpected rsaEncryption parameters")
    return _expect(items[2], _OCTET_STRING)


def _rsa_private_key(der: bytes) -> RsaKey:
    """n, e, d, p, q, dP, dQ, qInv of a two-prime PKCS#1 RSAPrivateKey, sanity-checked."""
    items = _der_items(_der_whole(der, _SEQUENCE))
    if len(items) < 9:
        raise ValueError("RSAPrivateKey is missing fields")
    version, *numbers = [_der_int(item) for item in items[:9]]
    if version != 0:
        raise ValueError("multi-prime RSA keys are not supported")
    key = RsaKey(*numbers)
    if min(key) <= 0 or key.p * key.q != key.n or key.e % 2 == 0 or key.d >= key.n:
        raise ValueError("inconsistent RSA private key")
    return key


@functools.lru_cache(maxsize=32)
def parse_private_key(pem: str) -> RsaKey:
    """Parse a PKCS#8 (BEGIN PRIVATE KEY) or PKCS#1 (BEGIN RSA PRIVATE KEY) PEM; ValueError if bad."""
    label, der = _pem_der(pem)
    if label == "PRIVATE KEY":
        return _rsa_private_key(_pkcs8_inner(der))
    if label == "RSA PRIVATE KEY":
        return _rsa_private_key(der)
    raise ValueError(f"unsupported PEM block {label!r} (an unencrypted RSA key is needed)")


# ----------------------------------------------------------------- RSASSA-PKCS1-v1_5

def emsa_pkcs1_v15_sha256(message: bytes, length: int) -> bytes:
    """EM = 00 01 FF…FF 00 || DigestInfo || SHA-256(message), `length` bytes (RFC 8017 §9.2)."""
    tail = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    if length < len(tail) + 11:
        raise ValueError("RSA modulus too short for SHA-256")
    return b"\x00\x01" + b"\xff" * (length - len(tail) - 3) + b"\x00" + tail


def rsa_sign_pkcs1v15_sha256(private_key_pem: str, message: bytes) -> bytes:
    """RS256 signature of `message` in pure Python (CRT), checked with the public key before use."""
    key = parse_private_key(private_key_pem)
    length = (key.n.bit_length() + 7) // 8
    m = int.from_bytes(emsa_pkcs1_v15_sha256(message, length), "big")
    m1, m2 = pow(m, key.dp, key.p), pow(m, key.dq, key.q)
    s = m2 + (key.qinv * (m1 - m2) % key.p) * key.q
    # a wrong CRT value (corrupt key, fault) would otherwise leak a factor of n (Boneh–DeMillo–Lipton)
    if pow(s, key.e, key.n) != m:
        raise ValueError("RSA signature failed its self-check: the private key is inconsistent")
    return s.to_bytes(length, "big")


@functools.lru_cache(maxsize=32)
def _cryptography_key(pem: str) -> Any:
    """The key loaded by `cryptography` (ImportError when it is not installed)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (TypeError, ValueError) as exc:  # TypeError: an encrypted key
        raise ValueError(f"bad private_key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private_key is not an RSA key")
    return key


def default_signer(private_key_pem: str) -> Callable[[bytes], bytes]:
    """An RS256 signer: `cryptography` when importable, else the pure-Python one; ValueError if bad."""
    pem = normalise_pem(private_key_pem)
    try:
        key = _cryptography_key(pem)
    except ImportError:
        parse_private_key(pem)  # fail now, not at the first signature
        return functools.partial(rsa_sign_pkcs1v15_sha256, pem)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


# ----------------------------------------------------------------- token exchange

def token_form(assertion: str) -> list[tuple[str, str]]:
    """The form fields of the JWT bearer exchange."""
    return [("grant_type", JWT_BEARER), ("assertion", assertion)]


def token_cache_expiry(answer: dict, *, now: float) -> float:
    """When a cached token stops being used: 300 s before it expires (half its life if shorter)."""
    try:
        lifetime = float(answer.get("expires_in", DEFAULT_TOKEN_LIFETIME_S))
    except (TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    return now + max(lifetime - TOKEN_MARGIN_S, lifetime / 2)


def token_error_disables(status: int, body: bytes) -> bool:
    """True when the token endpoint says the credential itself is bad (invalid_grant/invalid_client)."""
    if not 400 <= status < 500:
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or data.get("error") not in DISABLING_TOKEN_ERRORS:
        return False
    return _CLOCK_SKEW not in str(data.get("error_description", "")).lower()


# ----------------------------------------------------------------- URLs and bodies (§5.4)

def vertex_host(location: str, override: str | None) -> str:
    """`https://{host}` for a location, or the `vertex_base` override without a trailing slash."""
    if override:
        return override.rstrip("/")
    if not _LOCATION_RE.match(location or ""):
        raise ValueError(f"bad vertex_location {location!r}")
    if location == "global":
        return GLOBAL_HOST
    return f"https://{location}-aiplatform.googleapis.com"


def _seg(value: str) -> str:
    return quote(str(value), safe="")  # one path segment: a model named "../x" stays one segment


def native_url(host: str, project: str, location: str, model: str, method: str, *, sse: bool) -> str:
    """The native generate / stream / count URL of a publisher model."""
    url = (f"{host}/v1/projects/{_seg(project)}/locations/{_seg(location)}"
           f"/publishers/google/models/{_seg(model)}:{_seg(method)}")
    return url + "?alt=sse" if sse else url


def openai_url(host: str, project: str, location: str) -> str:
    """The OpenAI-compatible chat completions URL."""
    return (f"{host}/v1beta1/projects/{_seg(project)}/locations/{_seg(location)}"
            "/endpoints/openapi/chat/completions")


def safety_settings(mode: str) -> list[dict] | None:
    """The five categories at the mode's threshold, or None for "client" (§7)."""
    if mode == "client":
        return None
    threshold = SAFETY_THRESHOLDS.get(mode, "OFF")
    return [{"category": category, "threshold": threshold} for category in SAFETY_CATEGORIES]


def openai_body(body: dict, safety_mode: str) -> dict:
    """The client's OpenAI body with the Vertex edits of §5.4 and §6 (a new dict)."""
    out = dict(body)
    if isinstance(out.get("model"), str):
        out["model"] = "google/" + out["model"].removeprefix("google/")
    out.pop("frequency_penalty", None)  # ClewdR: Vertex rejected it for Gemini models
    settings = safety_settings(safety_mode)
    if settings is not None:
        extra = out.get("extra_body") if isinstance(out.get("extra_body"), dict) else {}
        google = extra.get("google") if isinstance(extra.get("google"), dict) else {}
        out["extra_body"] = {**extra, "google": {**google, "safety_settings": settings}}
    if out.get("stream"):
        options = out.get("stream_options") if isinstance(out.get("stream_options"), dict) else {}
        out["stream_options"] = {**options, "include_usage": True}
    return out


# ----------------------------------------------------------------- credentials (§5.1, §5.5)

def credential_id(cred: dict) -> str:
    """A service account's identity: its client_email, lower-cased."""
    return str(cred.get("client_email") or "").strip().lower()


def validate_credential(cred: Any) -> list[str]:
    """The required fields that are missing or empty (client_email first)."""
    if not isinstance(cred, dict):
        return list(REQUIRED_FIELDS)
    return [name for name in REQUIRED_FIELDS if not isinstance(cred.get(name), str) or not cred[name].strip()]


def public_view(cred: dict) -> dict:
    """What the admin API shows of a service account: never the private key."""
    return {name: cred.get(name) for name in PUBLIC_FIELDS}
