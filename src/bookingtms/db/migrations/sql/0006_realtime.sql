-- 0006: every change of a session's availability is announced with NOTIFY on one channel,
-- `session_availability`, for the Server-Sent Events of GET /v1/public/venues/{key}/events.
--
-- NOTIFY is transactional: it is delivered when the booking transaction commits and dropped when
-- it rolls back, so listeners only ever hear committed capacity. The trigger runs inside the
-- booking transaction, so it does nothing but build one small JSON object (about 330 bytes, far
-- below NOTIFY's 8000-byte limit) from the row itself: no query, no lock.
--
-- Payload: {organization_id, venue_id, session_id, activity_id, start_time, capacity_total,
-- capacity_remaining, is_closed}. start_time is UTC in the form the API answers
-- ("2026-05-01T14:00:00+00:00"), whatever the writing connection's TimeZone. A deleted session
-- (a schedule change removes sessions nothing ever referred to) is announced as closed.
--
-- Bulk loads skip it like every trigger with `session_replication_role = replica` (bench seed
-- does), or with `ALTER TABLE activity_sessions DISABLE TRIGGER activity_sessions_notify`: a load
-- of millions of sessions in one transaction would otherwise overflow the 8 GB NOTIFY queue.

CREATE FUNCTION notify_session_availability() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
  s activity_sessions;
BEGIN
  IF TG_OP = 'DELETE' THEN
    s := OLD;
    s.is_closed := true;
  ELSE
    s := NEW;
  END IF;
  PERFORM pg_notify('session_availability', json_build_object(
    'organization_id', s.organization_id,
    'venue_id', s.venue_id,
    'session_id', s.id,
    'activity_id', s.activity_id,
    'start_time', to_char(s.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00',
    'capacity_total', s.capacity_total,
    'capacity_remaining', s.capacity_remaining,
    'is_closed', s.is_closed)::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER activity_sessions_notify
  AFTER INSERT OR DELETE ON activity_sessions
  FOR EACH ROW EXECUTE FUNCTION notify_session_availability();

-- Only real availability changes: not a version bump, a price or an updated_at alone.
CREATE TRIGGER activity_sessions_notify_update
  AFTER UPDATE OF capacity_remaining, capacity_total, is_closed ON activity_sessions
  FOR EACH ROW
  WHEN (OLD.capacity_remaining IS DISTINCT FROM NEW.capacity_remaining
        OR OLD.capacity_total IS DISTINCT FROM NEW.capacity_total
        OR OLD.is_closed IS DISTINCT FROM NEW.is_closed)
  EXECUTE FUNCTION notify_session_availability();
