"""Identity (refresh tokens, MFA, SSO, resets), API keys, access grants, audit hash chain.

Revision ID: 0002
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_identity.sql")


def downgrade() -> None:
    from alembic import op

    for fn in ["organization_metrics(uuid[])", "organizations_with_ended_grants(integer)", "find_oidc_user(text, text)",
               "user_auth_state(uuid)", "find_api_key(text)", "find_password_reset(text)", "find_refresh_token(text)"]:
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.execute("DROP TRIGGER IF EXISTS audit_log_chain ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_chain(); DROP FUNCTION IF EXISTS audit_row_hash(text, bigint, uuid, uuid, text, text, text, text, text, text, inet, jsonb, timestamptz)")
    op.execute("DROP INDEX IF EXISTS audit_log_chain")
    op.execute("ALTER TABLE audit_log DROP COLUMN actor_label, DROP COLUMN chain_seq, DROP COLUMN prev_hash, DROP COLUMN row_hash")
    for table in ["access_grants", "api_keys", "password_resets", "refresh_tokens"]:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("ALTER TABLE users DROP COLUMN token_version, DROP COLUMN totp_secret, DROP COLUMN totp_enabled, "
               "DROP COLUMN recovery_codes, DROP COLUMN oidc_subject, DROP COLUMN deactivated_at, DROP COLUMN invited_by")
