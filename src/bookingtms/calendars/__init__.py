"""iCalendar (.ics) export: single-booking attachments and venue staff feeds."""

from bookingtms.calendars.ics import CalendarEntry, booking_calendar, venue_feed

__all__ = ["CalendarEntry", "booking_calendar", "venue_feed"]
