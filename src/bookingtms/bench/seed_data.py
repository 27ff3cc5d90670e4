"""The rows of `bookingtms bench seed`, generated in plain Python as PostgreSQL text COPY lines.

Everything here is pure (no database): a `Generator` made from a profile, a random seed and "now"
yields the catalog (organizations, owners, venues, activities) and then, organization by
organization, sessions, customers, holds, bookings and payments exactly as the application
would have written them with the offline payment provider:

* every session's `capacity_remaining` is its total less the guests of its non-cancelled
  bookings (no live holds are seeded), and its `version` counts every capacity move;
* a customer's `total_bookings` / `total_spent` are the count and sum of their non-cancelled
  bookings;
* a widget booking comes from a `converted` hold, a staff booking from the owner; each booking has
  one offline charge (`pending`, or `cancelled` when the booking was cancelled, as `void_pending`
  leaves it);
* references are the app's 10-letter format, unique by construction (a bijection of a counter).

Rows are written for speed: ids are 32 hex digits (PostgreSQL's uuid input accepts them),
timestamps come from precomputed day and time-of-day strings, and no value needs COPY escaping
(none holds a tab, newline or backslash)."""

from __future__ import annotations

import base64
import functools
import json
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bookingtms.bookings.service import REFERENCE_ALPHABET

DAY = 86_400
NULL = "\\N"  # COPY text format


@dataclass(frozen=True)
class Profile:
    name: str
    organizations: int
    venues_per_organization: int
    activities_per_venue: int
    bookings_per_month: int
    months: int = 12
    days_ahead: int = 14

    @property
    def past_days(self) -> int:
        return round(self.months * 365 / 12)

    @property
    def past_bookings(self) -> int:
        return self.bookings_per_month * self.months

    @property
    def future_bookings(self) -> int:
        """Bookings already made for the coming days: about a week's worth."""
        return self.bookings_per_month // 4


PROFILES = {
    "enterprise": Profile("enterprise", 10_000, 10, 2, 1_000_000),
    "small": Profile("small", 1_000, 10, 2, 100_000),
    "ci": Profile("ci", 20, 5, 2, 2_000),
}


# ---------------------------------------------------------------------------------------------
# What is sold where. Slots are local times between 09:00 and 21:00, far from the night-time DST
# changes, so a venue's UTC offset at noon is its offset for every slot of that day.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    name: str
    category: str
    difficulty: str | None
    duration: int
    capacity: int
    min_players: int
    max_players: int
    price: int
    times: tuple[str, ...]
    policy: dict

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(int(t[:2]) * 60 + int(t[3:]) for t in self.times)

    @functools.cached_property
    def policy_json(self) -> str:
        return json.dumps(self.policy)


STANDARD_POLICY = {"full_refund_hours": 24}
TOUR_POLICY = {"full_refund_hours": 48, "partial_refund_hours": 24, "partial_refund_percent": 50}

# Four time slots a day for rooms and lanes, three for tours and classes: 3.5 a day on average
# (activities alternate between the two lists).
FOUR_SLOTS = (
    Template("The Lost Pharaoh", "escape-room", "hard", 60, 6, 2, 6, 3200, ("10:00", "13:00", "16:00", "19:00"), STANDARD_POLICY),
    Template("Prison Break", "escape-room", "medium", 60, 8, 2, 8, 3500, ("11:00", "14:00", "17:00", "20:00"), STANDARD_POLICY),
    Template("Haunted Manor", "escape-room", "hard", 75, 6, 2, 6, 3800, ("12:00", "15:00", "18:00", "21:00"), STANDARD_POLICY),
    Template("Axe Throwing Lane", "activity", None, 60, 10, 1, 10, 2900, ("12:00", "15:00", "18:00", "21:00"), STANDARD_POLICY),
)
THREE_SLOTS = (
    Template("Harbour Walking Tour", "tour", None, 90, 20, 1, 10, 2500, ("09:30", "13:30", "17:30"), TOUR_POLICY),
    Template("Pottery for Beginners", "class", "easy", 120, 12, 1, 4, 5500, ("10:00", "14:00", "18:30"), STANDARD_POLICY),
    Template("Sunset Kayak Tour", "tour", "medium", 120, 16, 1, 8, 6500, ("09:00", "13:00", "17:00"), TOUR_POLICY),
    Template("Wine Tasting Class", "class", None, 90, 14, 1, 6, 4500, ("11:00", "15:00", "19:00"), STANDARD_POLICY),
)

