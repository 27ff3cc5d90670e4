"""Staff dashboard: the calendar, activities with their schedule editor and session generation, a
session's page (capacity, closing, its bookings) and the statistics with their charts.

The same services, permissions, transactions and audit records as the API routers it mirrors
(activities/router.py, sessions/router.py, dashboard/router.py). Times are shown in the venue's
time zone; forms re-render with the values typed and a message at each wrong field (422), and
write nothing then."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from bookingtms.activities import service as activities_service
from bookingtms.activities.schedule import DAY_NAMES
from bookingtms.activities.schemas import ActivityCreate, ActivityUpdate, GenerateSessions
from bookingtms.audit.service import changed, diff, lock_target, record
from bookingtms.bookings import service as bookings_service
from bookingtms.dashboard import service as dashboard_service
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from bookingtms.http.idempotency import idempotent
from bookingtms.http.pagination import decode_cursor
from bookingtms.http.principal import Principal
from bookingtms.notifications.render import ZERO_DECIMAL, money
from bookingtms.sessions import service as sessions_service
from bookingtms.sessions.schemas import SessionEdit
from bookingtms.venues import service as venues_service
from bookingtms.web import charts
from bookingtms.web.forms import Form, form_data
from bookingtms.web.session import require_page
from bookingtms.web.templating import redirect, render

router = APIRouter()

DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BLANK_RULES = 2  # empty rule blocks offered without JavaScript
BLANK_TIMES = 3  # empty time inputs per rule
MAX_RULES = 50
CALENDAR_LIMIT = 3000  # sessions in one view; a week of a busy venue is a few hundred


def _uuid(value: str | None, what: str = "id") -> uuid.UUID:
    """A path id: anything that is not a UUID is simply not found (as another tenant's would be)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No such {what}.") from None


async def _venues(db, p: Principal) -> list[dict[str, Any]]:
    return (await venues_service.list_venues(db, p.organization_id, 200, None))["items"]


# ----------------------------------------------------------------------------------------------
# Calendar
# ----------------------------------------------------------------------------------------------
def _day_param(value: str | None, today: date) -> date:
    if not value:
        return today
    try:
        day = date.fromisoformat(value)
        if not 2000 <= day.year <= 2100:
            raise ValueError
        return day
    except ValueError:
        raise ValidationFailed("date must be a day as YYYY-MM-DD between 2000 and 2100.", field="date") from None


def _pick_venue(venues: list[dict[str, Any]], venue_id: str | None) -> dict[str, Any] | None:
    if venue_id:
        wanted = _uuid(venue_id, "venue")
        for venue in venues:
            if venue["id"] == wanted:
                return venue
        raise NotFound("No such venue.", code="venue_not_found")
    return venues[0] if venues else None


@router.get("/admin/calendar")
async def calendar(request: Request, view: str = "week", venue_id: str | None = None,
                   p: Principal = Depends(require_page("sessions.view"))):
    date_ = request.query_params.get("date")
    view = "day" if view == "day" else "week"
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, p)
        venue = _pick_venue(venues, venue_id)
        if venue is None:
            return render(request, "admin/calendar.html", venue=None, venues=[], view=view, days=[], rows=[],
                          cells={}, truncated=False, links={}, heading="", today=None, day=None,
                          can_manage=False)
        zone = ZoneInfo(venue["timezone"])
        today = datetime.now(zone).date()
        day = _day_param(date_, today)
        first = day if view == "day" else day - timedelta(days=day.weekday())
        days = [first + timedelta(days=n) for n in range(1 if view == "day" else 7)]
        start = datetime.combine(days[0], time(), zone).astimezone(timezone.utc)
        end = datetime.combine(days[-1] + timedelta(days=1), time(), zone).astimezone(timezone.utc)
        found = await sessions_service.list_sessions(db, p.organization_id, activity_id=None, venue_id=venue["id"],
                                                     start=start, end=end, available=None, limit=CALENDAR_LIMIT,
                                                     after=None)
        names = await activities_service.activity_names(db, p.organization_id,
                                                        [s["activity_id"] for s in found["items"]])
    cells: dict[tuple[date, str], list[dict[str, Any]]] = {}
    for s in found["items"]:
        local = s["start_time"].astimezone(zone)
        taken = s["capacity_total"] - s["capacity_remaining"]
        cells.setdefault((local.date(), local.strftime("%H:%M")), []).append({
            "id": s["id"], "activity": names.get(s["activity_id"], "Activity"), "time": local.strftime("%H:%M"),
            "end": s["end_time"].astimezone(zone).strftime("%H:%M"), "taken": taken, "total": s["capacity_total"],
            "remaining": s["capacity_remaining"], "closed": s["is_closed"],
            "full": s["capacity_remaining"] == 0 and s["capacity_total"] > 0})
    step = timedelta(days=1 if view == "day" else 7)

    def link(to: date, v: str = view) -> str:
        return f"/admin/calendar?view={v}&date={to.isoformat()}&venue_id={venue['id']}"

    links = {"prev": link(day - step), "next": link(day + step), "today": link(today),
             "day": link(day, "day"), "week": link(day, "week")}
    heading = (days[0].strftime("%A %d %B %Y") if view == "day"
               else f"Week of {days[0].strftime('%d %b')} – {days[-1].strftime('%d %b %Y')}")
    return render(request, "admin/calendar.html", venue=venue, venues=venues, view=view, days=days,
                  rows=sorted({t for _, t in cells}), cells=cells, truncated=found["next_cursor"] is not None,
                  links=links, heading=heading, today=today, day=day,
                  can_manage="sessions.manage" in p.permissions)


