"""Which bookings are due a reminder is one SQL function, bookings_due_reminder(), used both by
the search for organizations with reminders due and by the reminder job's per-organization step.

Revision ID: 0012
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_reminders_due.sql")


def downgrade() -> None:
    from alembic import op

    # 0011's definition, body as 0011 wrote it (so a downgraded schema is 0011's exactly).
    op.execute("""CREATE OR REPLACE FUNCTION organizations_with_reminders_due(p_from timestamptz, p_until timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b
    JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
   WHERE b.status = 'confirmed' AND b.reminder_sent_at IS NULL
     AND b.booking_date BETWEEN ((p_from - interval '12 hours') AT TIME ZONE 'UTC')::date
                            AND ((p_until + interval '14 hours') AT TIME ZONE 'UTC')::date
     AND s.start_time > p_from AND s.start_time <= p_until
     AND b.created_at <= s.start_time - interval '24 hours'
   LIMIT p_limit
$$""")
    op.execute("DROP FUNCTION bookings_due_reminder(timestamptz, timestamptz)")
