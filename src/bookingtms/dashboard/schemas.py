"""GET /v1/dashboard/stats: what the staff dashboard shows, per local day."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

OCCUPANCY = ("confirmed guests of the open sessions divided by their capacity (0 to 1, four decimals); "
             "null when no open session offered capacity")


class StatsFigures(BaseModel):
    bookings: int = Field(description="Confirmed bookings (an online booking counts once paid).")
    guests: int = Field(description="Guests of those bookings.")
    revenue_amount: int = Field(description="What the business keeps, net of refunds, in minor units of `currency`.")
    cancellations: int = Field(description="Bookings cancelled by staff or the customer (not unpaid checkouts "
                                           "that lapsed).")
    capacity: int = Field(description="Places offered: capacity_total of the open sessions.")
    occupancy: float | None = Field(description=OCCUPANCY)


class DayStats(StatsFigures):
    date: dt.date = Field(description="A local date in each venue's own time zone (a session's day, a booking's "
                                      "session day).")


class DashboardStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dt.date = Field(alias="from", description="First day of the window (inclusive).")
    to: dt.date = Field(description="Last day of the window (inclusive).")
    venue_id: uuid.UUID | None = Field(description="The venue the figures are limited to, if one was asked for.")
    currency: str = Field(description="The currency of `revenue_amount`; bookings in other currencies are counted "
                                      "but their revenue is not added in.")
    totals: StatsFigures
    days: list[DayStats] = Field(description="Every day of the window, in order, zeros included.")