# (currency, minor units per USD cent, weight, [(IANA zone, country, cities)])
REGIONS = (
    ("USD", 1, 45, (("America/New_York", "US", ("New York", "Boston", "Philadelphia")),
                    ("America/Chicago", "US", ("Chicago", "Austin")),
                    ("America/Denver", "US", ("Denver",)),
                    ("America/Phoenix", "US", ("Phoenix",)),
                    ("America/Los_Angeles", "US", ("Los Angeles", "San Francisco", "Seattle")))),
    ("EUR", 1, 20, (("Europe/Paris", "FR", ("Paris", "Lyon")),
                    ("Europe/Berlin", "DE", ("Berlin", "Munich")),
                    ("Europe/Madrid", "ES", ("Madrid", "Barcelona")),
                    ("Europe/Amsterdam", "NL", ("Amsterdam",)))),
    ("GBP", 1, 10, (("Europe/London", "GB", ("London", "Manchester", "Edinburgh")),)),
    ("CAD", 1, 6, (("America/Toronto", "CA", ("Toronto", "Ottawa")),
                   ("America/Vancouver", "CA", ("Vancouver",)))),
    ("AUD", 1, 8, (("Australia/Sydney", "AU", ("Sydney",)),
                   ("Australia/Melbourne", "AU", ("Melbourne",)),
                   ("Australia/Perth", "AU", ("Perth",)))),
    ("NZD", 1, 3, (("Pacific/Auckland", "NZ", ("Auckland",)),)),
    ("INR", 80, 4, (("Asia/Kolkata", "IN", ("Mumbai", "Bengaluru")),)),
    ("SGD", 1, 2, (("Asia/Singapore", "SG", ("Singapore",)),)),
    ("BRL", 5, 2, (("America/Sao_Paulo", "BR", ("Sao Paulo", "Rio de Janeiro")),)),
)
VENUE_WORDS = ("Escape House", "Adventure Hub", "Experience Center", "Games Loft", "Studio", "Quarter")
STREETS = ("Market Street", "High Street", "Harbour Road", "Station Square", "Mill Lane", "Park Avenue")
FIRST_NAMES = ("Ann", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack", "Kate", "Liam",
               "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Xena",
               "Yusuf", "Zoe", "Aiko", "Bruno", "Carla", "Dev", "Elif", "Femi")
LAST_NAMES = ("Lee", "Smith", "Garcia", "Muller", "Rossi", "Dubois", "Kowalski", "Tanaka", "Silva", "Patel",
              "Nguyen", "Jones", "Brown", "Martin", "Novak", "Berg", "Costa", "Okafor", "Singh", "Walsh",
              "Young", "Khan", "Moreau", "Larsen")
MAIL_DOMAINS = ("example.com", "example.net", "example.org")

# Party sizes as drawn (then clamped to the activity's players range and what is left).
PARTY_SIZES = [1] * 10 + [2] * 35 + [3] * 20 + [4] * 18 + [5] * 8 + [6] * 5 + [7] * 2 + [8] * 2
# How popular an activity is, in quarters of the average (the mean of this list is 4).
POPULARITY = (1, 2, 3, 4, 4, 5, 6, 7)

WIDGET_SHARE = 0.85     # the rest are staff bookings (phone, walk-in)
CANCEL_RATE = 0.05
CHECKIN_RATE = 0.85     # of past confirmed bookings
SOLD_OUT_RATE = 0.10    # of sessions that have bookings
MEAN_LEAD = 7 * DAY     # booked this long before the session on average
MAX_LEAD = 40 * DAY
CUSTOMERS_PER_BOOKING = 0.6  # a customer pool of this size per booking, drawn with repeats