# ----------------------------------------------------------------------------------------------
# Activities: list, the form with its schedule editor, archiving, session generation
# ----------------------------------------------------------------------------------------------
@router.get("/admin/activities")
async def activities_list(request: Request, venue_id: str | None = None,
                          p: Principal = Depends(require_page("activities.view"))):
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, p)
        chosen = _uuid(venue_id, "venue") if venue_id else None
        items, after = [], None
        while True:  # every activity (an organization has dozens, not thousands)
            found = await activities_service.list_activities(db, p.organization_id, chosen, 200, after)
            items += found["items"]
            if not found["next_cursor"] or len(items) >= 2000:
                break
            after = decode_cursor(found["next_cursor"])
    venue_names = {v["id"]: v["name"] for v in venues}
    return render(request, "admin/activities.html", activities=items, venue_names=venue_names, venues=venues,
                  venue_id=str(chosen or ""), can_manage="activities.manage" in p.permissions)


def _amount_text(amount: int | None, currency: str) -> str:
    if amount is None:
        return ""
    if currency.upper() in ZERO_DECIMAL:
        return str(amount)
    return f"{amount // 100}.{amount % 100:02d}"


def _blank_rule() -> dict[str, Any]:
    return {"days": [], "times": []}


def _with_blanks(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules as shown: each with a few empty time inputs, then empty rules (no JavaScript needed)."""
    shown = [{"days": list(r["days"]), "times": list(r["times"]) + [""] * BLANK_TIMES} for r in rules]
    shown += [{"days": [], "times": [""] * BLANK_TIMES} for _ in range(BLANK_RULES)]
    return [{**rule, "index": i} for i, rule in enumerate(shown)]


def _values_of(activity: dict[str, Any]) -> dict[str, Any]:
    schedule = activity.get("schedule") or {}
    currency = activity.get("currency") or "USD"
    return {
        "name": activity["name"], "description": activity.get("description") or "",
        "category": activity.get("category") or "", "venue_id": str(activity["venue_id"]),
        "duration_minutes": str(activity["duration_minutes"]), "capacity": str(activity["capacity"]),
        "min_players": str(activity["min_players"]), "max_players": str(activity["max_players"] or ""),
        "price": _amount_text(activity["price_amount"], currency),
        "child_price": _amount_text(activity.get("child_price_amount"), currency),
        "currency": currency, "is_active": bool(activity["is_active"]),
        "rules": [{"days": r.get("days", []), "times": r.get("times", [])} for r in schedule.get("weekly", [])],
        "start_date": schedule.get("start_date") or "", "end_date": schedule.get("end_date") or "",
        "closed_dates": "\n".join(schedule.get("closed_dates") or []),
    }


def _new_values(venues: list[dict[str, Any]], currency: str) -> dict[str, Any]:
    return {"name": "", "description": "", "category": "", "venue_id": str(venues[0]["id"]) if venues else "",
            "duration_minutes": "60", "capacity": "10", "min_players": "1", "max_players": "", "price": "",
            "child_price": "", "currency": currency, "is_active": True, "rules": [], "start_date": "",
            "end_date": "", "closed_dates": ""}


_RULE_FIELD = re.compile(r"^rule-(\d{1,3})-(days|times)$")


def _typed(form: Form) -> dict[str, Any]:
    """The form's values as typed (for re-rendering), the rules in their on-screen order."""
    indices = sorted({int(m.group(1)) for key in form.data.keys() if (m := _RULE_FIELD.match(key))})
    rules = []
    for i in indices[:MAX_RULES + BLANK_RULES]:
        days = [d.lower() for d in form.all(f"rule-{i}-days")]
        times = form.all(f"rule-{i}-times")
        # Numbered again in screen order: the page re-renders rule n as rule-<n>-..., messages too.
        rules.append({"days": days, "times": times, "source": len(rules)})
    values = {name: form.text(name) for name in (
        "name", "category", "venue_id", "duration_minutes", "capacity", "min_players", "max_players", "price",
        "child_price", "currency", "start_date", "end_date", "closed_dates")}
    values["description"] = form.text("description", strip=False).strip()
    values["currency"] = values["currency"].upper()
    values["is_active"] = form.checked("is_active")
    values["rules"] = rules
    return values


def _amount(raw: str, currency: str, field: str, errors: dict[str, str]) -> int | None:
    """'25.00' -> 2500 (whole units for a zero-decimal currency); a message at `field` when it is not an amount."""
    raw = raw.replace(",", "").strip()
    if raw == "":
        return None
    if re.fullmatch(r"-\s*\d+(\.\d*)?", raw):
        errors[field] = "The amount cannot be negative."
        return None
    whole, _, cents = raw.partition(".")
    if not whole.isdigit() and not (whole == "" and cents) or not (cents == "" or cents.isdigit()):
        errors[field] = "Enter an amount like 25 or 25.50."
        return None
    if currency in ZERO_DECIMAL:
        if cents.strip("0"):
            errors[field] = f"{currency} has no minor units: enter a whole amount."
            return None
        return int(whole)
    if len(cents) > 2:
        errors[field] = "At most two decimals."
        return None
    return int(whole or "0") * 100 + int((cents + "00")[:2])


# pydantic error types -> plain messages
def _message(err: dict[str, Any]) -> str:
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    if kind in ("missing", "string_too_short") or err.get("input") in (None, "") and not kind.startswith("value"):
        return "Required."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "Enter a whole number."
    if kind == "greater_than_equal":
        return f"Must be at least {ctx.get('ge')}."
    if kind == "less_than_equal":
        return f"Must be at most {ctx.get('le')}."
    if kind == "string_too_long":
        return f"At most {ctx.get('max_length')} characters."
    if kind == "string_pattern_mismatch":
        return "Use a three-letter code such as USD or EUR."
    if kind == "uuid_parsing":
        return "Choose one from the list."
    if kind.startswith("date"):
        return f"'{err.get('input')}' is not a date (YYYY-MM-DD)."
    if kind == "too_long":
        return f"At most {ctx.get('max_length')} entries."
    message = str(err.get("msg", "Invalid value."))
    message = message.removeprefix("Value error, ")
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


_TOP_FIELDS = {"price_amount": "price", "child_price_amount": "child_price"}


def _field_of(loc: tuple, rule_sources: list[int]) -> str:
    """The form field a schema error belongs to."""
    if not loc:  # the model's own check: min_players <= max_players <= capacity
        return "max_players"
    head = str(loc[0])
    if head != "schedule":
        return _TOP_FIELDS.get(head, head)
    if len(loc) == 1:  # end_date before start_date
        return "end_date"
    part = str(loc[1])
    if part == "weekly":
        if len(loc) >= 4 and isinstance(loc[2], int) and loc[2] < len(rule_sources):
            return f"rule-{rule_sources[loc[2]]}-{loc[3]}"
        return "rules"
    return part  # start_date, end_date, closed_dates


def _parse_activity(values: dict[str, Any], venue_id: str) -> tuple[ActivityCreate | None, dict[str, str]]:
    """The typed values checked by the domain schema: the activity, or messages by field."""
    errors: dict[str, str] = {}
    currency = values["currency"] or "USD"
    price = _amount(values["price"], currency, "price", errors)
    child_price = _amount(values["child_price"], currency, "child_price", errors)
    if values["price"] == "" and "price" not in errors:
        errors["price"] = "Required."
    weekly, sources = [], []
    for rule in values["rules"]:
        if not rule["days"] and not rule["times"]:
            continue  # an empty block
        if not rule["days"]:
            errors[f"rule-{rule['source']}-days"] = "Tick at least one day."
        if not rule["times"]:
            errors[f"rule-{rule['source']}-times"] = "Add at least one time."
        weekly.append({"days": rule["days"], "times": rule["times"]})
        sources.append(rule["source"])
    closed = [d for d in re.split(r"[\s,;]+", values["closed_dates"]) if d]
    data = {
        "venue_id": venue_id, "name": values["name"], "description": values["description"],
        "category": values["category"], "duration_minutes": values["duration_minutes"] or None,
        "capacity": values["capacity"] or None, "min_players": values["min_players"] or 1,
        "max_players": values["max_players"] or None, "price_amount": price if price is not None else 0,
        "child_price_amount": child_price, "currency": currency, "is_active": values["is_active"],
        "schedule": {"weekly": weekly, "start_date": values["start_date"] or None,
                     "end_date": values["end_date"] or None, "closed_dates": closed},
    }
    # The schema checks min <= max <= capacity only once every field is valid: said here too, so
    # all the form's mistakes are shown at once.
    numbers = {k: int(values[k]) for k in ("min_players", "max_players", "capacity") if values[k].isdigit()}
    if "max_players" in numbers and numbers["max_players"] < numbers.get("min_players", 1):
        errors["max_players"] = f"Must be at least the minimum players ({numbers.get('min_players', 1)})."
    elif "max_players" in numbers and "capacity" in numbers and numbers["max_players"] > numbers["capacity"]:
        errors["max_players"] = f"Must be at most the capacity ({numbers['capacity']})."
    try:  # likewise the schedule's end before its start
        if values["start_date"] and values["end_date"] and (
                date.fromisoformat(values["end_date"]) < date.fromisoformat(values["start_date"])):
            errors["end_date"] = "The end date is before the start date."
    except ValueError:
        pass  # the schema names the malformed one
    try:
        activity = ActivityCreate.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            field = _field_of(tuple(err.get("loc", ())), sources)
            if field in ("price", "child_price") and err.get("type") == "less_than_equal":
                errors.setdefault(field, "That amount is too large.")
            errors.setdefault(field, _message(err))
        return None, errors
    return (None, errors) if errors else (activity, errors)


async def _org_currency(db, p: Principal) -> str:
    from sqlalchemy import text

    return (await db.execute(text("SELECT currency FROM organizations WHERE id = :org"),
                             {"org": p.organization_id})).scalar_one_or_none() or "USD"


def _activity_page(request: Request, *, activity: dict[str, Any] | None, values: dict[str, Any],
                   venues: list[dict[str, Any]], errors: dict[str, str] | None = None, status: int = 200,
                   form_key: str = "", gen: dict[str, str] | None = None, gen_errors: dict[str, str] | None = None,
                   error: str | None = None):
    tomorrow = date.today() + timedelta(days=1)
    return render(request, "admin/activity.html", status=status, activity=activity, values=values,
                  rules=_with_blanks(values["rules"]), venues=venues, errors=errors or {}, form_key=form_key,
                  day_names=list(zip(DAY_NAMES, DAY_LABELS)), error=error,
                  gen=gen or {"from": tomorrow.isoformat(), "to": (tomorrow + timedelta(days=27)).isoformat()},
                  gen_errors=gen_errors or {}, venue_names={v["id"]: v["name"] for v in venues},
                  venue_options=[(str(v["id"]), v["name"]) for v in venues])


@router.get("/admin/activities/new")
async def new_activity(request: Request, p: Principal = Depends(require_page("activities.manage"))):
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, p)
        currency = await _org_currency(db, p)
    return _activity_page(request, activity=None, values=_new_values(venues, currency), venues=venues,
                          form_key=str(uuid.uuid4()))


