-- 0005: dashboard statistics (issue 5, item 8). GET /v1/dashboard/stats reads daily roll-ups,
-- never bookings: one row per (organization, local day, venue, activity, currency), kept by
-- triggers in the very transaction that changes a booking or a session.
--
-- What a row holds, and what `rebuild_daily_stats()` and `bookingtms doctor` recompute:
--   bookings, guests    confirmed bookings and their guests, on the booking's day (booking_date:
--                       the session's local date in the venue's zone when it was booked);
--                       pending_payment counts once paid, a cancelled booking no longer counts
--   revenue_amount      what the business keeps, net of refunds (minor units, in `currency`):
--                       a confirmed booking's total less refunds; a cancelled booking's only if
--                       money was taken (Stripe) and not all of it refunded
--   cancellations       cancelled bookings, except unpaid online checkouts the system released
--                       (cancel_reason 'payment_expired', cancelled_by 'system': never confirmed)
--   capacity            capacity_total of the open sessions starting that local day
--   occupancy_guests    confirmed guests of those open sessions (occupancy = this / capacity,
--                       so a closed session is out of both sides of the ratio)
-- Rows are only ever changed by deltas (INSERT ... ON CONFLICT DO UPDATE), so concurrent
-- bookings never lose each other's counts. A row whose figures all drop to zero stays (it means
-- the same as no row).

CREATE TABLE daily_stats (
  organization_id   uuid NOT NULL,
  day               date NOT NULL,
  venue_id          uuid NOT NULL,
  activity_id       uuid NOT NULL,
  currency          char(3) NOT NULL,
  bookings          integer NOT NULL DEFAULT 0,
  guests            integer NOT NULL DEFAULT 0,
  revenue_amount    bigint NOT NULL DEFAULT 0,
  cancellations     integer NOT NULL DEFAULT 0,
  capacity          integer NOT NULL DEFAULT 0,
  occupancy_guests  integer NOT NULL DEFAULT 0,
  -- (organization, day) first: the dashboard's range read and the triggers' upserts share it.
  PRIMARY KEY (organization_id, day, venue_id, activity_id, currency)
);
-- Derived data without foreign keys: every row comes from a booking or session that has them,
-- and checking them on each upsert (and on millions of rows in a rebuild) would buy nothing.

ALTER TABLE daily_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE daily_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON daily_stats FOR SELECT
  USING (organization_id = (SELECT get_my_organization_id()));
-- The app only reads; the triggers below (SECURITY DEFINER, owned by the migration role) write.
GRANT SELECT ON daily_stats TO bookingtms_app;


