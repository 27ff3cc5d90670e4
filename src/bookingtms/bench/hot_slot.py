"""The hot slot: a crowd of buyers for one session within one second. Exactly its capacity is
sold, everyone else is told `sold_out`, and the stored state agrees (capacity_remaining 0, as many
bookings as spots)."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bookingtms.bench.load_client import CLIENT_ADDRESS, Client, client_address
from bookingtms.bench.load_mix import CHECKOUT, HOLD
from bookingtms.bench.report import Recorder, clock

BUYER = "buyer: arrival to final answer"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SetupFailed(Exception):
    pass


async def run_hot_slot(client: Client, manifest: dict[str, Any], capacity: int, buyers: int,
                       arrival_window: float = 1.0) -> dict[str, Any]:
    org = next((o for o in manifest["organizations"] if o.get("venues")), None)
    if org is None:
        raise SetupFailed("the manifest lists no organization with a venue")
    venue = org["venues"][0]
    headers: dict[str, str] = {}

    async def setup(method: str, path: str, expect: int, what: str, **kwargs) -> Any:
        """A call outside the measurement; anything but `expect` with a JSON body stops the scenario."""
        answer = await client.call(method, path, "setup", record=False, want_body=True, timeout=60, headers=headers,
                                   **kwargs)
        if answer.status != expect or answer.body is None:
            raise SetupFailed(f"{what}: expected {expect}, got {answer.outcome}")
        return answer.body

    login = await setup("POST", "/v1/auth/login", 200, f"log in as {org['owner_email']}",
                        json={"email": org["owner_email"], "password": manifest["password"]})
    headers["Authorization"] = f"Bearer {login['access_token']}"
    # One session tomorrow at noon, venue time: far enough ahead to be bookable whatever the hour.
    tomorrow = datetime.now(ZoneInfo(venue.get("timezone") or "UTC")).date() + timedelta(days=1)
    activity = await setup("POST", "/v1/activities", 201, "create the activity", json={
        "venue_id": venue["id"], "name": f"Hot slot {uuid.uuid4().hex[:8]}", "duration_minutes": 60,
        "capacity": capacity, "min_players": 1, "max_players": 1, "price_amount": 2500,
        "schedule": {"weekly": [{"days": [DAYS[tomorrow.weekday()]], "times": ["12:00"]}],
                     "start_date": tomorrow.isoformat(), "end_date": tomorrow.isoformat()}})
    sessions = (await setup("GET", "/v1/sessions", 200, "list its sessions",
                            params={"activity_id": activity["id"]}))["items"]
    if len(sessions) != 1:
        raise SetupFailed(f"expected one generated session, got {len(sessions)}")
    session_id = sessions[0]["id"]

    recorder = Recorder()
    recorder.window = (-math.inf, math.inf)
    client.recorder = recorder
    outcomes: list[str] = []
    start = clock() + 0.2

    async def buyer(i: int) -> None:
        arrival = start + i * arrival_window / buyers
        CLIENT_ADDRESS.set(client_address(i))  # each buyer its own visitor, as to the rate limits
        await asyncio.sleep(max(0.0, arrival - clock()))
        email = f"hot-{i}-{uuid.uuid4().hex[:8]}@example.com"
        held = await client.call("POST", f"/v1/public/venues/{venue['embed_key']}/reservations", HOLD,
                                 intended=arrival, ok=(201,), refusals=("409 sold_out",), want_body=True,
                                 json={"session_id": session_id, "spots": 1, "customer_email": email})
        final, booked = held, False
        if held.status == 201 and held.body:
            final = await client.call(
                "POST", f"/v1/public/venues/{venue['embed_key']}/reservations/{held.body['reservation_id']}/checkout",
                CHECKOUT, intended=held.done_at, ok=(201,),
                json={"customer": {"email": email, "first_name": "Hot", "last_name": "Buyer"}})
            booked = final.status == 201
        recorder.derived(BUYER, arrival, final.done_at - arrival, final.outcome)
        outcomes.append("booked" if booked else "sold_out" if held.outcome == "409 sold_out" else final.outcome)

    await asyncio.gather(*(buyer(i) for i in range(buyers)))
    elapsed = clock() - start

    stored = await setup("GET", f"/v1/sessions/{session_id}", 200, "read the session")
    listed, cursor = 0, None
    while True:
        params = {"activity_id": activity["id"], "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = await setup("GET", "/v1/bookings", 200, "list the bookings", params=params)
        listed += sum(1 for b in page["items"] if b["status"] != "cancelled")
        if not (cursor := page.get("next_cursor")):
            break

    booked, sold_out = outcomes.count("booked"), outcomes.count("sold_out")
    other: dict[str, int] = {}
    for o in outcomes:
        if o not in ("booked", "sold_out"):
            other[o] = other.get(o, 0) + 1
    expect_booked = min(capacity, buyers)
    checks = [
        ("not oversold", booked <= capacity and listed <= capacity and stored["capacity_remaining"] >= 0,
         f"{booked} booked, {listed} listed, capacity_remaining {stored['capacity_remaining']}"),
        (f"exactly {expect_booked} booked", booked == expect_booked, f"{booked} booked"),
        (f"the other {buyers - expect_booked} told sold_out", sold_out == buyers - expect_booked,
         f"{sold_out} sold_out"),
        ("no other answers", not other, ", ".join(f"{k}: {v}" for k, v in other.items())),
        (f"GET /v1/sessions/{{id}}: capacity_remaining {capacity - expect_booked}",
         stored["capacity_remaining"] == capacity - expect_booked,
         f"capacity_remaining {stored['capacity_remaining']}"),
        (f"GET /v1/bookings?activity_id=: {expect_booked} bookings", listed == expect_booked, f"{listed} bookings"),
    ]
    return {
        "capacity": capacity, "buyers": buyers, "arrival_window_s": arrival_window,
        "organization_id": org["id"], "activity_id": activity["id"], "session_id": session_id,
        "booked": booked, "sold_out": sold_out, "other": other, "bookings_listed": listed,
        "capacity_remaining": stored["capacity_remaining"], "elapsed_s": round(elapsed, 3),
        "endpoints": recorder.endpoint_rows(max(elapsed, 1e-9)),
        "checks": [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in checks],
        "passed": all(ok for _, ok, _ in checks),
    }