@router.post("/admin/activities/new")
async def create_activity(request: Request, p: Principal = Depends(require_page("activities.manage"))):
    form = await form_data(request)
    values = _typed(form)
    form_key = form.text("form_key", max_length=64) or str(uuid.uuid4())
    body, errors = _parse_activity(values, values["venue_id"])
    if body is None:
        async with read_transaction(p.db_context()) as db:
            venues = await _venues(db, p)
        return _activity_page(request, activity=None, values=values, venues=venues, errors=errors, status=422,
                              form_key=form_key, error="Check the fields marked below; nothing was saved.")

    async def create():
        activity = await activities_service.create_activity(db, p.organization_id, body)
        await record(db, "activity.created", organization_id=p.organization_id, target_type="activity",
                     target_id=activity["id"], changes=changed({}, activity, ActivityCreate.model_fields))
        return activity

    try:
        # A double click or a resent form creates one activity: the form's key is an Idempotency-Key.
        async with tenant_transaction(p.db_context()) as db:
            answer = await idempotent(db, form_key, organization_id=p.organization_id, scope=p.scope,
                                      payload=["POST /admin/activities/new", body.model_dump(mode="json")],
                                      create=create)
    except ValidationFailed as exc:
        async with read_transaction(p.db_context()) as db:
            venues = await _venues(db, p)
        field = exc.extra.get("field") or ""
        if exc.code == "idempotency_key_reused":  # sent again after a change: it created one already
            return _activity_page(request, activity=None, values=values, venues=venues, status=422,
                                  form_key=str(uuid.uuid4()),
                                  error="This form was already sent once and created an activity (see Activities). "
                                        "Send it again to create another one.")
        return _activity_page(request, activity=None, values=values, venues=venues, status=422,
                              errors={field: exc.detail} if field else {}, form_key=str(uuid.uuid4()),
                              error=exc.detail)
    created = orjson.loads(answer.body)
    return redirect(request, f"/admin/activities/{created['id']}", flash=f"Activity “{created['name']}” created.")


