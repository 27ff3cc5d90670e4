"""Staff and roles, API keys, promo codes and the settings of the staff dashboard:
/admin/staff, /admin/api-keys, /admin/promo-codes, /admin/settings.

Each page holds the permission the matching API router requires and makes the same service calls
in the same kind of transaction (plus the same audit rows and after-commit steps), so a page never
allows what the API refuses. Bad input re-renders the form with the message at its field (422, or
the status the service gave), and nothing is written."""

from __future__ import annotations

import secrets

import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import RedirectResponse

from bookingtms.activities import service as activities_service
from bookingtms.activities.schemas import ActivityUpdate, CancellationPolicy
from bookingtms import cache
from bookingtms.api_keys import service as api_keys_service
from bookingtms.api_keys.schemas import ApiKeyCreate
from bookingtms.audit.service import changed, diff, record
from bookingtms.auth import state
from bookingtms.auth.permissions import ORG_ROLES, PERMISSION_MATRIX, ROLE_RANK
from bookingtms.calendars import service as calendars_service
from bookingtms.calendars.router import feed_url
from bookingtms.config import get_settings
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.errors import AppError, ValidationFailed
from bookingtms.http.pagination import decode_cursor
from bookingtms.http.principal import Principal
from bookingtms.models import organizations
from bookingtms.organizations import service as organizations_service
from bookingtms.organizations.schemas import OrganizationSettingsUpdate
from bookingtms.payments import service as payments_service
from bookingtms.promo_codes import service as promo_service
from bookingtms.promo_codes.schemas import PromoCodeCreate, PromoCodeUpdate, check_rules
from bookingtms.users import service as users_service
from bookingtms.users.schemas import UserInvite, UserUpdate
from bookingtms.venues import service as venues_service
from bookingtms.venues.router import CREATED_FIELDS as VENUE_CREATED_FIELDS
from bookingtms.venues.schemas import VenueCreate, VenueUpdate
from bookingtms.web.forms import Form, form_data
from bookingtms.web.session import require_page
from bookingtms.web.templating import redirect, render

router = APIRouter()
PAGE_SIZE = 50
DAYS = (("mon", "Monday"), ("tue", "Tuesday"), ("wed", "Wednesday"), ("thu", "Thursday"), ("fri", "Friday"),
        ("sat", "Saturday"), ("sun", "Sunday"))


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def _message(text: str) -> str:
    text = text.removeprefix("Value error, ")
    return text[:1].upper() + text[1:]


def pydantic_errors(exc: ValidationError, fallback: str = "form") -> dict[str, str]:
    """{field: message} from a schema's validation error (the first message per field)."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else fallback
        message = "This field is required." if err["type"] == "missing" or (
            err["type"] == "string_too_short" and (err.get("ctx") or {}).get("min_length") == 1) else err["msg"]
        errors.setdefault(field, _message(message))
    return errors


def error_field(error: AppError, default: str = "form") -> str:
    field = error.extra.get("field")
    return field if isinstance(field, str) and field else default


def _after(cursor: str | None) -> list | None:
    return decode_cursor(cursor) if cursor else None


@lru_cache
def timezone_names() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


async def org_timezone(db: AsyncConnection, org_id: uuid.UUID) -> str:
    """The zone organization-wide times are shown and typed in: the first venue's."""
    venues = (await venues_service.list_venues(db, org_id, 1, None))["items"]
    return venues[0]["timezone"] if venues else "UTC"


def _rank(p: Principal) -> int:
    return users_service.actor_rank(p.role, p.permissions)


def _local_input(value: datetime | None, tz: str) -> str:
    """A timestamp as a datetime-local input value in `tz`."""
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M") if value else ""


def _parse_local(raw: str, tz: str) -> datetime | None:
    if not raw:
        return None
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment


# ----------------------------------------------------------------------------------------------
# Staff and roles (mirrors users/router.py)
# ----------------------------------------------------------------------------------------------
def grantable_roles(p: Principal) -> list[str]:
    """The roles this user may give, highest first (the users service enforces the same rank rule)."""
    rank = _rank(p)
    return [r for r in reversed(ORG_ROLES) if ROLE_RANK[r] <= rank]


@router.get("/admin/staff")
async def staff_list(request: Request, cursor: str | None = None, p: Principal = Depends(require_page("users.view"))):
    async with read_transaction(p.db_context()) as db:
        result = await users_service.list_users(db, p.organization_id, role=None, active=None, limit=PAGE_SIZE,
                                                after=_after(cursor))
        tz = await org_timezone(db, p.organization_id)
    return render(request, "admin/staff.html", users=result["items"], next_cursor=result["next_cursor"], tz=tz,
                  can_manage="users.manage" in p.permissions)


