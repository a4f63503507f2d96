"""Google's OAuth token endpoint as the fake serves it: JWT bearer grants from service accounts (gemini.md §5.3)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.gemini_state import AccessToken, Recorded, ServiceAccount

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_LIFETIME = 3599  # what Google answers as expires_in
MAX_JWT_LIFETIME = 3600
SKEW = 60  # seconds iat may differ from the fake's clock
BAD_SIGNATURE = "Invalid JWT Signature."
NO_ACCOUNT = "Invalid grant: account not found"
BAD_TIMES = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your "
             "iat and exp values in the JWT claim.")
# Audiences Google's token endpoint accepts whatever URL the JWT was posted to (google-auth always uses the first).
GOOGLE_AUDIENCES = ("https://oauth2.googleapis.com/token", "https://www.googleapis.com/oauth2/v4/token",
                    "https://accounts.google.com/o/oauth2/token")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.Response(status=status, content_type="application/json", charset="utf-8",
                        text=json.dumps({"error": error, "error_description": description}))


def _forced(error: str | int) -> web.Response:
    """The token endpoint's answer for a `token_error` knob."""
    if error == "invalid_client":
        return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
    if error == "invalid_grant":
        return _oauth_error(400, "invalid_grant", NO_ACCOUNT)
    return _oauth_error(int(error), "internal_failure", "Backend Error")


