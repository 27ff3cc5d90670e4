-- 0014: rebuilding one organization's roll-ups no longer holds back every tenant's bookings.
-- 0005's rebuild_daily_stats(organization) locked the whole daily_stats table (SHARE ROW
-- EXCLUSIVE) so that no trigger could add a delta between its DELETE and its INSERT: a venue
-- changing time zone held back every tenant's bookings until that request committed.
-- Now each write to the roll-ups first takes a transaction-level advisory lock in shared mode
-- (writers never wait for one another), and the rebuild takes the same lock exclusively: it waits
-- for the writers in flight to commit, then keeps new ones back until it commits, so it neither
-- counts a booking twice nor misses one. The lock is one of 1,024, picked by the organization: a
-- rebuild holds back about one organization in a thousand, and a transaction that writes for
-- thousands of organizations at once (a bulk load with triggers on) takes at most 1,024 locks.
-- The shared lock is taken by AFTER triggers with the same conditions as 0005's, named so that
-- they fire after the foreign-key checks (which lock the venue row a time-zone change holds:
-- taking our lock first could deadlock with it) and before 0005's triggers write the roll-ups.
CREATE FUNCTION daily_stats_lock_key(p_organization_id uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (hashtext('daily_stats')::bigint << 32) | (hashtext(p_organization_id::text) & 1023)
$$;

-- Plain SQL rights suffice (no SECURITY DEFINER, no settings to switch on every row).
CREATE FUNCTION daily_stats_writing() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock_shared(public.daily_stats_lock_key(
    CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END));
  IF TG_OP = 'UPDATE' AND OLD.organization_id IS DISTINCT FROM NEW.organization_id THEN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(public.daily_stats_lock_key(OLD.organization_id));
  END IF;
  RETURN NULL;
END
$$;

-- AFTER triggers fire in name order: "RI_ConstraintTrigger_..." < "..._daily_lock" < "..._daily_stats".
CREATE TRIGGER bookings_daily_lock
  AFTER INSERT OR DELETE ON bookings
  FOR EACH ROW EXECUTE FUNCTION daily_stats_writing();

CREATE TRIGGER bookings_daily_lock_update
  AFTER UPDATE ON bookings
  FOR EACH ROW
  WHEN ((OLD.status, OLD.payment_status, OLD.guest_count, OLD.total_amount, OLD.refund_amount, OLD.cancelled_by,
         OLD.cancel_reason, OLD.session_id, OLD.venue_id, OLD.activity_id, OLD.booking_date, OLD.currency,
         OLD.organization_id)
        IS DISTINCT FROM
        (NEW.status, NEW.payment_status, NEW.guest_count, NEW.total_amount, NEW.refund_amount, NEW.cancelled_by,
         NEW.cancel_reason, NEW.session_id, NEW.venue_id, NEW.activity_id, NEW.booking_date, NEW.currency,
         NEW.organization_id))
  EXECUTE FUNCTION daily_stats_writing();

CREATE TRIGGER activity_sessions_daily_lock
  AFTER INSERT OR DELETE ON activity_sessions
  FOR EACH ROW EXECUTE FUNCTION daily_stats_writing();

CREATE TRIGGER activity_sessions_daily_lock_update
  AFTER UPDATE ON activity_sessions
  FOR EACH ROW
  WHEN ((OLD.capacity_total, OLD.is_closed, OLD.start_time, OLD.venue_id, OLD.activity_id, OLD.currency)
        IS DISTINCT FROM
        (NEW.capacity_total, NEW.is_closed, NEW.start_time, NEW.venue_id, NEW.activity_id, NEW.currency))
  EXECUTE FUNCTION daily_stats_writing();

CREATE OR REPLACE FUNCTION rebuild_daily_stats(p_organization_id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp SET work_mem = '256MB' AS $$
DECLARE
  written bigint;
BEGIN
  IF p_organization_id IS NULL THEN
    TRUNCATE daily_stats;
    INSERT INTO daily_stats (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                             revenue_amount, cancellations, capacity, occupancy_guests)
    SELECT organization_id, day, venue_id, activity_id, currency, bookings, guests,
           revenue_amount, cancellations, capacity, occupancy_guests
      FROM daily_stats_recomputed()
     ORDER BY organization_id, day, venue_id, activity_id, currency;
  ELSE
    -- Only the writers of this organization's lock wait (see above); the statements below start
    -- after it is granted, so they see every booking committed before it.
    PERFORM pg_advisory_xact_lock(daily_stats_lock_key(p_organization_id));
    DELETE FROM daily_stats WHERE organization_id = p_organization_id;
    INSERT INTO daily_stats (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                             revenue_amount, cancellations, capacity, occupancy_guests)
    SELECT organization_id, day, venue_id, activity_id, currency, bookings, guests,
           revenue_amount, cancellations, capacity, occupancy_guests
      FROM daily_stats_recomputed() r
     WHERE r.organization_id = p_organization_id;
  END IF;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END
$$;
