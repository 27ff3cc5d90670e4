"""The platform console at /platform (system admins): organizations with their metrics, onboarding
an organization with its owner, suspension, plan changes, access grants, plans, feature flags and
the platform audit log. The same services, permissions and transactions as /v1/platform
(platform/router.py, audit/router.py).

Forms re-render with the values typed and each error at its field (422); a service refusal names
its field the API's way (`owner.email`), mapped to the form's names here. Every write is one
transaction: a refusal writes nothing."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from bookingtms.audit import service as audit_service
from bookingtms.db.engine import DbContext, read_transaction, tenant_transaction
from bookingtms.errors import AppError, ValidationFailed
from bookingtms.http.pagination import decode_cursor
from bookingtms.http.principal import Principal
from bookingtms.platform import service
from bookingtms.platform.schemas import (
    AccessGrantCreate,
    FeatureFlagCreate,
    FeatureFlagUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    PlanCreate,
    PlanUpdate,
)
from bookingtms.web.forms import Form, form_data
from bookingtms.web.session import require_platform_page
from bookingtms.web.templating import redirect, render

router = APIRouter()
PAGE = 25

VIEW = require_platform_page("platform.organizations.view")
MANAGE = require_platform_page("platform.organizations.manage")
GRANTS = require_platform_page("platform.access_grants.manage")
PLANS = require_platform_page("platform.plans.manage")
FLAGS = require_platform_page("platform.flags.manage")
AUDIT = require_platform_page("platform.audit.view")

# What a pydantic or service error calls a field -> the form's input name.
FIELD_NAMES = {"owner.email": "owner_email", "owner.full_name": "owner_name", "owner": "owner_email"}
# Friendlier words than pydantic's for the usual mistakes.
PATTERN_HINTS = {
    "slug": "Use lowercase letters, digits and hyphens, starting with a letter or digit.",
    "currency": "Use a three-letter ISO code such as USD or EUR.",
    "name": "Use lowercase letters, digits and . _ : - (a feature flag's name cannot change later).",
}


# ----------------------------------------------------------------------------------------------
# Form helpers
# ----------------------------------------------------------------------------------------------
def _field(loc: Any) -> str:
    name = ".".join(str(part) for part in loc) if isinstance(loc, (tuple, list)) else str(loc or "")
    return FIELD_NAMES.get(name, name.split(".")[0] if name else "form")


def _pydantic_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = _field(err.get("loc")) or "form"
        message = str(err.get("msg", "Invalid value.")).removeprefix("Value error, ")
        if err.get("type") == "string_too_short" and (err.get("ctx") or {}).get("min_length") == 1:
            message = "Fill this in."
        elif err.get("type") == "string_pattern_mismatch" and field in PATTERN_HINTS:
            message = PATTERN_HINTS[field]
        elif "email" in field and err.get("type") == "value_error":
            message = "Enter a valid email address."
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


def _app_errors(error: AppError) -> dict[str, str]:
    """A service refusal at its field (or at the top of the form)."""
    listed = error.extra.get("errors")
    if listed:
        return {_field(e.get("field")): e.get("message", error.detail) for e in listed}
    return {_field(error.extra.get("field")) if error.extra.get("field") else "form": error.detail}


def _typed(form: Form, *names: str) -> dict[str, str]:
    return {name: form.text(name) for name in names}


def _optional_int(form: Form, name: str, errors: dict[str, str]) -> int | None:
    try:
        return form.integer(name)
    except ValidationFailed as exc:
        errors[name] = exc.detail
        return None


def _page_url(path: str, params: dict[str, Any], cursor: str | None) -> str | None:
    if not cursor:
        return None
    return f"{path}?{urlencode({**{k: v for k, v in params.items() if v}, 'cursor': cursor})}"


# ----------------------------------------------------------------------------------------------
# Organizations
# ----------------------------------------------------------------------------------------------
@router.get("/platform")
async def organizations(request: Request, q: str = "", status: str = "", cursor: str | None = None,
                        limit: int = Query(PAGE, ge=1, le=100), p: Principal = Depends(VIEW)):
    q = q.strip()[:200]
    status = status if status in ("active", "suspended") else ""
    after = decode_cursor(cursor) if cursor else None
    async with tenant_transaction(p.db_context()) as db:
        listing = await service.list_organizations(db, limit, after, status=status or None, q=q or None)
        stats = await service.stats(db) if "platform.stats.view" in p.permissions else None
    kept = {"q": q, "status": status, "limit": limit if limit != PAGE else None}
    return render(request, "platform/organizations.html", orgs=listing["items"], stats=stats, q=q, status_filter=status,
                  next_url=_page_url("/platform", kept, listing["next_cursor"]),
                  first_url="/platform?" + urlencode({k: v for k, v in kept.items() if v}) if cursor else None)


async def _plan_choices(db) -> list[tuple[str, str]]:
    plans = (await service.list_plans(db, active=True))["items"]
    return [(plan["slug"], f"{plan['name']} ({plan['slug']})") for plan in plans]


@lru_cache
def _zone_choices() -> list[tuple[str, str]]:
    return [(zone, zone) for zone in sorted(available_timezones()) if "/" in zone or zone == "UTC"]


NEW_ORG_FIELDS = ("name", "slug", "plan", "timezone", "currency", "owner_email", "owner_name")


async def _new_org_form(request: Request, p: Principal, values: dict[str, str], errors: dict[str, str],
                        status: int = 200):
    async with tenant_transaction(p.db_context()) as db:
        plans = await _plan_choices(db)
    return render(request, "platform/organization_new.html", status=status, values=values, errors=errors,
                  plans=plans, zones=_zone_choices())


@router.get("/platform/organizations/new")
async def new_organization(request: Request, p: Principal = Depends(MANAGE)):
    values = dict.fromkeys(NEW_ORG_FIELDS, "") | {"plan": "free", "timezone": "UTC", "currency": "USD"}
    return await _new_org_form(request, p, values, {})


@router.post("/platform/organizations")
async def create_organization(request: Request, p: Principal = Depends(MANAGE)):
    form = await form_data(request)
    values = _typed(form, *NEW_ORG_FIELDS)
    values["currency"] = values["currency"].upper()
    try:
        data = OrganizationCreate(name=values["name"], slug=values["slug"] or None, plan=values["plan"] or "free",
                                  timezone=values["timezone"] or "UTC", currency=values["currency"] or "USD",
                                  owner={"email": values["owner_email"], "full_name": values["owner_name"]})
    except ValidationError as exc:
        return await _new_org_form(request, p, values, _pydantic_errors(exc), status=422)
    try:
        async with tenant_transaction(p.db_context()) as db:
            created = await service.create_organization(db, p.user_id, data)
    except AppError as error:
        if error.status >= 500:
            raise
        return await _new_org_form(request, p, values, _app_errors(error), status=error.status)
    org = created["organization"]
    return redirect(request, f"/platform/organizations/{org['id']}",
                    flash=f"{org['name']} created. {created['owner']['email']} has been emailed a temporary "
                          f"password to change at first sign-in.")


async def _organization_page(request: Request, p: Principal, org_id: uuid.UUID, *, errors: dict[str, str] | None = None,
                             values: dict[str, str] | None = None, status: int = 200):
    async with tenant_transaction(p.db_context()) as db:
        org = await service.get_organization(db, org_id)
        venues = await service.organization_venues(db, org_id)
        owner = await service.organization_owner(db, org_id)
        plans = await _plan_choices(db)
        grants = (await service.list_grants(db, org_id, 50, None))["items"] \
            if "platform.access_grants.manage" in p.permissions else None
    return render(request, "platform/organization.html", status=status, org=org, venues=venues, owner=owner,
                  plans=plans, grants=grants, errors=errors or {},
                  values={"reason": "", "duration_minutes": "60", **(values or {})},
                  audit_url="/platform/audit-log?" + urlencode({"organization_id": str(org_id)}))


@router.get("/platform/organizations/{org_id}")
async def organization(request: Request, org_id: uuid.UUID, p: Principal = Depends(VIEW)):
    return await _organization_page(request, p, org_id)


async def _update(request: Request, p: Principal, org_id: uuid.UUID, data: OrganizationUpdate, flash: str):
    try:
        async with tenant_transaction(p.db_context()) as db:
            await service.update_organization(db, org_id, data)
    except AppError as error:
        if error.status in (404,) or error.status >= 500:
            raise
        return await _organization_page(request, p, org_id, errors=_app_errors(error), status=error.status)
    return redirect(request, f"/platform/organizations/{org_id}", flash=flash)


@router.post("/platform/organizations/{org_id}/plan")
async def change_plan(request: Request, org_id: uuid.UUID, p: Principal = Depends(MANAGE)):
    form = await form_data(request)
    plan = form.text("plan")
    if not plan:
        return await _organization_page(request, p, org_id, errors={"plan": "Choose a plan."}, status=422)
    return await _update(request, p, org_id, OrganizationUpdate(plan=plan[:64]), f"Plan changed to {plan}.")


@router.post("/platform/organizations/{org_id}/status")
async def change_status(request: Request, org_id: uuid.UUID, p: Principal = Depends(MANAGE)):
    form = await form_data(request)
    wanted = form.text("status")
    if wanted not in ("active", "suspended"):
        return await _organization_page(request, p, org_id, errors={"status": "Choose suspend or reactivate."},
                                        status=422)
    if wanted == "suspended" and not form.checked("confirm"):
        return await _organization_page(request, p, org_id, status=422, errors={
            "confirm": "Tick the box to confirm: a suspended organization's widget stops taking bookings."})
    flash = ("Organization suspended: its widget no longer takes bookings." if wanted == "suspended"
             else "Organization reactivated.")
    return await _update(request, p, org_id, OrganizationUpdate(status=wanted), flash)


@router.post("/platform/organizations/{org_id}/access-grants")
async def create_grant(request: Request, org_id: uuid.UUID, p: Principal = Depends(GRANTS)):
    form = await form_data(request)
    values = _typed(form, "reason", "duration_minutes")
    try:
        data = AccessGrantCreate(reason=values["reason"], duration_minutes=values["duration_minutes"] or 0)
    except ValidationError as exc:
        return await _organization_page(request, p, org_id, errors=_pydantic_errors(exc), values=values, status=422)
    async with tenant_transaction(p.db_context()) as db:
        grant = await service.create_grant(db, p.user_id, org_id, data)
    return redirect(request, f"/platform/organizations/{org_id}",
                    flash=f"Access granted until {grant['expires_at']:%Y-%m-%d %H:%M} UTC.")


@router.post("/platform/organizations/{org_id}/access-grants/{grant_id}/revoke")
async def revoke_grant(request: Request, org_id: uuid.UUID, grant_id: uuid.UUID, p: Principal = Depends(GRANTS)):
    try:
        async with tenant_transaction(p.db_context()) as db:
            await service.revoke_grant(db, org_id, grant_id)
    except AppError as error:
        if error.code != "access_grant_ended":
            raise
        return redirect(request, f"/platform/organizations/{org_id}", flash="That access grant had already ended.")
    return redirect(request, f"/platform/organizations/{org_id}", flash="Access grant revoked.")


# ----------------------------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------------------------
PLAN_FIELDS = ("name", "slug", "price_monthly", "currency", "max_venues", "max_staff", "max_bookings")


def _plan_values(plan: dict[str, Any] | None) -> dict[str, Any]:
    if plan is None:
        return dict.fromkeys(PLAN_FIELDS, "") | {"currency": "USD", "price_monthly": "0", "is_active": True}
    price = plan["price_monthly"]
    return {"name": plan["name"], "slug": plan["slug"], "currency": plan["currency"],
            "price_monthly": f"{price // 100}.{price % 100:02d}",
            **{k: "" if plan[k] is None else str(plan[k]) for k in ("max_venues", "max_staff", "max_bookings")},
            "is_active": plan["is_active"]}


def _plan_from_form(form: Form) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(what was typed, the fields for the schema, errors found reading numbers)."""
    values: dict[str, Any] = _typed(form, *PLAN_FIELDS) | {"is_active": form.checked("is_active")}
    values["currency"] = values["currency"].upper()
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"name": values["name"], "slug": values["slug"], "currency": values["currency"] or "USD",
                              "is_active": values["is_active"]}
    try:
        fields["price_monthly"] = form.money("price_monthly") or 0
    except ValidationFailed as exc:
        errors["price_monthly"] = exc.detail
    for name in ("max_venues", "max_staff", "max_bookings"):
        fields[name] = _optional_int(form, name, errors)  # empty: unlimited
    return values, fields, errors


