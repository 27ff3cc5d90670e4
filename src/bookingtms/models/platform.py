from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from bookingtms.models.base import metadata, timestamps

plans = Table(
    "plans", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("name", Text), Column("slug", Text), Column("price_monthly", BigInteger), Column("currency", Text),
    Column("max_venues", Integer), Column("max_staff", Integer), Column("max_bookings", Integer),
    Column("features", JSONB), Column("is_active", Boolean), *timestamps(),
)

feature_flags = Table(
    "feature_flags", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("name", Text), Column("description", Text), Column("enabled", Boolean),
    Column("rollout_percent", Integer), Column("org_whitelist", ARRAY(UUID(as_uuid=True))), *timestamps(),
)

platform_team = Table(
    "platform_team", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("user_id", UUID(as_uuid=True)), Column("role", Text), Column("permissions", JSONB),
    Column("is_active", Boolean), Column("created_at", DateTime(timezone=True), server_default=func.now()),
)