def _staff_form(request: Request, p: Principal, *, user: dict | None, values: dict, errors: dict,
                status: int = 200):
    return render(request, "admin/staff_form.html", status=status, user=user, values=values, errors=errors,
                  roles=grantable_roles(p), is_self=user is not None and user["id"] == p.user_id)


@router.get("/admin/staff/new")
async def staff_new(request: Request, p: Principal = Depends(require_page("users.manage"))):
    return _staff_form(request, p, user=None, values={"email": "", "full_name": "", "role": "staff"}, errors={})


@router.post("/admin/staff")
async def staff_invite(request: Request, p: Principal = Depends(require_page("users.manage"))):
    form = await form_data(request)
    values = {"email": form.text("email", max_length=320), "full_name": form.text("full_name", max_length=300),
              "role": form.text("role")}
    try:
        data = UserInvite(**values)
    except ValidationError as exc:
        return _staff_form(request, p, user=None, values=values, errors=pydantic_errors(exc), status=422)
    try:
        async with tenant_transaction(p.db_context()) as db:
            user = await users_service.invite(db, p.organization_id, p.user_id, _rank(p), data)
    except AppError as error:
        field = "role" if error.code == "role_too_high" else error_field(error)
        return _staff_form(request, p, user=None, values=values, errors={field: error.detail}, status=error.status)
    return redirect(request, "/admin/staff",
                    flash=f"{user['email']} was invited as {user['role']}; a temporary password was emailed to them.")


async def _staff_member(p: Principal, user_id: uuid.UUID) -> dict:
    async with tenant_transaction(p.db_context()) as db:  # the primary, as GET /v1/users/{id}
        return await users_service.get_user(db, p.organization_id, user_id)


@router.get("/admin/staff/{user_id}")
async def staff_edit(request: Request, user_id: uuid.UUID, p: Principal = Depends(require_page("users.manage"))):
    user = await _staff_member(p, user_id)
    return _staff_form(request, p, user=user, values={"full_name": user["full_name"], "role": user["role"]},
                       errors={})


async def _update_staff(request: Request, p: Principal, user_id: uuid.UUID, data: UserUpdate, values: dict | None,
                        done: str):
    try:
        async with tenant_transaction(p.db_context()) as db:
            user, auth_changed = await users_service.update_user(db, p.organization_id, _rank(p), user_id, data)
    except AppError as error:
        user = await _staff_member(p, user_id)
        field = "role" if error.code == "role_too_high" and "role" in data.model_fields_set else error_field(error)
        return _staff_form(request, p, user=user, status=error.status, errors={field: error.detail},
                           values=values or {"full_name": user["full_name"], "role": user["role"]})
    if auth_changed:  # after commit, as the API: their next request sees the new role / activity
        await state.forget_user(user_id)
    return redirect(request, "/admin/staff", flash=done.format(email=user["email"], role=user["role"]))


@router.post("/admin/staff/{user_id}")
async def staff_update(request: Request, user_id: uuid.UUID, p: Principal = Depends(require_page("users.manage"))):
    form = await form_data(request)
    values = {"full_name": form.text("full_name", max_length=300), "role": form.text("role")}
    try:
        data = UserUpdate(**values)
    except ValidationError as exc:
        user = await _staff_member(p, user_id)
        return _staff_form(request, p, user=user, values=values, errors=pydantic_errors(exc), status=422)
    return await _update_staff(request, p, user_id, data, values, "Saved {email} ({role}).")


@router.post("/admin/staff/{user_id}/deactivate")
async def staff_deactivate(request: Request, user_id: uuid.UUID, p: Principal = Depends(require_page("users.manage"))):
    return await _update_staff(request, p, user_id, UserUpdate(is_active=False), None,
                               "{email} was deactivated and signed out everywhere.")


@router.post("/admin/staff/{user_id}/reactivate")
async def staff_reactivate(request: Request, user_id: uuid.UUID, p: Principal = Depends(require_page("users.manage"))):
    return await _update_staff(request, p, user_id, UserUpdate(is_active=True), None, "{email} can sign in again.")


# ----------------------------------------------------------------------------------------------
# API keys (mirrors api_keys/router.py)
# ----------------------------------------------------------------------------------------------
def grantable_permissions(p: Principal) -> list[str]:
    """What a key may be given: permissions the API knows and the creator holds."""
    return sorted(set(PERMISSION_MATRIX) & set(p.permissions))