@router.get("/platform/plans")
async def plans(request: Request, p: Principal = Depends(VIEW)):
    async with tenant_transaction(p.db_context()) as db:
        items = (await service.list_plans(db))["items"]
    return render(request, "platform/plans.html", plans=items)


@router.get("/platform/plans/new")
async def new_plan(request: Request, p: Principal = Depends(PLANS)):
    return render(request, "platform/plan_form.html", plan=None, values=_plan_values(None), errors={})


async def _save(request: Request, p: Principal, template: str, context: dict[str, Any], errors: dict[str, str],
                build, write, done_url: str, done_flash):
    """The plan and flag forms: `build()` the schema from the form, `write(db, data)` it in one
    transaction and go back to the list, or show the form again with each error at its field."""
    try:
        data = build()
    except ValidationError as exc:
        errors = _pydantic_errors(exc) | errors
    if errors:
        return render(request, template, status=422, errors=errors, **context)
    try:
        async with tenant_transaction(p.db_context()) as db:
            saved = await write(db, data)
    except AppError as error:
        if error.status == 404 or error.status >= 500:
            raise
        return render(request, template, status=error.status, errors=_app_errors(error), **context)
    return redirect(request, done_url, flash=done_flash(saved))


@router.post("/platform/plans")
async def create_plan(request: Request, p: Principal = Depends(PLANS)):
    values, fields, errors = _plan_from_form(await form_data(request))
    return await _save(request, p, "platform/plan_form.html", {"plan": None, "values": values}, errors,
                       lambda: PlanCreate(**fields), service.create_plan, "/platform/plans",
                       lambda plan: f"Plan {plan['name']} created.")


