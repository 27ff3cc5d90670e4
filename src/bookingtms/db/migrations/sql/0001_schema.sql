-- BookingTMS schema: the spec's ERD with DESIGN.md's tenancy keys.
-- Every tenant table: organization_id NOT NULL, PK (organization_id, id), unique constraints and
-- foreign keys between tenant tables include organization_id. Money is bigint minor units.
-- Runs as the owner role (a superuser or a BYPASSRLS role); the application role is granted below.


-- ---------------------------------------------------------------------------------------------
-- Context helpers. The application sets app.user_id / app.organization_id / app.is_platform with
-- set_config(..., true) at the start of every transaction. They read only settings, never a
-- table, so no policy can recurse through them. Policies wrap them as (SELECT fn()) so each is
-- evaluated once per statement.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION current_app_user_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT nullif(current_setting('app.user_id', true), '')::uuid
$$;

CREATE FUNCTION get_my_organization_id() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT nullif(current_setting('app.organization_id', true), '')::uuid
$$;

CREATE FUNCTION is_platform_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(current_setting('app.is_platform', true), '') = 'true'
$$;

CREATE FUNCTION can_access_organization(org_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
  SELECT org_id IS NOT NULL AND (org_id = get_my_organization_id() IS TRUE OR is_platform_admin())
$$;

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Platform domain
-- ---------------------------------------------------------------------------------------------
CREATE TABLE plans (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name           text NOT NULL,
  slug           text NOT NULL UNIQUE,
  price_monthly  bigint NOT NULL DEFAULT 0 CHECK (price_monthly >= 0),
  currency       char(3) NOT NULL DEFAULT 'USD',
  max_venues     integer CHECK (max_venues > 0),
  max_staff      integer CHECK (max_staff > 0),
  max_bookings   integer CHECK (max_bookings > 0),
  features       jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_active      boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feature_flags (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name             text NOT NULL UNIQUE,
  description      text NOT NULL DEFAULT '',
  enabled          boolean NOT NULL DEFAULT false,
  rollout_percent  integer NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),
  org_whitelist    uuid[] NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Tenant domain
-- ---------------------------------------------------------------------------------------------
CREATE TABLE organizations (
  id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name                        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  slug                        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  plan_id                     uuid NOT NULL REFERENCES plans(id),
  owner_id                    uuid,
  status                      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  currency                    char(3) NOT NULL DEFAULT 'USD',
  stripe_account_id           text UNIQUE,
  stripe_charges_enabled      boolean NOT NULL DEFAULT false,
  stripe_payouts_enabled      boolean NOT NULL DEFAULT false,
  application_fee_percentage  numeric(5,2) NOT NULL DEFAULT 0 CHECK (application_fee_percentage BETWEEN 0 AND 100),
  total_volume_processed      bigint NOT NULL DEFAULT 0 CHECK (total_volume_processed >= 0),
  total_application_fees      bigint NOT NULL DEFAULT 0 CHECK (total_application_fees >= 0),
  current_venues_count        integer NOT NULL DEFAULT 0 CHECK (current_venues_count >= 0),
  current_staff_count         integer NOT NULL DEFAULT 0 CHECK (current_staff_count >= 0),
  current_bookings_this_month integer NOT NULL DEFAULT 0 CHECK (current_bookings_this_month >= 0),
  subscription_status         text NOT NULL DEFAULT 'trial'
                                CHECK (subscription_status IN ('trial', 'active', 'past_due', 'suspended', 'cancelled')),
  trial_ends_at               timestamptz,
  suspended_at                timestamptz,
  settings                    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- users holds both organization staff and the platform team. A platform admin has no
-- organization, so users keeps a single-column primary key and offers (organization_id, id)
-- as the unique key that tenant tables reference (see README, "Departures").
CREATE TABLE users (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  organization_id       uuid REFERENCES organizations(id),
  email                 text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
  full_name             text NOT NULL DEFAULT '',
  role                  text NOT NULL CHECK (role IN ('system-admin', 'super-admin', 'org-admin', 'admin', 'manager', 'staff')),
  is_platform_team      boolean NOT NULL DEFAULT false,
  is_active             boolean NOT NULL DEFAULT true,
  permissions           jsonb NOT NULL DEFAULT '[]'::jsonb,
  password_hash         text,
  must_change_password  boolean NOT NULL DEFAULT false,
  last_login_at         timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (organization_id, id),
  CHECK ((organization_id IS NULL) = (role = 'system-admin')),
  CHECK (role <> 'system-admin' OR is_platform_team)
);
CREATE UNIQUE INDEX users_email_key ON users (email);

ALTER TABLE organizations ADD CONSTRAINT organizations_owner_fk
  FOREIGN KEY (id, owner_id) REFERENCES users (organization_id, id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE platform_team (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      uuid NOT NULL UNIQUE REFERENCES users(id),
  role         text NOT NULL DEFAULT 'system-admin',
  permissions  jsonb NOT NULL DEFAULT '[]'::jsonb,
  is_active    boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venues (
  organization_id  uuid NOT NULL REFERENCES organizations(id),
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  slug             text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  embed_key        text NOT NULL CHECK (length(embed_key) >= 16),
  timezone         text NOT NULL,
  address          text NOT NULL DEFAULT '',
  city             text NOT NULL DEFAULT '',
  state            text NOT NULL DEFAULT '',
  zip              text NOT NULL DEFAULT '',
  country          text NOT NULL DEFAULT '',
  settings         jsonb NOT NULL DEFAULT '{}'::jsonb,
  operating_hours  jsonb NOT NULL DEFAULT '{}'::jsonb,
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, slug),
  UNIQUE (organization_id, embed_key)
);

-- ---------------------------------------------------------------------------------------------
-- Inventory domain
-- ---------------------------------------------------------------------------------------------
CREATE TABLE activities (
  organization_id          uuid NOT NULL REFERENCES organizations(id),
  id                       uuid NOT NULL DEFAULT gen_random_uuid(),
  venue_id                 uuid NOT NULL,
  name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description              text NOT NULL DEFAULT '',
  category                 text NOT NULL DEFAULT '',
  difficulty               text,
  duration_minutes         integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
  capacity                 integer NOT NULL CHECK (capacity BETWEEN 1 AND 10000),
  min_players              integer NOT NULL DEFAULT 1 CHECK (min_players >= 1),
  max_players              integer NOT NULL,
  price_amount             bigint NOT NULL CHECK (price_amount >= 0),
  child_price_amount       bigint CHECK (child_price_amount >= 0),
  currency                 char(3) NOT NULL DEFAULT 'USD',
  schedule                 jsonb NOT NULL DEFAULT '{}'::jsonb,
  cancellation_policy      jsonb NOT NULL DEFAULT '{"full_refund_hours": 24}'::jsonb,
  stripe_product_id        text,
  stripe_prices            jsonb NOT NULL DEFAULT '{}'::jsonb,
  custom_capacity_fields   jsonb NOT NULL DEFAULT '{}'::jsonb,
  settings                 jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_active                boolean NOT NULL DEFAULT true,
  archived_at              timestamptz,
  sessions_generated_until date,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  FOREIGN KEY (organization_id, venue_id) REFERENCES venues (organization_id, id),
  CHECK (max_players >= min_players AND max_players <= capacity)
);

CREATE TABLE activity_sessions (
  organization_id      uuid NOT NULL REFERENCES organizations(id),
  id                   uuid NOT NULL DEFAULT gen_random_uuid(),
  activity_id          uuid NOT NULL,
  venue_id             uuid NOT NULL,
  start_time           timestamptz NOT NULL,
  end_time             timestamptz NOT NULL,
  capacity_total       integer NOT NULL CHECK (capacity_total >= 0),
  capacity_remaining   integer NOT NULL,
  price_at_generation  bigint NOT NULL CHECK (price_at_generation >= 0),
  currency             char(3) NOT NULL DEFAULT 'USD',
  is_closed            boolean NOT NULL DEFAULT false,
  -- closed because its time left the schedule (reopened if the time comes back), not by staff
  closed_by_schedule   boolean NOT NULL DEFAULT false,
  version              integer NOT NULL DEFAULT 1,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, activity_id, start_time),
  FOREIGN KEY (organization_id, activity_id) REFERENCES activities (organization_id, id),
  FOREIGN KEY (organization_id, venue_id) REFERENCES venues (organization_id, id),
  CHECK (0 <= capacity_remaining AND capacity_remaining <= capacity_total),
  CHECK (end_time > start_time),
  CHECK (is_closed OR NOT closed_by_schedule)
);

-- ---------------------------------------------------------------------------------------------
-- Transaction domain
-- ---------------------------------------------------------------------------------------------
CREATE TABLE customers (
  organization_id     uuid NOT NULL REFERENCES organizations(id),
  id                  uuid NOT NULL DEFAULT gen_random_uuid(),
  email               text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
  first_name          text NOT NULL DEFAULT '',
  last_name           text NOT NULL DEFAULT '',
  phone               text,
  stripe_customer_id  text,
  total_bookings      integer NOT NULL DEFAULT 0 CHECK (total_bookings >= 0),
  total_spent         bigint NOT NULL DEFAULT 0 CHECK (total_spent >= 0),
  metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id)
);

CREATE TABLE slot_reservations (
  organization_id      uuid NOT NULL REFERENCES organizations(id),
  id                   uuid NOT NULL DEFAULT gen_random_uuid(),
  session_id           uuid NOT NULL,
  customer_email       text NOT NULL,
  spots_reserved       integer NOT NULL CHECK (spots_reserved > 0),
  expires_at           timestamptz NOT NULL,
  status               text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'converted', 'released', 'expired')),
  checkout_session_id  text,
  booking_id           uuid,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  FOREIGN KEY (organization_id, session_id) REFERENCES activity_sessions (organization_id, id)
);