async def _api_keys_page(request: Request, p: Principal, cursor: str | None = None, *, created: dict | None = None,
                         values: dict | None = None, errors: dict | None = None, status: int = 200):
    async with read_transaction(p.db_context()) as db:
        result = await api_keys_service.list_keys(db, p.organization_id, PAGE_SIZE, _after(cursor))
        tz = await org_timezone(db, p.organization_id)
    # A fresh key per form shown: the same form sent twice (a reload of the page showing the
    # secret) creates one key, not two.
    form_key = (values or {}).get("form_key") or secrets.token_hex(16)
    return render(request, "admin/api_keys.html", status=status, keys=result["items"], form_key=form_key,
                  next_cursor=result["next_cursor"], tz=tz, created=created, permissions=grantable_permissions(p),
                  values=values or {"name": "", "permissions": [], "expires_on": ""}, errors=errors or {},
                  today=datetime.now(ZoneInfo(tz)).date().isoformat())


def _sending_key(p: Principal, form_key: str) -> str:
    return f"bookingtms:form-sent:{p.user_id}:{form_key}"


async def _first_sending(p: Principal, form_key: str) -> bool:
    """True the first time this user sends the form `form_key` (kept an hour; no key or no Redis: True)."""
    if not form_key:
        return True
    try:
        return bool(await cache.get_redis().set(_sending_key(p, form_key), "1", nx=True, ex=3600))
    except Exception:  # noqa: BLE001 - Redis away: create, as without the guard
        return True


async def _forget_sending(p: Principal, form_key: str) -> None:
    """The form was refused: sending it again (corrected) must work."""
    if form_key:
        try:
            await cache.get_redis().delete(_sending_key(p, form_key))
        except Exception:  # noqa: BLE001
            pass


@router.get("/admin/api-keys")
async def api_keys_list(request: Request, cursor: str | None = None,
                        p: Principal = Depends(require_page("api_keys.manage"))):
    return await _api_keys_page(request, p, cursor)


@router.post("/admin/api-keys")
async def api_key_create(request: Request, p: Principal = Depends(require_page("api_keys.manage"))):
    form = await form_data(request)
    values = {"name": form.text("name", max_length=300), "permissions": form.all("permissions"),
              "expires_on": form.text("expires_on"), "form_key": form.text("form_key", max_length=64)}
    errors: dict[str, str] = {}
    expires_at = None
    async with read_transaction(p.db_context()) as db:
        tz = await org_timezone(db, p.organization_id)
    try:
        day = form.day("expires_on")
        if day is not None:
            if day < datetime.now(ZoneInfo(tz)).date():
                errors["expires_on"] = "Choose today or a later day."
            # The key works through the whole of that day, in the organization's time zone.
            expires_at = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(tz))
    except ValidationFailed as exc:
        errors["expires_on"] = exc.detail
    if not values["permissions"]:
        errors["permissions"] = "Choose at least one permission."
    try:
        data = ApiKeyCreate(name=values["name"], permissions=values["permissions"], expires_at=expires_at)
    except ValidationError as exc:
        errors = {**pydantic_errors(exc), **errors}
    if errors:
        return await _api_keys_page(request, p, values=values, errors=errors, status=422)
    if not await _first_sending(p, values["form_key"]):
        return redirect(request, "/admin/api-keys",
                        flash="That form was already sent: the key exists, and its secret was shown only once.")
    try:
        async with tenant_transaction(p.db_context()) as db:
            created = await api_keys_service.create_key(db, p.organization_id, p.user_id, p.permissions, data)
            await record(db, "api_key.created", organization_id=p.organization_id, target_type="api_key",
                         target_id=created["id"], changes={"name": data.name, "permissions": created["permissions"]})
    except AppError as error:
        await _forget_sending(p, values["form_key"])
        field = "permissions" if error.code == "permission_denied" else error_field(error)
        return await _api_keys_page(request, p, values=values, errors={field: error.detail}, status=error.status)
    # The secret is on this answer only (no-store): it is kept as a hash and never shown again.
    return await _api_keys_page(request, p, created=created, status=201)