async def _load_activity(p: Principal, activity_id: uuid.UUID):
    async with read_transaction(p.db_context()) as db:
        activity = await activities_service.get_activity(db, p.organization_id, activity_id)
        venues = await _venues(db, p)
    return activity, venues


@router.get("/admin/activities/{activity_id}")
async def edit_activity_page(request: Request, activity_id: str,
                             p: Principal = Depends(require_page("activities.manage"))):
    activity, venues = await _load_activity(p, _uuid(activity_id, "activity"))
    return _activity_page(request, activity=activity, values=_values_of(activity), venues=venues)


UPDATABLE = ("name", "description", "category", "duration_minutes", "capacity", "min_players", "max_players",
             "price_amount", "child_price_amount", "currency", "schedule", "is_active")


@router.post("/admin/activities/{activity_id}")
async def edit_activity(request: Request, activity_id: str, p: Principal = Depends(require_page("activities.manage"))):
    activity_id_ = _uuid(activity_id, "activity")
    activity, venues = await _load_activity(p, activity_id_)
    form = await form_data(request)
    values = _typed(form)
    values["venue_id"] = str(activity["venue_id"])  # an activity stays at its venue
    checked, errors = _parse_activity(values, values["venue_id"])
    if checked is None:
        return _activity_page(request, activity=activity, values=values, venues=venues, errors=errors, status=422,
                              error="Check the fields marked below; nothing was saved.")
    body = ActivityUpdate.model_validate({k: v for k, v in checked.model_dump().items() if k in UPDATABLE
                                          and not (k == "child_price_amount" and v is None)})
    try:
        async with tenant_transaction(p.db_context()) as db:
            _, after = await activities_service.edit_activity(db, p.organization_id, activity_id_, body)
    except ValidationFailed as exc:
        field = exc.extra.get("field")
        return _activity_page(request, activity=activity, values=values, venues=venues, status=422,
                              errors={field: exc.detail} if field else {}, error=exc.detail)
    return redirect(request, f"/admin/activities/{activity_id_}", flash="Activity saved.")


