"""The mixed load: simulated users on journeys (browsing availability, holding and checking out,
looking bookings up, staff dashboards), driven open-loop at a fixed arrival rate.

Arrivals are a Poisson stream at `rate` requests/s, fixed before any answer comes back. Each arrival
goes to one of `users` users picked at random (one not waiting for an answer), which takes the next
step of its journey; so users pause an exponential think time of mean about `users / rate` between
steps, and together they send `rate` requests/s however fast or slow the server answers. Every
latency counts from the request's arrival (its scheduled send time), never from when it could be
sent, so slow answers cannot hide (no coordinated omission)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

from bookingtms.bench.load_client import CLIENT_ADDRESS, FIRST_STAFF_ADDRESS, Client, client_address
from bookingtms.bench.report import BOOKING, clock

VENUE = "GET /v1/public/venues/{embed_key}"
AVAILABILITY = "GET /v1/public/venues/{embed_key}/availability"
HOLD = "POST /v1/public/venues/{embed_key}/reservations"
CHECKOUT = "POST /v1/public/venues/{embed_key}/reservations/{reservation_id}/checkout"
RELEASE = "DELETE /v1/public/venues/{embed_key}/reservations/{reservation_id}"
PUBLIC_BOOKING = "GET /v1/public/bookings/{reference}"
STATS = "GET /v1/dashboard/stats"
BOOKING_LIST = "GET /v1/bookings"
BOOKING_DETAIL = "GET /v1/bookings/{booking_id}"

# Journey shares (of journeys started) and what each does; the report states them.
JOURNEYS = {
    "browse": (0.45, "venue page, then availability twice (this week, or one day; half of them for one activity)"),
    "buy": (0.15, "venue page, availability, hold 1 to 4 spots of an open session, then check out "
                  "(85%) or release the hold (15%)"),
    "lookup": (0.25, "a customer looks a booking up by reference and email"),
    "staff": (0.15, "a staff member (logged in before the run) opens the dashboard stats for the last "
                    "7 or 30 days, searches bookings by reference or email, opens one booking"),
}
CHECKOUT_SHARE = 0.85
# Venue popularity is skewed the way real traffic is: the i-th venue of the manifest gets weight
# 1 / (i + 1) (Zipf, s = 1).
ZIPF_S = 1.0

Step = Callable[[float], Awaitable[Any]]


@dataclass
class Org:
    id: str
    owner_email: str
    bookings: list[dict[str, str]]  # {id, reference, email}: sampled by the seeder, then the ones we make
    token: str | None = None


@dataclass
class Venue:
    embed_key: str
    today: date  # in the venue's time zone, fixed for the run
    org: Org
    activities: dict[str, dict] = field(default_factory=dict)  # learned from the venue page


class Catalog:
    """The manifest's organizations, venues and bookings, and the staff logged in for the run."""

    def __init__(self, manifest: dict[str, Any]):
        now = datetime.now(timezone.utc)
        zones: dict[str, date] = {}
        self.orgs: list[Org] = []
        self.venues: list[Venue] = []
        for o in manifest["organizations"]:
            org = Org(o["id"], o["owner_email"], list(o.get("bookings") or []))
            self.orgs.append(org)
            for v in o.get("venues") or []:
                tz = v.get("timezone") or "UTC"
                if tz not in zones:
                    zones[tz] = now.astimezone(ZoneInfo(tz)).date()
                self.venues.append(Venue(v["embed_key"], zones[tz], org))
        if not self.venues:
            raise ValueError("the manifest lists no venues")
        self.venue_weights = list(accumulate(1 / (i + 1) ** ZIPF_S for i in range(len(self.venues))))
        self.with_bookings = [o for o in self.orgs if o.bookings]
        self.staff: list[Org] = []

    def venue(self, rng: random.Random) -> Venue:
        return rng.choices(self.venues, cum_weights=self.venue_weights)[0]

    async def log_in_staff(self, client: Client, password: str, how_many: int) -> list[str]:
        """Owners of the first organizations with bookings, logged in a few at a time (password
        hashing is slow on purpose) before the load starts. Returns the failures."""
        chosen = self.with_bookings[:how_many]
        gate = asyncio.Semaphore(4)

        async def log_in(index: int, org: Org):
            CLIENT_ADDRESS.set(client_address(index, FIRST_STAFF_ADDRESS))  # a front desk of its own, as to the rate limits
            async with gate:
                return await client.call("POST", "/v1/auth/login", "login", want_body=True, record=False,
                                         timeout=60, json={"email": org.owner_email, "password": password})

        answers = await asyncio.gather(*(log_in(i, o) for i, o in enumerate(chosen)))
        failures = []
        for org, answer in zip(chosen, answers):
            if answer.status == 200 and answer.body:
                org.token = answer.body["access_token"]
                self.staff.append(org)
            else:
                failures.append(f"{org.owner_email}: {answer.outcome}")
        return failures