CREATE TABLE bookings (
  organization_id           uuid NOT NULL REFERENCES organizations(id),
  id                        uuid NOT NULL DEFAULT gen_random_uuid(),
  venue_id                  uuid NOT NULL,
  activity_id               uuid NOT NULL,
  session_id                uuid NOT NULL,
  customer_id               uuid NOT NULL,
  reservation_id            uuid,
  booking_reference         text NOT NULL,
  status                    text NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'cancelled')),
  payment_status            text NOT NULL DEFAULT 'unpaid'
                              CHECK (payment_status IN ('unpaid', 'pending', 'paid', 'partially_refunded', 'refunded', 'failed')),
  source                    text NOT NULL DEFAULT 'widget' CHECK (source IN ('widget', 'staff', 'api')),
  booking_date              date NOT NULL,
  guest_count               integer NOT NULL CHECK (guest_count > 0),
  unit_price_amount         bigint NOT NULL CHECK (unit_price_amount >= 0),
  subtotal_amount           bigint NOT NULL CHECK (subtotal_amount >= 0),
  promo_code                text,
  promo_discount            bigint NOT NULL DEFAULT 0 CHECK (promo_discount >= 0),
  total_amount              bigint NOT NULL CHECK (total_amount >= 0),
  currency                  char(3) NOT NULL,
  refund_amount             bigint NOT NULL DEFAULT 0 CHECK (refund_amount >= 0),
  cancellation_policy       jsonb NOT NULL DEFAULT '{}'::jsonb,
  cancelled_at              timestamptz,
  cancel_reason             text,
  cancelled_by              text,
  checked_in_at             timestamptz,
  notes                     text,
  stripe_payment_intent_id  text,
  created_by                uuid,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, booking_reference),
  FOREIGN KEY (organization_id, venue_id) REFERENCES venues (organization_id, id),
  FOREIGN KEY (organization_id, activity_id) REFERENCES activities (organization_id, id),
  FOREIGN KEY (organization_id, session_id) REFERENCES activity_sessions (organization_id, id),
  FOREIGN KEY (organization_id, customer_id) REFERENCES customers (organization_id, id),
  FOREIGN KEY (organization_id, reservation_id) REFERENCES slot_reservations (organization_id, id),
  CHECK (total_amount = subtotal_amount - promo_discount),
  CHECK (refund_amount <= total_amount),
  CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);

