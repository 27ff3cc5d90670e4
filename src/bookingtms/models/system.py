from sqlalchemy import BigInteger, Column, DateTime, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID

from bookingtms.models.base import metadata, tenant_key

idempotency_keys = Table(
    "idempotency_keys", metadata, *tenant_key(),
    Column("scope", Text), Column("key", Text), Column("request_hash", Text),
    Column("response_status", Integer), Column("response_body", JSONB),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

notification_outbox = Table(
    "notification_outbox", metadata, *tenant_key(),
    Column("kind", Text), Column("channel", Text), Column("recipient", Text), Column("payload", JSONB),
    Column("status", Text), Column("attempts", Integer), Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text), Column("sent_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
    Column("locked_until", DateTime(timezone=True)), Column("provider_message_id", Text),
    Column("booking_id", UUID(as_uuid=True)),
)

stripe_events = Table(
    "stripe_events", metadata,
    Column("organization_id", UUID(as_uuid=True), primary_key=True), Column("id", Text, primary_key=True),
    Column("type", Text), Column("account", Text), Column("payload", JSONB),
    Column("received_at", DateTime(timezone=True), server_default=func.now()),
    Column("handled_at", DateTime(timezone=True)), Column("attempts", Integer), Column("last_error", Text),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger, primary_key=True), Column("organization_id", UUID(as_uuid=True)),
    Column("actor_id", UUID(as_uuid=True)), Column("actor_type", Text), Column("action", Text),
    Column("target_type", Text), Column("target_id", Text), Column("request_id", Text), Column("ip", INET),
    Column("changes", JSONB), Column("created_at", DateTime(timezone=True), server_default=func.now()),
    Column("actor_label", Text), Column("chain_seq", BigInteger), Column("prev_hash", Text), Column("row_hash", Text),
)