class Mix:
    """The journeys: generators of steps, each step one request. Code between two `yield`s runs once
    the previous step has been answered, so it can use that answer."""

    def __init__(self, client: Client, catalog: Catalog, rng: random.Random):
        self.client, self.catalog, self.rng = client, catalog, rng
        names = [n for n in JOURNEYS if n != "staff" or catalog.staff]
        names = [n for n in names if n != "lookup" or catalog.with_bookings]
        self.names = names
        self.weights = list(accumulate(JOURNEYS[n][0] for n in names))

    def describe(self) -> list[dict[str, Any]]:
        total = sum(JOURNEYS[n][0] for n in self.names)
        return [{"name": n, "share": JOURNEYS[n][0] / total, "steps": JOURNEYS[n][1]} for n in self.names]

    def journey(self) -> Iterator[Step]:
        name = self.rng.choices(self.names, cum_weights=self.weights)[0]
        return getattr(self, name)()

    # -- journeys ---------------------------------------------------------------------------------
    def browse(self) -> Iterator[Step]:
        venue = self.catalog.venue(self.rng)
        yield lambda t: self.venue_page(venue, t)
        yield lambda t: self.availability(venue, t)
        yield lambda t: self.availability(venue, t)

    def buy(self) -> Iterator[Step]:
        venue = self.catalog.venue(self.rng)
        yield lambda t: self.venue_page(venue, t)
        found: list = []
        yield lambda t: self.availability(venue, t, found)
        choice = self.pick_session(venue, found)
        if choice is None:
            return
        session, spots = choice
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        held: list = []
        yield lambda t: self.hold(venue, session, spots, email, t, held)
        if not held:
            return
        reservation_id, hold_latency, hold_intended = held[0]
        if self.rng.random() < CHECKOUT_SHARE:
            yield lambda t: self.checkout(venue, reservation_id, email, t, hold_latency, hold_intended)
        else:
            yield lambda t: self.client.call("DELETE", f"/v1/public/venues/{venue.embed_key}/reservations/"
                                             f"{reservation_id}", RELEASE, intended=t, ok=(204,))

    def lookup(self) -> Iterator[Step]:
        org = self.rng.choice(self.catalog.with_bookings)
        booking = self.rng.choice(org.bookings)
        yield lambda t: self.client.call("GET", f"/v1/public/bookings/{booking['reference']}", PUBLIC_BOOKING,
                                         intended=t, params={"email": booking["email"]})

    def staff(self) -> Iterator[Step]:
        org = self.rng.choice(self.catalog.staff)
        auth = {"Authorization": f"Bearer {org.token}"}
        today = datetime.now(timezone.utc).date()
        days = self.rng.choice((7, 30))
        yield lambda t: self.client.call("GET", "/v1/dashboard/stats", STATS, intended=t, headers=auth, params={
            "from": (today - timedelta(days=days)).isoformat(), "to": today.isoformat()})
        booking = self.rng.choice(org.bookings)
        q = booking["reference"] if self.rng.random() < 0.5 else booking["email"]
        yield lambda t: self.client.call("GET", "/v1/bookings", BOOKING_LIST, intended=t, headers=auth,
                                         params={"q": q, "limit": "20"})
        yield lambda t: self.client.call("GET", f"/v1/bookings/{booking['id']}", BOOKING_DETAIL, intended=t,
                                         headers=auth)

    # -- steps ----------------------------------------------------------------------------------
    async def venue_page(self, venue: Venue, t: float) -> None:
        answer = await self.client.call("GET", f"/v1/public/venues/{venue.embed_key}", VENUE, intended=t,
                                        want_body=not venue.activities)
        if answer.body:
            venue.activities = {a["id"]: a for a in answer.body.get("activities", [])}

    async def availability(self, venue: Venue, t: float, found: list | None = None) -> None:
        if self.rng.random() < 0.6:  # the widget's first view: the coming week
            start, days = venue.today, 7
        else:                        # one day the customer picked
            start, days = venue.today + timedelta(days=self.rng.randrange(7)), 1
        params = {"from": start.isoformat(), "to": (start + timedelta(days=days)).isoformat()}
        if venue.activities and self.rng.random() < 0.5:
            params["activity_id"] = self.rng.choice(list(venue.activities))
        answer = await self.client.call("GET", f"/v1/public/venues/{venue.embed_key}/availability", AVAILABILITY,
                                        intended=t, params=params, want_body=found is not None)
        if found is not None and answer.body:
            found.extend(answer.body.get("sessions", []))

    def pick_session(self, venue: Venue, sessions: list[dict]) -> tuple[str, int] | None:
        """An open session with room for a group of the activity's allowed size. A session of an
        activity the venue page did not show (it was not answered) is passed over: a real buyer
        knows the party sizes from that page."""
        options = []
        for s in sessions:
            activity = venue.activities.get(s["activity_id"])
            if activity is None:
                continue
            low = max(1, activity.get("min_players") or 1)
            high = min(activity.get("max_players") or 4, s["capacity_remaining"], low + 3)
            if high >= low:
                options.append((s["id"], low, high))
        if not options:
            return None
        session_id, low, high = self.rng.choice(options)
        return session_id, self.rng.randint(low, high)

    async def hold(self, venue: Venue, session_id: str, spots: int, email: str, t: float, held: list) -> None:
        answer = await self.client.call(
            "POST", f"/v1/public/venues/{venue.embed_key}/reservations", HOLD, intended=t, ok=(201,),
            # Right answers too: others took the spots, or the session started while the user
            # thought it over (availability lists only sessions not started yet, as does the hold).
            refusals=("409 sold_out", "422 session_started"), want_body=True,
            json={"session_id": session_id, "spots": spots, "customer_email": email})
        if answer.status == 201 and answer.body:
            held.append((answer.body["reservation_id"], answer.done_at - t, t))

    async def checkout(self, venue: Venue, reservation_id: str, email: str, t: float, hold_latency: float,
                       hold_intended: float) -> None:
        answer = await self.client.call(
            "POST", f"/v1/public/venues/{venue.embed_key}/reservations/{reservation_id}/checkout", CHECKOUT,
            intended=t, ok=(201,), want_body=True,
            json={"customer": {"email": email, "first_name": "Bench", "last_name": "Buyer"}})
        if answer.status == 201 and answer.body:
            # Our booking is two calls; the PRD's POST /bookings is one: their latencies add up.
            self.client.recorder.derived(BOOKING, hold_intended, hold_latency + (answer.done_at - t))
            booking = answer.body["booking"]
            venue.org.bookings.append({"id": booking["id"], "reference": booking["reference"], "email": email})


