"""Customers of an organization, one per email. total_bookings and total_spent always equal the
count and the sum of total_amount of the customer's non-cancelled bookings."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.customers.schemas import CustomerIn, CustomerUpdate
from bookingtms.db.engine import as_dicts
from bookingtms.errors import NotFound
from bookingtms.http.pagination import keyset, page
from bookingtms.models import customers

_UPSERT = text("""
    INSERT INTO customers (organization_id, email, first_name, last_name, phone, total_bookings, total_spent)
    VALUES (:org, :email, :first_name, :last_name, :phone, 1, :amount)
    ON CONFLICT (organization_id, email) DO UPDATE
       SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
           phone = coalesce(EXCLUDED.phone, customers.phone),
           total_bookings = customers.total_bookings + 1, total_spent = customers.total_spent + EXCLUDED.total_spent
    RETURNING id
""")


async def record_booking(db: AsyncConnection, org_id: uuid.UUID, customer: CustomerIn, amount: int) -> uuid.UUID:
    return (await db.execute(_UPSERT, {"org": org_id, "amount": amount, **customer.model_dump()})).scalar_one()


async def record_cancellation(db: AsyncConnection, org_id: uuid.UUID, customer_id: uuid.UUID, amount: int) -> None:
    await db.execute(update(customers).where(customers.c.organization_id == org_id, customers.c.id == customer_id)
                     .values(total_bookings=customers.c.total_bookings - 1, total_spent=customers.c.total_spent - amount))


async def get_customer(db: AsyncConnection, org_id: uuid.UUID, customer_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(select(customers).where(customers.c.organization_id == org_id,
                                                    customers.c.id == customer_id))).first()
    if row is None:
        raise NotFound("No such customer.", code="customer_not_found")
    return dict(row._mapping)


async def find_by_email(db: AsyncConnection, org_id: uuid.UUID, email: str) -> dict[str, Any] | None:
    """The customer with exactly this email (idx_customers_org_email), or None."""
    row = (await db.execute(select(customers).where(customers.c.organization_id == org_id,
                                                    customers.c.email == email.strip().lower()))).first()
    return dict(row._mapping) if row is not None else None


async def list_customers(db: AsyncConnection, org_id: uuid.UUID, q: str | None, limit: int,
                         after: list | None) -> dict[str, Any]:
    c = customers.c
    query = select(customers).where(c.organization_id == org_id)
    if q:
        like = f"%{q.strip().lower()}%"
        query = query.where(or_(c.email.like(like), func.lower(c.first_name + " " + c.last_name).like(like)))
    if (key := keyset(after)):
        query = query.where(func.row(c.email, c.id) > func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(c.email, c.id).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["email"], str(r["id"])))


async def update_customer(db: AsyncConnection, org_id: uuid.UUID, customer_id: uuid.UUID,
                          data: CustomerUpdate) -> dict[str, Any]:
    await get_customer(db, org_id, customer_id)
    changes = data.model_dump(exclude_unset=True)
    if changes:
        await db.execute(update(customers).where(customers.c.organization_id == org_id, customers.c.id == customer_id)
                         .values(**changes))
    return await get_customer(db, org_id, customer_id)
