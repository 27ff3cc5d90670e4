"""JWT access tokens with the claims of blueprint 7.1."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from bookingtms.config import get_settings

ALGORITHM = "HS256"


def issue_access_token(*, user_id: uuid.UUID, email: str, role: str, organization_id: uuid.UUID | None,
                       is_platform: bool, permissions: list[str]) -> tuple[str, int]:
    settings = get_settings()
    now = int(time.time())
    ttl = settings.access_token_ttl_seconds
    claims = {
        "sub": str(user_id), "email": email, "role": role,
        "org_id": str(organization_id) if organization_id else None,
        "is_platform": is_platform, "permissions": permissions,
        "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, "typ": "access",
    }
    return jwt.encode(claims, settings.resolved_secret_key(), algorithm=ALGORITHM), ttl


def decode_access_token(token: str) -> dict[str, Any]:
    """Raises jwt.InvalidTokenError on a bad signature, algorithm, expiry or shape."""
    claims = jwt.decode(token, get_settings().resolved_secret_key(), algorithms=[ALGORITHM],
                        options={"require": ["exp", "iat", "sub"]})
    if claims.get("typ") != "access":
        raise jwt.InvalidTokenError("not an access token")
    return claims
