"""Capacity changes announced with NOTIFY, for Server-Sent Events.

Revision ID: 0006
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_realtime.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("""
        DROP TRIGGER IF EXISTS activity_sessions_notify_update ON activity_sessions;
        DROP TRIGGER IF EXISTS activity_sessions_notify ON activity_sessions;
        DROP FUNCTION IF EXISTS notify_session_availability();
    """)
