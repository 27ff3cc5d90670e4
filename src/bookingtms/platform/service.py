"""Platform administration (PRD 2.1, 4.2.1; issue 3 items 7 and 8): onboarding organizations,
their live metrics, suspension and subscription state, plans, feature flags, platform statistics
and time-limited access grants.

Every write here is audited with the request's actor (actor_type `platform`): changes about an
organization (its status, plan, subscription, access grants) go to that organization's chain, so
the business can read what the platform did to it; plans, flags and onboarding go to the platform
chain.

Decisions:
* A plan in use may be deactivated: it is retired, not withdrawn. Organizations on it keep it (and
  its limits); nobody can be put on it any more (new organizations, plan changes). Removing a plan
  from under paying customers is a billing decision, not a switch.
* Lowering a plan's limits, or moving an organization to a smaller plan, never deletes anything:
  limits refuse only new venues, staff and bookings (403 `plan_limit_reached`).
* `status` (active|suspended) switches the service; `subscription_status` is the billing state,
  and the two are set independently (a past-due customer is often given grace before suspension).
* A revoked access grant's end is written when it is revoked (`access_grant.revoked`); the job
  writes `access_grant.expired` for grants that ran out. Each grant's end is written once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit import service as audit
from bookingtms.auth.passwords import hash_password, temporary_password
from bookingtms.auth.service import check_password_policy
from bookingtms import cache
from bookingtms.db.engine import DbContext, after_commit, as_dicts, set_context, tenant_transaction
from bookingtms.errors import Conflict, NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.models import access_grants, feature_flags, organizations, plans, users, venues
from bookingtms.notifications import service as notifications
from bookingtms.platform.schemas import (
    AccessGrantCreate,
    FeatureFlagCreate,
    FeatureFlagUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    PlanCreate,
    PlanUpdate,
)
from bookingtms.venues.service import embed_keys, new_embed_key, slugify, staff_view

TRIAL = timedelta(days=14)


async def create_organization(db: AsyncConnection, admin_id: uuid.UUID, data: OrganizationCreate) -> dict[str, Any]:
    """Organization, default venue and owner (super-admin), all in the caller's one transaction."""
    plan_id = (await db.execute(select(plans.c.id).where(plans.c.slug == data.plan, plans.c.is_active))).scalar_one_or_none()
    if plan_id is None:
        raise ValidationFailed(f"No active plan '{data.plan}'.", code="unknown_plan", field="plan")
    if data.owner.password is not None:
        check_password_policy(data.owner.password, "owner.password")
    if (await db.execute(text("SELECT 1 FROM find_login_user(:e)"), {"e": data.owner.email})).first():
        raise Conflict(f"A user with email {data.owner.email} already exists.", code="email_taken", field="owner.email")
    slug = data.slug or slugify(data.name)
    if (await db.execute(select(organizations.c.id).where(organizations.c.slug == slug))).first():
        raise Conflict(f"The slug '{slug}' is taken.", code="slug_taken", field="slug")

    org = (await db.execute(organizations.insert().values(
        name=data.name, slug=slug, plan_id=plan_id, currency=data.currency, subscription_status="trial",
        trial_ends_at=func.now() + TRIAL,
    ).returning(organizations))).one()
    # From here on the transaction acts inside the new organization, as row-level security asks.
    await set_context(db, DbContext(organization_id=org.id, user_id=admin_id, is_platform=True))
    venue = (await db.execute(venues.insert().values(
        organization_id=org.id, name=data.name, slug="main", embed_key=new_embed_key(), timezone=data.timezone,
    ).returning(venues))).one()
    password = data.owner.password or temporary_password()
    owner = (await db.execute(users.insert().values(
        organization_id=org.id, email=data.owner.email, full_name=data.owner.full_name, role="super-admin",
        password_hash=hash_password(password), must_change_password=data.owner.password is None,
    ).returning(users.c.id, users.c.email))).one()
    await db.execute(update(organizations).where(organizations.c.id == org.id).values(owner_id=owner.id))
    await notifications.enqueue(db, org.id, "welcome", owner.email, {
        "organization": data.name, "full_name": data.owner.full_name, "email": owner.email,
        "temporary_password": None if data.owner.password else password})
    await set_context(db, DbContext(user_id=admin_id, is_platform=True))
    await audit.record(db, "organization.created", organization_id=None, target_type="organization", target_id=org.id,
                       changes={"name": data.name, "slug": slug, "plan": data.plan, "owner_email": owner.email})
    # The same shapes as GET /v1/platform/organizations/{id} and GET /v1/venues/{id} answer.
    return {"organization": await get_organization(db, org.id), "venue": staff_view(venue),
            "owner": {"id": owner.id, "email": owner.email}}




