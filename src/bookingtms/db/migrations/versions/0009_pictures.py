"""Pictures of venues and activities (image_url), and the venues and owner the platform console shows.

Revision ID: 0009
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_pictures.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("DROP FUNCTION IF EXISTS organization_owner(uuid)")
    op.execute("DROP FUNCTION IF EXISTS organization_venues(uuid)")
    op.execute("ALTER TABLE activities DROP COLUMN IF EXISTS image_url")
    op.execute("ALTER TABLE venues DROP COLUMN IF EXISTS image_url")
