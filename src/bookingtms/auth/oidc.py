"""Sign in with Google (any OpenID Connect provider) for staff, through authlib.

`begin()` sends the browser to the provider (authorization code flow with PKCE S256, a `state`
and a `nonce`, both kept in Redis for 10 minutes and good once; the attempt is also bound to the
browser that began it by an HttpOnly cookie, so a callback URL carried to another browser is
refused). `complete()` takes the code back,
exchanges it at the token endpoint (client secret + PKCE verifier), and verifies the id_token:
signature against the provider's JWKS (fetched again once if its key id is unknown, for key
rotation), algorithm as the provider's discovery document lists (never `none` or HMAC), issuer,
audience (and `azp`), expiry, issue time and nonce. The provider's discovery document
(/.well-known/openid-configuration) is read on first use and kept for an hour.

Only a verified email is believed. Linking to a BookingTMS account is auth/service.py's
sign_in_linked: existing active staff only, never creating anyone."""

from __future__ import annotations

import hashlib
import secrets
import time
import warnings
from typing import Any

import httpx
import structlog
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():  # authlib prefers httpx2 but supports httpx, the project's client
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from bookingtms.auth import state
from bookingtms.config import Settings, get_settings
from bookingtms.errors import AppError, NotFound, Unauthorized

log = structlog.get_logger("bookingtms.auth.oidc")

ATTEMPT_TTL_SECONDS = 600
METADATA_TTL_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10
SCOPE = "openid email profile"
BROWSER_COOKIE = "btms_oidc"
COOKIE_PATH = "/v1/auth/oidc"
_ALLOWED_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

_metadata: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks: dict[str, dict[str, Any]] = {}


class SsoUnavailable(AppError):
    status, code, title = 503, "sso_unavailable", "Single sign-on is unavailable"


def _settings() -> Settings:
    settings = get_settings()
    if not settings.oidc_enabled:
        raise NotFound("Single sign-on is not configured on this server.", code="sso_disabled")
    return settings


def _failed(detail: str) -> Unauthorized:
    return Unauthorized(detail, code="sso_failed")


def _client(settings: Settings, **kwargs: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
                             scope=SCOPE, redirect_uri=settings.resolved_oidc_redirect_uri(),
                             code_challenge_method="S256", timeout=HTTP_TIMEOUT_SECONDS, **kwargs)


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("oidc_provider_unreachable", url=url, error=type(exc).__name__)
        raise SsoUnavailable("The sign-in provider cannot be reached; please try again shortly.",
                             headers={"Retry-After": "30"}) from None
    if not isinstance(body, dict):
        raise SsoUnavailable("The sign-in provider answered with something unexpected.")
    return body


async def provider_metadata(settings: Settings) -> dict[str, Any]:
    issuer = settings.oidc_issuer.rstrip("/")
    cached = _metadata.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    metadata = await _get_json(f"{issuer}/.well-known/openid-configuration")
    needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    if any(not isinstance(metadata.get(k), str) for k in needed) or metadata["issuer"].rstrip("/") != issuer:
        log.warning("oidc_bad_discovery_document", issuer=issuer)
        raise SsoUnavailable("The sign-in provider's configuration does not match OIDC_ISSUER.")
    _metadata[issuer] = (time.monotonic() + METADATA_TTL_SECONDS, metadata)
    return metadata


async def _key_set(metadata: dict[str, Any], refresh: bool = False) -> KeySet:
    uri = metadata["jwks_uri"]
    if refresh or uri not in _jwks:
        _jwks[uri] = await _get_json(uri)
    try:
        return KeySet.import_key_set(_jwks[uri])
    except (JoseError, ValueError, KeyError, TypeError):
        raise SsoUnavailable("The sign-in provider's keys could not be read.") from None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def begin() -> tuple[str, str]:
    """The provider's authorization URL to send the browser to, and the browser binding to set as
    the BROWSER_COOKIE."""
    settings = _settings()
    metadata = await provider_metadata(settings)
    attempt_state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), generate_token(64)
    binding = secrets.token_urlsafe(32)
    await state.put_oidc_attempt(_hash(attempt_state), {"nonce": nonce, "code_verifier": verifier,
                                                        "browser": _hash(binding)}, ATTEMPT_TTL_SECONDS)
    async with _client(settings) as client:
        url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=attempt_state,
                                                 code_verifier=verifier, nonce=nonce)
    return url, binding