@router.get("/platform/plans/{plan_id}")
async def edit_plan(request: Request, plan_id: uuid.UUID, p: Principal = Depends(PLANS)):
    async with tenant_transaction(p.db_context()) as db:
        plan = await service.get_plan(db, plan_id)
    return render(request, "platform/plan_form.html", plan=plan, values=_plan_values(plan), errors={})


@router.post("/platform/plans/{plan_id}")
async def update_plan(request: Request, plan_id: uuid.UUID, p: Principal = Depends(PLANS)):
    values, fields, errors = _plan_from_form(await form_data(request))
    async with tenant_transaction(p.db_context()) as db:
        plan = await service.get_plan(db, plan_id)
    return await _save(request, p, "platform/plan_form.html", {"plan": plan, "values": values}, errors,
                       lambda: PlanUpdate(**fields), lambda db, data: service.update_plan(db, plan_id, data),
                       "/platform/plans", lambda saved: f"Plan {saved['name']} saved.")


# ----------------------------------------------------------------------------------------------
# Feature flags
# ----------------------------------------------------------------------------------------------
def _flag_values(flag: dict[str, Any] | None) -> dict[str, Any]:
    if flag is None:
        return {"name": "", "description": "", "enabled": False, "rollout_percent": "0", "org_whitelist": ""}
    return {"name": flag["name"], "description": flag["description"], "enabled": flag["enabled"],
            "rollout_percent": str(flag["rollout_percent"]),
            "org_whitelist": "\n".join(str(o) for o in flag["org_whitelist"] or [])}


