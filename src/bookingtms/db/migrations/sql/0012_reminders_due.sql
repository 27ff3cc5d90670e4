-- 0012: which bookings are due a reminder, said once. Until now it was written twice: in
-- organizations_with_reminders_due() (which organizations the reminder job runs for) and in the
-- job's per-organization step (which of their bookings it reminds); when the two differed
-- (0004-0010), organizations were found round after round that the step never served.
-- bookings_due_reminder() is that one definition. It is plain SQL, STABLE and SECURITY INVOKER
-- with no settings of its own, so the planner inlines it into each caller's query (the caller's
-- own conditions, such as the organization, reach its indexes) and row-level security applies to
-- whoever calls it: the job's tenant transaction sees its own organization's bookings only.
CREATE FUNCTION bookings_due_reminder(p_from timestamptz, p_until timestamptz)
RETURNS TABLE (organization_id uuid, booking_id uuid, start_time timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT b.organization_id, b.id, s.start_time FROM public.bookings b
    JOIN public.activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id
   WHERE b.status = 'confirmed' AND b.reminder_sent_at IS NULL
     -- the session's local day (booking_date) lies within 12 hours before to 14 hours after its
     -- UTC day: only the bookings of those days are read (idx_bookings_reminder_day), not history
     AND b.booking_date BETWEEN ((p_from - interval '12 hours') AT TIME ZONE 'UTC')::date
                            AND ((p_until + interval '14 hours') AT TIME ZONE 'UTC')::date
     AND s.start_time > p_from AND s.start_time <= p_until
     -- booked within the last day before the session: the confirmation is the reminder
     AND b.created_at <= s.start_time - interval '24 hours'
$$;

CREATE OR REPLACE FUNCTION organizations_with_reminders_due(p_from timestamptz, p_until timestamptz, p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT organization_id FROM bookings_due_reminder(p_from, p_until) LIMIT p_limit
$$;