class User:
    """One simulated user: takes the next step of its journey at each of its arrivals."""

    def __init__(self, mix: Mix, address: str):
        self.mix = mix
        self.address = address
        self.steps: Iterator[Step] = iter(())
        self.last: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self.last is not None and not self.last.done()

    def arrive(self, arrival: float, tasks: set) -> None:
        task = asyncio.create_task(self._step(self.last, arrival))
        self.last = task
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _step(self, previous: asyncio.Task | None, arrival: float) -> None:
        CLIENT_ADDRESS.set(self.address)  # this task's own context: every request of the step
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # a step may need the previous step's answer
        step = next(self.steps, None)
        if step is None:
            self.steps = self.mix.journey()
            step = next(self.steps)
        await step(arrival)


def pick_user(population: list[User], rng: random.Random, tries: int = 8) -> User:
    """A random user who is not waiting for an answer. Only when the server is so slow that all
    the users tried are waiting does an arrival queue behind a user's unanswered step; its latency
    still counts from its arrival."""
    for _ in range(tries):
        user = population[rng.randrange(len(population))]
        if not user.busy:
            return user
    return user


async def drive(mix: Mix, rng: random.Random, rate: float, users: int, start: float, end: float,
                drain: float) -> None:
    """Poisson arrivals at `rate` from clock() time `start` to `end`, then up to `drain` seconds for the
    answers still outstanding; what is still open then is cut off (the recorder counts it)."""
    population = [User(mix, client_address(i)) for i in range(users)]
    recorder = mix.client.recorder
    tasks: set[asyncio.Task] = set()
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            break
        delay = t - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        recorder.arrived(t, clock() - t)
        pick_user(population, rng).arrive(t, tasks)
    if tasks:
        await asyncio.wait(set(tasks), timeout=max(0.0, end + drain - clock()))
    for task in list(tasks):
        task.cancel()