@router.post("/admin/api-keys/{key_id}/revoke")
async def api_key_revoke(request: Request, key_id: uuid.UUID, p: Principal = Depends(require_page("api_keys.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        revoked = await api_keys_service.revoke_key(db, p.organization_id, key_id)
        await record(db, "api_key.revoked", organization_id=p.organization_id, target_type="api_key",
                     target_id=key_id)
    await api_keys_service.forget(revoked["prefix"])
    return redirect(request, "/admin/api-keys", flash="The API key was revoked; it no longer works.")


# ----------------------------------------------------------------------------------------------
# Promo codes (mirrors promo_codes/router.py)
# ----------------------------------------------------------------------------------------------
PROMO = "promo_codes.manage"


async def _org_currency(db: AsyncConnection, org_id: uuid.UUID) -> str:
    currency = (await db.execute(select(organizations.c.currency).where(organizations.c.id == org_id))).scalar()
    return (currency or "USD").strip().upper()


@router.get("/admin/promo-codes")
async def promo_list(request: Request, active: str | None = None, cursor: str | None = None,
                     p: Principal = Depends(require_page(PROMO))):
    only = {"active": True, "inactive": False}.get(active or "")
    async with read_transaction(p.db_context()) as db:
        result = await promo_service.list_codes(db, p.organization_id, active=only, q=None, limit=PAGE_SIZE,
                                                after=_after(cursor))
        tz = await org_timezone(db, p.organization_id)
    return render(request, "admin/promo_codes.html", codes=result["items"], next_cursor=result["next_cursor"],
                  tz=tz, active=active or "")


async def _promo_form(request: Request, p: Principal, *, promo: dict | None, values: dict | None = None,
                      errors: dict | None = None, status: int = 200):
    async with read_transaction(p.db_context()) as db:
        tz = await org_timezone(db, p.organization_id)
        currency = await _org_currency(db, p.organization_id)
        activities = (await activities_service.list_activities(db, p.organization_id, None, 200, None))["items"]
    if values is None:
        values = _promo_values(promo, tz, currency)
    return render(request, "admin/promo_code.html", status=status, promo=promo, values=values, errors=errors or {},
                  activities=activities, tz=tz)


def _promo_values(promo: dict | None, tz: str, currency: str) -> dict[str, Any]:
    """The form's values for a stored code (or a new one)."""
    if promo is None:
        return {"code": "", "description": "", "discount_type": "percent", "discount_value": "", "currency": currency,
                "max_redemptions": "", "valid_from": "", "valid_until": "", "activity_ids": [], "is_active": True}
    value = promo["discount_value"]
    shown = str(value) if promo["discount_type"] == "percent" else f"{value // 100}.{value % 100:02d}"
    return {"code": promo["code"], "description": promo["description"] or "", "discount_type": promo["discount_type"],
            "discount_value": shown, "currency": promo["currency"] or currency,
            "max_redemptions": "" if promo["max_redemptions"] is None else str(promo["max_redemptions"]),
            "valid_from": _local_input(promo["valid_from"], tz), "valid_until": _local_input(promo["valid_until"], tz),
            "activity_ids": [str(a) for a in promo["activity_ids"]], "is_active": promo["is_active"]}


async def _read_promo(request: Request, p: Principal) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, str]]:
    """(typed values, fields for the schema or None, errors) from the posted promo code form."""
    form = await form_data(request)
    async with read_transaction(p.db_context()) as db:
        tz = await org_timezone(db, p.organization_id)
    values = {"code": form.text("code", max_length=200), "description": form.text("description", max_length=1000),
              "discount_type": form.text("discount_type"), "discount_value": form.text("discount_value"),
              "currency": form.text("currency").upper(), "max_redemptions": form.text("max_redemptions"),
              "valid_from": form.text("valid_from"), "valid_until": form.text("valid_until"),
              "activity_ids": form.all("activity_ids"), "is_active": form.checked("is_active")}
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"code": values["code"], "description": values["description"],
                              "discount_type": values["discount_type"], "is_active": values["is_active"]}
    if values["discount_type"] not in ("percent", "amount"):
        errors["discount_type"] = "Choose percent or a fixed amount."
    try:  # typed as 10 or 10.00 in both cases; a percent is a whole number
        amount = form.money("discount_value")
        if amount is None:
            errors["discount_value"] = "Enter the discount."
        elif values["discount_type"] == "percent":
            if amount % 100:
                errors["discount_value"] = "A percent discount is a whole number from 1 to 100."
            fields["discount_value"] = amount // 100
        else:
            fields["discount_value"] = amount
    except ValidationFailed as exc:
        errors["discount_value"] = exc.detail
    fields["currency"] = values["currency"] or None if values["discount_type"] == "amount" else None
    try:
        fields["max_redemptions"] = form.integer("max_redemptions", minimum=1, maximum=10_000_000)
    except ValidationFailed as exc:
        errors["max_redemptions"] = exc.detail
    for name in ("valid_from", "valid_until"):
        try:
            fields[name] = _parse_local(values[name], tz)
        except ValueError:
            errors[name] = "Enter a date and time."
    try:
        fields["activity_ids"] = [uuid.UUID(a) for a in values["activity_ids"]]
    except ValueError:
        errors["activity_ids"] = "Choose activities from the list."
    if not errors:
        try:  # the rules over several fields, each reported at its field
            check_rules(fields["discount_type"], fields["discount_value"], fields["currency"], fields["valid_from"],
                        fields["valid_until"])
        except ValidationFailed as exc:
            errors[error_field(exc)] = exc.detail
    return values, (None if errors else fields), errors


