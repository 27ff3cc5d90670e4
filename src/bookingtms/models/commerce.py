from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Integer, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from bookingtms.models.base import metadata, tenant_key, timestamps

customers = Table(
    "customers", metadata, *tenant_key(),
    Column("email", Text), Column("first_name", Text), Column("last_name", Text), Column("phone", Text),
    Column("stripe_customer_id", Text), Column("total_bookings", Integer), Column("total_spent", BigInteger),
    Column("metadata", JSONB), *timestamps(),
)

slot_reservations = Table(
    "slot_reservations", metadata, *tenant_key(),
    Column("session_id", UUID(as_uuid=True)), Column("customer_email", Text), Column("spots_reserved", Integer),
    Column("expires_at", DateTime(timezone=True)), Column("status", Text), Column("checkout_session_id", Text),
    Column("booking_id", UUID(as_uuid=True)), *timestamps(),
)

bookings = Table(
    "bookings", metadata, *tenant_key(),
    Column("venue_id", UUID(as_uuid=True)), Column("activity_id", UUID(as_uuid=True)),
    Column("session_id", UUID(as_uuid=True)), Column("customer_id", UUID(as_uuid=True)),
    Column("reservation_id", UUID(as_uuid=True)), Column("booking_reference", Text), Column("status", Text),
    Column("payment_status", Text), Column("source", Text), Column("booking_date", Date),
    Column("guest_count", Integer), Column("unit_price_amount", BigInteger), Column("subtotal_amount", BigInteger),
    Column("promo_code", Text), Column("promo_discount", BigInteger), Column("total_amount", BigInteger),
    Column("currency", Text), Column("refund_amount", BigInteger), Column("cancellation_policy", JSONB),
    Column("cancelled_at", DateTime(timezone=True)), Column("cancel_reason", Text), Column("cancelled_by", Text),
    Column("checked_in_at", DateTime(timezone=True)), Column("notes", Text),
    Column("stripe_payment_intent_id", Text), Column("created_by", UUID(as_uuid=True)),
    Column("reminder_sent_at", DateTime(timezone=True)), Column("attention", Text),
    Column("payment_expires_at", DateTime(timezone=True)), *timestamps(),
)

payments = Table(
    "payments", metadata, *tenant_key(),
    Column("booking_id", UUID(as_uuid=True)), Column("provider", Text), Column("kind", Text),
    Column("amount", BigInteger), Column("currency", Text), Column("status", Text),
    Column("stripe_payment_intent_id", Text), Column("application_fee_amount", BigInteger),
    Column("net_to_merchant", BigInteger), Column("stripe_checkout_session_id", Text),
    Column("stripe_charge_id", Text), Column("stripe_refund_id", Text), Column("refunded_amount", BigInteger),
    Column("application_fee_refunded", BigInteger), Column("charge_id", UUID(as_uuid=True)),
    Column("failure_reason", Text), *timestamps(),
)

promo_codes = Table(
    "promo_codes", metadata, *tenant_key(),
    Column("code", Text), Column("description", Text), Column("discount_type", Text),
    Column("discount_value", BigInteger), Column("currency", Text), Column("valid_from", DateTime(timezone=True)),
    Column("valid_until", DateTime(timezone=True)), Column("max_redemptions", Integer),
    Column("times_redeemed", Integer), Column("activity_ids", ARRAY(UUID(as_uuid=True))),
    Column("is_active", Boolean), *timestamps(),
)