_V4_MASK = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_V4_BITS = (0x4 << 76) | (0x2 << 62)
_REF_SPACE = 1 << 50  # 32 ** 10


def dashed(hex_id: str) -> str:
    return str(uuid.UUID(hex=hex_id))


@dataclass
class Activity:
    id: str
    template: Template
    price: int
    past_bookings: int
    popularity: float


@dataclass
class Venue:
    id: str
    embed_key: str
    zone: str
    activities: list[Activity] = field(default_factory=list)


@dataclass
class Organization:
    index: int
    id: str
    slug: str
    owner_id: str
    owner_email: str
    currency: str
    venues: list[Venue] = field(default_factory=list)


@dataclass
class Lines:
    """COPY text per table for one batch of organizations, and what was generated."""

    tables: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[int, list[dict]] = field(default_factory=dict)  # organization index -> booking samples

    def add(self, table: str, line: str) -> None:
        self.tables.setdefault(table, []).append(line)

    def payload(self, table: str) -> bytes:
        return "".join(self.tables.get(table, ())).encode()


# Columns of each COPY, in the order the lines are written.
COLUMNS = {
    "organizations": ("id", "name", "slug", "plan_id", "owner_id", "status", "currency", "subscription_status",
                      "created_at", "updated_at"),
    "users": ("id", "organization_id", "email", "full_name", "role", "password_hash", "created_at", "updated_at"),
    "venues": ("organization_id", "id", "name", "slug", "embed_key", "timezone", "address", "city", "country",
               "created_at", "updated_at"),
    "activities": ("organization_id", "id", "venue_id", "name", "description", "category", "difficulty",
                   "duration_minutes", "capacity", "min_players", "max_players", "price_amount", "currency",
                   "schedule", "cancellation_policy", "sessions_generated_until", "created_at", "updated_at"),
    "activity_sessions": ("organization_id", "id", "activity_id", "venue_id", "start_time", "end_time",
                          "capacity_total", "capacity_remaining", "price_at_generation", "currency", "version",
                          "created_at", "updated_at"),
    "customers": ("organization_id", "id", "email", "first_name", "last_name", "phone", "total_bookings",
                  "total_spent", "created_at", "updated_at"),
    "slot_reservations": ("organization_id", "id", "session_id", "customer_email", "spots_reserved", "expires_at",
                          "status", "booking_id", "created_at", "updated_at"),
    "bookings": ("organization_id", "id", "venue_id", "activity_id", "session_id", "customer_id", "reservation_id",
                 "booking_reference", "status", "payment_status", "source", "booking_date", "guest_count",
                 "unit_price_amount", "subtotal_amount", "total_amount", "currency", "cancellation_policy",
                 "cancelled_at", "cancel_reason", "cancelled_by", "checked_in_at", "created_by", "reminder_sent_at",
                 "created_at", "updated_at"),
    "payments": ("organization_id", "id", "booking_id", "provider", "kind", "amount", "currency", "status",
                 "net_to_merchant", "created_at", "updated_at"),
}
# The order that satisfies every foreign key (holds before the bookings that name them).
BATCH_TABLES = ("activity_sessions", "customers", "slot_reservations", "bookings", "payments")