ALTER TABLE slot_reservations ADD CONSTRAINT slot_reservations_booking_fk
  FOREIGN KEY (organization_id, booking_id) REFERENCES bookings (organization_id, id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE payments (
  organization_id           uuid NOT NULL REFERENCES organizations(id),
  id                        uuid NOT NULL DEFAULT gen_random_uuid(),
  booking_id                uuid NOT NULL,
  provider                  text NOT NULL CHECK (provider IN ('offline', 'stripe')),
  kind                      text NOT NULL DEFAULT 'charge' CHECK (kind IN ('charge', 'refund')),
  amount                    bigint NOT NULL CHECK (amount >= 0),
  currency                  char(3) NOT NULL,
  status                    text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
  stripe_payment_intent_id  text,
  application_fee_amount    bigint NOT NULL DEFAULT 0 CHECK (application_fee_amount >= 0),
  net_to_merchant           bigint NOT NULL DEFAULT 0,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  FOREIGN KEY (organization_id, booking_id) REFERENCES bookings (organization_id, id),
  CHECK (application_fee_amount <= amount)
);

CREATE TABLE promo_codes (
  organization_id   uuid NOT NULL REFERENCES organizations(id),
  id                uuid NOT NULL DEFAULT gen_random_uuid(),
  code              text NOT NULL CHECK (code = upper(code) AND length(code) BETWEEN 1 AND 64),
  description       text NOT NULL DEFAULT '',
  discount_type     text NOT NULL CHECK (discount_type IN ('percent', 'amount')),
  discount_value    bigint NOT NULL CHECK (discount_value > 0),
  currency          char(3),
  valid_from        timestamptz,
  valid_until       timestamptz,
  max_redemptions   integer CHECK (max_redemptions > 0),
  times_redeemed    integer NOT NULL DEFAULT 0 CHECK (times_redeemed >= 0),
  activity_ids      uuid[] NOT NULL DEFAULT '{}',
  is_active         boolean NOT NULL DEFAULT true,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, code),
  CHECK (discount_type <> 'percent' OR discount_value <= 100),
  CHECK (max_redemptions IS NULL OR times_redeemed <= max_redemptions),
  CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);