def _flag_from_form(form: Form) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = _typed(form, "name", "description", "rollout_percent") | {
        "enabled": form.checked("enabled"), "org_whitelist": form.text("org_whitelist", max_length=400_000)}
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"description": values["description"], "enabled": values["enabled"]}
    fields["rollout_percent"] = _optional_int(form, "rollout_percent", errors) or 0
    ids = []
    for token in values["org_whitelist"].replace(",", " ").split():
        try:
            ids.append(uuid.UUID(token))
        except ValueError:
            errors["org_whitelist"] = f"'{token[:60]}' is not an organization id (one id per line)."
            break
    fields["org_whitelist"] = ids
    return values, fields, errors


@router.get("/platform/feature-flags")
async def flags(request: Request, p: Principal = Depends(FLAGS)):
    async with tenant_transaction(p.db_context()) as db:
        items = (await service.list_flags(db))["items"]
    return render(request, "platform/flags.html", flags=items)


@router.get("/platform/feature-flags/new")
async def new_flag(request: Request, p: Principal = Depends(FLAGS)):
    return render(request, "platform/flag_form.html", flag=None, values=_flag_values(None), errors={})


@router.post("/platform/feature-flags")
async def create_flag(request: Request, p: Principal = Depends(FLAGS)):
    values, fields, errors = _flag_from_form(await form_data(request))
    return await _save(request, p, "platform/flag_form.html", {"flag": None, "values": values}, errors,
                       lambda: FeatureFlagCreate(name=values["name"], **fields), service.create_flag,
                       "/platform/feature-flags", lambda flag: f"Feature flag {flag['name']} created.")


