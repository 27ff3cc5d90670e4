"""Who is calling: the authenticated principal, and the checks every endpoint makes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import jwt
from fastapi import Depends, Request

from bookingtms.auth.tokens import decode_access_token
from bookingtms.db.engine import DbContext
from bookingtms.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    email: str
    role: str
    organization_id: uuid.UUID | None
    is_platform: bool
    permissions: frozenset[str] = field(default_factory=frozenset)

    def db_context(self) -> DbContext:
        return DbContext(organization_id=self.organization_id, user_id=self.user_id, is_platform=self.is_platform)

    @property
    def scope(self) -> str:
        """The key under which this caller's idempotency keys are kept."""
        return f"user:{self.user_id}"


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>'.", code="unauthorized",
                           headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def current_principal(request: Request) -> Principal:
    try:
        claims = decode_access_token(_bearer(request))
        principal = Principal(
            user_id=uuid.UUID(claims["sub"]),
            email=claims.get("email", ""),
            role=claims["role"],
            organization_id=uuid.UUID(claims["org_id"]) if claims.get("org_id") else None,
            is_platform=bool(claims.get("is_platform")),
            permissions=frozenset(claims.get("permissions") or ()),
        )
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthorized("The access token is invalid or has expired.", code="invalid_token",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    request.state.principal = principal
    return principal


def require(permission: str):
    """Dependency: an organization member holding `permission`."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.organization_id is None:
            raise Forbidden("This endpoint acts within an organization; platform accounts have none.",
                            code="organization_required")
        if permission not in principal.permissions:
            raise Forbidden(f"Your role ({principal.role}) lacks the permission '{permission}'.",
                            code="permission_denied", permission=permission)
        return principal

    return check


def require_platform(permission: str):
    """Dependency: a member of the platform team holding `permission`."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.is_platform or permission not in principal.permissions:
            raise Forbidden(f"Only the platform team may do this ('{permission}').", code="permission_denied",
                            permission=permission)
        return principal

    return check