async def complete(code: str | None, attempt_state: str | None, error: str | None = None,
                   binding: str | None = None) -> dict[str, Any]:
    """Verifies the provider's answer; returns the id_token's claims (with `sub` and a verified
    `email`)."""
    settings = _settings()
    attempt = await state.take_oidc_attempt(_hash(attempt_state)) if attempt_state else None
    if attempt is None:
        raise AppError("This sign-in attempt is unknown, expired or already used; start again from "
                       "/v1/auth/oidc/login.", code="invalid_state", status=400)
    if not binding or not secrets.compare_digest(_hash(binding), attempt["browser"]):
        raise AppError("This sign-in was started in another browser; start again from /v1/auth/oidc/login.",
                       code="invalid_state", status=400)
    if error:
        raise _failed(f"The sign-in provider refused the sign-in ({error[:100]}).")
    if not code:
        raise AppError("The provider's answer has no code.", code="invalid_state", status=400)
    metadata = await provider_metadata(settings)
    try:
        async with _client(settings) as client:
            token = await client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code", code=code,
                                             code_verifier=attempt["code_verifier"])
    except OAuthError as exc:
        raise _failed(f"The sign-in provider did not accept the code ({exc.error}).") from None
    except httpx.HTTPError as exc:
        log.warning("oidc_token_endpoint_unreachable", error=type(exc).__name__)
        raise SsoUnavailable("The sign-in provider cannot be reached; please try again shortly.") from None
    except ValueError:
        raise _failed("The sign-in provider's token answer could not be read.") from None
    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str):
        raise _failed("The sign-in provider sent no id_token.")
    claims = await _verify_id_token(settings, metadata, id_token, attempt["nonce"], token.get("access_token"))
    email_verified = claims.get("email_verified")
    if not isinstance(claims.get("email"), str) or email_verified not in (True, "true"):
        raise Unauthorized("The sign-in provider has not verified this account's email address, so it cannot "
                           "be linked to a BookingTMS account.", code="sso_not_linked")
    return dict(claims)


async def _verify_id_token(settings: Settings, metadata: dict[str, Any], id_token: str, nonce: str,
                           access_token: str | None) -> dict[str, Any]:
    algorithms = [a for a in metadata.get("id_token_signing_alg_values_supported") or ["RS256"] if a in _ALLOWED_ALGS]
    registry = JWSRegistry(algorithms=algorithms or ["RS256"], strict_check_header=False)
    try:
        try:
            decoded = jwt.decode(id_token, await _key_set(metadata), registry=registry)
        except InvalidKeyIdError:  # the provider may have rotated its keys
            decoded = jwt.decode(id_token, await _key_set(metadata, refresh=True), registry=registry)
        issuer = metadata["issuer"]
        issuers = [issuer, issuer.removeprefix("https://")]  # Google also writes "accounts.google.com"
        claims = CodeIDToken(decoded.claims, decoded.header, options={
            "iss": {"essential": True, "values": issuers},
            "aud": {"essential": True, "value": settings.oidc_client_id},
            "exp": {"essential": True}, "iat": {"essential": True}, "sub": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        }, params={"nonce": nonce, "client_id": settings.oidc_client_id, "access_token": access_token})
        claims.validate(leeway=60)
    except (JoseError, ValueError, TypeError) as exc:
        log.info("oidc_id_token_rejected", error=type(exc).__name__, detail=str(exc)[:200])
        raise Unauthorized("The sign-in provider's id_token did not verify.", code="invalid_id_token") from None
    return dict(claims)
