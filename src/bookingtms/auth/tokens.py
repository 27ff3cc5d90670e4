"""JWT access tokens with the claims of blueprint 7.1, and opaque refresh tokens.

An access token carries the user's `ver` (token_version): bumping the version in the database
(password change or reset, deactivation) revokes every earlier token at once. `restrict` limits
a token to finishing a password change or MFA enrolment. `fid` names the sign-in (refresh-token
family) the token belongs to, so logout and reuse detection can end that sign-in's access tokens
too."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from bookingtms.config import get_settings

ALGORITHM = "HS256"
REFRESH_TTL_SECONDS = 7 * 24 * 3600
ACCESS_COOKIE = "btms_access"  # a signed-in page's access token (web/session.py)


def issue_access_token(*, user_id: uuid.UUID, email: str, role: str, organization_id: uuid.UUID | None,
                       is_platform: bool, permissions: list[str], token_version: int,
                       restrict: str | None = None, family_id: uuid.UUID | None = None,
                       jti: str | None = None) -> tuple[str, int]:
    settings = get_settings()
    now = int(time.time())
    ttl = settings.access_token_ttl_seconds
    claims = {
        "sub": str(user_id), "email": email, "role": role,
        "org_id": str(organization_id) if organization_id else None,
        "is_platform": is_platform, "permissions": permissions,
        "iat": now, "exp": now + ttl, "jti": jti or uuid.uuid4().hex, "typ": "access", "ver": token_version,
    }
    if restrict:
        claims["restrict"] = restrict
    if family_id:
        claims["fid"] = str(family_id)
    return jwt.encode(claims, settings.resolved_secret_key(), algorithm=ALGORITHM), ttl


def decode_access_token(token: str) -> dict[str, Any]:
    """Raises jwt.InvalidTokenError on a bad signature, algorithm, expiry or shape."""
    claims = jwt.decode(token, get_settings().resolved_secret_key(), algorithms=[ALGORITHM],
                        options={"require": ["exp", "iat", "sub", "jti"]})
    if claims.get("typ") != "access" or not isinstance(claims.get("ver"), int):
        raise jwt.InvalidTokenError("not an access token")
    return claims


def new_opaque_token() -> tuple[str, str]:
    """A 256-bit random token and the SHA-256 under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_opaque(token)


def hash_opaque(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