@router.post("/admin/activities/{activity_id}/archive")
async def archive_activity(request: Request, activity_id: str,
                           p: Principal = Depends(require_page("activities.manage"))):
    activity_id_ = _uuid(activity_id, "activity")
    form = await form_data(request)
    if not form.checked("confirm"):
        activity, venues = await _load_activity(p, activity_id_)
        return _activity_page(request, activity=activity, values=_values_of(activity), venues=venues, status=422,
                              errors={"confirm": "Tick the box to confirm."},
                              error="The activity was not archived: confirm it first.")
    async with tenant_transaction(p.db_context()) as db:
        before = await activities_service.get_activity(db, p.organization_id, activity_id_)
        await activities_service.archive_activity(db, p.organization_id, activity_id_)
        await record(db, "activity.archived", organization_id=p.organization_id, target_type="activity",
                     target_id=activity_id_, changes=diff({"is_active": before["is_active"], "archived": False},
                                                          {"is_active": False, "archived": True}))
    return redirect(request, "/admin/activities", flash=f"“{before['name']}” archived.")


@router.post("/admin/activities/{activity_id}/generate")
async def generate_sessions(request: Request, activity_id: str,
                            p: Principal = Depends(require_page("activities.manage"))):
    activity_id_ = _uuid(activity_id, "activity")
    form = await form_data(request)
    gen = {"from": form.text("from"), "to": form.text("to")}
    gen_errors: dict[str, str] = {}
    try:
        body = GenerateSessions.model_validate(gen)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ())]
            field = "from" if loc and loc[0] in ("from", "from_") else "to"
            if not loc:  # the window's own checks
                message = ("The last day is before the first." if "before" in str(err.get("msg"))
                           else "At most 366 days at a time.")
            else:
                message = _message(err)
            gen_errors.setdefault(field, message)
        body = None
    if body is not None:
        try:
            async with tenant_transaction(p.db_context()) as db:
                result = await sessions_service.generate(db, p.organization_id, activity_id_, body.from_, body.to)
                await record(db, "sessions.generated", organization_id=p.organization_id, target_type="activity",
                             target_id=activity_id_, changes={"from": body.from_, "to": body.to, **result})
        except Conflict as exc:
            gen_errors["from"] = exc.detail
        else:
            return redirect(request, f"/admin/activities/{activity_id_}#generate",
                            flash=f"{result['created']} created, {result['skipped']} already existed.")
    activity, venues = await _load_activity(p, activity_id_)
    return _activity_page(request, activity=activity, values=_values_of(activity), venues=venues, status=422,
                          gen=gen, gen_errors=gen_errors)