@router.get("/admin/promo-codes/new")
async def promo_new(request: Request, p: Principal = Depends(require_page(PROMO))):
    return await _promo_form(request, p, promo=None)


@router.post("/admin/promo-codes")
async def promo_create(request: Request, p: Principal = Depends(require_page(PROMO))):
    values, fields, errors = await _read_promo(request, p)
    data = None
    if fields is not None:
        try:
            data = PromoCodeCreate(**fields)
        except ValidationError as exc:
            errors = pydantic_errors(exc)
    if data is None:
        return await _promo_form(request, p, promo=None, values=values, errors=errors, status=422)
    try:
        async with tenant_transaction(p.db_context()) as db:
            promo = await promo_service.create(db, p.organization_id, data)
            await record(db, "promo_code.created", organization_id=p.organization_id, target_type="promo_code",
                         target_id=promo["id"], changes=changed({}, promo, PromoCodeCreate.model_fields))
    except AppError as error:
        return await _promo_form(request, p, promo=None, values=values, errors={error_field(error): error.detail},
                                 status=error.status)
    return redirect(request, "/admin/promo-codes", flash=f"Promo code {promo['code']} created.")


async def _promo(p: Principal, promo_id: uuid.UUID) -> dict:
    async with tenant_transaction(p.db_context()) as db:  # the primary, as GET /v1/promo-codes/{id}
        return await promo_service.get(db, p.organization_id, promo_id)


@router.get("/admin/promo-codes/{promo_id}")
async def promo_edit(request: Request, promo_id: uuid.UUID, p: Principal = Depends(require_page(PROMO))):
    return await _promo_form(request, p, promo=await _promo(p, promo_id))


async def _update_promo(p: Principal, promo_id: uuid.UUID, data: PromoCodeUpdate) -> dict:
    async with tenant_transaction(p.db_context()) as db:
        before, after = await promo_service.update_code(db, p.organization_id, promo_id, data)
        if (changes := changed(before, after, data.model_fields_set)):
            await record(db, "promo_code.updated", organization_id=p.organization_id, target_type="promo_code",
                         target_id=promo_id, changes=changes)
    return after


@router.post("/admin/promo-codes/{promo_id}")
async def promo_update(request: Request, promo_id: uuid.UUID, p: Principal = Depends(require_page(PROMO))):
    promo = await _promo(p, promo_id)
    values, fields, errors = await _read_promo(request, p)
    data = None
    if fields is not None:
        try:
            data = PromoCodeUpdate(**fields)
        except ValidationError as exc:
            errors = pydantic_errors(exc)
    if data is None:
        return await _promo_form(request, p, promo=promo, values=values, errors=errors, status=422)
    try:
        after = await _update_promo(p, promo_id, data)
    except AppError as error:
        return await _promo_form(request, p, promo=promo, values=values, errors={error_field(error): error.detail},
                                 status=error.status)
    return redirect(request, "/admin/promo-codes", flash=f"Promo code {after['code']} saved.")


@router.post("/admin/promo-codes/{promo_id}/active")
async def promo_set_active(request: Request, promo_id: uuid.UUID, p: Principal = Depends(require_page(PROMO))):
    form = await form_data(request)
    after = await _update_promo(p, promo_id, PromoCodeUpdate(is_active=form.checked("is_active")))
    state_text = "active again" if after["is_active"] else "deactivated: it no longer applies at checkout"
    return redirect(request, "/admin/promo-codes", flash=f"Promo code {after['code']} is {state_text}.")


@router.post("/admin/promo-codes/{promo_id}/delete")
async def promo_delete(request: Request, promo_id: uuid.UUID, p: Principal = Depends(require_page(PROMO))):
    async with tenant_transaction(p.db_context()) as db:
        before = await promo_service.delete_code(db, p.organization_id, promo_id)
        await record(db, "promo_code.deleted", organization_id=p.organization_id, target_type="promo_code",
                     target_id=promo_id, changes=diff({"code": before["code"], "deleted": False},
                                                      {"code": before["code"], "deleted": True}))
    return redirect(request, "/admin/promo-codes", flash=f"Promo code {before['code']} deleted.")


