"""The customer's signed link to their booking (/my-booking/{token}): no password, no stored token.

token = base64url(organization id + booking id) "." base64url(HMAC-SHA256(key, ids + customer email)[:16])

The key is derived from the app's secret. The email is part of what is signed, not of the token:
checking a token needs the booking's current customer email, so a link stops working when that
email changes, and a token reveals nothing but two ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, lookup_connection, tenant_transaction
from bookingtms.errors import NotFound

_SIGNATURE_BYTES = 16  # 128 bits: unguessable, and keeps the link short
PORTAL_PATH = "/my-booking"


def _key() -> bytes:
    return hashlib.sha256(b"bookingtms:portal-link:v1:" + get_settings().resolved_secret_key().encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(org_id: uuid.UUID, booking_id: uuid.UUID, email: str) -> bytes:
    message = org_id.bytes + booking_id.bytes + email.strip().lower().encode()
    return hmac.new(_key(), message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def manage_token(org_id: uuid.UUID, booking_id: uuid.UUID, email: str) -> str:
    org_id, booking_id = uuid.UUID(str(org_id)), uuid.UUID(str(booking_id))
    return f"{_b64(org_id.bytes + booking_id.bytes)}.{_b64(_signature(org_id, booking_id, email))}"


def manage_path(org_id: uuid.UUID, booking_id: uuid.UUID, email: str) -> str:
    return f"{PORTAL_PATH}/{manage_token(org_id, booking_id, email)}"


def manage_url(org_id: uuid.UUID, booking_id: uuid.UUID, email: str) -> str:
    return get_settings().base_url.rstrip("/") + manage_path(org_id, booking_id, email)


def read_token(token: str) -> tuple[uuid.UUID, uuid.UUID, bytes] | None:
    """(organization id, booking id, signature) of a well-formed token, else None. The signature is
    checked with `signature_matches` once the booking's email is known."""
    if not token or len(token) > 100 or token.count(".") != 1:
        return None
    ids, sig = token.split(".")
    try:
        raw, signature = _unb64(ids), _unb64(sig)
    except (ValueError, TypeError):
        return None
    if len(raw) != 32 or len(signature) != _SIGNATURE_BYTES:
        return None
    if _b64(raw) != ids or _b64(signature) != sig:  # one spelling per token (no stray or padding bits)
        return None
    return uuid.UUID(bytes=raw[:16]), uuid.UUID(bytes=raw[16:]), signature


def signature_matches(org_id: uuid.UUID, booking_id: uuid.UUID, email: str, signature: bytes) -> bool:
    return hmac.compare_digest(_signature(org_id, booking_id, email), signature)


async def find_customer_booking(reference: str, email: str) -> tuple[uuid.UUID, dict]:
    """The organization and booking with this reference whose customer has this email (the public
    API's lookup and the portal's). A wrong email looks exactly like an unknown reference."""
    from bookingtms.bookings import service

    async with lookup_connection() as conn:
        org_ids = await service.organizations_for_reference(conn, reference)
    for org_id in org_ids:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            try:
                return org_id, await service.get_by_reference(db, org_id, reference, email)
            except NotFound:
                continue
    raise NotFound("No booking has this reference and email.", code="booking_not_found")
