"""Weekly schedules in a venue's local time, expanded to UTC start times with zoneinfo.

A local time that does not exist (the spring-forward gap) is skipped; an ambiguous one (the
fall-back overlap) takes its first occurrence (fold=0)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class WeeklyRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[str] = Field(min_length=1, max_length=7)
    times: list[str] = Field(min_length=1, max_length=96)

    @field_validator("days")
    @classmethod
    def _days(cls, days: list[str]) -> list[str]:
        unknown = [d for d in days if d.lower() not in DAY_NAMES + FULL_DAY_NAMES]
        if unknown:
            raise ValueError(f"unknown day(s) {unknown}; use {', '.join(DAY_NAMES)}")
        return sorted({d.lower()[:3] for d in days}, key=DAY_NAMES.index)

    @field_validator("times")
    @classmethod
    def _times(cls, times: list[str]) -> list[str]:
        out = []
        for t in times:
            try:
                parsed = time.fromisoformat(t)
            except ValueError:
                raise ValueError(f"time {t!r} is not HH:MM") from None
            if parsed.second or parsed.microsecond or parsed.tzinfo:
                raise ValueError(f"time {t!r} must be a local HH:MM")
            out.append(parsed.strftime("%H:%M"))
        return sorted(set(out))


EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)


def check_day(day: date | None) -> date | None:
    if day is not None and not EARLIEST <= day <= LATEST:
        raise ValueError(f"{day} is outside {EARLIEST}..{LATEST}")
    return day


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekly: list[WeeklyRule] = Field(default_factory=list, max_length=50)
    start_date: date | None = None
    end_date: date | None = None
    closed_dates: list[date] = Field(default_factory=list, max_length=1000)

    _dates = field_validator("start_date", "end_date")(check_day)

    @field_validator("closed_dates")
    @classmethod
    def _closed(cls, days: list[date]) -> list[date]:
        return [check_day(d) for d in days]

    @model_validator(mode="after")
    def _range(self) -> "Schedule":
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


def local_start(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """The instant `day at` in `zone`, or None when that wall time does not exist that day."""
    candidate = datetime.combine(day, at, tzinfo=zone)  # fold=0: the first of two, if ambiguous
    round_trip = candidate.astimezone(timezone.utc).astimezone(zone)
    if round_trip.replace(tzinfo=None) != candidate.replace(tzinfo=None):
        return None
    return candidate.astimezone(timezone.utc)


def expand(schedule: Schedule, zone: ZoneInfo, first_day: date, last_day: date) -> list[datetime]:
    """UTC start times of every scheduled slot on local days first_day..last_day inclusive."""
    if schedule.start_date:
        first_day = max(first_day, schedule.start_date)
    if schedule.end_date:
        last_day = min(last_day, schedule.end_date)
    closed = set(schedule.closed_dates)
    by_day: dict[str, set[time]] = {d: set() for d in DAY_NAMES}
    for rule in schedule.weekly:
        for d in rule.days:
            by_day[d].update(time.fromisoformat(t) for t in rule.times)
    starts: list[datetime] = []
    day = first_day
    while day <= last_day:
        if day not in closed:
            for at in sorted(by_day[DAY_NAMES[day.weekday()]]):
                start = local_start(day, at, zone)
                if start is not None:
                    starts.append(start)
        day += timedelta(days=1)
    return starts