# ----------------------------------------------------------------------------------------------
# Settings: venues, embed code, calendar feed, cancellation policy, payments, notifications
# ----------------------------------------------------------------------------------------------
STRIPE_MESSAGES = {
    "return": "Back from Stripe. ",
    "refresh": "The Stripe onboarding link expired before it was finished; start onboarding again.",
}
STRIPE_STATUS = {"connected": "Connected: card payments are enabled.",
                 "incomplete": "Onboarding incomplete: Stripe has not enabled charges yet.",
                 "not_connected": "Not connected."}


def script_tag(embed_key: str) -> str:
    """The one tag a business pastes into its site (the loader reads data-embed-key)."""
    base = get_settings().base_url.rstrip("/")
    return f'<script src="{base}/widget.js" data-embed-key="{embed_key}" async></script>'


def _venue_values(venue: dict) -> dict[str, Any]:
    hours = venue.get("operating_hours") or {}
    values = {k: venue.get(k) or "" for k in ("name", "timezone", "address", "city", "state", "zip", "country")}
    values["status"] = venue.get("status") or "active"
    for day, _ in DAYS:
        slot = hours.get(day) if isinstance(hours.get(day), dict) else {}
        values[f"open_{day}"], values[f"close_{day}"] = slot.get("open", ""), slot.get("close", "")
    return values


def _policy_values(activities: list[dict]) -> dict[str, Any]:
    """Pre-filled from the first activity's policy (each activity keeps its own)."""
    policy = (activities[0].get("cancellation_policy") if activities else None) or {}
    return {"full_refund_hours": str(policy.get("full_refund_hours", 24)),
            "partial_refund_hours": "" if policy.get("partial_refund_hours") is None
            else str(policy["partial_refund_hours"]),
            "partial_refund_percent": "" if policy.get("partial_refund_percent") is None
            else str(policy["partial_refund_percent"]),
            "activity_ids": [str(a["id"]) for a in activities]}


async def _settings_page(request: Request, p: Principal, venue_id: uuid.UUID | None = None, *, status: int = 200,
                         **shown: Any):
    """The settings page of one venue; `shown` replaces a section's values / errors after a failed post."""
    async with read_transaction(p.db_context()) as db:
        venues = (await venues_service.list_venues(db, p.organization_id, 200, None))["items"]
    venue = next((v for v in venues if v["id"] == venue_id), venues[0] if venues else None)
    async with tenant_transaction(p.db_context()) as db:  # as GET /v1/organization/settings
        org = await organizations_service.get_settings(db, p.organization_id)
        stripe_status = await payments_service.stripe_status(db, p.organization_id)
    activities: list[dict] = []
    if venue is not None:
        async with read_transaction(p.db_context()) as db:
            activities = (await activities_service.list_activities(db, p.organization_id, venue["id"], 200,
                                                                   None))["items"]
    stripe_return = request.query_params.get("stripe")
    stripe_message = None
    if stripe_return in STRIPE_MESSAGES:
        stripe_message = STRIPE_MESSAGES[stripe_return] + (STRIPE_STATUS[stripe_status]
                                                            if stripe_return == "return" else "")
    context: dict[str, Any] = {
        "venues": venues, "venue": venue, "activities": activities, "org": org, "stripe_status": stripe_status,
        "stripe_status_text": STRIPE_STATUS[stripe_status], "stripe_message": stripe_message,
        "timezones": timezone_names(), "days": DAYS, "roles": list(reversed(ORG_ROLES)),
        "script_tag": script_tag(venue["embed_key"]) if venue else "",
        "can": {k: k in p.permissions for k in ("venues.manage", "activities.manage", "organization.manage")},
        "venue_values": _venue_values(venue) if venue else {}, "venue_errors": {},
        "new_venue_values": {"name": "", "timezone": venue["timezone"] if venue else "UTC"}, "new_venue_errors": {},
        "feed_url": None, "policy_values": _policy_values(activities), "policy_errors": {},
        "org_values": {"name": org["name"], "sms_reminders": org["sms_reminders"],
                       "require_mfa_for": org["require_mfa_for"], "payment_provider": org["payment_provider"]},
        "org_errors": {}, "payments_error": None,
    }
    context.update(shown)
    return render(request, "admin/settings.html", status=status, **context)


@router.get("/admin/settings")
async def settings_page(request: Request, venue: str | None = None,
                        p: Principal = Depends(require_page("venues.view"))):
    try:
        venue_id = uuid.UUID(venue) if venue else None
    except ValueError:
        venue_id = None
    return await _settings_page(request, p, venue_id)


