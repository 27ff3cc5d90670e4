"""The reminder job's organization lookup starts from the bookings still to remind by day, and
skips bookings made within a day of their session (never reminded).

Revision ID: 0011
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0011_reminder_lookup.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("DROP INDEX idx_bookings_reminder_day")
    # 0004's definition, body as 0004 wrote it (so a downgraded schema is 0010's exactly).
    op.execute("""CREATE OR REPLACE FUNCTION organizations_with_reminders_due(p_from timestamptz, p_until timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b
    JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
   WHERE b.status = 'confirmed' AND b.reminder_sent_at IS NULL
     AND s.start_time > p_from AND s.start_time <= p_until
   LIMIT p_limit
$$""")
