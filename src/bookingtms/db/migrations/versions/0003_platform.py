"""Platform administration: platform-wide statistics (SECURITY DEFINER, platform context only) and
the index behind the monthly booking limit.

Revision ID: 0003
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_platform.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("DROP INDEX IF EXISTS idx_bookings_org_created_live")
    op.execute("DROP FUNCTION IF EXISTS platform_stats()")
