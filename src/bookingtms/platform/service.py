"""Platform administration: onboarding organizations (PRD 4.2.1)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.auth.passwords import hash_password, temporary_password
from bookingtms.auth.service import check_password_policy
from bookingtms.db.engine import DbContext, set_context
from bookingtms.errors import Conflict, NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.models import organizations, plans, users, venues
from bookingtms.notifications import service as notifications
from bookingtms.platform.schemas import OrganizationCreate
from bookingtms.venues.service import new_embed_key, slugify

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
    organization = dict(org._mapping) | {"owner_id": owner.id}
    return {"organization": organization, "venue": dict(venue._mapping), "owner": {"id": owner.id, "email": owner.email}}


async def list_organizations(db: AsyncConnection, limit: int, after: list | None) -> dict[str, Any]:
    o = organizations.c
    query = select(organizations, plans.c.slug.label("plan")).join(plans, plans.c.id == o.plan_id)
    if (key := keyset(after, datetime)):
        query = query.where(func.row(o.created_at, o.id) < func.row(*key))
    rows = (await db.execute(query.order_by(o.created_at.desc(), o.id.desc()).limit(limit + 1))).all()
    return page([dict(r._mapping) for r in rows], limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))


async def get_organization(db: AsyncConnection, org_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(select(organizations, plans.c.slug.label("plan"))
                            .join(plans, plans.c.id == organizations.c.plan_id)
                            .where(organizations.c.id == org_id))).first()
    if row is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return dict(row._mapping)
