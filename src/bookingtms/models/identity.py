from sqlalchemy import Boolean, Column, DateTime, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID

from bookingtms.models.base import metadata, tenant_key

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("user_id", UUID(as_uuid=True)), Column("family_id", UUID(as_uuid=True)), Column("token_hash", Text),
    Column("token_version", Integer), Column("expires_at", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)), Column("revoked_at", DateTime(timezone=True)),
    Column("ip", INET), Column("user_agent", Text),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

password_resets = Table(
    "password_resets", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("user_id", UUID(as_uuid=True)), Column("token_hash", Text), Column("expires_at", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)), Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

api_keys = Table(
    "api_keys", metadata, *tenant_key(),
    Column("name", Text), Column("prefix", Text), Column("secret_hash", Text), Column("permissions", JSONB),
    Column("created_by", UUID(as_uuid=True)), Column("last_used_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)), Column("revoked_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

access_grants = Table(
    "access_grants", metadata, *tenant_key(),
    Column("admin_user_id", UUID(as_uuid=True)), Column("reason", Text), Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)), Column("expiry_audited", Boolean),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)