# ----------------------------------------------------------------------------------------------
# One session: its figures and bookings; capacity and closing with optimistic locking
# ----------------------------------------------------------------------------------------------
async def _session_view(p: Principal, session_id: uuid.UUID) -> dict[str, Any]:
    # The primary, not the replica: the version read here is what the form sends back.
    async with tenant_transaction(p.db_context()) as db:
        session = await sessions_service.get_session(db, p.organization_id, session_id)
        about = await sessions_service.bookable_session(db, p.organization_id, session_id)
        bookings = await bookings_service.session_bookings(db, p.organization_id, session_id)
    booked = sum(b["guest_count"] for b in bookings if b["status"] != "cancelled")
    held = max(session["capacity_total"] - session["capacity_remaining"] - booked, 0)
    return {"session": session, "activity_name": about.activity_name, "venue_name": about.venue_name,
            "tz": about.timezone, "local_date": session["start_time"].astimezone(ZoneInfo(about.timezone)).date(),
            "bookings": bookings, "booked": booked, "held": held}


def _session_page(request: Request, p: Principal, view: dict[str, Any], *, status: int = 200,
                  form: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                  conflict: str | None = None):
    session = view["session"]
    form = form or {"capacity_total": str(session["capacity_total"]), "is_closed": session["is_closed"],
                    "version": session["version"]}
    return render(request, "admin/session.html", status=status, **view, form=form, errors=errors or {},
                  conflict=conflict, can_manage="sessions.manage" in p.permissions,
                  can_manage_activity="activities.manage" in p.permissions)


