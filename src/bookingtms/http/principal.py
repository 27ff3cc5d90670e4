"""Who is calling: the authenticated principal, and the checks every endpoint makes.

A bearer is either an access token (JWT, checked for signature, algorithm, expiry, and against
the user's current state: active, token version, logout) or an API key (`btms_<prefix>_<secret>`).
A platform admin acts inside an organization only with `X-Organization-Id` and a live access
grant; every such request is audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

import jwt
from fastapi import Depends, Request
from sqlalchemy import func, select

from bookingtms.auth import state
from bookingtms.auth.permissions import PLATFORM_PERMISSIONS, permissions_for
from bookingtms.auth.tokens import decode_access_token
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import Forbidden, NotFound, Unauthorized
from bookingtms.http import request_context


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    email: str
    role: str
    organization_id: uuid.UUID | None
    is_platform: bool
    permissions: frozenset[str] = field(default_factory=frozenset)
    kind: str = "user"  # user | api_key
    api_key_id: uuid.UUID | None = None
    api_key_name: str | None = None
    grant_id: uuid.UUID | None = None  # a platform admin acting under an access grant
    restrict: str | None = None  # password_change | mfa_enrollment: the token may only finish that
    jti: str | None = None
    expires_at: int | None = None

    def db_context(self) -> DbContext:
        return DbContext(organization_id=self.organization_id, user_id=self.user_id, is_platform=self.is_platform)

    @property
    def scope(self) -> str:
        """The key under which this caller's idempotency keys are kept."""
        return f"apikey:{self.api_key_id}" if self.kind == "api_key" else f"user:{self.user_id}"

    @property
    def actor(self) -> str:
        return f"apikey:{self.api_key_id}" if self.kind == "api_key" else f"user:{self.user_id}"


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>'.", code="unauthorized",
                           headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _invalid(detail: str = "The access token is invalid or has expired.", code: str = "invalid_token") -> Unauthorized:
    return Unauthorized(detail, code=code, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _from_api_key(token: str) -> Principal:
    from bookingtms.api_keys.service import authenticate

    key = await authenticate(token)
    if key is None:
        raise _invalid("The API key is unknown, revoked or expired.")
    return Principal(user_id=None, email="", role="api-key", organization_id=uuid.UUID(key["organization_id"]),
                     is_platform=False, permissions=frozenset(key["permissions"]), kind="api_key",
                     api_key_id=uuid.UUID(key["id"]), api_key_name=key.get("name"))


async def _from_jwt(token: str) -> Principal:
    try:
        claims = decode_access_token(token)
        user_id = uuid.UUID(claims["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise _invalid() from None
    current, revoked = await state.token_state(user_id, claims["jti"])
    if current is None or not current.is_active:
        raise _invalid("This account is no longer active.", code="token_revoked")
    if claims["ver"] != current.token_version or revoked:
        raise _invalid("This token has been revoked; sign in again.", code="token_revoked")
    # Role and permissions come from the user as they are now, not as they were at sign-in.
    return Principal(
        user_id=user_id, email=claims.get("email", ""), role=current.role,
        organization_id=uuid.UUID(current.organization_id) if current.organization_id else None,
        is_platform=current.role == "system-admin", permissions=frozenset(permissions_for(current.role)),
        restrict=claims.get("restrict"), jti=claims["jti"], expires_at=int(claims["exp"]))


async def _under_grant(principal: Principal, organization_header: str, request: Request) -> Principal:
    """A platform admin inside an organization: only with a live grant; otherwise the
    organization does not exist for them (404)."""
    from bookingtms.audit.service import record_alone
    from bookingtms.models import access_grants

    try:
        org_id = uuid.UUID(organization_header)
    except ValueError:
        raise NotFound("No such organization.", code="organization_not_found") from None
    g = access_grants.c
    async with tenant_transaction(DbContext(user_id=principal.user_id, is_platform=True)) as db:
        grant_id = (await db.execute(select(g.id).where(
            g.organization_id == org_id, g.admin_user_id == principal.user_id, g.revoked_at.is_(None),
            g.expires_at > func.now()).limit(1))).scalar_one_or_none()
    if grant_id is None:
        raise NotFound("No such organization.", code="organization_not_found")
    await record_alone("access_grant.used", organization_id=org_id, target_type="access_grant", target_id=grant_id,
                       changes={"method": request.method, "path": request.url.path})
    return replace(principal, organization_id=org_id, grant_id=grant_id,
                   permissions=frozenset(permissions_for("super-admin")) | frozenset(PLATFORM_PERMISSIONS))


async def authenticate(request: Request) -> Principal:
    """Any valid caller, including tokens limited to finishing a password change or MFA set-up."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    principal = await (_from_api_key(token) if token.startswith("btms_") else _from_jwt(token))
    if principal.kind == "api_key":
        request_context.set_actor(str(principal.api_key_id), "api_key", None)
    else:
        request_context.set_actor(str(principal.user_id), "platform" if principal.is_platform else "user",
                                  principal.email)
    organization_header = request.headers.get("x-organization-id")
    if organization_header and principal.is_platform and principal.restrict is None:
        principal = await _under_grant(principal, organization_header, request)
    request.state.principal = principal
    return principal


async def current_principal(principal: Principal = Depends(authenticate)) -> Principal:
    """A caller whose token is not limited to a pending step."""
    if principal.restrict:
        raise Forbidden(f"Finish the {principal.restrict.replace('_', ' ')} first.", code=f"{principal.restrict}_required")
    return principal


def ensure_permission(principal: Principal, permission: str,
                      outside_organization: str = "This endpoint acts within an organization; platform accounts "
                                                  "need an access grant and X-Organization-Id.") -> Principal:
    """The check behind `require` (and the pages' require_page): a member of an organization holding
    `permission`."""
    if principal.organization_id is None:
        raise Forbidden(outside_organization, code="organization_required")
    if permission not in principal.permissions:
        raise Forbidden(f"Your role ({principal.role}) lacks the permission '{permission}'.",
                        code="permission_denied", permission=permission)
    return principal


def ensure_platform(principal: Principal, permission: str) -> Principal:
    """The check behind `require_platform`: a member of the platform team holding `permission`."""
    if not principal.is_platform or permission not in principal.permissions:
        raise Forbidden(f"Only the platform team may do this ('{permission}').", code="permission_denied",
                        permission=permission)
    return principal


def require(permission: str):
    """Dependency: a member of an organization (or an API key, or a platform admin under a
    grant) holding `permission`."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        return ensure_permission(principal, permission)

    return check


def require_platform(permission: str):
    """Dependency: a member of the platform team holding `permission`."""

    async def check(principal: Principal = Depends(current_principal)) -> Principal:
        return ensure_platform(principal, permission)

    return check