-- ---------------------------------------------------------------------------------------------
-- What one booking contributes. Used by the triggers and by the recomputation alike, so the
-- two cannot disagree on the rules. Plain SQL expressions: inlined into the queries that use them.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION daily_stats_booked(p_status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_status = 'confirmed' THEN 1 ELSE 0 END
$$;

CREATE FUNCTION daily_stats_revenue(p_status text, p_payment_status text, p_total bigint, p_refunded bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_status = 'confirmed'
                OR (p_status = 'cancelled' AND p_payment_status IN ('paid', 'partially_refunded', 'refunded'))
              THEN p_total - p_refunded ELSE 0 END
$$;

CREATE FUNCTION daily_stats_cancelled(p_status text, p_cancelled_by text, p_cancel_reason text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_status = 'cancelled'
               AND NOT (p_cancelled_by IS NOT DISTINCT FROM 'system' AND p_cancel_reason IS NOT DISTINCT FROM 'payment_expired')
              THEN 1 ELSE 0 END
$$;


-- ---------------------------------------------------------------------------------------------
-- What the roll-ups must hold, recomputed from bookings and sessions (all-zero rows left out).
-- rebuild_daily_stats() writes it; bookingtms doctor compares it with daily_stats. A plain SQL
-- function (not a view, which would look like a tenant table without row-level security): the
-- planner inlines it, so a filter on organization_id reaches the tables' indexes.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION daily_stats_recomputed()
RETURNS TABLE (organization_id uuid, day date, venue_id uuid, activity_id uuid, currency char(3), bookings integer,
               guests integer, revenue_amount bigint, cancellations integer, capacity integer, occupancy_guests integer)
LANGUAGE sql STABLE AS $$
SELECT organization_id, day, venue_id, activity_id, currency,
       sum(bookings)::integer AS bookings, sum(guests)::integer AS guests,
       sum(revenue_amount)::bigint AS revenue_amount, sum(cancellations)::integer AS cancellations,
       sum(capacity)::integer AS capacity, sum(occupancy_guests)::integer AS occupancy_guests
  FROM (
    -- each booking's own figures, on its day
    SELECT b.organization_id, b.booking_date AS day, b.venue_id, b.activity_id, b.currency,
           daily_stats_booked(b.status) AS bookings, daily_stats_booked(b.status) * b.guest_count AS guests,
           daily_stats_revenue(b.status, b.payment_status, b.total_amount, b.refund_amount) AS revenue_amount,
           daily_stats_cancelled(b.status, b.cancelled_by, b.cancel_reason) AS cancellations,
           0 AS capacity, 0 AS occupancy_guests
      FROM bookings b
    UNION ALL
    -- the capacity of open sessions, on the session's local day
    SELECT s.organization_id, (s.start_time AT TIME ZONE v.timezone)::date, s.venue_id, s.activity_id, s.currency,
           0, 0, 0, 0, s.capacity_total, 0
      FROM activity_sessions s
      JOIN venues v ON v.organization_id = s.organization_id AND v.id = s.venue_id
     WHERE NOT s.is_closed
    UNION ALL
    -- the confirmed guests in those open sessions
    SELECT s.organization_id, (s.start_time AT TIME ZONE v.timezone)::date, s.venue_id, s.activity_id, s.currency,
           0, 0, 0, 0, 0, b.guest_count
      FROM bookings b
      JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
      JOIN venues v ON v.organization_id = s.organization_id AND v.id = s.venue_id
     WHERE b.status = 'confirmed' AND NOT s.is_closed
  ) c
 GROUP BY organization_id, day, venue_id, activity_id, currency
HAVING (sum(bookings), sum(guests), sum(revenue_amount), sum(cancellations), sum(capacity), sum(occupancy_guests))
       <> (0, 0, 0, 0, 0, 0)
$$;
REVOKE ALL ON FUNCTION daily_stats_recomputed() FROM PUBLIC;


-- ---------------------------------------------------------------------------------------------
-- rebuild_daily_stats([organization]): recomputes the roll-ups set-based (after a bulk load with
-- triggers off, e.g. `bookingtms bench seed`; or after a venue changes its time zone). Run by the
-- owner. All organizations: TRUNCATE and one INSERT ... SELECT ... GROUP BY. One organization:
-- its rows are replaced under a lock that holds the triggers' writes back meanwhile, so no
-- booking committed during the rebuild is counted twice or lost. Returns the rows written.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION rebuild_daily_stats(p_organization_id uuid DEFAULT NULL) RETURNS bigint
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
    LOCK TABLE daily_stats IN SHARE ROW EXCLUSIVE MODE;
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
REVOKE ALL ON FUNCTION rebuild_daily_stats(uuid) FROM PUBLIC;


-- ---------------------------------------------------------------------------------------------
-- Triggers. Each adds the new row's contribution and takes the old row's away, summed per roll-up
-- row, in one upsert (rows whose sum is zero are skipped). SECURITY DEFINER: the app role cannot
-- write daily_stats itself, and the lookups see the row's own organization only by its keys.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION daily_stats_booking_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO daily_stats AS d (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                                revenue_amount, cancellations, capacity, occupancy_guests)
  SELECT organization_id, day, venue_id, activity_id, currency, sum(bookings), sum(guests),
         sum(revenue_amount), sum(cancellations), 0, sum(occupancy_guests)
    FROM (
      -- the booking's own figures on its day (OLD is NULL on INSERT, NEW on DELETE)
      SELECT (x.b).organization_id, (x.b).booking_date AS day, (x.b).venue_id, (x.b).activity_id,
             (x.b).currency,
             x.sign * daily_stats_booked((x.b).status) AS bookings,
             x.sign * daily_stats_booked((x.b).status) * (x.b).guest_count AS guests,
             x.sign * daily_stats_revenue((x.b).status, (x.b).payment_status, (x.b).total_amount,
                                          (x.b).refund_amount) AS revenue_amount,
             x.sign * daily_stats_cancelled((x.b).status, (x.b).cancelled_by, (x.b).cancel_reason) AS cancellations,
             0 AS occupancy_guests
        FROM (VALUES (-1, OLD), (1, NEW)) AS x(sign, b)
       WHERE (x.b).organization_id IS NOT NULL
      UNION ALL
      -- its confirmed guests in its session, if that session is open, on the session's day
      SELECT s.organization_id, (s.start_time AT TIME ZONE v.timezone)::date, s.venue_id, s.activity_id,
             s.currency, 0, 0, 0, 0, x.sign * (x.b).guest_count
        FROM (VALUES (-1, OLD), (1, NEW)) AS x(sign, b)
        JOIN activity_sessions s ON s.organization_id = (x.b).organization_id AND s.id = (x.b).session_id
        JOIN venues v ON v.organization_id = s.organization_id AND v.id = s.venue_id
       WHERE (x.b).status = 'confirmed' AND NOT s.is_closed
    ) c
   GROUP BY organization_id, day, venue_id, activity_id, currency
  HAVING (sum(bookings), sum(guests), sum(revenue_amount), sum(cancellations), sum(occupancy_guests))
         <> (0, 0, 0, 0, 0)
  ON CONFLICT (organization_id, day, venue_id, activity_id, currency) DO UPDATE
     SET bookings = d.bookings + EXCLUDED.bookings, guests = d.guests + EXCLUDED.guests,
         revenue_amount = d.revenue_amount + EXCLUDED.revenue_amount,
         cancellations = d.cancellations + EXCLUDED.cancellations,
         occupancy_guests = d.occupancy_guests + EXCLUDED.occupancy_guests;
  RETURN NULL;
END
$$;

CREATE TRIGGER bookings_daily_stats
  AFTER INSERT OR DELETE ON bookings
  FOR EACH ROW EXECUTE FUNCTION daily_stats_booking_changed();

-- Only changes that move a figure: not a check-in, a reminder, a note or updated_at.
CREATE TRIGGER bookings_daily_stats_update
  AFTER UPDATE ON bookings
  FOR EACH ROW
  WHEN ((OLD.status, OLD.payment_status, OLD.guest_count, OLD.total_amount, OLD.refund_amount, OLD.cancelled_by,
         OLD.cancel_reason, OLD.session_id, OLD.venue_id, OLD.activity_id, OLD.booking_date, OLD.currency,
         OLD.organization_id)
        IS DISTINCT FROM
        (NEW.status, NEW.payment_status, NEW.guest_count, NEW.total_amount, NEW.refund_amount, NEW.cancelled_by,
         NEW.cancel_reason, NEW.session_id, NEW.venue_id, NEW.activity_id, NEW.booking_date, NEW.currency,
         NEW.organization_id))
  EXECUTE FUNCTION daily_stats_booking_changed();

CREATE FUNCTION daily_stats_session_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  INSERT INTO daily_stats AS d (organization_id, day, venue_id, activity_id, currency, bookings, guests,
                                revenue_amount, cancellations, capacity, occupancy_guests)
  SELECT organization_id, day, venue_id, activity_id, currency, 0, 0, 0, 0, sum(capacity), sum(occupancy_guests)
    FROM (
      -- an open session offers its capacity_total and holds its confirmed guests on its local day;
      -- they follow it when it closes, reopens or moves (a new session has no bookings yet)
      SELECT (x.s).organization_id, ((x.s).start_time AT TIME ZONE v.timezone)::date AS day, (x.s).venue_id,
             (x.s).activity_id, (x.s).currency, x.sign * (x.s).capacity_total AS capacity,
             x.sign * CASE WHEN TG_OP = 'INSERT' THEN 0 ELSE (
               SELECT coalesce(sum(b.guest_count), 0) FROM bookings b
                WHERE b.organization_id = (x.s).organization_id AND b.session_id = (x.s).id
                  AND b.status = 'confirmed') END AS occupancy_guests
        FROM (VALUES (-1, OLD), (1, NEW)) AS x(sign, s)
        JOIN venues v ON v.organization_id = (x.s).organization_id AND v.id = (x.s).venue_id
       WHERE NOT (x.s).is_closed
    ) c
   GROUP BY organization_id, day, venue_id, activity_id, currency
  HAVING (sum(capacity), sum(occupancy_guests)) <> (0, 0)
  ON CONFLICT (organization_id, day, venue_id, activity_id, currency) DO UPDATE
     SET capacity = d.capacity + EXCLUDED.capacity,
         occupancy_guests = d.occupancy_guests + EXCLUDED.occupancy_guests;
  RETURN NULL;
END
$$;

CREATE TRIGGER activity_sessions_daily_stats
  AFTER INSERT OR DELETE ON activity_sessions
  FOR EACH ROW EXECUTE FUNCTION daily_stats_session_changed();

-- Not on every hold (capacity_remaining, version): only what changes capacity offered or the day.
CREATE TRIGGER activity_sessions_daily_stats_update
  AFTER UPDATE ON activity_sessions
  FOR EACH ROW
  WHEN ((OLD.capacity_total, OLD.is_closed, OLD.start_time, OLD.venue_id, OLD.activity_id, OLD.currency)
        IS DISTINCT FROM
        (NEW.capacity_total, NEW.is_closed, NEW.start_time, NEW.venue_id, NEW.activity_id, NEW.currency))
  EXECUTE FUNCTION daily_stats_session_changed();

-- A venue moving to another time zone moves its sessions' local days: its organization's rows are
-- recomputed (rare, and small for one organization).
CREATE FUNCTION daily_stats_venue_zone_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM rebuild_daily_stats(NEW.organization_id);
  RETURN NULL;
END
$$;

CREATE TRIGGER venues_daily_stats_zone
  AFTER UPDATE OF timezone ON venues
  FOR EACH ROW
  WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
  EXECUTE FUNCTION daily_stats_venue_zone_changed();

-- Roll-ups of whatever is already there.
SELECT rebuild_daily_stats();