class Generator:
    def __init__(self, profile: Profile, seed: int, now: datetime, plan_id: str, password_hash: str,
                 session_horizon_days: int = 60):
        self.profile = profile
        self.rng = random.Random(seed)
        self.now = int(now.timestamp())
        self.plan_id = plan_id
        self.password_hash = password_hash
        self.horizon = session_horizon_days
        # references: counter * odd multiplier + offset, modulo 32^10 (a bijection: never a repeat)
        self._ref_mult = self.rng.getrandbits(50) | 1
        self._ref_offset = self.rng.getrandbits(50)
        self._ref_count = 0
        self._pairs = [a + b for a in REFERENCE_ALPHABET for b in REFERENCE_ALPHABET]
        # timestamps: "YYYY-MM-DD " by day number and "HH:MM:SS+00" by second of the day
        today = self.now // DAY
        self._first_day = today - self.profile.past_days - MAX_LEAD // DAY - 3
        last_day = today + max(self.profile.days_ahead, self.horizon) + 3
        epoch = datetime(1970, 1, 1)
        self._days = [(epoch + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(self._first_day, last_day)]
        self._times = [f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(DAY)]
        self._offsets: dict[str, list[int]] = {}  # zone -> UTC offset (seconds) at local noon, by day
        self._today: dict[str, int] = {}  # zone -> today's local day number
        self.catalog_created = self.now - (self.profile.past_days + 60) * DAY
        self.organizations: list[Organization] = []

    # -- values ----------------------------------------------------------------------------------
    def new_id(self) -> str:
        """A random (version 4) UUID as 32 hex digits, drawn from the seeded generator."""
        return f"{(self.rng.getrandbits(128) & _V4_MASK) | _V4_BITS:032x}"

    def ts(self, epoch: int) -> str:
        return self._days[epoch // DAY - self._first_day] + self._times[epoch % DAY]

    def date(self, day: int) -> str:
        return self._days[day - self._first_day]

    def iso(self, epoch: int) -> str:
        """As Python's isoformat() writes an aware UTC time (the app's JSON timestamps)."""
        return self.ts(epoch).replace(" ", "T")[:-3] + "+00:00"

    def reference(self) -> str:
        x = (self._ref_count * self._ref_mult + self._ref_offset) % _REF_SPACE
        self._ref_count += 1
        p, a = self._pairs, REFERENCE_ALPHABET
        hi, lo = x >> 25, x & 0x1FFFFFF
        return (p[hi >> 15] + p[(hi >> 5) & 1023] + a[hi & 31] + "-"
                + p[lo >> 15] + p[(lo >> 5) & 1023] + a[lo & 31])

    def _zone(self, name: str) -> list[int]:
        offsets = self._offsets.get(name)
        if offsets is None:
            zone = ZoneInfo(name)
            epoch = datetime(1970, 1, 1)
            offsets = [int((epoch + timedelta(days=d, hours=12)).replace(tzinfo=zone).utcoffset().total_seconds())
                       for d in range(self._first_day, self._first_day + len(self._days))]
            self._offsets[name] = offsets
            self._today[name] = (self.now + int(datetime.fromtimestamp(self.now, zone).utcoffset().total_seconds())) // DAY
        return offsets

    def start_of(self, zone: str, day: int, slot_minutes: int) -> int:
        """The UTC epoch of local `day` (day number) at `slot_minutes` past midnight in `zone`."""
        return day * DAY + slot_minutes * 60 - self._offsets[zone][day - self._first_day]

    def schedule(self, template: Template, zone: str) -> str:
        """The weekly rule that produced exactly the seeded future sessions: every day at the
        template's times, from today to `days_ahead` days on (local dates)."""
        today = self._today[zone]
        return json.dumps({"weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                       "times": list(template.times)}],
                           "start_date": self.date(today), "end_date": self.date(today + self.profile.days_ahead),
                           "closed_dates": []})

    # -- the catalog -----------------------------------------------------------------------------
    def catalog(self) -> Lines:
        """Organizations (each with a super-admin owner), venues and activities. Fills
        `self.organizations`, which the booking batches then walk."""
        p, rng, out = self.profile, self.rng, Lines()
        created = self.ts(self.catalog_created)
        regions = [r for r in REGIONS for _ in range(r[2])]
        activities_total = p.organizations * p.venues_per_organization * p.activities_per_venue
        # each activity's share of the past bookings, in proportion to its popularity (exactly in total)
        popularity = [rng.choice(POPULARITY) for _ in range(activities_total)]
        weights, cumulative, allotted, n = sum(popularity), 0, 0, 0
        for i in range(p.organizations):
            currency, factor, _, zones = rng.choice(regions)
            slug = f"bench-{i + 1:05d}"
            org = Organization(i, self.new_id(), slug, self.new_id(), f"owner@{slug}.example.com", currency)
            out.add("organizations", f"{org.id}\tBench {currency} Organization {i + 1}\t{slug}\t{self.plan_id}\t"
                                     f"{org.owner_id}\tactive\t{currency}\tactive\t{created}\t{created}\n")
            out.add("users", f"{org.owner_id}\t{org.id}\t{org.owner_email}\tOwner of {slug}\tsuper-admin\t"
                             f"{self.password_hash}\t{created}\t{created}\n")
            for j in range(p.venues_per_organization):
                zone, country, cities = zones[j % len(zones)]
                self._zone(zone)
                city = cities[(i + j) % len(cities)]
                venue = Venue(self.new_id(), base64.urlsafe_b64encode(rng.randbytes(18)).decode(), zone)  # as the app's
                name = f"{city} {VENUE_WORDS[(i + j) % len(VENUE_WORDS)]} {j + 1}"
                out.add("venues", f"{org.id}\t{venue.id}\t{name}\tvenue-{j + 1}\t{venue.embed_key}\t{zone}\t"
                                  f"{100 + (i * 7 + j * 13) % 900} {STREETS[j % len(STREETS)]}\t{city}\t{country}\t"
                                  f"{created}\t{created}\n")
                for k in range(p.activities_per_venue):
                    pool = FOUR_SLOTS if k % 2 == 0 else THREE_SLOTS
                    template = pool[(i + j + k // 2) % len(pool)]
                    price = int(round(template.price * factor * rng.uniform(0.8, 1.3), -2))
                    cumulative += popularity[n]
                    quota = p.past_bookings * cumulative // weights - allotted
                    allotted += quota
                    activity = Activity(self.new_id(), template, price, quota, popularity[n] / 4)
                    n += 1
                    out.add("activities", f"{org.id}\t{activity.id}\t{venue.id}\t{template.name}\t\t"
                                          f"{template.category}\t{template.difficulty or NULL}\t"
                                          f"{template.duration}\t{template.capacity}\t{template.min_players}\t"
                                          f"{template.max_players}\t{price}\t{currency}\t"
                                          f"{self.schedule(template, zone)}\t{template.policy_json}\t"
                                          f"{self.date(self._today[zone] + self.horizon)}\t{created}\t{created}\n")
                    venue.activities.append(activity)
                org.venues.append(venue)
            self.organizations.append(org)
        out.counts = {"organizations": p.organizations, "venues": p.organizations * p.venues_per_organization,
                      "activities": activities_total}
        return out

    # -- sessions, customers, bookings, payments -------------------------------------------------
    def batch(self, organizations: list[Organization]) -> Lines:
        out = Lines()
        out.counts = dict.fromkeys(("sessions", "customers", "bookings", "payments"), 0)
        for org in organizations:
            self._organization(org, out)
        return out


    def _organization(self, org: Organization, out: Lines) -> None:
        """Every session of the organization's activities: the schedule's sessions ahead (some
        booked by chance), and past sessions filled until each activity's share of the year's
        bookings is used."""
        p, rng, now = self.profile, self.rng, self.now
        expected = sum(a.past_bookings for v in org.venues for a in v.activities) + p.future_bookings // p.organizations
        booker = _Booker(self, org, out, pool=max(1, int(expected * CUSTOMERS_PER_BOOKING)))
        span = (p.days_ahead + 1) * DAY
        for venue in org.venues:
            today = self._today[venue.zone]
            for activity in venue.activities:
                slots = activity.template.slots
                chance = self.future_rate * activity.popularity
                for day in range(today, today + p.days_ahead + 1):
                    for slot in slots:
                        start = self.start_of(venue.zone, day, slot)
                        if start <= now:
                            continue
                        if rng.random() < chance * (1 - (start - now) / span):  # sooner is fuller
                            fill = 1.0 if rng.random() < SOLD_OUT_RATE else rng.uniform(0.1, 0.8)
                        else:
                            fill = 0.0
                        booker.session(venue, activity, start, fill)
                left, used = activity.past_bookings, set()
                while left > 0 and len(used) < p.past_days * len(slots):
                    day = today - 1 - int(rng.random() * p.past_days)
                    slot = slots[int(rng.random() * len(slots))]
                    if (day, slot) in used:
                        continue
                    used.add((day, slot))
                    fill = 1.0 if rng.random() < SOLD_OUT_RATE else rng.uniform(0.2, 0.9)
                    left -= booker.session(venue, activity, self.start_of(venue.zone, day, slot), fill, limit=left)
        booker.finish()

    @property
    def future_rate(self) -> float:
        """Chance that an average future session has bookings (halved by the time to its start),
        so that about `future_bookings` are made; a booked session holds about 2.5 bookings."""
        p = self.profile
        sessions = p.organizations * p.venues_per_organization * p.activities_per_venue * (p.days_ahead + 0.5) * 3.5
        return min(1.0, p.future_bookings / 2.5 / (sessions * 0.5))


class _Booker:
    """One organization's sessions and bookings, its customers and their totals."""

    def __init__(self, gen: Generator, org: Organization, out: Lines, pool: int):
        self.gen, self.org, self.out, self.pool = gen, org, out, pool
        self.customers: dict[int, list] = {}  # pool index -> [id, email, bookings, spent, first at, last at]
        self.confirmed: list[tuple[str, str, int]] = []  # (booking id, reference, customer index)
        self.staff_actor = "user:" + dashed(org.owner_id)  # as a staff cancellation records its actor

    def _customer(self, booked_at: int) -> tuple[int, list]:
        """A skewed draw from the organization's pool, so regulars come back."""
        k = int(self.pool * self.gen.rng.random() ** 1.5)
        customer = self.customers.get(k)
        if customer is None:
            first, last = FIRST_NAMES[k % len(FIRST_NAMES)], LAST_NAMES[k // 7 % len(LAST_NAMES)]
            email = f"{first}.{last}.{k}@{MAIL_DOMAINS[k % len(MAIL_DOMAINS)]}".lower()
            customer = self.customers[k] = [self.gen.new_id(), email, 0, 0, booked_at, booked_at]
        customer[4] = min(customer[4], booked_at)
        return k, customer

    def session(self, venue: Venue, activity: Activity, start: int, fill: float, limit: int | None = None) -> int:
        """One session with bookings for `fill` of its capacity (at most `limit` bookings);
        returns how many bookings it got (cancelled ones included)."""
        gen, org, out = self.gen, self.org, self.out
        rng, ts, now, ids = gen.rng, gen.ts, gen.now, gen.new_id
        t = activity.template
        capacity, low, high, price, policy = t.capacity, t.min_players, t.max_players, activity.price, t.policy
        session_id = ids()
        past = start < now
        local_date = gen.date((start + gen._offsets[venue.zone][start // DAY - gen._first_day]) // DAY) if fill else ""
        created = touched = max(gen.catalog_created, start - (gen.horizon + 1) * DAY)
        target = math.ceil(capacity * fill)
        taken = made = moves = 0
        while taken < target and (limit is None or made < limit) and capacity - taken >= low:
            guests = min(max(PARTY_SIZES[int(rng.random() * len(PARTY_SIZES))], low), high, capacity - taken)
            lead = min(int(rng.expovariate(1 / MEAN_LEAD)), MAX_LEAD) + 600
            booked_at = start - lead if past else max(now - lead, start - MAX_LEAD)
            k, customer = self._customer(booked_at)
            booking_id, reference, total = ids(), gen.reference(), price * guests
            made += 1
            moves += 1  # the hold (or the staff booking) took the spots
            updated = booked_at
            if rng.random() < CANCEL_RATE:
                moves += 1  # ... and the cancellation gave them back
                cancelled_at = booked_at + int(rng.random() * ((start if past else now) - booked_at))
                updated = cancelled_at
                customer[5] = max(customer[5], cancelled_at)
                hours = (start - cancelled_at) / 3600
                percent = (100 if hours >= policy["full_refund_hours"] else
                           policy.get("partial_refund_percent", 0) if hours >= policy.get("partial_refund_hours", 1e9)
                           else 0)
                applied = json.dumps({**policy, "applied": {"mode": "policy", "refund_percent": percent,
                                                            "cancelled_at": gen.iso(cancelled_at),
                                                            "hours_before_start": round(hours, 2)}})
                by = "\\N\tcustomer" if rng.random() < 0.7 else f"Customer called to cancel\t{self.staff_actor}"
                status, cancellation, checked_in = "cancelled", f"{applied}\t{ts(cancelled_at)}\t{by}", NULL
            else:
                cancelled_at = None
                taken += guests
                customer[2] += 1
                customer[3] += total
                customer[5] = max(customer[5], booked_at)
                self.confirmed.append((booking_id, reference, k))
                status, cancellation, checked_in = "confirmed", f"{t.policy_json}\t{NULL}\t{NULL}\t{NULL}", NULL
                if past and rng.random() < CHECKIN_RATE:
                    checked = start - int(rng.random() * 900)
                    checked_in, updated = ts(checked), checked
            # The reminder job stamps reminder_sent_at 24 hours before the start, on bookings made
            # before then and still live at that moment.
            remind = start - DAY
            reminder = NULL
            if remind <= now and booked_at <= remind and (cancelled_at is None or cancelled_at > remind):
                reminder, updated = ts(remind), max(updated, remind)
            if rng.random() < WIDGET_SHARE:  # a hold, converted by the checkout that made the booking
                hold_id, held_at = ids(), booked_at - 30 - int(rng.random() * 210)
                out.add("slot_reservations", f"{org.id}\t{hold_id}\t{session_id}\t{customer[1]}\t{guests}\t"
                                             f"{ts(held_at + 300)}\tconverted\t{booking_id}\t{ts(held_at)}\t"
                                             f"{ts(booked_at)}\n")
                source, created_by = "widget", NULL
            else:
                hold_id, source, created_by = NULL, "staff", org.owner_id
            out.add("bookings", f"{org.id}\t{booking_id}\t{venue.id}\t{activity.id}\t{session_id}\t{customer[0]}\t"
                                f"{hold_id}\t{reference}\t{status}\tunpaid\t{source}\t{local_date}\t{guests}\t{price}\t"
                                f"{total}\t{total}\t{org.currency}\t{cancellation}\t{checked_in}\t{created_by}\t"
                                f"{reminder}\t{ts(booked_at)}\t{ts(updated)}\n")
            # the offline charge: pending until paid at the venue; voided when the booking is cancelled
            out.add("payments", f"{org.id}\t{ids()}\t{booking_id}\toffline\tcharge\t{total}\t{org.currency}\t"
                                f"{'cancelled' if cancelled_at else 'pending'}\t{total}\t{ts(booked_at)}\t"
                                f"{ts(cancelled_at or booked_at)}\n")
            touched = max(touched, cancelled_at or booked_at)
        out.add("activity_sessions", f"{org.id}\t{session_id}\t{activity.id}\t{venue.id}\t{ts(start)}\t"
                                     f"{ts(start + t.duration * 60)}\t{capacity}\t{capacity - taken}\t{price}\t"
                                     f"{org.currency}\t{1 + moves}\t{ts(created)}\t{ts(touched)}\n")
        out.counts["sessions"] += 1
        out.counts["bookings"] += made
        out.counts["payments"] += made
        return made

    def finish(self) -> None:
        org, out, ts = self.org, self.out, self.gen.ts
        for k, (customer_id, email, count, spent, first_at, last_at) in self.customers.items():
            first, last = FIRST_NAMES[k % len(FIRST_NAMES)], LAST_NAMES[k // 7 % len(LAST_NAMES)]
            phone = f"+1555{k:07d}" if k % 2 else NULL
            out.add("customers", f"{org.id}\t{customer_id}\t{email}\t{first}\t{last}\t{phone}\t{count}\t{spent}\t"
                                 f"{ts(first_at)}\t{ts(last_at)}\n")
        out.counts["customers"] += len(self.customers)
        picked = self.gen.rng.sample(self.confirmed, min(20, len(self.confirmed)))
        out.samples[org.index] = [{"id": dashed(b), "reference": r, "email": self.customers[k][1]} for b, r, k in picked]
