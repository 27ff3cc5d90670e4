-- Payments through providers (offline, Stripe Connect), provider events, refunds, notification
-- delivery state, reminders and calendar feeds (issue 4).

-- Which provider takes an organization's payments.
ALTER TABLE organizations
  ADD COLUMN payment_provider text NOT NULL DEFAULT 'offline' CHECK (payment_provider IN ('offline', 'stripe'));

-- Bookings: the reminder sent once, and a flag for staff when something needs a human look
-- (e.g. a payment that arrived after its hold ended and was refunded automatically).
ALTER TABLE bookings
  ADD COLUMN reminder_sent_at  timestamptz,
  ADD COLUMN attention         text,
  ADD COLUMN payment_expires_at timestamptz;
CREATE INDEX idx_bookings_reminder_due ON bookings (organization_id, session_id)
  WHERE status = 'confirmed' AND reminder_sent_at IS NULL;
CREATE INDEX idx_bookings_pending_payment ON bookings (payment_expires_at) WHERE status = 'pending_payment';

-- Payments: what the provider calls them, and how much of a charge (and of the platform's fee)
-- has been refunded. A refund is its own row (kind 'refund') pointing at its charge.
ALTER TABLE payments
  ADD COLUMN stripe_checkout_session_id text,
  ADD COLUMN stripe_charge_id            text,
  ADD COLUMN stripe_refund_id            text,
  ADD COLUMN refunded_amount             bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
  ADD COLUMN application_fee_refunded    bigint NOT NULL DEFAULT 0 CHECK (application_fee_refunded >= 0),
  ADD COLUMN charge_id                   uuid,
  ADD COLUMN failure_reason              text,
  ADD CONSTRAINT payments_refund_within_charge CHECK (refunded_amount <= amount),
  ADD CONSTRAINT payments_charge_fk FOREIGN KEY (organization_id, charge_id) REFERENCES payments (organization_id, id);
CREATE UNIQUE INDEX payments_checkout_session ON payments (organization_id, stripe_checkout_session_id)
  WHERE stripe_checkout_session_id IS NOT NULL;
CREATE UNIQUE INDEX payments_stripe_refund ON payments (organization_id, stripe_refund_id)
  WHERE stripe_refund_id IS NOT NULL;
CREATE INDEX idx_payments_booking ON payments (organization_id, booking_id);

-- Provider events, stored under their own id before they are handled, and handled once.
-- organization_id is the connected account's organization (the nil UUID for platform events).
CREATE TABLE stripe_events (
  organization_id  uuid NOT NULL,
  id               text NOT NULL,
  type             text NOT NULL,
  account          text,
  payload          jsonb NOT NULL,
  received_at      timestamptz NOT NULL DEFAULT now(),
  handled_at       timestamptz,
  attempts         integer NOT NULL DEFAULT 0,
  last_error       text,
  PRIMARY KEY (organization_id, id)
);
CREATE INDEX idx_stripe_events_unhandled ON stripe_events (received_at) WHERE handled_at IS NULL;
ALTER TABLE stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stripe_events
  USING (organization_id = coalesce((SELECT get_my_organization_id()), '00000000-0000-0000-0000-000000000000'::uuid))
  WITH CHECK (organization_id = coalesce((SELECT get_my_organization_id()), '00000000-0000-0000-0000-000000000000'::uuid));

-- Outbox delivery: a claim lasts until locked_until (a crashed sender's rows come back).
ALTER TABLE notification_outbox
  ADD COLUMN locked_until         timestamptz,
  ADD COLUMN provider_message_id  text,
  ADD COLUMN booking_id           uuid;
CREATE INDEX idx_outbox_dead ON notification_outbox (organization_id, created_at DESC) WHERE status = 'dead';

-- Calendar feeds: a venue's secret token, stored hashed, rotatable.
ALTER TABLE venues ADD COLUMN calendar_token_hash text;

-- Lookups before the tenant is known.
CREATE FUNCTION organization_by_stripe_account(p_account text)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id FROM organizations o WHERE o.stripe_account_id = p_account
$$;

CREATE FUNCTION venue_by_calendar_token(p_venue_id uuid, p_token_hash text)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT v.organization_id FROM venues v
   WHERE v.id = p_venue_id AND v.calendar_token_hash = p_token_hash AND v.status <> 'archived'
$$;

-- Work the jobs look for across organizations.
CREATE FUNCTION organizations_with_due_notifications(p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT n.organization_id FROM notification_outbox n
   WHERE n.status = 'pending' AND n.next_attempt_at <= now()
     AND (n.locked_until IS NULL OR n.locked_until <= now())
   LIMIT p_limit
$$;

CREATE FUNCTION organizations_with_reminders_due(p_from timestamptz, p_until timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b
    JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
   WHERE b.status = 'confirmed' AND b.reminder_sent_at IS NULL
     AND s.start_time > p_from AND s.start_time <= p_until
   LIMIT p_limit
$$;

CREATE FUNCTION organizations_with_lapsed_payments(p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b
   WHERE b.status = 'pending_payment' AND b.payment_expires_at <= now()
   LIMIT p_limit
$$;

REVOKE ALL ON FUNCTION organization_by_stripe_account(text), venue_by_calendar_token(uuid, text),
  organizations_with_due_notifications(integer), organizations_with_reminders_due(timestamptz, timestamptz, integer),
  organizations_with_lapsed_payments(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION organization_by_stripe_account(text), venue_by_calendar_token(uuid, text),
  organizations_with_due_notifications(integer), organizations_with_reminders_due(timestamptz, timestamptz, integer),
  organizations_with_lapsed_payments(integer) TO bookingtms_app;
GRANT SELECT, INSERT, UPDATE ON stripe_events TO bookingtms_app;
