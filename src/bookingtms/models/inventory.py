from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from bookingtms.models.base import metadata, tenant_key, timestamps

activities = Table(
    "activities", metadata, *tenant_key(),
    Column("venue_id", UUID(as_uuid=True)), Column("name", Text), Column("description", Text),
    Column("category", Text), Column("difficulty", Text), Column("duration_minutes", Integer),
    Column("capacity", Integer), Column("min_players", Integer), Column("max_players", Integer),
    Column("price_amount", BigInteger), Column("child_price_amount", BigInteger), Column("currency", Text),
    Column("schedule", JSONB), Column("cancellation_policy", JSONB), Column("stripe_product_id", Text),
    Column("stripe_prices", JSONB), Column("custom_capacity_fields", JSONB), Column("settings", JSONB),
    Column("is_active", Boolean), Column("archived_at", DateTime(timezone=True)),
    Column("sessions_generated_until", Date), Column("image_url", Text), *timestamps(),
)

activity_sessions = Table(
    "activity_sessions", metadata, *tenant_key(),
    Column("activity_id", UUID(as_uuid=True)), Column("venue_id", UUID(as_uuid=True)),
    Column("start_time", DateTime(timezone=True)), Column("end_time", DateTime(timezone=True)),
    Column("capacity_total", Integer), Column("capacity_remaining", Integer),
    Column("price_at_generation", BigInteger), Column("currency", Text), Column("is_closed", Boolean),
    Column("closed_by_schedule", Boolean), Column("version", Integer), *timestamps(),
)