-- Idempotency keys of creating POSTs. Requests made outside any organization (the platform
-- creating one) are kept under the nil UUID, readable only in platform context.
CREATE TABLE idempotency_keys (
  organization_id  uuid NOT NULL,
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  scope            text NOT NULL,
  key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  request_hash     text NOT NULL,
  response_status  integer,
  response_body    jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, scope, key)
);

CREATE TABLE notification_outbox (
  organization_id  uuid NOT NULL REFERENCES organizations(id),
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  kind             text NOT NULL,
  channel          text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms', 'webhook')),
  recipient        text NOT NULL,
  payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  sent_at          timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id)
);

-- Append-only: the application role may insert and read, never update or delete.
CREATE TABLE audit_log (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  organization_id  uuid REFERENCES organizations(id),
  actor_id         uuid,
  actor_type       text NOT NULL DEFAULT 'user',
  action           text NOT NULL,
  target_type      text,
  target_id        text,
  request_id       text,
  ip               inet,
  changes          jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at       timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Indexes: blueprint section 6.1 and PRD section 3.1.2 (created plainly: the tables are new and
-- CREATE INDEX CONCURRENTLY cannot run inside a migration's transaction).
-- ---------------------------------------------------------------------------------------------
CREATE INDEX idx_org_stripe_account ON organizations (stripe_account_id) WHERE stripe_account_id IS NOT NULL;
CREATE INDEX idx_org_status_plan ON organizations (status, plan_id);
CREATE INDEX idx_venues_org_status ON venues (organization_id, status);
CREATE INDEX idx_venues_embed_key ON venues (embed_key) WHERE embed_key IS NOT NULL;
CREATE INDEX idx_activities_org_venue_active ON activities (organization_id, venue_id, is_active);
CREATE INDEX idx_activities_schedule ON activities USING GIN (schedule);
CREATE INDEX idx_sessions_activity_time_capacity ON activity_sessions (activity_id, start_time, capacity_remaining)
  WHERE is_closed = false;
CREATE INDEX idx_sessions_availability ON activity_sessions (activity_id, start_time, capacity_remaining);
-- start_time::date depends on the session time zone, which an index may not; the UTC date is fixed.
CREATE INDEX idx_sessions_org_date ON activity_sessions (organization_id, ((start_time AT TIME ZONE 'UTC')::date));
CREATE INDEX idx_bookings_org_date_status ON bookings (organization_id, booking_date, status);
CREATE INDEX idx_bookings_session ON bookings (session_id) WHERE status != 'cancelled';
CREATE INDEX idx_bookings_customer ON bookings (customer_id);
CREATE INDEX idx_bookings_reference ON bookings (booking_reference);
CREATE UNIQUE INDEX idx_customers_org_email ON customers (organization_id, email);
CREATE INDEX idx_customers_stripe ON customers (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX idx_users_org_role ON users (organization_id, role) WHERE is_active = true;
CREATE INDEX idx_users_platform ON users (is_platform_team) WHERE is_platform_team = true;
-- Supporting indexes for our own hot paths.
CREATE INDEX idx_reservations_held_expiry ON slot_reservations (expires_at) WHERE status = 'held';
CREATE INDEX idx_reservations_session ON slot_reservations (organization_id, session_id) WHERE status = 'held';
CREATE INDEX idx_bookings_org_created ON bookings (organization_id, created_at DESC, id);
CREATE INDEX idx_bookings_org_session ON bookings (organization_id, session_id);
CREATE INDEX idx_sessions_venue_time ON activity_sessions (organization_id, venue_id, start_time);
CREATE INDEX idx_activities_due ON activities (sessions_generated_until) WHERE is_active AND archived_at IS NULL;
CREATE INDEX idx_outbox_pending ON notification_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_audit_org_time ON audit_log (organization_id, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- updated_at maintenance
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['plans', 'feature_flags', 'organizations', 'users', 'venues', 'activities',
                           'activity_sessions', 'customers', 'slot_reservations', 'bookings', 'payments',
                           'promo_codes']
  LOOP
    EXECUTE format('CREATE TRIGGER %I_touch BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION touch_updated_at()', t, t);
  END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Optimistic locking (PRD 3.1.1, blueprint 6.2). SECURITY INVOKER: row-level security applies.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION reserve_session_capacity(p_session_id uuid, p_spots integer, p_expected_version integer)
RETURNS TABLE (success boolean, new_version integer, remaining integer)
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_remaining integer;
  v_version integer;
BEGIN
  IF p_spots IS NULL OR p_spots <= 0 THEN
    RAISE EXCEPTION 'spots must be positive' USING ERRCODE = '22023';
  END IF;
  SELECT s.capacity_remaining, s.version INTO v_remaining, v_version
    FROM activity_sessions s WHERE s.id = p_session_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT false, NULL::integer, NULL::integer;
    RETURN;
  END IF;
  IF v_version <> p_expected_version OR v_remaining < p_spots THEN
    RETURN QUERY SELECT false, v_version, v_remaining;
    RETURN;
  END IF;
  UPDATE activity_sessions
     SET capacity_remaining = capacity_remaining - p_spots, version = version + 1
   WHERE id = p_session_id;
  RETURN QUERY SELECT true, v_version + 1, v_remaining - p_spots;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Narrow cross-tenant lookups, SECURITY DEFINER (owned by the migration role, which bypasses RLS).
-- Each returns only identifiers; the caller then opens a tenant transaction for the real work.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION venue_by_embed_key(p_embed_key text)
RETURNS TABLE (organization_id uuid, venue_id uuid, organization_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT v.organization_id, v.id, o.status
    FROM venues v JOIN organizations o ON o.id = v.organization_id
   WHERE v.embed_key = p_embed_key AND v.status = 'active'
   LIMIT 1
$$;

CREATE FUNCTION find_login_user(p_email text)
RETURNS TABLE (user_id uuid, organization_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.organization_id FROM users u WHERE u.email = lower(p_email)
$$;

CREATE FUNCTION organizations_by_booking_reference(p_reference text)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b WHERE b.booking_reference = upper(p_reference)
$$;

CREATE FUNCTION organizations_with_expired_holds(p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT r.organization_id FROM slot_reservations r
   WHERE r.status = 'held' AND r.expires_at <= now()
   LIMIT p_limit
$$;

CREATE FUNCTION organizations_with_sessions_due(p_until date, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT a.organization_id FROM activities a
    JOIN organizations o ON o.id = a.organization_id AND o.status = 'active'
   WHERE a.is_active AND a.archived_at IS NULL
     AND (a.sessions_generated_until IS NULL OR a.sessions_generated_until < p_until)
   LIMIT p_limit
$$;

-- ---------------------------------------------------------------------------------------------
-- Row-level security
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['venues', 'activities', 'activity_sessions', 'customers', 'slot_reservations',
                           'bookings', 'payments', 'promo_codes', 'notification_outbox']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
                     USING (organization_id = (SELECT get_my_organization_id()))
                     WITH CHECK (organization_id = (SELECT get_my_organization_id()))$p$, t);
  END LOOP;
END $$;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_access ON organizations
  USING (id = (SELECT get_my_organization_id()) OR (SELECT is_platform_admin()))
  WITH CHECK (id = (SELECT get_my_organization_id()) OR (SELECT is_platform_admin()));

-- users: one's own organization's staff, one's own row, and (for the platform) the platform team.
-- Nothing here reads another table, so no query on users can recurse.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY user_access ON users
  USING (organization_id = (SELECT get_my_organization_id())
         OR id = (SELECT current_app_user_id())
         OR (organization_id IS NULL AND (SELECT is_platform_admin())))
  WITH CHECK (organization_id = (SELECT get_my_organization_id())
              OR id = (SELECT current_app_user_id())
              OR (organization_id IS NULL AND (SELECT is_platform_admin())));

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_access ON idempotency_keys
  USING (organization_id = coalesce((SELECT get_my_organization_id()),
                                    CASE WHEN (SELECT is_platform_admin()) THEN '00000000-0000-0000-0000-000000000000'::uuid END))
  WITH CHECK (organization_id = coalesce((SELECT get_my_organization_id()),
                                         CASE WHEN (SELECT is_platform_admin()) THEN '00000000-0000-0000-0000-000000000000'::uuid END));

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_read ON audit_log FOR SELECT
  USING (organization_id = (SELECT get_my_organization_id())
         OR (organization_id IS NULL AND (SELECT is_platform_admin())));
CREATE POLICY audit_append ON audit_log FOR INSERT
  WITH CHECK (organization_id = (SELECT get_my_organization_id())
              OR (SELECT is_platform_admin()));

-- Platform tables: readable by every signed-in context (an organization reads its plan),
-- written only in platform context.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['plans', 'feature_flags', 'platform_team']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY platform_write ON %I USING ((SELECT is_platform_admin())) WITH CHECK ((SELECT is_platform_admin()))', t);
  END LOOP;
END $$;
CREATE POLICY plans_read ON plans FOR SELECT USING (true);
CREATE POLICY feature_flags_read ON feature_flags FOR SELECT USING (true);

-- ---------------------------------------------------------------------------------------------
-- Seed plans
-- ---------------------------------------------------------------------------------------------
INSERT INTO plans (name, slug, price_monthly, max_venues, max_staff, max_bookings, features) VALUES
  ('Free', 'free', 0, 1, 3, 100, '{"stripe": false, "sms": false}'),
  ('Pro', 'pro', 4900, 5, 25, 5000, '{"stripe": true, "sms": true}'),
  ('Enterprise', 'enterprise', 49900, NULL, NULL, NULL, '{"stripe": true, "sms": true, "api": true}');

-- ---------------------------------------------------------------------------------------------
-- The application role: owns nothing, no BYPASSRLS. `bookingtms migrate` gives it LOGIN and a
-- password derived from the secret key.
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bookingtms_app') THEN
    CREATE ROLE bookingtms_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
  END IF;
END $$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO bookingtms_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON venues, activities, activity_sessions, customers, slot_reservations,
  bookings, payments, promo_codes, notification_outbox, idempotency_keys, users, platform_team TO bookingtms_app;
GRANT SELECT, INSERT, UPDATE ON organizations, plans, feature_flags TO bookingtms_app;
GRANT SELECT, INSERT ON audit_log TO bookingtms_app;
REVOKE ALL ON FUNCTION venue_by_embed_key(text), find_login_user(text), organizations_by_booking_reference(text),
  organizations_with_expired_holds(integer), organizations_with_sessions_due(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION venue_by_embed_key(text), find_login_user(text), organizations_by_booking_reference(text),
  organizations_with_expired_holds(integer), organizations_with_sessions_due(date, integer),
  reserve_session_capacity(uuid, integer, integer) TO bookingtms_app;
