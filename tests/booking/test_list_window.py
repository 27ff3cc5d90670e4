"""GET /v1/bookings?from=&to=: a date is a local day of the session (both ends included); an RFC
3339 time bounds the session's start ([from, to)), as API.md's times are written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.factories import book, future_session, make_activity, make_tenant


async def references(client, tenant, **params) -> set[str]:
    response = await client.get("/v1/bookings", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return {item["reference"] for item in response.json()["items"]}


async def test_the_list_window_takes_days_or_times(client, tenant):
    activity = await make_activity(client, tenant)  # 10:00, 14:00 and 18:00 in New York
    day = (datetime.now(timezone.utc).date() + timedelta(days=3)).isoformat()
    sessions = (await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": day, "to": day})).json()["sessions"]
    assert len(sessions) == 3
    morning, _, evening = sessions
    early = (await book(client, tenant, morning["id"]))["reference"]
    late = (await book(client, tenant, evening["id"]))["reference"]
    evening_start = datetime.fromisoformat(evening["start_time"])

    assert await references(client, tenant, **{"from": day, "to": day}) == {early, late}
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    assert await references(client, tenant, **{"from": next_day}) == set()
    # Times, in any offset: from is included, to is not.
    utc = evening_start.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    assert await references(client, tenant, **{"from": utc}) == {late}
    assert await references(client, tenant, **{"from": day, "to": evening["start_time"]}) == {early}
    assert await references(client, tenant, **{"from": (evening_start - timedelta(minutes=1)).isoformat(),
                                               "to": (evening_start + timedelta(minutes=1)).isoformat()}) == {late}
    # The export takes the same window.
    csv = await client.get("/v1/bookings/export.csv", headers=tenant.headers,
                           params={"from": morning["start_time"], "to": evening["start_time"]})
    assert csv.status_code == 200 and early in csv.text and late not in csv.text

    for params, field in (({"from": "2026-13-01T00:00:00Z"}, "from"), ({"to": "soon"}, "to"),
                          ({"from": "1999-12-31T23:00:00Z"}, "from"), ({"to": "x" * 5000}, "to")):
        response = await client.get("/v1/bookings", headers=tenant.headers, params=params)
        assert response.status_code == 422 and response.json()["field"] == field, response.text


async def test_the_list_finds_bookings_by_reference_email_or_name(client, platform_admin, tenant):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    ann = (await book(client, tenant, session["id"], email="ann.lee@example.com"))["reference"]
    zed = (await book(client, tenant, session["id"], email="zed@example.com"))["reference"]
    other = await make_tenant(client, platform_admin)  # the same customer name and email elsewhere
    await book(client, other, (await future_session(client, other, await make_activity(client, other)))["id"],
               email="ann.lee@example.com")

    assert await references(client, tenant, q=ann.lower()) == {ann}
    assert await references(client, tenant, q="ANN.LEE@") == {ann}
    assert await references(client, tenant, q="bea buyer") == {ann, zed}  # the factory's customer name
    assert await references(client, tenant, q="nobody") == set()
