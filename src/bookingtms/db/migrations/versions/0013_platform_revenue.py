"""The platform's live revenue of an organization: in the organization's currency, as the
dashboard defines revenue; its bookings this month counted as the plan limit counts them.

Revision ID: 0013
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0013_platform_revenue.sql")


def downgrade() -> None:
    from alembic import op

    # 0002's definition, body as 0002 wrote it (so a downgraded schema is 0012's exactly).
    op.execute("""CREATE OR REPLACE FUNCTION organization_metrics(p_ids uuid[])
RETURNS TABLE (organization_id uuid, venues_count bigint, staff_count bigint, bookings_this_month bigint,
               revenue_this_month bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id,
         (SELECT count(*) FROM venues v WHERE v.organization_id = o.id AND v.status <> 'archived'),
         (SELECT count(*) FROM users u WHERE u.organization_id = o.id AND u.is_active),
         (SELECT count(*) FROM bookings b WHERE b.organization_id = o.id AND b.status <> 'cancelled'
             AND b.created_at >= date_trunc('month', now())),
         (SELECT coalesce(sum(b.total_amount), 0)::bigint FROM bookings b WHERE b.organization_id = o.id
             AND b.status <> 'cancelled' AND b.created_at >= date_trunc('month', now()))
    FROM organizations o WHERE o.id = ANY(p_ids) AND is_platform_admin()
$$""")