@router.get("/admin/sessions/{session_id}")
async def session_page(request: Request, session_id: str, p: Principal = Depends(require_page("sessions.view"))):
    return _session_page(request, p, await _session_view(p, _uuid(session_id, "session")))


def _state(session: dict[str, Any], booked: int, held: int) -> str:
    return (f"capacity {session['capacity_total']} ({booked} booked, {held} held, "
            f"{session['capacity_remaining']} left) and is {'closed' if session['is_closed'] else 'open'}")


@router.post("/admin/sessions/{session_id}")
async def edit_session(request: Request, session_id: str, p: Principal = Depends(require_page("sessions.manage"))):
    session_id_ = _uuid(session_id, "session")
    form = await form_data(request)
    action = form.text("action")
    typed = {"capacity_total": form.text("capacity_total"), "is_closed": form.checked("is_closed"),
             "version": form.text("version")}
    errors: dict[str, str] = {}
    if not re.fullmatch(r"[0-9]{1,18}", typed["version"]):
        raise ValidationFailed("The form lost the session's version; reload the page.", field="version")
    expected = int(typed["version"])
    capacity = None
    if action in ("close", "reopen"):
        closed = action == "close"
    else:
        closed = typed["is_closed"]
        try:
            capacity = form.integer("capacity_total", minimum=0, maximum=10_000)
        except ValidationFailed as exc:
            errors["capacity_total"] = exc.detail
        if capacity is None and "capacity_total" not in errors:
            errors["capacity_total"] = "Enter the capacity."
    if not errors:
        try:
            edit = SessionEdit(capacity_total=capacity, is_closed=closed)
        except ValidationError as exc:
            errors["capacity_total"] = _message(exc.errors()[0])
    if errors:
        view = await _session_view(p, session_id_)
        return _session_page(request, p, view, status=422, form=typed, errors=errors)
    try:
        async with tenant_transaction(p.db_context()) as db:
            await lock_target(db, "activity_sessions", p.organization_id, session_id_)
            before = await sessions_service.get_session(db, p.organization_id, session_id_)
            after = await sessions_service.edit_session(db, p.organization_id, session_id_, expected,
                                                        edit.capacity_total, edit.is_closed)
            if (changes := changed(before, after, ("capacity_total", "capacity_remaining", "is_closed"))):
                await record(db, "session.updated", organization_id=p.organization_id, target_type="session",
                             target_id=session_id_, changes=changes)
    except PreconditionFailed:
        # Someone saved first: show what the session is now (the current version in the form).
        view = await _session_view(p, session_id_)
        now = view["session"]
        message = ("Someone else changed this session while you were editing: it now has "
                   f"{_state(now, view['booked'], view['held'])}. Your change was not saved; review and save again.")
        return _session_page(request, p, view, status=412, conflict=message)
    except Conflict as exc:
        view = await _session_view(p, session_id_)
        taken = exc.extra.get("capacity_taken", view["booked"] + view["held"])
        if action in ("close", "reopen"):
            return _session_page(request, p, view, status=409, conflict=exc.detail)
        typed["version"] = view["session"]["version"]
        return _session_page(request, p, view, status=409, form=typed, errors={
            "capacity_total": f"{taken} spots are already booked or held: the capacity cannot go below {taken}."})
    verb = {"close": "Session closed.", "reopen": "Session reopened."}.get(action, "Session saved.")
    return redirect(request, f"/admin/sessions/{session_id_}", flash=verb)


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------
def _date_or_error(raw: str | None, field: str, errors: dict[str, str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[field] = "Enter a date as YYYY-MM-DD."
        return None


def _percent(occupancy: float | None) -> str:
    return "–" if occupancy is None else f"{occupancy * 100:.0f}%"


def stats_charts(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The three charts of the statistics page, each with its numbers for a table."""
    currency = stats["currency"]
    days = stats["days"]

    def label(d) -> str:
        return d["date"].strftime("%d %b") if len(days) <= 31 else d["date"].strftime("%m-%d")

    def major(v: float) -> str:  # axis labels: whole units when they are whole
        amount = v if currency in ZERO_DECIMAL else v / 100
        return f"{amount:,.0f}" if amount == int(amount) else f"{amount:,.2f}"

    bookings = [charts.Point(label(d), d["bookings"], f"{d['date']:%a %d %b}: {d['bookings']} bookings")
                for d in days]
    revenue = [charts.Point(label(d), d["revenue_amount"],
                            f"{d['date']:%a %d %b}: {money(d['revenue_amount'], currency)}") for d in days]
    occupancy = [charts.Point(label(d), None if d["occupancy"] is None else round(d["occupancy"] * 100, 1),
                              f"{d['date']:%a %d %b}: {_percent(d['occupancy'])}") for d in days]
    return [
        {"id": "bookings", "title": "Bookings per day",
         "svg": charts.bar_chart(bookings, title="Bookings per day"),
         "rows": [(d["date"], str(d["bookings"])) for d in days], "unit": "Bookings"},
        {"id": "revenue", "title": f"Revenue per day ({currency})",
         "svg": charts.bar_chart(revenue, title=f"Revenue per day in {currency}", fmt=major,
                                least=1 if currency in ZERO_DECIMAL else 100),
         "rows": [(d["date"], money(d["revenue_amount"], currency)) for d in days], "unit": "Revenue"},
        {"id": "occupancy", "title": "Occupancy per day (%)",
         "svg": charts.line_chart(occupancy, title="Occupancy per day in percent", top=100,
                                  fmt=lambda v: f"{v:.0f}%"),
         "rows": [(d["date"], _percent(d["occupancy"])) for d in days], "unit": "Occupancy"},
    ]


@router.get("/admin/stats")
async def stats_page(request: Request, p: Principal = Depends(require_page("stats.view"))):
    query = request.query_params
    errors: dict[str, str] = {}
    first = _date_or_error(query.get("from"), "from", errors)
    last = _date_or_error(query.get("to"), "to", errors)
    venue_raw = query.get("venue_id") or ""
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, p)
        venue_id = None
        if venue_raw:
            venue_id = _pick_venue(venues, venue_raw)["id"]
        try:
            stats = await dashboard_service.stats(db, p.organization_id, first=first, last=last, venue_id=venue_id,
                                                  currency=None)
        except ValidationFailed as exc:
            errors[exc.extra.get("field") or "to"] = exc.detail
            stats = await dashboard_service.stats(db, p.organization_id, first=None, last=None, venue_id=venue_id,
                                                  currency=None)
    return render(request, "admin/stats.html", status=422 if errors else 200, stats=stats, totals=stats["totals"],
                  charts=stats_charts(stats), venues=venues, venue_id=str(venue_id or ""), errors=errors,
                  typed={"from": query.get("from") or stats["from"].isoformat(),
                         "to": query.get("to") or stats["to"].isoformat()},
                  occupancy=_percent(stats["totals"]["occupancy"]))

