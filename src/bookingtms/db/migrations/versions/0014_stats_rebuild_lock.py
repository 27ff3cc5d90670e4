"""Rebuilding one organization's statistics roll-ups holds back only the writes under its
advisory lock (one of 1,024, by organization) instead of locking the whole daily_stats table.

Revision ID: 0014
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0014_stats_rebuild_lock.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("""
        DROP TRIGGER bookings_daily_lock ON bookings;
        DROP TRIGGER bookings_daily_lock_update ON bookings;
        DROP TRIGGER activity_sessions_daily_lock ON activity_sessions;
        DROP TRIGGER activity_sessions_daily_lock_update ON activity_sessions;
        DROP FUNCTION daily_stats_writing();
        DROP FUNCTION daily_stats_lock_key(uuid);
    """)
    # 0005's definition, body as 0005 wrote it (so a downgraded schema is 0013's exactly).
    op.execute("""CREATE OR REPLACE FUNCTION rebuild_daily_stats(p_organization_id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp SET work_mem = '256MB' AS $$
DECLARE
  written bigint;
BEGIN
  IF p_organization_id IS NULL THEN
    TRUNCATE daily_stats;
    INSERT INTO daily_stats (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                             revenue_amount, cancellations, capacity, occupancy_guests)
    SELECT organization_id, day, venue_id, activity_id, currency, bookings, guests,
           revenue_amount, cancellations, capacity, occupancy_guests
      FROM daily_stats_recomputed()
     ORDER BY organization_id, day, venue_id, activity_id, currency;
  ELSE
    LOCK TABLE daily_stats IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM daily_stats WHERE organization_id = p_organization_id;
    INSERT INTO daily_stats (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                             revenue_amount, cancellations, capacity, occupancy_guests)
    SELECT organization_id, day, venue_id, activity_id, currency, bookings, guests,
           revenue_amount, cancellations, capacity, occupancy_guests
      FROM daily_stats_recomputed() r
     WHERE r.organization_id = p_organization_id;
  END IF;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END
$$""")
