"""The whole schema of the spec's ERD: tables, indexes, helpers, row-level security, grants, plans.

Revision ID: 0001
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ["audit_log", "notification_outbox", "idempotency_keys", "promo_codes", "payments", "bookings",
          "slot_reservations", "customers", "activity_sessions", "activities", "venues", "platform_team",
          "users", "organizations", "feature_flags", "plans"]
FUNCTIONS = ["organizations_with_sessions_due(date, integer)", "organizations_with_expired_holds(integer)",
             "organizations_by_booking_reference(text)", "find_login_user(text)", "venue_by_embed_key(text)",
             "reserve_session_capacity(uuid, integer, integer)", "touch_updated_at()",
             "can_access_organization(uuid)", "is_platform_admin()", "get_my_organization_id()",
             "current_app_user_id()"]


def upgrade() -> None:
    run_sql_file("0001_schema.sql")


def downgrade() -> None:
    from alembic import op

    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for fn in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