# --------------------------------------------------------------------------------------------
# Organizations with live metrics
# --------------------------------------------------------------------------------------------
_o = organizations.c
_ORG_COLUMNS = (_o.id, _o.name, _o.slug, _o.status, _o.suspended_at, _o.plan_id, _o.subscription_status,
                _o.trial_ends_at, _o.currency, _o.application_fee_percentage, _o.owner_id, _o.stripe_account_id,
                _o.stripe_charges_enabled, _o.stripe_payouts_enabled, _o.settings, _o.created_at, _o.updated_at)
_METRICS = text("SELECT * FROM organization_metrics(:ids)").bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))
_ZERO = {"venues_count": 0, "staff_count": 0, "bookings_this_month": 0, "revenue_this_month": 0}

# subscription_status -> where it may go next (staying put is always allowed)
SUBSCRIPTION_TRANSITIONS: dict[str, frozenset[str]] = {
    "trial": frozenset({"active", "past_due", "suspended", "cancelled"}),
    "active": frozenset({"past_due", "suspended", "cancelled"}),
    "past_due": frozenset({"active", "suspended", "cancelled"}),
    "suspended": frozenset({"active", "past_due", "cancelled"}),
    "cancelled": frozenset({"active"}),  # a returning customer subscribes again; a trial is only once
}


def _org_query():
    return (select(*_ORG_COLUMNS, plans.c.slug.label("plan"), plans.c.name.label("plan_name"))
            .join_from(organizations, plans, plans.c.id == _o.plan_id))