@router.get("/platform/feature-flags/{flag_id}")
async def edit_flag(request: Request, flag_id: uuid.UUID, p: Principal = Depends(FLAGS)):
    async with tenant_transaction(p.db_context()) as db:
        flag = await service.get_flag(db, flag_id)
    return render(request, "platform/flag_form.html", flag=flag, values=_flag_values(flag), errors={})


@router.post("/platform/feature-flags/{flag_id}")
async def update_flag(request: Request, flag_id: uuid.UUID, p: Principal = Depends(FLAGS)):
    values, fields, errors = _flag_from_form(await form_data(request))
    async with tenant_transaction(p.db_context()) as db:
        flag = await service.get_flag(db, flag_id)
    values["name"] = flag["name"]  # cannot change
    return await _save(request, p, "platform/flag_form.html", {"flag": flag, "values": values}, errors,
                       lambda: FeatureFlagUpdate(**fields), lambda db, data: service.update_flag(db, flag_id, data),
                       "/platform/feature-flags", lambda saved: f"Feature flag {saved['name']} saved.")


# ----------------------------------------------------------------------------------------------
# Audit log
# ----------------------------------------------------------------------------------------------
def _day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2100:
        message = "Enter a date as YYYY-MM-DD, between the years 2000 and 2100."
        raise ValidationFailed(message, field=field, errors=[{"field": field, "message": message}])
    return day


@router.get("/platform/audit-log")
async def audit_log(request: Request, action: str = "", actor: str = "", target_type: str = "", target: str = "",
                    organization_id: str = "", start: str = "", end: str = "", cursor: str | None = None,
                    p: Principal = Depends(AUDIT)):
    filters = {"action": action.strip()[:100], "actor": actor.strip()[:320], "target_type": target_type.strip()[:50],
               "target": target.strip()[:100], "organization_id": organization_id.strip()[:36],
               "start": start.strip()[:10], "end": end.strip()[:10]}
    errors: dict[str, str] = {}
    org = None
    if filters["organization_id"]:
        try:
            org = uuid.UUID(filters["organization_id"])
        except ValueError:
            errors["organization_id"] = "Enter an organization id (a UUID)."
    bounds: dict[str, datetime | None] = {"start": None, "end": None}
    for name in ("start", "end"):
        try:
            day = _day(filters[name], name)
        except ValidationFailed as exc:
            errors[name] = exc.detail
            continue
        if day is not None:  # `to` includes its day, as in the API
            bounds[name] = datetime.combine(day + timedelta(days=1 if name == "end" else 0), datetime.min.time(),
                                            tzinfo=timezone.utc)
    entries: dict[str, Any] = {"items": [], "next_cursor": None}
    if not errors:
        # The platform's own view, as /v1/platform/audit-log reads it (from the replica).
        async with read_transaction(DbContext(user_id=p.user_id, is_platform=True)) as db:
            entries = await audit_service.list_entries(
                db, organization_id=org, action=filters["action"] or None, actor=filters["actor"] or None,
                target_type=filters["target_type"] or None, target_id=filters["target"] or None,
                start=bounds["start"], end=bounds["end"], limit=50,
                after=decode_cursor(cursor) if cursor else None)
    return render(request, "platform/audit_log.html", status=422 if errors else 200, entries=entries["items"],
                  filters=filters, errors=errors,
                  next_url=_page_url("/platform/audit-log", filters, entries["next_cursor"]))