@functools.cache
def key_pair(index: int) -> tuple[str, Any]:
    """The index-th RSA 2048 key of this test run: (PKCS#8 PEM private key, public key object).

    Cached because generating one takes about 0.2 s; accounts of one fake get distinct indexes, so distinct keys.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


def sign_jwt(header: dict[str, Any], claims: dict[str, Any], private_key_pem: str) -> str:
    """An RS256 JWT signed with `cryptography` (for tests that play the client)."""
    def enc(obj: Any) -> str:
        """base64url of compact JSON, without padding."""
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
    signing_input = f"{enc(header)}.{enc(claims)}"
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


class TokenEndpoint:
    """Mixin of FakeGoogle: service accounts and `POST /token`."""

    # Set by FakeGoogle.__init__; declared here for readers and type checkers.
    token_uri: str
    service_accounts: dict[str, ServiceAccount]
    access_tokens: dict[str, AccessToken]
    token_error: str | int | None
    token_calls: int
    violations: list[str]
    clock: Callable[[], float]
    _serial: int

    def make_service_account(self, project_id: str = "proj-1", email: str | None = None, *,
                             behaviour: str | None = None, **options: Any) -> dict[str, Any]:
        """A real-looking downloaded service-account JSON with a fresh RSA key, registered with the fake.

        Options are ServiceAccount fields: fail_on, fail_times, retry_delay, token_error, token_error_times.
        """
        self._serial += 1
        n = self._serial
        email = email or f"vertex-{n}@{project_id}.iam.gserviceaccount.com"
        pem, public = key_pair(len(self.service_accounts))
        digest = hashlib.sha256(f"{email}:{n}".encode()).hexdigest()
        info = {"type": "service_account", "project_id": project_id, "private_key_id": digest[:40],
                "private_key": pem, "client_email": email, "client_id": str(int(digest[:18], 16))[:21].rjust(21, "1"),
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_uri,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{quote(email)}",
                "universe_domain": "googleapis.com"}
        self.service_accounts[email] = ServiceAccount(behaviour=behaviour, info=info, public_key=public, **options)
        return dict(info)

    def issue_access_token(self, email: str, *, expires_in: int = TOKEN_LIFETIME, scope: str = CLOUD_PLATFORM) -> str:
        """Mint an access token directly (tests that skip the exchange)."""
        self._serial += 1
        seed = hashlib.sha512(f"{email}:{self._serial}".encode()).digest() * 2
        token = "ya29.c.b0A" + base64.urlsafe_b64encode(seed).decode().rstrip("=")[:160]
        self.access_tokens[token] = AccessToken(token, self.service_accounts[email], scope, self.clock() + expires_in)
        return token

    def expire_all_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        now = self.clock()
        for token in self.access_tokens.values():
            token.expires_at = min(token.expires_at, now)

    @property
    def token_exchanges(self) -> int:
        """Access tokens issued by the token endpoint, over all service accounts."""
        return sum(sa.exchanges for sa in self.service_accounts.values())

    async def _token(self, request: web.Request, entry: Recorded) -> web.Response:
        self.token_calls += 1
        if self.token_error is not None:
            return _forced(self.token_error)
        form = entry.form
        if request.content_type != "application/x-www-form-urlencoded" or form is None:
            return _oauth_error(400, "invalid_request", "Invalid Content-Type: expected "
                                                        "application/x-www-form-urlencoded")
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        assertion = form.get("assertion")
        if not assertion:
            return _oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        verified = self._verify(assertion)
        if isinstance(verified, web.Response):
            return verified
        account, scope = verified
        if account.token_error is not None and (account.token_error_times is None
                                                or account.token_failures < account.token_error_times):
            account.token_failures += 1
            return _forced(account.token_error)
        account.exchanges += 1
        token = self.issue_access_token(account.email, scope=scope)
        return web.Response(content_type="application/json", charset="utf-8", text=json.dumps(
            {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}))

    def _verify(self, assertion: str) -> tuple[ServiceAccount, str] | web.Response:
        """The JWT's account and scope, or the error Google answers."""
        pieces = assertion.split(".")
        try:
            header, claims = (json.loads(_b64url_decode(p)) for p in pieces[:2])
            signature = _b64url_decode(pieces[2])
        except (ValueError, IndexError):
            return _oauth_error(400, "invalid_grant", BAD_SIGNATURE)
        if len(pieces) != 3 or not isinstance(header, dict) or not isinstance(claims, dict):
            return _oauth_error(400, "invalid_grant", BAD_SIGNATURE)
        if header.get("alg") != "RS256":
            return _oauth_error(400, "invalid_grant", BAD_SIGNATURE)
        if header.get("typ") != "JWT":
            self.violations.append(f"JWT header typ {header.get('typ')!r}, expected 'JWT' (gemini.md §5.3)")
        account = self.service_accounts.get(str(claims.get("iss")))
        if account is None:
            return _oauth_error(400, "invalid_grant", NO_ACCOUNT)
        kid = header.get("kid")
        if kid is None:
            self.violations.append("JWT header without kid (gemini.md §5.3: kid = private_key_id)")
        elif kid != account.info["private_key_id"]:
            return _oauth_error(400, "invalid_grant", BAD_SIGNATURE)  # no such key on the account
        try:
            account.public_key.verify(signature, f"{pieces[0]}.{pieces[1]}".encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
        except InvalidSignature:
            return _oauth_error(400, "invalid_grant", BAD_SIGNATURE)
        return self._check_claims(account, claims)

    def _check_claims(self, account: ServiceAccount,
                      claims: dict[str, Any]) -> tuple[ServiceAccount, str] | web.Response:
        if claims.get("aud") in GOOGLE_AUDIENCES:
            self.violations.append(f"JWT aud {claims['aud']!r} is not the credential's token_uri (gemini.md §5.3)")
        elif claims.get("aud") != self.token_uri:
            return _oauth_error(400, "invalid_grant",
                                f"Invalid JWT: Failed audience check. The right audience is {self.token_uri}")
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock()
        if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
            return _oauth_error(400, "invalid_grant", BAD_TIMES)
        if abs(iat - now) > SKEW or exp <= now or exp - iat > MAX_JWT_LIFETIME:
            return _oauth_error(400, "invalid_grant", BAD_TIMES)
        if exp != iat + MAX_JWT_LIFETIME:
            self.violations.append(f"JWT exp - iat = {exp - iat}, expected 3600 (gemini.md §5.3)")
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.strip():
            return _oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if CLOUD_PLATFORM not in scope.split():
            self.violations.append(f"JWT scope {scope!r}, expected {CLOUD_PLATFORM}")
        return account, scope
