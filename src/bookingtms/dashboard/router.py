"""GET /v1/dashboard/stats: bookings, guests, revenue, cancellations and occupancy per local day."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query

from bookingtms.dashboard import service
from bookingtms.dashboard.schemas import DashboardStats
from bookingtms.db.engine import read_transaction
from bookingtms.http.params import day_or_instant, first_day, last_day
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])


@router.get("/stats", response_model=DashboardStats)
async def stats(first: str | None = Query(None, alias="from",
                                          description="YYYY-MM-DD (or an RFC 3339 time: the day it names); "
                                                      "default: 29 days before `to`"),
                last: str | None = Query(None, alias="to",
                                         description="YYYY-MM-DD, inclusive (or an RFC 3339 time the window ends at: "
                                                     "the day it names, or the day before at its midnight); "
                                                     "default: today"),
                venue_id: uuid.UUID | None = Query(None, description="Only this venue's figures."),
                currency: str | None = Query(None, pattern="^[A-Z]{3}$",
                                             description="Currency of revenue_amount; default: the organization's."),
                p: Principal = Depends(require("stats.view"))):
    """Figures per local day of the window (at most 366 days), from daily roll-ups kept in the
    booking transaction; read from the replica when one is configured."""
    async with read_transaction(p.db_context()) as db:
        return await service.stats(db, p.organization_id, first=first_day(day_or_instant(first, "from")),
                                   last=last_day(day_or_instant(last, "to")), venue_id=venue_id,
                                   currency=currency)