def _hours(form: Form, errors: dict[str, str]) -> dict[str, Any]:
    """operating_hours: {"mon": {"open": "09:00", "close": "18:00"}, ...}; a day left blank is closed."""
    hours: dict[str, Any] = {}
    for day, label in DAYS:
        opens, closes = form.text(f"open_{day}"), form.text(f"close_{day}")
        if not opens and not closes:
            continue
        try:
            o, c = datetime.strptime(opens, "%H:%M"), datetime.strptime(closes, "%H:%M")
        except ValueError:
            errors[f"open_{day}"] = f"{label}: enter both times as HH:MM, or leave both blank when closed."
            continue
        if c <= o:
            errors[f"open_{day}"] = f"{label}: closing must be after opening."
            continue
        hours[day] = {"open": opens, "close": closes}
    return hours


@router.post("/admin/settings/venues/{venue_id}")
async def venue_update(request: Request, venue_id: uuid.UUID, p: Principal = Depends(require_page("venues.manage"))):
    form = await form_data(request)
    values: dict[str, Any] = {k: form.text(k, max_length=600) for k in
                              ("name", "timezone", "address", "city", "state", "zip", "country", "status")}
    for day, _ in DAYS:
        values[f"open_{day}"], values[f"close_{day}"] = form.text(f"open_{day}"), form.text(f"close_{day}")
    errors: dict[str, str] = {}
    hours = _hours(form, errors)
    data = None
    try:
        data = VenueUpdate(name=values["name"], timezone=values["timezone"], address=values["address"],
                           city=values["city"], state=values["state"], zip=values["zip"], country=values["country"],
                           status=values["status"] or "active", operating_hours=hours)
    except ValidationError as exc:
        errors = {**pydantic_errors(exc), **errors}
    if errors or data is None:
        return await _settings_page(request, p, venue_id, status=422, venue_values=values, venue_errors=errors)
    try:
        async with tenant_transaction(p.db_context()) as db:
            after = await venues_service.edit_venue(db, p.organization_id, venue_id, data)
    except AppError as error:
        if error.status == 404:
            raise
        return await _settings_page(request, p, venue_id, status=error.status, venue_values=values,
                                    venue_errors={error_field(error): error.detail})
    return redirect(request, f"/admin/settings?venue={venue_id}", flash=f"Venue {after['name']} saved.")


@router.post("/admin/settings/venues")
async def venue_create(request: Request, p: Principal = Depends(require_page("venues.manage"))):
    form = await form_data(request)
    values = {"name": form.text("name", max_length=600), "timezone": form.text("timezone")}
    current = form.uuid("current_venue") if form.text("current_venue") else None
    try:
        data = VenueCreate(**values)
    except ValidationError as exc:
        return await _settings_page(request, p, current, status=422, new_venue_values=values,
                                    new_venue_errors=pydantic_errors(exc))
    try:
        async with tenant_transaction(p.db_context()) as db:
            venue = await venues_service.create_venue(db, p.organization_id, data)
            await record(db, "venue.created", organization_id=p.organization_id, target_type="venue",
                         target_id=venue["id"], changes=changed({}, venue, VENUE_CREATED_FIELDS))
    except AppError as error:
        return await _settings_page(request, p, current, status=error.status, new_venue_values=values,
                                    new_venue_errors={error_field(error, "name"): error.detail})
    return redirect(request, f"/admin/settings?venue={venue['id']}",
                    flash=f"Venue {venue['name']} created; fill in its address and opening hours.")


