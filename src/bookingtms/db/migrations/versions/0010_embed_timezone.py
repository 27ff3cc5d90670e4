"""The embed-key lookup returns the venue's time zone too (for the per-day availability cache).

Revision ID: 0010
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_embed_timezone.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("DROP FUNCTION venue_by_embed_key(text)")
    # 0001's definition, body as 0001 wrote it (so a downgraded schema is 0009's exactly).
    op.execute("""CREATE FUNCTION venue_by_embed_key(p_embed_key text)
RETURNS TABLE (organization_id uuid, venue_id uuid, organization_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT v.organization_id, v.id, o.status
    FROM venues v JOIN organizations o ON o.id = v.organization_id
   WHERE v.embed_key = p_embed_key AND v.status = 'active'
   LIMIT 1
$$""")
    op.execute("REVOKE ALL ON FUNCTION venue_by_embed_key(text) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION venue_by_embed_key(text) TO bookingtms_app")
