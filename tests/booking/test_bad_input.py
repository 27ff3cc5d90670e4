"""Bad input, however malformed, gets a 4xx problem+json naming what is wrong, never a 500, and
leaves nothing half-written."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.factories import future_session, hold, make_activity, make_tenant

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
CUSTOMER = {"email": "bad@example.com", "first_name": "Bad", "last_name": "Input"}


def assert_problem(response, status: int | None = None, code: str | None = None) -> dict:
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    assert response.status_code >= 400, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert PROBLEM_KEYS <= body.keys(), body
    assert body["status"] == response.status_code
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def fields(body: dict) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


def scalar(owner_engine, sql: str, **params):
    with owner_engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


async def remaining(client, tenant, session_id: str) -> int:
    return (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).json()["capacity_remaining"]


@pytest.fixture
async def shop(client, tenant):
    """A tenant with an activity (2..6 players), a future session and a live hold of 2."""
    activity = await make_activity(client, tenant, capacity=8, min_players=2, max_players=6)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201
    return {"tenant": tenant, "activity": activity, "session": session, "reservation_id": held.json()["reservation_id"]}


def endpoints(shop) -> dict[str, tuple[str, dict]]:
    """name -> (url, headers) of every creating POST under test."""
    t = shop["tenant"]
    return {
        "hold": (f"/v1/public/venues/{t.embed_key}/reservations", {}),
        "checkout": (f"/v1/public/venues/{t.embed_key}/reservations/{shop['reservation_id']}/checkout", {}),
        "staff_booking": ("/v1/bookings", t.headers),
        "activity": ("/v1/activities", t.headers),
        "venue": ("/v1/venues", t.headers),
    }


def valid_bodies(shop) -> dict[str, dict]:
    t = shop["tenant"]
    return {
        "hold": {"session_id": shop["session"]["id"], "spots": 2, "customer_email": "ok@example.com"},
        "checkout": {"customer": CUSTOMER},
        "staff_booking": {"session_id": shop["session"]["id"], "guest_count": 2, "customer": CUSTOMER},
        "activity": {"venue_id": t.venue_id, "name": "Valid", "duration_minutes": 60, "capacity": 4, "price_amount": 100,
                     "schedule": {"weekly": []}},
        "venue": {"name": "Valid venue", "timezone": "UTC"},
    }


# ---------------------------------------------------------------------------------------------
# Malformed bodies
# ---------------------------------------------------------------------------------------------
async def test_malformed_json_is_400(client, shop):
    for raw in (b"{", b'{"session_id": ', b"not json", b'{"a": 1,}', b"[1, 2", b"\x00"):
        for name, (url, headers) in endpoints(shop).items():
            response = await client.post(url, headers={**headers, "content-type": "application/json"}, content=raw)
            assert_problem(response, 400, "malformed_json")
        booking_cancel = await client.post(f"/v1/bookings/{uuid.uuid4()}/cancel", content=raw,
                                           headers={**shop["tenant"].headers, "content-type": "application/json"})
        assert_problem(booking_cancel)
    assert await remaining(client, shop["tenant"], shop["session"]["id"]) == 6


async def test_body_that_is_not_utf8_is_400_malformed_json(client, shop):
    for name, (url, headers) in endpoints(shop).items():
        response = await client.post(url, headers={**headers, "content-type": "application/json"},
                                     content=b'{"name": "\xff\xfe"}')
        assert_problem(response, 400, "malformed_json")


async def test_empty_and_non_json_bodies_are_4xx(client, shop):
    for name, (url, headers) in endpoints(shop).items():
        assert_problem(await client.post(url, headers=headers), 422, "validation_error")
        assert_problem(await client.post(url, headers={**headers, "content-type": "application/json"}, content=b""))
        plain = await client.post(url, headers={**headers, "content-type": "text/plain"},
                                  content=json.dumps(valid_bodies(shop)[name]).encode())
        assert_problem(plain)


WRONG_TYPES = [
    ("hold", {"spots": "two"}, "spots"),
    ("hold", {"session_id": 12}, "session_id"),
    ("hold", {"customer_email": "not-an-email"}, "customer_email"),
    ("hold", {"customer_email": ["a@example.com"]}, "customer_email"),
    ("checkout", {"customer": "bad@example.com"}, "customer"),
    ("checkout", {"customer": {**CUSTOMER, "email": 5}}, "customer.email"),
    ("checkout", {"customer": {**CUSTOMER, "first_name": ""}}, "customer.first_name"),
    ("checkout", {"customer": {**CUSTOMER, "phone": "call me"}}, "customer.phone"),
    ("staff_booking", {"guest_count": 2.5}, "guest_count"),
    ("staff_booking", {"guest_count": None}, "guest_count"),
    ("staff_booking", {"notes": {"a": 1}}, "notes"),
    ("activity", {"price_amount": 12.5}, "price_amount"),
    ("activity", {"capacity": "many"}, "capacity"),
    ("activity", {"currency": "usd"}, "currency"),
    ("activity", {"venue_id": "nope"}, "venue_id"),
    ("activity", {"duration_minutes": 0}, "duration_minutes"),
    ("venue", {"timezone": "Mars/Olympus"}, "timezone"),
    ("venue", {"name": 7}, "name"),
    ("venue", {"slug": "Has Spaces"}, "slug"),
]


async def test_wrong_types_name_the_field(client, shop, owner_engine):
    for name, change, field in WRONG_TYPES:
        url, headers = endpoints(shop)[name]
        response = await client.post(url, headers=headers, json={**valid_bodies(shop)[name], **change})
        body = assert_problem(response, 422, "validation_error")
        assert field in fields(body), (name, change, body)
        assert body["field"] in fields(body), body  # named both ways, as a service's refusal is
        assert field.split(".")[-1] in body["detail"], (name, change, body)
    assert_nothing_written(owner_engine, shop)


async def test_unknown_fields_are_422(client, shop, owner_engine):
    for name, (url, headers) in endpoints(shop).items():
        body = assert_problem(await client.post(url, headers=headers, json={**valid_bodies(shop)[name], "total_amount": 1}),
                              422, "validation_error")
        assert "total_amount" in fields(body), (name, body)
    url, headers = endpoints(shop)["checkout"]
    body = assert_problem(await client.post(url, json={"customer": {**CUSTOMER, "is_vip": True}}), 422, "validation_error")
    assert "customer.is_vip" in fields(body)
    url, headers = endpoints(shop)["staff_booking"]
    body = assert_problem(await client.post(url, headers=headers, json={**valid_bodies(shop)["staff_booking"],
                                                                        "unit_price_amount": 0}), 422)
    assert "unit_price_amount" in fields(body)
    assert_nothing_written(owner_engine, shop)


async def test_an_activity_sent_back_with_its_venue_is_updated_but_cannot_move(client, shop):
    t, activity = shop["tenant"], shop["activity"]
    url = f"/v1/activities/{activity['id']}"
    same = await client.patch(url, headers=t.headers, json={"venue_id": t.venue_id, "name": "Renamed"})
    assert same.status_code == 200 and same.json()["name"] == "Renamed", same.text
    other = (await client.post("/v1/venues", headers=t.headers, json={"name": "Elsewhere", "timezone": "UTC"})).json()
    body = assert_problem(await client.patch(url, headers=t.headers, json={"venue_id": other["id"], "name": "Moved"}),
                          422, "venue_change_not_supported")
    assert body["field"] == "venue_id"
    kept = (await client.get(url, headers=t.headers)).json()
    assert (kept["venue_id"], kept["name"]) == (t.venue_id, "Renamed")


def assert_nothing_written(owner_engine, shop) -> None:
    org = shop["tenant"].organization_id
    assert scalar(owner_engine, "SELECT status FROM slot_reservations WHERE id = :r", r=shop["reservation_id"]) == "held"
    assert scalar(owner_engine, "SELECT count(*) FROM slot_reservations WHERE organization_id = :o", o=org) == 1
    assert scalar(owner_engine, "SELECT count(*) FROM bookings WHERE organization_id = :o", o=org) == 0
    assert scalar(owner_engine, "SELECT count(*) FROM customers WHERE organization_id = :o", o=org) == 0
    assert scalar(owner_engine, "SELECT count(*) FROM activities WHERE organization_id = :o", o=org) == 1
    assert scalar(owner_engine, "SELECT count(*) FROM venues WHERE organization_id = :o", o=org) == 1
    assert scalar(owner_engine, "SELECT capacity_remaining FROM activity_sessions WHERE id = :s",
                  s=shop["session"]["id"]) == 6


# ---------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------
async def test_non_uuid_ids_in_paths_are_422(client, shop):
    t = shop["tenant"]
    for path in ("/v1/sessions/abc", "/v1/bookings/123", "/v1/activities/not-a-uuid", "/v1/venues/zz",
                 "/v1/customers/1'--"):
        assert_problem(await client.get(path, headers=t.headers), 422, "validation_error")
    assert_problem(await client.post("/v1/bookings/xyz/cancel", headers=t.headers, json={}), 422)
    assert_problem(await client.post("/v1/bookings/xyz/check-in", headers=t.headers), 422)
    assert_problem(await client.patch("/v1/sessions/abc", headers={**t.headers, "If-Match": '"1"'},
                                      json={"capacity_total": 1}), 422)
    assert_problem(await client.post(f"/v1/public/venues/{t.embed_key}/reservations/nope/checkout",
                                     json={"customer": CUSTOMER}), 422)
    assert_problem(await client.delete(f"/v1/public/venues/{t.embed_key}/reservations/nope"), 422)
    assert_problem(await client.post("/v1/activities/1/sessions/generate", headers=t.headers,
                                     json={"from": "2027-01-01", "to": "2027-01-02"}), 422)
    assert_problem(await client.get("/v1/sessions", headers=t.headers, params={"activity_id": "x"}), 422)


async def test_unknown_ids_are_404(client, shop, client_other_tenant):
    t = shop["tenant"]
    missing = str(uuid.uuid4())
    assert_problem(await client.get(f"/v1/sessions/{missing}", headers=t.headers), 404, "session_not_found")
    assert_problem(await client.get(f"/v1/bookings/{missing}", headers=t.headers), 404, "booking_not_found")
    assert_problem(await client.get(f"/v1/venues/{missing}", headers=t.headers), 404, "venue_not_found")
    assert_problem(await client.get(f"/v1/activities/{missing}", headers=t.headers), 404, "activity_not_found")
    assert_problem(await client.get(f"/v1/customers/{missing}", headers=t.headers), 404)
    assert_problem(await client.post(f"/v1/bookings/{missing}/cancel", headers=t.headers, json={}), 404)
    assert_problem(await client.post(f"/v1/bookings/{missing}/check-in", headers=t.headers), 404)
    assert_problem(await client.post(f"/v1/activities/{missing}/sessions/generate", headers=t.headers,
                                     json={"from": "2027-01-01", "to": "2027-01-02"}), 404)
    assert_problem(await hold(client, t, missing), 404, "session_not_found")
    assert_problem(await client.post("/v1/bookings", headers=t.headers,
                                     json={"session_id": missing, "guest_count": 2, "customer": CUSTOMER}),
                   404, "session_not_found")
    assert_problem(await client.post(f"/v1/public/venues/{t.embed_key}/reservations/{missing}/checkout",
                                     json={"customer": CUSTOMER}), 404, "reservation_not_found")
    assert_problem(await client.delete(f"/v1/public/venues/{t.embed_key}/reservations/{missing}"), 404)
    for key in ("x" * 24, "short", "k" * 100):
        assert_problem(await client.get(f"/v1/public/venues/{key}"), 404, "venue_not_found")
        assert_problem(await client.get(f"/v1/public/venues/{key}/availability"), 404, "venue_not_found")
        assert_problem(await client.post(f"/v1/public/venues/{key}/reservations",
                                         json={"session_id": shop["session"]["id"], "spots": 2,
                                               "customer_email": "a@example.com"}), 404, "venue_not_found")

    # Another tenant's session, reservation and booking are unknown here, too.
    other = client_other_tenant
    assert_problem(await hold(client, other, shop["session"]["id"], spots=2), 404, "session_not_found")
    assert_problem(await client.post(f"/v1/public/venues/{other.embed_key}/reservations/{shop['reservation_id']}/checkout",
                                     json={"customer": CUSTOMER}), 404, "reservation_not_found")
    assert_problem(await client.get(f"/v1/sessions/{shop['session']['id']}", headers=other.headers), 404)
    assert await remaining(client, t, shop["session"]["id"]) == 6


@pytest.fixture
async def client_other_tenant(client, platform_admin):
    return await make_tenant(client, platform_admin)


# ---------------------------------------------------------------------------------------------
# Sessions that have started
# ---------------------------------------------------------------------------------------------
async def test_a_started_session_cannot_be_held_or_booked(client, shop, owner_engine):
    t, activity = shop["tenant"], shop["activity"]
    with owner_engine.begin() as conn:
        started = str(conn.execute(text("""
            INSERT INTO activity_sessions (organization_id, activity_id, venue_id, start_time, end_time,
                                           capacity_total, capacity_remaining, price_at_generation, currency)
            VALUES (:org, :activity, :venue, now() - interval '10 minutes', now() + interval '50 minutes', 8, 8, 2500, 'USD')
            RETURNING id"""), {"org": t.organization_id, "activity": activity["id"], "venue": t.venue_id}).scalar_one())

    assert_problem(await hold(client, t, started, spots=2), code="session_started")
    staff = await client.post("/v1/bookings", headers=t.headers,
                              json={"session_id": started, "guest_count": 2, "customer": CUSTOMER})
    assert_problem(staff, code="session_started")
    assert await remaining(client, t, started) == 8
    assert scalar(owner_engine, "SELECT count(*) FROM bookings WHERE session_id = :s", s=started) == 0
    assert scalar(owner_engine, "SELECT count(*) FROM slot_reservations WHERE session_id = :s", s=started) == 0
    public = await client.get(f"/v1/public/venues/{t.embed_key}/availability",
                              params={"activity_id": activity["id"], "from": "2026-11-01T00:00:00Z"})
    assert started not in [s["id"] for s in public.json()["sessions"]]

    # An existing session moved into the past behaves the same.
    moved = shop["session"]["id"]
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE activity_sessions SET start_time = now() - interval '1 minute', "
                          "end_time = now() + interval '59 minutes' WHERE id = :s"), {"s": moved})
    assert_problem(await hold(client, t, moved, spots=2), code="session_started")
    assert await remaining(client, t, moved) == 6


async def test_bad_spot_counts_are_4xx_and_take_nothing(client, shop, owner_engine):
    """The activity takes 2..6 players; 6 are left."""
    t, session = shop["tenant"], shop["session"]
    for spots in (0, 1, -1, -(10**12), 10**12, 10**30, 7, "two", "", None, 1.5, [2], {"n": 2}, "1e3"):
        response = await client.post(f"/v1/public/venues/{t.embed_key}/reservations",
                                     json={"session_id": session["id"], "spots": spots, "customer_email": "s@example.com"})
        body = assert_problem(response)
        assert response.status_code in (409, 422), (spots, body)
        staff = await client.post("/v1/bookings", headers=t.headers,
                                  json={"session_id": session["id"], "guest_count": spots, "customer": CUSTOMER})
        assert_problem(staff)
    too_many = await client.post(f"/v1/public/venues/{t.embed_key}/reservations",
                                 json={"session_id": session["id"], "spots": 7, "customer_email": "s@example.com"})
    refusal = assert_problem(too_many, 422)
    assert refusal["code"] == "invalid_party_size" and refusal["field"] == "spots" and fields(refusal) == ["spots"]
    assert_nothing_written(owner_engine, shop)


async def test_tampered_cursors_and_windows_are_4xx(client, shop):
    t = shop["tenant"]

    def cursor(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    cursors = ["%%%", "bm90IGpzb24", cursor(["a", "b"]), cursor([1, 2]), cursor({"a": 1}), cursor([None, None]),
               cursor(["2027-01-01T00:00:00+00:00", "not-a-uuid"])]
    for path in ("/v1/sessions", "/v1/bookings", "/v1/customers", "/v1/activities", "/v1/venues"):
        for value in cursors:
            response = await client.get(path, headers=t.headers, params={"cursor": value})
            assert_problem(response, 422)
        assert_problem(await client.get(path, headers=t.headers, params={"limit": 0}), 422)
        assert_problem(await client.get(path, headers=t.headers, params={"limit": "lots"}), 422)
    for params in ({"from": "yesterday"}, {"from": "2027-02-30"}, {"from": "2027-03-01", "to": "2027-02-01"},
                   {"from": "2027-01-01", "to": "2028-06-01"}):
        assert_problem(await client.get(f"/v1/public/venues/{t.embed_key}/availability", params=params), 422)
        assert_problem(await client.get("/v1/sessions", headers=t.headers, params=params), 422)


# ---------------------------------------------------------------------------------------------
# Fuzzing
# ---------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


def body_strategy(valid: dict):
    """Random JSON; the right keys with random values; or the right keys plus strangers."""
    right_keys = st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), JSON_VALUES) for k, v in valid.items()})
    with_extra = st.tuples(right_keys, st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=2)).map(
        lambda pair: {**pair[1], **pair[0]})
    return st.one_of(JSON_VALUES, right_keys, right_keys, with_extra)


def draw_examples(strategy, n: int) -> list:
    """Hypothesis generates the bodies; the async test sends them (no shrinking needed to read a failure)."""
    drawn: list = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        drawn.append(value)

    collect()
    return drawn


@pytest.mark.parametrize("name", ["hold", "checkout", "staff_booking", "activity", "venue"])
async def test_fuzzed_bodies_never_5xx_and_write_nothing_half_way(client, shop, owner_engine, name):
    url, headers = endpoints(shop)[name]
    valid = valid_bodies(shop)[name]
    if name == "checkout":
        valid = {"customer": {"email": 1, "first_name": "F", "last_name": "L"}}  # never quite valid: the hold must survive
    if name == "staff_booking":
        valid = {**valid, "customer": {**CUSTOMER, "email": None}}
    statuses = []
    for body in draw_examples(body_strategy(valid), 60):
        response = await client.post(url, headers={**headers, "content-type": "application/json"},
                                     content=json.dumps(body))
        assert response.status_code < 500, f"{name} {body!r} -> {response.status_code} {response.text}"
        if response.status_code >= 400:
            assert_problem(response)
        statuses.append(response.status_code)

    org = shop["tenant"].organization_id
    assert scalar(owner_engine, "SELECT status FROM slot_reservations WHERE id = :r", r=shop["reservation_id"]) == "held"
    assert scalar(owner_engine, "SELECT count(*) FROM bookings WHERE organization_id = :o", o=org) == 0
    assert scalar(owner_engine, "SELECT count(*) FROM customers WHERE organization_id = :o", o=org) == 0
    held = scalar(owner_engine, "SELECT coalesce(sum(spots_reserved), 0) FROM slot_reservations "
                                "WHERE session_id = :s AND status = 'held'", s=shop["session"]["id"])
    assert scalar(owner_engine, "SELECT capacity_total - capacity_remaining FROM activity_sessions WHERE id = :s",
                  s=shop["session"]["id"]) == held
    created = statuses.count(201)
    if name == "activity":
        assert scalar(owner_engine, "SELECT count(*) FROM activities WHERE organization_id = :o", o=org) == 1 + created
    if name == "venue":
        assert scalar(owner_engine, "SELECT count(*) FROM venues WHERE organization_id = :o", o=org) == 1 + created
    assert any(s == 422 for s in statuses)


async def test_nul_characters_are_4xx_not_500(client, shop, owner_engine):
    """PostgreSQL cannot store U+0000 in text or jsonb; such input is the caller's mistake."""
    bodies = valid_bodies(shop)
    nul = "Bad\u0000Name"
    cases = [
        ("checkout", {"customer": {**CUSTOMER, "first_name": nul}}),
        ("staff_booking", {**bodies["staff_booking"], "notes": nul}),
        ("staff_booking", {**bodies["staff_booking"], "customer": {**CUSTOMER, "last_name": nul}}),
        ("activity", {**bodies["activity"], "name": nul}),
        ("activity", {**bodies["activity"], "settings": {"note": nul}}),
        ("venue", {**bodies["venue"], "name": nul}),
        ("venue", {**bodies["venue"], "settings": {nul: 1}}),
    ]
    for name, body in cases:
        url, headers = endpoints(shop)[name]
        response = await client.post(url, headers=headers, json=body)
        assert_problem(response, 422)
    assert_nothing_written(owner_engine, shop)