@router.post("/admin/settings/venues/{venue_id}/calendar-token")
async def calendar_rotate(request: Request, venue_id: uuid.UUID, p: Principal = Depends(require_page("venues.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        token, existed = await calendars_service.rotate_token(db, p.organization_id, venue_id)
        await record(db, "venue.calendar_token_rotated" if existed else "venue.calendar_token_created",
                     organization_id=p.organization_id, target_type="venue", target_id=venue_id,
                     changes={"calendar_token": {"from": "[redacted]" if existed else None, "to": "[redacted]"}})
    # Only the token's hash is kept: the link is on this answer (no-store) and never again.
    return await _settings_page(request, p, venue_id, feed_url=feed_url(venue_id, token))


@router.post("/admin/settings/venues/{venue_id}/cancellation-policy")
async def policy_update(request: Request, venue_id: uuid.UUID,
                        p: Principal = Depends(require_page("activities.manage"))):
    """The policy lives on each activity (PATCH /v1/activities/{id} cancellation_policy): set on the
    activities chosen, all in one transaction. Bookings keep the policy they were made under."""
    form = await form_data(request)
    values = {k: form.text(k) for k in ("full_refund_hours", "partial_refund_hours", "partial_refund_percent")}
    values["activity_ids"] = form.all("activity_ids")
    errors: dict[str, str] = {}
    numbers: dict[str, int | None] = {}
    for name, maximum in (("full_refund_hours", 8760), ("partial_refund_hours", 8760),
                          ("partial_refund_percent", 100)):
        try:
            numbers[name] = form.integer(name, minimum=0 if name != "partial_refund_percent" else 1, maximum=maximum)
        except ValidationFailed as exc:
            errors[name] = exc.detail
    if not errors:
        if numbers["full_refund_hours"] is None:
            errors["full_refund_hours"] = "Enter how many hours before the start a full refund applies."
        elif (numbers["partial_refund_hours"] is None) != (numbers["partial_refund_percent"] is None):
            missing = "partial_refund_percent" if numbers["partial_refund_percent"] is None else "partial_refund_hours"
            errors[missing] = "A partial refund needs both its hours and its percentage (or leave both blank)."
        elif numbers["partial_refund_hours"] is not None and numbers["partial_refund_hours"] > numbers[
                "full_refund_hours"]:
            errors["partial_refund_hours"] = "The partial window ends later than the full one: use fewer hours."
    try:
        chosen = [uuid.UUID(a) for a in values["activity_ids"]]
    except ValueError:
        chosen = []
    if not chosen:
        errors["activity_ids"] = "Choose the activities this policy applies to."
    policy = None
    if not errors:
        try:
            policy = CancellationPolicy(**{k: v for k, v in numbers.items() if v is not None})
        except ValidationError as exc:
            errors = pydantic_errors(exc, fallback="full_refund_hours")
    if errors or policy is None:
        return await _settings_page(request, p, venue_id, status=422, policy_values=values, policy_errors=errors)
    data = ActivityUpdate(cancellation_policy=policy)
    async with tenant_transaction(p.db_context()) as db:
        for activity_id in chosen:
            before, _ = await activities_service.edit_activity(db, p.organization_id, activity_id, data)
            if before["venue_id"] != venue_id:  # the whole transaction rolls back: nothing is saved
                raise ValidationFailed("Choose activities of this venue.", field="activity_ids")
    count = len(chosen)
    return redirect(request, f"/admin/settings?venue={venue_id}#policy",
                    flash=f"Cancellation policy saved for {count} activit{'y' if count == 1 else 'ies'}; "
                          "bookings already made keep the policy they were made under.")


@router.post("/admin/settings/stripe/onboarding")
async def stripe_onboarding(request: Request, p: Principal = Depends(require_page("organization.manage"))):
    try:
        async with tenant_transaction(p.db_context()) as db:
            url = await payments_service.start_stripe_onboarding(db, p.organization_id, p.email)
    except AppError as error:
        return await _settings_page(request, p, status=error.status, payments_error=error.detail)
    return RedirectResponse(url, status_code=303)


async def _save_org_settings(request: Request, p: Principal, data: OrganizationSettingsUpdate, values: dict,
                             done: str, anchor: str):
    try:
        async with tenant_transaction(p.db_context()) as db:
            await organizations_service.update_settings(db, p.organization_id, data)
    except AppError as error:
        return await _settings_page(request, p, status=error.status, org_values=values,
                                    org_errors={error_field(error): error.detail})
    return redirect(request, f"/admin/settings#{anchor}", flash=done)


async def _org_values(p: Principal) -> dict[str, Any]:
    async with tenant_transaction(p.db_context()) as db:
        org = await organizations_service.get_settings(db, p.organization_id)
    return {k: org[k] for k in ("name", "sms_reminders", "require_mfa_for", "payment_provider")}


@router.post("/admin/settings/payments")
async def payments_update(request: Request, p: Principal = Depends(require_page("organization.manage"))):
    form = await form_data(request)
    values = {**await _org_values(p), "payment_provider": form.text("payment_provider")}
    try:
        data = OrganizationSettingsUpdate(payment_provider=values["payment_provider"])
    except ValidationError as exc:
        return await _settings_page(request, p, status=422, org_values=values, org_errors=pydantic_errors(exc))
    return await _save_org_settings(request, p, data, values, "Payment settings saved.", "payments")


@router.post("/admin/settings/organization")
async def organization_update(request: Request, p: Principal = Depends(require_page("organization.manage"))):
    form = await form_data(request)
    values = {**await _org_values(p), "name": form.text("name", max_length=600),
              "sms_reminders": form.checked("sms_reminders"), "require_mfa_for": form.all("require_mfa_for")}
    try:
        data = OrganizationSettingsUpdate(name=values["name"], sms_reminders=values["sms_reminders"],
                                          require_mfa_for=values["require_mfa_for"])
    except ValidationError as exc:
        return await _settings_page(request, p, status=422, org_values=values, org_errors=pydantic_errors(exc))
    return await _save_org_settings(request, p, data, values, "Organization settings saved.", "organization")
