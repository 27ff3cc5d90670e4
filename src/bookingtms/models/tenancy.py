from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, Numeric, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

from bookingtms.models.base import metadata, tenant_key, timestamps

organizations = Table(
    "organizations", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("name", Text), Column("slug", Text), Column("plan_id", UUID(as_uuid=True)),
    Column("owner_id", UUID(as_uuid=True)), Column("status", Text), Column("currency", Text),
    Column("stripe_account_id", Text), Column("stripe_charges_enabled", Boolean),
    Column("stripe_payouts_enabled", Boolean), Column("application_fee_percentage", Numeric(5, 2)),
    Column("total_volume_processed", BigInteger), Column("total_application_fees", BigInteger),
    Column("current_venues_count", Integer), Column("current_staff_count", Integer),
    Column("current_bookings_this_month", Integer), Column("subscription_status", Text),
    Column("trial_ends_at", DateTime(timezone=True)), Column("suspended_at", DateTime(timezone=True)),
    Column("settings", JSONB), Column("payment_provider", Text), *timestamps(),
)

users = Table(
    "users", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("organization_id", UUID(as_uuid=True)), Column("email", Text), Column("full_name", Text),
    Column("role", Text), Column("is_platform_team", Boolean), Column("is_active", Boolean),
    Column("permissions", JSONB), Column("password_hash", Text), Column("must_change_password", Boolean),
    Column("last_login_at", DateTime(timezone=True)), Column("token_version", Integer),
    Column("totp_secret", Text), Column("totp_enabled", Boolean), Column("recovery_codes", JSONB),
    Column("oidc_subject", Text), Column("deactivated_at", DateTime(timezone=True)),
    Column("invited_by", UUID(as_uuid=True)), *timestamps(),
)

venues = Table(
    "venues", metadata, *tenant_key(),
    Column("name", Text), Column("slug", Text), Column("embed_key", Text), Column("timezone", Text),
    Column("address", Text), Column("city", Text), Column("state", Text), Column("zip", Text),
    Column("country", Text), Column("settings", JSONB), Column("operating_hours", JSONB), Column("status", Text),
    Column("calendar_token_hash", Text), Column("image_url", Text), *timestamps(),
)
