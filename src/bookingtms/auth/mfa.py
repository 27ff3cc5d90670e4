"""The second factor: TOTP (RFC 6238, through pyotp) and one-time recovery codes.

* Enrolment stores a new secret (sealed with a key derived from BOOKINGTMS_SECRET_KEY, so a copy of
  the database alone does not yield it) without enabling it; confirming with a current code enables
  it and hands out 10 recovery codes, once. They are stored as SHA-256 hashes (80 random bits each,
  so a hash cannot be walked back) and each works once in place of a code.
* A code is accepted within one 30-second step either side of now, and only once per user.
* An organization may require MFA for some of its roles (organizations.settings.require_mfa_for);
  see organizations/service.py."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import record
from bookingtms.auth import state
from bookingtms.config import get_settings
from bookingtms.errors import Conflict, ValidationFailed
from bookingtms.models import users

ISSUER = "BookingTMS"
RECOVERY_CODE_COUNT = 10
_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 letters, no 0/O/1/I
_CODE_GROUPS, _GROUP_LEN = 4, 4  # 16 letters of 5 bits: 80 random bits


def _fernet() -> Fernet:
    key = hashlib.sha256(b"bookingtms:totp-secret:" + get_settings().resolved_secret_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str) -> str:
    return "f1:" + _fernet().encrypt(secret.encode()).decode()


def unseal(stored: str | None) -> str | None:
    if not stored:
        return None
    if not stored.startswith("f1:"):
        return stored
    try:
        return _fernet().decrypt(stored[3:].encode()).decode()
    except InvalidToken:  # sealed under another secret key: unusable
        return None


def new_recovery_codes() -> list[str]:
    return ["-".join("".join(secrets.choice(_CODE_ALPHABET) for _ in range(_GROUP_LEN)) for _ in range(_CODE_GROUPS))
            for _ in range(RECOVERY_CODE_COUNT)]


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(("bookingtms-recovery:" + _normalise(code)).encode()).hexdigest()


def _looks_like_totp(code: str) -> bool:
    code = code.strip().replace(" ", "")
    return len(code) == 6 and code.isdigit()


async def _locked_user(db: AsyncConnection, user_id: uuid.UUID):
    return (await db.execute(select(users).where(users.c.id == user_id).with_for_update())).one()


async def begin_enrolment(db: AsyncConnection, user_id: uuid.UUID) -> dict[str, str]:
    """A new TOTP secret for the user, stored but not enabled until confirmed."""
    user = await _locked_user(db, user_id)
    if user.totp_enabled:
        raise Conflict("Two-step verification is already on; turn it off first to enrol a new device.",
                       code="mfa_already_enabled")
    secret = pyotp.random_base32()
    await db.execute(update(users).where(users.c.id == user_id).values(totp_secret=seal(secret)))
    await record(db, "auth.mfa_enrolment_started", organization_id=user.organization_id, target_type="user",
                 target_id=user_id, changes={"method": "totp"})
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return {"secret": secret, "otpauth_uri": uri}


async def confirm_enrolment(db: AsyncConnection, user_id: uuid.UUID, otp: str) -> list[str]:
    """Turns TOTP on if `otp` is a current code of the enrolled secret; returns the recovery codes
    (the only time they are shown)."""
    user = await _locked_user(db, user_id)
    if user.totp_enabled:
        raise Conflict("Two-step verification is already on.", code="mfa_already_enabled")
    secret = unseal(user.totp_secret)
    if secret is None:
        raise Conflict("Start with POST /v1/auth/mfa/totp to get a secret.", code="mfa_not_enrolled")
    if not (_looks_like_totp(otp) and pyotp.TOTP(secret).verify(otp.strip().replace(" ", ""), valid_window=1)
            and await state.claim_otp(user_id, otp.strip().replace(" ", ""))):
        raise ValidationFailed("That code does not match; check the authenticator app's clock and try the current "
                               "code.", code="invalid_otp", field="otp")
    codes = new_recovery_codes()
    await db.execute(update(users).where(users.c.id == user_id).values(
        totp_enabled=True, recovery_codes=[hash_recovery_code(c) for c in codes]))
    await record(db, "auth.mfa_enabled", organization_id=user.organization_id, target_type="user", target_id=user_id,
                 changes={"method": "totp", "recovery_codes_issued": len(codes)})
    return codes


async def disable(db: AsyncConnection, user_id: uuid.UUID, otp: str) -> None:
    """Turns TOTP off; needs a current code or a recovery code."""
    user = await _locked_user(db, user_id)
    if not user.totp_enabled:
        raise Conflict("Two-step verification is not on.", code="mfa_not_enabled")
    if await verify_second_factor(db, user, otp) is None:
        raise ValidationFailed("That code is wrong or was already used.", code="invalid_otp", field="otp")
    await db.execute(update(users).where(users.c.id == user_id).values(
        totp_enabled=False, totp_secret=None, recovery_codes=[]))
    await record(db, "auth.mfa_disabled", organization_id=user.organization_id, target_type="user", target_id=user_id,
                 changes={"method": "totp"})


async def verify_second_factor(db: AsyncConnection, user, otp: str) -> str | None:
    """'totp' or 'recovery_code' if `otp` is good (a recovery code is used up, in this
    transaction), else None."""
    code = otp.strip().replace(" ", "")
    if _looks_like_totp(code):
        secret = unseal(user.totp_secret)
        if secret and pyotp.TOTP(secret).verify(code, valid_window=1) and await state.claim_otp(user.id, code):
            return "totp"
        return None
    if len(_normalise(code)) != _CODE_GROUPS * _GROUP_LEN:
        return None
    hashed = hash_recovery_code(code)
    left = (await db.execute(text(
        "UPDATE users SET recovery_codes = recovery_codes - CAST(:h AS text), updated_at = now() "
        "WHERE id = :u AND recovery_codes ? CAST(:h AS text) RETURNING jsonb_array_length(recovery_codes)"),
        {"h": hashed, "u": user.id})).scalar_one_or_none()
    if left is None:
        return None
    await record(db, "auth.recovery_code_used", organization_id=user.organization_id, target_type="user",
                 target_id=user.id, changes={"recovery_codes_left": left})
    return "recovery_code"
