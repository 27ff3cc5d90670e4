"""Payment providers, Stripe events, refunds, notification delivery, reminders, calendar feeds.

Revision ID: 0004
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0004_payments.sql")


def downgrade() -> None:
    from alembic import op

    op.execute("""
        DROP FUNCTION IF EXISTS organizations_with_lapsed_payments(integer);
        DROP FUNCTION IF EXISTS organizations_with_reminders_due(timestamptz, timestamptz, integer);
        DROP FUNCTION IF EXISTS organizations_with_due_notifications(integer);
        DROP FUNCTION IF EXISTS venue_by_calendar_token(uuid, text);
        DROP FUNCTION IF EXISTS organization_by_stripe_account(text);
        ALTER TABLE venues DROP COLUMN calendar_token_hash;
        ALTER TABLE notification_outbox DROP COLUMN locked_until, DROP COLUMN provider_message_id, DROP COLUMN booking_id;
        DROP TABLE stripe_events;
        ALTER TABLE payments DROP CONSTRAINT payments_charge_fk, DROP COLUMN stripe_checkout_session_id,
          DROP COLUMN stripe_charge_id, DROP COLUMN stripe_refund_id, DROP COLUMN refunded_amount,
          DROP COLUMN application_fee_refunded, DROP COLUMN charge_id, DROP COLUMN failure_reason;
        ALTER TABLE bookings DROP COLUMN reminder_sent_at, DROP COLUMN attention, DROP COLUMN payment_expires_at;
        ALTER TABLE organizations DROP COLUMN payment_provider;
    """)
