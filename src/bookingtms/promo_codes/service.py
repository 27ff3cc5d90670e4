"""Promo codes: percent or amount off, a validity window, a redemption limit and an optional
restriction to some activities. Redemption itself happens at checkout, in one conditional UPDATE
(bookings.service._redeem_promo), so no race can use a code more often than allowed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.errors import Conflict, NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.models import activities, promo_codes
from bookingtms.promo_codes.schemas import PromoCodeCreate, PromoCodeUpdate, check_rules

COLUMNS = ("id", "code", "description", "discount_type", "discount_value", "currency", "valid_from", "valid_until",
           "max_redemptions", "times_redeemed", "activity_ids", "is_active", "created_at", "updated_at")


def _out(row) -> dict[str, Any]:
    item = {k: row._mapping[k] for k in COLUMNS}
    item["activity_ids"] = list(item["activity_ids"] or [])
    item["currency"] = item["currency"].strip() if item["currency"] else None
    remaining = None if row.max_redemptions is None else max(0, row.max_redemptions - row.times_redeemed)
    item["redemptions_remaining"] = remaining
    return item


async def _check_activities(db: AsyncConnection, org_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    if not ids:
        return
    found = set((await db.execute(select(activities.c.id).where(
        activities.c.organization_id == org_id, activities.c.id.in_(ids)))).scalars())
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(f"No such activity: {missing[0]}.", code="activity_not_found", field="activity_ids")


async def create(db: AsyncConnection, org_id: uuid.UUID, data: PromoCodeCreate) -> dict[str, Any]:
    await _check_activities(db, org_id, data.activity_ids)
    values = data.model_dump()
    values["activity_ids"] = list(dict.fromkeys(values["activity_ids"]))
    row = (await db.execute(pg_insert(promo_codes).values(organization_id=org_id, **values)
                            .on_conflict_do_nothing(index_elements=["organization_id", "code"])
                            .returning(promo_codes))).first()
    if row is None:
        raise Conflict(f"The promo code {data.code} already exists.", code="promo_code_exists", field="code")
    return _out(row)


async def get(db: AsyncConnection, org_id: uuid.UUID, promo_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    query = select(promo_codes).where(promo_codes.c.organization_id == org_id, promo_codes.c.id == promo_id)
    row = (await db.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("No such promo code.", code="promo_code_not_found")
    return _out(row)


async def list_codes(db: AsyncConnection, org_id: uuid.UUID, *, active: bool | None, q: str | None, limit: int,
                     after: list | None) -> dict[str, Any]:
    p = promo_codes.c
    query = select(promo_codes).where(p.organization_id == org_id)
    if active is not None:
        query = query.where(p.is_active == active)
    if q:
        query = query.where(p.code.like(q.strip().upper().replace("%", r"\%").replace("_", r"\_") + "%"))
    if (key := keyset(after, datetime)):
        query = query.where(func.row(p.created_at, p.id) < func.row(*key))
    rows = (await db.execute(query.order_by(p.created_at.desc(), p.id.desc()).limit(limit + 1))).all()
    return page([_out(r) for r in rows], limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))


async def update_code(db: AsyncConnection, org_id: uuid.UUID, promo_id: uuid.UUID,
                      data: PromoCodeUpdate) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (before, after). The row is locked, so a checkout redeeming it concurrently waits."""
    before = await get(db, org_id, promo_id, lock=True)
    changes = data.model_dump(exclude_unset=True)
    for required in ("code", "discount_type", "discount_value", "activity_ids", "is_active", "description"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(f"{required} cannot be null.", field=required)
    merged = {**before, **changes}
    check_rules(merged["discount_type"], merged["discount_value"], merged["currency"], merged["valid_from"],
                merged["valid_until"])
    if merged["max_redemptions"] is not None and merged["max_redemptions"] < before["times_redeemed"]:
        raise ValidationFailed(f"This code has already been redeemed {before['times_redeemed']} times.",
                               field="max_redemptions")
    if "activity_ids" in changes:
        changes["activity_ids"] = list(dict.fromkeys(changes["activity_ids"]))
        await _check_activities(db, org_id, changes["activity_ids"])
    if "code" in changes and changes["code"] != before["code"]:
        taken = (await db.execute(select(promo_codes.c.id).where(
            promo_codes.c.organization_id == org_id, promo_codes.c.code == changes["code"]))).first()
        if taken is not None:
            raise Conflict(f"The promo code {changes['code']} already exists.", code="promo_code_exists",
                           field="code")
    if changes:
        await db.execute(update(promo_codes).where(promo_codes.c.organization_id == org_id,
                                                   promo_codes.c.id == promo_id)
                         .values(**changes))
    return before, await get(db, org_id, promo_id)


async def delete_code(db: AsyncConnection, org_id: uuid.UUID, promo_id: uuid.UUID) -> dict[str, Any]:
    """Deleted outright: bookings keep the code's text and their discount, not a reference."""
    before = await get(db, org_id, promo_id, lock=True)
    await db.execute(delete(promo_codes).where(promo_codes.c.organization_id == org_id,
                                               promo_codes.c.id == promo_id))
    return before

