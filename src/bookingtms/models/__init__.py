"""All tables, as SQLAlchemy Core tables. The migrations (SQL) are the source of truth for
constraints, policies and indexes; these describe columns for queries."""

from bookingtms.models.base import metadata
from bookingtms.models.platform import feature_flags, plans, platform_team
from bookingtms.models.tenancy import organizations, users, venues
from bookingtms.models.inventory import activities, activity_sessions
from bookingtms.models.commerce import bookings, customers, payments, promo_codes, slot_reservations
from bookingtms.models.system import audit_log, idempotency_keys, notification_outbox, stripe_events
from bookingtms.models.identity import access_grants, api_keys, password_resets, refresh_tokens

__all__ = [
    "metadata", "plans", "feature_flags", "platform_team", "organizations", "users", "venues", "activities",
    "activity_sessions", "customers", "slot_reservations", "bookings", "payments", "promo_codes",
    "idempotency_keys", "notification_outbox", "audit_log", "refresh_tokens", "password_resets", "api_keys",
    "access_grants", "stripe_events",
]
