"""GET /v1/bookings/export.csv: the list's filters, times in the venue's zone, the customer's
contact details, formulas defused for spreadsheets, and an audit row with the filter and the count."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.audit.helpers import one_audit_row, send
from tests.factories import add_staff, bearer, book, future_session, make_activity, make_tenant, unique

COLUMNS = ["reference", "date", "start_time", "end_time", "timezone", "venue", "activity", "guests", "total_amount",
           "refund_amount", "currency", "status", "payment_status", "checked_in", "customer_name", "customer_email",
           "customer_phone", "booked_at"]


def parse(body: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(body))
    header = next(reader)
    assert header == COLUMNS
    return [dict(zip(header, row)) for row in reader]


async def test_export_lists_the_filtered_bookings_in_the_venues_time(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin, timezone_name="America/Los_Angeles")
    other = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=20, price_amount=4000, name="Dig =Site")
    session = await future_session(client, tenant, activity)
    ann = f"{unique('ann')}@example.com"
    kept = await book(client, tenant, session["id"], spots=2, email=ann)
    response = await client.post("/v1/bookings", headers=tenant.headers, json={
        "session_id": session["id"], "guest_count": 1,
        "customer": {"email": f"{unique('eve')}@example.com", "first_name": '=HYPERLINK("http://evil.example")',
                     "last_name": "Eve", "phone": "+1 555 0100"}})
    assert response.status_code == 201, response.text
    dropped = response.json()
    response = await client.post(f"/v1/bookings/{dropped['id']}/cancel", headers=tenant.headers,
                                 json={"refund": "none"})
    assert response.status_code == 200, response.text
    other_session = await future_session(client, other, await make_activity(client, other))
    await book(client, other, other_session["id"])

    response, rid = await send(client, "GET", "/v1/bookings/export.csv", tenant.headers, expect=200)
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    rows = parse(response.text)
    assert sorted(r["reference"] for r in rows) == sorted([kept["reference"], dropped["booking_reference"]])

    start = datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("America/Los_Angeles"))
    end = datetime.fromisoformat(session["end_time"]).astimezone(ZoneInfo("America/Los_Angeles"))
    by_ref = {r["reference"]: r for r in rows}
    ann_row = by_ref[kept["reference"]]
    assert ann_row == {
        "reference": kept["reference"], "date": start.date().isoformat(), "start_time": start.strftime("%H:%M"),
        "end_time": end.strftime("%H:%M"), "timezone": "America/Los_Angeles", "venue": ann_row["venue"],
        "activity": "Dig =Site", "guests": "2", "total_amount": "8000", "refund_amount": "0", "currency": "USD",
        "status": "confirmed", "payment_status": "unpaid", "checked_in": "no", "customer_name": "Bea Buyer",
        "customer_email": ann, "customer_phone": "", "booked_at": ann_row["booked_at"]}
    assert ann_row["venue"].startswith("Org org-")  # the default venue, named after the organization
    eve = by_ref[dropped["booking_reference"]]
    assert eve["status"] == "cancelled" and eve["customer_phone"] == "+1 555 0100"
    assert eve["customer_name"] == "'" + '=HYPERLINK("http://evil.example") Eve'  # not a formula in a spreadsheet
    row = one_audit_row(owner_engine, rid)
    assert row.action == "bookings.exported" and row.organization_id == tenant.organization_id
    assert row.changes == {"filter": {}, "rows": 2, "format": "csv"}

    # The list's filters apply; staff may export; an empty export is a header and an audit row.
    staff = bearer(await add_staff(client, tenant, "staff"))
    response, rid = await send(client, "GET", "/v1/bookings/export.csv", staff,
                               params={"status": "cancelled", "activity_id": activity["id"]}, expect=200)
    assert [r["reference"] for r in parse(response.text)] == [dropped["booking_reference"]]
    assert one_audit_row(owner_engine, rid).changes == {
        "filter": {"status": "cancelled", "activity_id": activity["id"]}, "rows": 1, "format": "csv"}
    response, rid = await send(client, "GET", "/v1/bookings/export.csv", tenant.headers, params={"q": ann}, expect=200)
    assert [r["reference"] for r in parse(response.text)] == [kept["reference"]]
    response, rid = await send(client, "GET", "/v1/bookings/export.csv", tenant.headers,
                               params={"from": "2001-01-01", "to": "2001-01-31"}, expect=200)
    assert parse(response.text) == []
    assert one_audit_row(owner_engine, rid).changes["rows"] == 0

    response = await client.get("/v1/bookings/export.csv", headers=tenant.headers, params={"status": "lost"})
    assert response.status_code == 422, response.text
