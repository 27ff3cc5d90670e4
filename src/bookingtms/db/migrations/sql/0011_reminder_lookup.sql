-- 0011: the reminder job's search for organizations with reminders due, made cheap and consistent.
-- 0004's version walked every session of the next 24 hours across all tenants (1.6 s every round
-- on the enterprise data: a quarter of a core with no traffic at all), and it also found the
-- bookings made within a day of their session, which the job never reminds (their confirmation is
-- the reminder), so it found their organizations round after round.
-- Now it starts from the bookings still to remind by the session's local day (booking_date): an
-- instant's local date is its UTC date somewhere from 12 hours before to 14 hours after.
-- The same conditions pick the bookings in the job's per-organization step (notifications/jobs.py,
-- _TAKE_DUE_REMINDERS): the two must agree.
CREATE INDEX idx_bookings_reminder_day ON bookings (booking_date)
  WHERE status = 'confirmed' AND reminder_sent_at IS NULL;

CREATE OR REPLACE FUNCTION organizations_with_reminders_due(p_from timestamptz, p_until timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.organization_id FROM bookings b
    JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
   WHERE b.status = 'confirmed' AND b.reminder_sent_at IS NULL
     AND b.booking_date BETWEEN ((p_from - interval '12 hours') AT TIME ZONE 'UTC')::date
                            AND ((p_until + interval '14 hours') AT TIME ZONE 'UTC')::date
     AND s.start_time > p_from AND s.start_time <= p_until
     AND b.created_at <= s.start_time - interval '24 hours'
   LIMIT p_limit
$$;
