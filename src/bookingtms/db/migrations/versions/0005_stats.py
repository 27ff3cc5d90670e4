"""Dashboard statistics roll-ups kept in the booking transaction; pg_stat_statements when available.

Revision ID: 0005
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_stats.sql")


def downgrade() -> None:
    from alembic import op

    # Triggers first (they depend on their functions), then the functions from the users to the
    # helpers they inline, then the table (its policy, grant and primary key go with it).
    op.execute("""
        DROP TRIGGER IF EXISTS venues_daily_stats_zone ON venues;
        DROP TRIGGER IF EXISTS activity_sessions_daily_stats_update ON activity_sessions;
        DROP TRIGGER IF EXISTS activity_sessions_daily_stats ON activity_sessions;
        DROP TRIGGER IF EXISTS bookings_daily_stats_update ON bookings;
        DROP TRIGGER IF EXISTS bookings_daily_stats ON bookings;
        DROP FUNCTION IF EXISTS daily_stats_venue_zone_changed();
        DROP FUNCTION IF EXISTS daily_stats_session_changed();
        DROP FUNCTION IF EXISTS daily_stats_booking_changed();
        DROP FUNCTION IF EXISTS rebuild_daily_stats(uuid);
        DROP FUNCTION IF EXISTS daily_stats_recomputed();
        DROP FUNCTION IF EXISTS daily_stats_cancelled(text, text, text);
        DROP FUNCTION IF EXISTS daily_stats_revenue(text, text, bigint, bigint);
        DROP FUNCTION IF EXISTS daily_stats_booked(text);
        DROP TABLE IF EXISTS daily_stats;
    """)
