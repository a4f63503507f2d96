"""Vertex AI: JWT assertion, pure-Python RS256 against `cryptography`, tokens, URLs (gemini.md §5)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clewdr_lite.protocol import vertex as vx

rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402

NOW = 1_760_000_000.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private_key, fmt) -> str:
    return private_key.private_bytes(serialization.Encoding.PEM, fmt,
                                     serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def pkcs8(key) -> str:
    return pem(key, serialization.PrivateFormat.PKCS8)


@pytest.fixture(scope="module")
def pkcs1(key) -> str:
    return pem(key, serialization.PrivateFormat.TraditionalOpenSSL)


@pytest.fixture(scope="module")
def credential(pkcs8) -> dict:
    """A service-account JSON as Google hands it out."""
    return {"type": "service_account", "project_id": "my-project-123",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567", "private_key": pkcs8,
            "client_email": "Proxy@My-Project-123.iam.gserviceaccount.com", "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com"}


def verify(private_key, signature: bytes, message: bytes) -> None:
    private_key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# ----------------------------------------------------------------- DER builder for bad keys


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def der_int(value: int) -> bytes:
    return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def rsa_der(numbers: list[int], version: int = 0) -> bytes:
    return der(0x30, b"".join(der_int(v) for v in [version, *numbers]))


def pkcs8_der(inner: bytes, oid: bytes = bytes.fromhex("2a864886f70d010101")) -> bytes:
    algorithm = der(0x30, der(0x06, oid) + der(0x05, b""))
    return der(0x30, der_int(0) + algorithm + der(0x04, inner))


def to_pem(data: bytes, label: str) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def numbers_of(private_key) -> list[int]:
    nums = private_key.private_numbers()
    pub = nums.public_numbers
    return [pub.n, pub.e, nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp]


# ----------------------------------------------------------------- the pure signer


@pytest.mark.parametrize("message", [b"", b"header.claims", bytes(range(256)) * 40])
def test_pure_signature_equals_cryptography_byte_for_byte(key, pkcs8, message):
    ours = vx.rsa_sign_pkcs1v15_sha256(pkcs8, message)
    assert len(ours) == 256
    verify(key, ours, message)
    assert ours == key.sign(message, padding.PKCS1v15(), hashes.SHA256())  # PKCS#1 v1.5 is deterministic


def test_pkcs1_and_pkcs8_pems_give_the_same_key(key, pkcs1, pkcs8):
    assert "BEGIN RSA PRIVATE KEY" in pkcs1 and "BEGIN PRIVATE KEY" in pkcs8
    assert vx.parse_private_key(pkcs1) == vx.parse_private_key(pkcs8)
    assert list(vx.parse_private_key(pkcs8)) == numbers_of(key)
    signature = vx.rsa_sign_pkcs1v15_sha256(pkcs1, b"x")
    verify(key, signature, b"x")


def test_other_key_sizes_and_exponents():
    for size, exponent in ((1024, 65537), (3072, 3), (1030, 65537)):
        other = rsa.generate_private_key(public_exponent=exponent, key_size=size)
        text = pem(other, serialization.PrivateFormat.PKCS8)
        signature = vx.rsa_sign_pkcs1v15_sha256(text, b"payload")
        assert len(signature) == (other.key_size + 7) // 8
        assert signature == other.sign(b"payload", padding.PKCS1v15(), hashes.SHA256())


def test_pem_pasted_with_literal_backslash_n(key, pkcs8):
    flattened = pkcs8.replace("\n", "\\n")  # a JSON string copied into TOML without unescaping
    verify(key, vx.rsa_sign_pkcs1v15_sha256(flattened, b"m"), b"m")
    assert vx.parse_private_key(f"junk before\n{pkcs8}junk after") == vx.parse_private_key(pkcs8)


def test_emsa_encoding_layout():
    em = vx.emsa_pkcs1_v15_sha256(b"abc", 256)
    digest = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert em[:2] == b"\x00\x01" and len(em) == 256
    assert em.endswith(bytes.fromhex("3031300d060960864801650304020105000420") + digest)
    assert set(em[2:256 - 51 - 1]) == {0xFF} and em[256 - 52] == 0
    with pytest.raises(ValueError):
        vx.emsa_pkcs1_v15_sha256(b"abc", 61)


def bad_pems(key) -> dict[str, str]:
    nums = numbers_of(key)
    n, e, d, p, q, dp, dq, qinv = nums
    ec_key = ec.generate_private_key(ec.SECP256R1())
    good = to_pem(pkcs8_der(rsa_der(nums)), "PRIVATE KEY")
    return {
        "empty": "",
        "no pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "bad base64": "-----BEGIN PRIVATE KEY-----\nMIIE!!!!\n-----END PRIVATE KEY-----\n",
        "mismatched labels": good.replace("END PRIVATE KEY", "END RSA PRIVATE KEY"),
        "truncated": to_pem(pkcs8_der(rsa_der(nums))[:-40], "PRIVATE KEY"),
        "trailing bytes": to_pem(pkcs8_der(rsa_der(nums)) + b"\x00", "PRIVATE KEY"),
        "ec key": pem(ec_key, serialization.PrivateFormat.PKCS8),
        "ec key as rsa oid": to_pem(pkcs8_der(b"\x30\x03\x02\x01\x01"), "PRIVATE KEY"),
        "encrypted": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw")).decode(),
        "encrypted pkcs1": key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.BestAvailableEncryption(b"pw")).decode(),
        "public key": key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "certificate label": good.replace("PRIVATE KEY", "CERTIFICATE"),
        "multi-prime version": to_pem(rsa_der(nums, version=1), "RSA PRIVATE KEY"),
        "too few fields": to_pem(rsa_der(nums[:6]), "RSA PRIVATE KEY"),
        "n is not p*q": to_pem(rsa_der([n + 2, e, d, p, q, dp, dq, qinv]), "RSA PRIVATE KEY"),
        "negative d": to_pem(rsa_der([n, e, -d, p, q, dp, dq, qinv]), "RSA PRIVATE KEY"),
        "wrong outer tag": to_pem(b"\x31" + pkcs8_der(rsa_der(nums))[1:], "PRIVATE KEY"),
        "indefinite length": to_pem(b"\x30\x80" + b"\x00" * 10, "PRIVATE KEY"),
        "octet string wrong tag": to_pem(pkcs8_der(rsa_der(nums)).replace(b"\x04\x82", b"\x03\x82", 1),
                                         "PRIVATE KEY"),
        "tiny modulus": to_pem(rsa_der([3233, 17, 2753, 61, 53, 53, 49, 38]), "RSA PRIVATE KEY"),
    }


def test_malformed_keys_raise_value_error(key):
    for name, text in bad_pems(key).items():
        with pytest.raises(ValueError):
            vx.rsa_sign_pkcs1v15_sha256(text, b"m")
            pytest.fail(f"{name} was accepted")


def test_inconsistent_crt_value_fails_the_self_check(key):
    n, e, d, p, q, dp, dq, qinv = numbers_of(key)
    faulty = to_pem(rsa_der([n, e, d, p, q, dp ^ 2, dq, qinv]), "RSA PRIVATE KEY")
    with pytest.raises(ValueError, match="self-check"):
        vx.rsa_sign_pkcs1v15_sha256(faulty, b"m")


def test_parsed_keys_are_cached(pkcs8):
    vx.parse_private_key.cache_clear()
    vx.rsa_sign_pkcs1v15_sha256(pkcs8, b"a")
    vx.rsa_sign_pkcs1v15_sha256(pkcs8, b"b")
    info = vx.parse_private_key.cache_info()
    assert (info.hits, info.misses) == (1, 1)


# ----------------------------------------------------------------- default_signer


def test_default_signer_uses_cryptography(key, pkcs8):
    signer = vx.default_signer(pkcs8)
    assert not hasattr(signer, "func")  # not the functools.partial of the pure signer
    assert signer(b"m") == vx.rsa_sign_pkcs1v15_sha256(pkcs8, b"m")


def test_default_signer_falls_back_to_pure_python(monkeypatch, key, pkcs8):
    vx._cryptography_key.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.serialization", None)
    signer = vx.default_signer(pkcs8)
    assert signer.func is vx.rsa_sign_pkcs1v15_sha256
    verify(key, signer(b"m"), b"m")
    with pytest.raises(ValueError):
        vx.default_signer("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")


@pytest.mark.parametrize("name", ["bad base64", "ec key", "encrypted", "public key"])
def test_default_signer_rejects_bad_keys_with_cryptography(key, name):
    with pytest.raises(ValueError):
        vx.default_signer(bad_pems(key)[name])


def test_importing_vertex_does_not_import_cryptography():
    probe = "import sys, clewdr_lite.protocol.vertex; print('cryptography' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------- JWT (§5.3)


def test_jwt_assertion_structure_and_signature(key, credential):
    jwt = vx.jwt_assertion(credential, now=NOW + 0.9, signer=vx.default_signer(credential["private_key"]))
    head, claims, signature = jwt.split(".")
    assert "=" not in jwt and "+" not in jwt and "/" not in jwt
    assert json.loads(b64decode(head)) == {"alg": "RS256", "typ": "JWT",
                                           "kid": "0123456789abcdef0123456789abcdef01234567"}
    assert json.loads(b64decode(claims)) == {
        "iss": "Proxy@My-Project-123.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": "https://oauth2.googleapis.com/token", "iat": int(NOW), "exp": int(NOW) + 3600}
    verify(key, b64decode(signature), f"{head}.{claims}".encode())


def test_jwt_with_the_pure_signer_verifies(key, credential):
    signer = lambda data: vx.rsa_sign_pkcs1v15_sha256(credential["private_key"], data)  # noqa: E731
    head, claims, signature = vx.jwt_assertion(credential, now=NOW, signer=signer).split(".")
    verify(key, b64decode(signature), f"{head}.{claims}".encode())
    with pytest.raises(InvalidSignature):
        verify(key, b64decode(signature), f"{head}.{claims}x".encode())


def test_jwt_custom_token_uri_and_missing_kid(credential):
    cred = {**credential, "token_uri": "http://127.0.0.1:9/token"}
    del cred["private_key_id"]
    head, claims, _ = vx.jwt_assertion(cred, now=NOW, signer=lambda data: b"sig").split(".")
    assert json.loads(b64decode(head)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(b64decode(claims))["aud"] == "http://127.0.0.1:9/token"
    cred.pop("token_uri")
    assert json.loads(b64decode(vx.jwt_assertion(cred, now=NOW, signer=lambda d: b"").split(".")[1]))[
        "aud"] == "https://oauth2.googleapis.com/token"


# ----------------------------------------------------------------- token exchange


def test_token_form():
    assert vx.token_form("a.b.c") == [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                                      ("assertion", "a.b.c")]


@pytest.mark.parametrize("answer, expiry", [
    ({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}, NOW + 3299),
    ({"access_token": "ya29.x", "expires_in": "3600"}, NOW + 3300),
    ({"access_token": "ya29.x"}, NOW + 3300),
    ({"access_token": "ya29.x", "expires_in": 400}, NOW + 200),  # half its life beats 100 s
    ({"access_token": "ya29.x", "expires_in": "soon"}, NOW + 3300),
])
def test_token_cache_expiry(answer, expiry):
    assert vx.token_cache_expiry(answer, now=NOW) == pytest.approx(expiry)


@pytest.mark.parametrize("status, body, disables", [
    (400, b'{"error":"invalid_grant","error_description":"Invalid JWT Signature."}', True),
    (400, b'{"error":"invalid_grant","error_description":"Invalid grant: account not found"}', True),
    (401, b'{"error":"invalid_client","error_description":"The OAuth client was not found."}', True),
    (400, b'{"error":"invalid_grant","error_description":"Invalid JWT: Token must be a short-lived '
          b'token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT '
          b'claim."}', False),  # our clock, not the account
    (400, b'{"error":"invalid_scope","error_description":"Invalid OAuth scope."}', False),
    (400, b'{"error":"unsupported_grant_type"}', False),
    (500, b'{"error":"invalid_grant"}', False),
    (400, b"<html>Bad Request</html>", False),
    (400, b'["invalid_grant"]', False),
])
def test_token_error_disables(status, body, disables):
    assert vx.token_error_disables(status, body) is disables


# ----------------------------------------------------------------- URLs and bodies (§5.4)


@pytest.mark.parametrize("location, override, host", [
    ("global", None, "https://aiplatform.googleapis.com"),
    ("us-central1", None, "https://us-central1-aiplatform.googleapis.com"),
    ("europe-west4", "", "https://europe-west4-aiplatform.googleapis.com"),
    ("global", "http://127.0.0.1:8123/", "http://127.0.0.1:8123"),
    ("us-east5", "https://mirror.example/vertex//", "https://mirror.example/vertex"),
])
def test_vertex_host(location, override, host):
    assert vx.vertex_host(location, override) == host


@pytest.mark.parametrize("location", ["", "evil.com/x", "us central", "US-CENTRAL1"])
def test_vertex_host_rejects_odd_locations(location):
    with pytest.raises(ValueError):
        vx.vertex_host(location, None)


def test_native_url():
    host = "https://us-central1-aiplatform.googleapis.com"
    assert vx.native_url(host, "my-project", "us-central1", "gemini-2.5-pro", "generateContent",
                         sse=False) == (f"{host}/v1/projects/my-project/locations/us-central1"
                                        "/publishers/google/models/gemini-2.5-pro:generateContent")
    assert vx.native_url(host, "p", "global", "gemini-2.0-flash-001", "streamGenerateContent", sse=True) == (
        f"{host}/v1/projects/p/locations/global/publishers/google/models/"
        "gemini-2.0-flash-001:streamGenerateContent?alt=sse")
    assert "/models/..%2Fx:countTokens" in vx.native_url(host, "p", "global", "../x", "countTokens",
                                                          sse=False)


def test_openai_url():
    assert vx.openai_url("https://aiplatform.googleapis.com", "my-project", "global") == (
        "https://aiplatform.googleapis.com/v1beta1/projects/my-project/locations/global"
        "/endpoints/openapi/chat/completions")


def categories(threshold: str) -> list[dict]:
    return [{"category": c, "threshold": threshold} for c in (
        "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY")]


def test_openai_body_rewrites_for_vertex():
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
            "frequency_penalty": 0.5, "presence_penalty": 0.1, "seed": 7,
            "response_format": {"type": "json_object"}}
    out = vx.openai_body(body, "off")
    assert out == {"model": "google/gemini-2.5-flash", "messages": body["messages"], "presence_penalty": 0.1,
                   "seed": 7, "response_format": {"type": "json_object"},
                   "extra_body": {"google": {"safety_settings": categories("OFF")}}}
    assert body["model"] == "gemini-2.5-flash" and "frequency_penalty" in body  # input untouched


def test_openai_body_strips_an_existing_google_prefix_once():
    assert vx.openai_body({"model": "google/gemini-2.5-pro"}, "client")["model"] == "google/gemini-2.5-pro"
    assert vx.openai_body({"model": "google/google/x"}, "client")["model"] == "google/google/x"
    assert "model" not in vx.openai_body({}, "client")


def test_openai_body_safety_modes_keep_other_extra_body_fields():
    body = {"model": "m", "extra_body": {"google": {"thinking_config": {"include_thoughts": True},
                                                    "safety_settings": [{"x": 1}]}, "other": 1}}
    out = vx.openai_body(body, "block_none")
    assert out["extra_body"] == {"google": {"thinking_config": {"include_thoughts": True},
                                            "safety_settings": categories("BLOCK_NONE")}, "other": 1}
    assert vx.openai_body(body, "client")["extra_body"] == body["extra_body"]
    assert "extra_body" not in vx.openai_body({"model": "m"}, "client")


def test_openai_body_streams_ask_for_usage():
    out = vx.openai_body({"model": "m", "stream": True, "stream_options": {"x": 1}}, "client")
    assert out["stream_options"] == {"x": 1, "include_usage": True}
    assert vx.openai_body({"model": "m", "stream": True}, "client")["stream_options"] == {"include_usage": True}
    assert "stream_options" not in vx.openai_body({"model": "m", "stream": False}, "client")


# ----------------------------------------------------------------- credentials (§5.1, §5.5)


def test_credential_id_is_the_lower_cased_email(credential):
    assert vx.credential_id(credential) == "proxy@my-project-123.iam.gserviceaccount.com"
    assert vx.credential_id({}) == ""


def test_validate_credential(credential):
    assert vx.validate_credential(credential) == []
    assert vx.validate_credential({"private_key": "x"}) == ["client_email", "project_id"]
    assert vx.validate_credential({**credential, "client_email": "  "}) == ["client_email"]
    assert vx.validate_credential({**credential, "project_id": 5}) == ["project_id"]
    assert vx.validate_credential("nope") == ["client_email", "project_id", "private_key"]


def test_public_view_never_shows_the_private_key(credential):
    view = vx.public_view(credential)
    assert view == {"client_email": credential["client_email"], "project_id": "my-project-123",
                    "private_key_id": credential["private_key_id"]}
    assert "PRIVATE KEY" not in json.dumps(view)