async def _with_metrics(db: AsyncConnection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One call of organization_metrics() for the whole page (counted live, never cached)."""
    if not rows:
        return rows
    found = {m.organization_id: dict(m._mapping) for m in await db.execute(_METRICS, {"ids": [r["id"] for r in rows]})}
    out = []
    for row in rows:
        metrics = found.get(row["id"], {})
        out.append(row | {k: int(metrics.get(k) or 0) for k in _ZERO})
    return out


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_organizations(db: AsyncConnection, limit: int, after: list | None, *, status: str | None = None,
                             q: str | None = None) -> dict[str, Any]:
    """Newest first; `status` filters, `q` matches name or slug (case-insensitive substring)."""
    query = _org_query()
    if status:
        query = query.where(_o.status == status)
    if q and q.strip():
        pattern = _like(q.strip())
        query = query.where(or_(_o.name.ilike(pattern, escape="\\"), _o.slug.ilike(pattern, escape="\\")))
    if (key := keyset(after, datetime)):
        query = query.where(func.row(_o.created_at, _o.id) < func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(_o.created_at.desc(), _o.id.desc()).limit(limit + 1)))
    result = page(rows, limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))
    result["items"] = await _with_metrics(db, result["items"])
    return result


async def _organization(db: AsyncConnection, org_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    query = _org_query().where(_o.id == org_id)
    if lock:
        query = query.with_for_update(of=organizations)
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return dict(row._mapping)


async def get_organization(db: AsyncConnection, org_id: uuid.UUID) -> dict[str, Any]:
    return (await _with_metrics(db, [await _organization(db, org_id)]))[0]


async def _active_plan_id(db: AsyncConnection, slug: str, field: str = "plan") -> uuid.UUID:
    plan_id = (await db.execute(select(plans.c.id).where(plans.c.slug == slug, plans.c.is_active))).scalar_one_or_none()
    if plan_id is None:
        raise ValidationFailed(f"No active plan '{slug}'.", code="unknown_plan", field=field)
    return plan_id


async def update_organization(db: AsyncConnection, org_id: uuid.UUID, data: OrganizationUpdate) -> dict[str, Any]:
    """Suspend/reactivate, change plan, subscription state, trial end or fee; audited with the
    changed fields in the organization's chain."""
    current = await _organization(db, org_id, lock=True)
    wanted = data.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    if "status" in wanted and wanted["status"] != current["status"]:
        values["status"] = wanted["status"]
        values["suspended_at"] = func.now() if wanted["status"] == "suspended" else None
    if "plan" in wanted and wanted["plan"] != current["plan"]:
        values["plan_id"] = await _active_plan_id(db, wanted["plan"])
    if "subscription_status" in wanted and wanted["subscription_status"] != current["subscription_status"]:
        old, new = current["subscription_status"], wanted["subscription_status"]
        if new not in SUBSCRIPTION_TRANSITIONS[old]:
            allowed = ", ".join(sorted(SUBSCRIPTION_TRANSITIONS[old]))
            raise Conflict(f"A subscription cannot go from '{old}' to '{new}' (from '{old}': {allowed}).",
                           code="invalid_subscription_transition", field="subscription_status",
                           allowed=sorted(SUBSCRIPTION_TRANSITIONS[old]))
        values["subscription_status"] = new
    if "trial_ends_at" in wanted and wanted["trial_ends_at"] != current["trial_ends_at"]:
        values["trial_ends_at"] = wanted["trial_ends_at"]
    if "application_fee_percentage" in wanted and wanted["application_fee_percentage"] != current["application_fee_percentage"]:
        values["application_fee_percentage"] = wanted["application_fee_percentage"]
    if not values:
        return await get_organization(db, org_id)
    await db.execute(update(organizations).where(_o.id == org_id).values(**values))
    if "status" in values:  # the widget's cached lookups carry the status: suspension applies at once
        after_commit(db, lambda: _forget_embed_lookups(org_id))
    after = await _organization(db, org_id)
    changes = audit.diff(current, after)
    changes.pop("plan_id", None)  # the slug says it
    changes.pop("plan_name", None)
    action = {"suspended": "organization.suspended", "active": "organization.reactivated"}.get(values.get("status"),
                                                                                              "organization.updated")
    await audit.record(db, action, organization_id=org_id, target_type="organization", target_id=org_id,
                       changes=changes)
    return (await _with_metrics(db, [after]))[0]


async def organization_venues(db: AsyncConnection, org_id: uuid.UUID) -> list[dict[str, Any]]:
    """The organization's venues as the platform may see them without an access grant (name,
    place, zone, status: what its widget shows anyway), from organization_venues()."""
    return as_dicts(await db.execute(text("SELECT * FROM organization_venues(:org)"), {"org": org_id}))


async def organization_owner(db: AsyncConnection, org_id: uuid.UUID) -> dict[str, Any] | None:
    """The owner account the platform created, and whether it has signed in yet."""
    row = (await db.execute(text("SELECT * FROM organization_owner(:org)"), {"org": org_id})).first()
    return dict(row._mapping) if row else None


async def _forget_embed_lookups(org_id: uuid.UUID) -> None:
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:  # the venues are the tenant's
        keys = await embed_keys(db, org_id)
    await cache.invalidate(*map(cache.embed_scope, keys))


# --------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------
_p = plans.c


async def _plan_usage(db: AsyncConnection, plan_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await db.execute(select(_o.plan_id, func.count()).where(_o.plan_id.in_(plan_ids)).group_by(_o.plan_id))
    return {plan_id: n for plan_id, n in rows}


async def list_plans(db: AsyncConnection, *, active: bool | None = None, limit: int | None = None,
                     after: list | None = None) -> dict[str, Any]:
    """Cheapest first; a page of `limit` after the cursor `after`, or every plan (limit None)."""
    query = select(plans)
    if active is not None:
        query = query.where(_p.is_active == active)
    if (key := keyset(after, int)):
        query = query.where(func.row(_p.price_monthly, _p.id) > func.row(*key))
    query = query.order_by(_p.price_monthly, _p.id)
    rows = as_dicts(await db.execute(query if limit is None else query.limit(limit + 1)))
    usage = await _plan_usage(db, [r["id"] for r in rows]) if rows else {}
    rows = [r | {"organizations_count": usage.get(r["id"], 0)} for r in rows]
    return page(rows, limit, lambda r: (r["price_monthly"], str(r["id"])))


async def get_plan(db: AsyncConnection, plan_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    query = select(plans).where(_p.id == plan_id)
    row = (await db.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("No such plan.", code="plan_not_found")
    plan = dict(row._mapping)
    return plan | {"organizations_count": (await _plan_usage(db, [plan_id])).get(plan_id, 0)}


async def _slug_free(db: AsyncConnection, slug: str, but: uuid.UUID | None = None) -> None:
    query = select(_p.id).where(_p.slug == slug)
    if but is not None:
        query = query.where(_p.id != but)
    if (await db.execute(query)).first():
        raise Conflict(f"A plan with the slug '{slug}' exists.", code="slug_taken", field="slug")


async def create_plan(db: AsyncConnection, data: PlanCreate) -> dict[str, Any]:
    await _slug_free(db, data.slug)
    row = (await db.execute(plans.insert().values(**data.model_dump()).returning(plans))).one()
    plan = dict(row._mapping)
    await audit.record(db, "plan.created", organization_id=None, target_type="plan", target_id=plan["id"],
                       changes=data.model_dump())
    return plan | {"organizations_count": 0}


async def update_plan(db: AsyncConnection, plan_id: uuid.UUID, data: PlanUpdate) -> dict[str, Any]:
    """Deactivating a plan in use retires it: its organizations keep it, nobody new gets it."""
    current = await get_plan(db, plan_id, lock=True)
    values = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v != current[k]}
    if not values:
        return current
    if "slug" in values:
        await _slug_free(db, values["slug"], but=plan_id)
    row = (await db.execute(update(plans).where(_p.id == plan_id).values(**values).returning(plans))).one()
    after = dict(row._mapping) | {"organizations_count": current["organizations_count"]}
    await audit.record(db, "plan.updated", organization_id=None, target_type="plan", target_id=plan_id,
                       changes=audit.diff(current, after))
    return after


# --------------------------------------------------------------------------------------------
# Feature flags (evaluated by bookingtms.platform.flags.is_enabled)
# --------------------------------------------------------------------------------------------
_f = feature_flags.c


async def list_flags(db: AsyncConnection, *, limit: int | None = None, after: list | None = None) -> dict[str, Any]:
    """By name; a page of `limit` after the cursor `after`, or every flag (limit None)."""
    query = select(feature_flags)
    if (key := keyset(after)):
        query = query.where(func.row(_f.name, _f.id) > func.row(*key))
    query = query.order_by(_f.name, _f.id)
    rows = as_dicts(await db.execute(query if limit is None else query.limit(limit + 1)))
    return page(rows, limit, lambda r: (r["name"], str(r["id"])))


async def get_flag(db: AsyncConnection, flag_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    query = select(feature_flags).where(_f.id == flag_id)
    row = (await db.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("No such feature flag.", code="feature_flag_not_found")
    return dict(row._mapping)


async def create_flag(db: AsyncConnection, data: FeatureFlagCreate) -> dict[str, Any]:
    if (await db.execute(select(_f.id).where(_f.name == data.name))).first():
        raise Conflict(f"A feature flag named '{data.name}' exists.", code="flag_name_taken", field="name")
    row = (await db.execute(feature_flags.insert().values(**data.model_dump()).returning(feature_flags))).one()
    flag = dict(row._mapping)
    await audit.record(db, "feature_flag.created", organization_id=None, target_type="feature_flag",
                       target_id=flag["id"], changes=data.model_dump())
    return flag


async def update_flag(db: AsyncConnection, flag_id: uuid.UUID, data: FeatureFlagUpdate) -> dict[str, Any]:
    current = await get_flag(db, flag_id, lock=True)
    values = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v != current[k]}
    if not values:
        return current
    row = (await db.execute(update(feature_flags).where(_f.id == flag_id).values(**values)
                            .returning(feature_flags))).one()
    after = dict(row._mapping)
    await audit.record(db, "feature_flag.updated", organization_id=None, target_type="feature_flag",
                       target_id=flag_id, changes=audit.diff(current, after))
    return after


# --------------------------------------------------------------------------------------------
# Platform statistics
# --------------------------------------------------------------------------------------------
async def stats(db: AsyncConnection) -> dict[str, Any]:
    """Totals over every organization, from platform_stats() (aggregates only; platform context)."""
    result = (await db.execute(text("SELECT platform_stats()"))).scalar_one()
    if result is None:  # not a platform context: the function answers nothing
        raise NotFound("No statistics.", code="not_found")
    return result | {"generated_at": datetime.now(UTC)}


# --------------------------------------------------------------------------------------------
# Access grants: the only way a platform admin acts inside an organization
# --------------------------------------------------------------------------------------------
_g = access_grants.c
_GRANT_COLUMNS = (_g.id, _g.organization_id, _g.admin_user_id, _g.reason, _g.expires_at, _g.revoked_at,
                  _g.created_at, ((_g.revoked_at.is_(None)) & (_g.expires_at > func.now())).label("active"))


async def create_grant(db: AsyncConnection, admin_id: uuid.UUID, org_id: uuid.UUID,
                       data: AccessGrantCreate) -> dict[str, Any]:
    """Lets `admin_id` act in the organization (with X-Organization-Id) for duration_minutes."""
    await _organization(db, org_id)
    row = (await db.execute(access_grants.insert().values(
        organization_id=org_id, admin_user_id=admin_id, reason=data.reason,
        expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, data.duration_minutes),
    ).returning(*_GRANT_COLUMNS))).one()
    grant = dict(row._mapping)
    await audit.record(db, "access_grant.created", organization_id=org_id, target_type="access_grant",
                       target_id=grant["id"], changes={"admin_user_id": admin_id, "reason": data.reason,
                                                       "duration_minutes": data.duration_minutes,
                                                       "expires_at": grant["expires_at"]})
    return grant


async def list_grants(db: AsyncConnection, org_id: uuid.UUID, limit: int, after: list | None) -> dict[str, Any]:
    await _organization(db, org_id)
    query = select(*_GRANT_COLUMNS).where(_g.organization_id == org_id)
    if (key := keyset(after, datetime)):
        query = query.where(func.row(_g.created_at, _g.id) < func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(_g.created_at.desc(), _g.id.desc()).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))


async def revoke_grant(db: AsyncConnection, org_id: uuid.UUID, grant_id: uuid.UUID) -> dict[str, Any]:
    """Ends a live grant now. Its end is written here (`access_grant.revoked`), so the expiry job
    leaves it alone; revoking a grant that has already ended is a 409."""
    row = (await db.execute(select(*_GRANT_COLUMNS).where(_g.organization_id == org_id, _g.id == grant_id)
                            .with_for_update(of=access_grants))).first()
    if row is None:
        raise NotFound("No such access grant.", code="access_grant_not_found")
    if not row.active:
        raise Conflict("This access grant has already ended.", code="access_grant_ended")
    ended = (await db.execute(update(access_grants).where(_g.organization_id == org_id, _g.id == grant_id)
                              .values(revoked_at=func.now(), expiry_audited=True).returning(*_GRANT_COLUMNS))).one()
    await audit.record(db, "access_grant.revoked", organization_id=org_id, target_type="access_grant",
                       target_id=grant_id, changes={"admin_user_id": row.admin_user_id, "expires_at": row.expires_at,
                                                    "revoked_at": ended.revoked_at})
    return dict(ended._mapping)


_ENDED = text("""
    UPDATE access_grants g SET expiry_audited = true
      FROM (SELECT organization_id, id FROM access_grants
             WHERE organization_id = :org AND NOT expiry_audited AND (expires_at <= now() OR revoked_at IS NOT NULL)
             ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED) due
     WHERE g.organization_id = due.organization_id AND g.id = due.id
    RETURNING g.id, g.admin_user_id, g.reason, g.expires_at, g.revoked_at
""")


async def audit_ended_grants(db: AsyncConnection, org_id: uuid.UUID, batch: int = 500) -> int:
    """Job step: one `access_grant.expired` row per grant of this organization that has ended and
    was not written yet (claimed with SKIP LOCKED, marked in the same transaction: once each)."""
    rows = (await db.execute(_ENDED, {"org": org_id, "batch": batch})).all()
    for row in rows:
        await audit.record(db, "access_grant.expired", organization_id=org_id, target_type="access_grant",
                           target_id=row.id, changes={"admin_user_id": row.admin_user_id, "expires_at": row.expires_at,
                                                      "revoked_at": row.revoked_at})
    return len(rows)
