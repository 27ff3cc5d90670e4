-- 0007: the platform admin's view of the statements that cost the database most
-- (GET /v1/platform/query-stats, from pg_stat_statements), and the job lag shown by /metrics.

-- pg_stat_statements only works when the server preloads it (shared_preload_libraries), and it
-- is a contrib module some builds lack (the embedded pgserver's does). Without it, nothing is
-- created and query_stats() answers {available: false, reason}.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') THEN
    RAISE NOTICE 'pg_stat_statements is not installed on this server (a contrib module): query statistics stay off';
  ELSIF position('pg_stat_statements' IN current_setting('shared_preload_libraries')) = 0 THEN
    RAISE NOTICE 'pg_stat_statements is not in shared_preload_libraries: query statistics stay off';
  ELSE
    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'not allowed to create pg_stat_statements (%): query statistics stay off', SQLERRM;
END
$$;

-- The top statements of this database, for a platform context only. Query texts are normalized
-- by pg_stat_statements (constants become $1, $2, ...), so they carry no tenant's values.
-- PL/pgSQL with dynamic SQL: the view may be in any schema, or appear only after a later
-- CREATE EXTENSION by the DBA.
CREATE FUNCTION query_stats(p_limit integer, p_order text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  ext_schema text;
  statements jsonb;
BEGIN
  IF NOT is_platform_admin() THEN
    RAISE EXCEPTION 'query statistics are for the platform team' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_order IS NULL OR p_order NOT IN ('total_time', 'mean_time', 'calls') THEN
    RAISE EXCEPTION 'order must be total_time, mean_time or calls' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pg_stat_statements';
  IF ext_schema IS NULL THEN
    RETURN jsonb_build_object('available', false, 'statements', '[]'::jsonb, 'reason',
      'pg_stat_statements is not enabled on this database server (it must be installed and listed in '
      'shared_preload_libraries before the migrations run)');
  END IF;
  EXECUTE format($q$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
             'queryid', top.queryid::text, 'query', top.query, 'calls', top.calls,
             'total_time_ms', round(top.total_exec_time::numeric, 3),
             'mean_time_ms', round(top.mean_exec_time::numeric, 3),
             'rows', top.rows, 'shared_blks_hit', top.shared_blks_hit, 'shared_blks_read', top.shared_blks_read)
             ORDER BY top.position), '[]'::jsonb)
      FROM (SELECT s.*, row_number() OVER (ORDER BY %1$s DESC, s.queryid) AS position
              FROM %2$I.pg_stat_statements s
             WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY %1$s DESC, s.queryid
             LIMIT $1) top
  $q$, CASE p_order WHEN 'total_time' THEN 's.total_exec_time' WHEN 'mean_time' THEN 's.mean_exec_time'
                    ELSE 's.calls' END, ext_schema)
    INTO statements USING least(greatest(coalesce(p_limit, 20), 1), 100);
  RETURN jsonb_build_object('available', true, 'order', p_order, 'statements', statements);
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  -- the extension exists but the server was started without preloading it
  RETURN jsonb_build_object('available', false, 'statements', '[]'::jsonb, 'reason', SQLERRM);
END
$$;

REVOKE ALL ON FUNCTION query_stats(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION query_stats(integer, text) TO bookingtms_app;

-- How late each background job is: the age of the oldest item it should already have handled
-- (0 when none waits). Three numbers across all tenants, no row; each answered from a partial
-- index on the due time (idx_reservations_held_expiry, idx_outbox_pending,
-- idx_bookings_pending_payment).
CREATE FUNCTION job_lag()
RETURNS TABLE (job text, lag_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT 'expire_holds', coalesce(extract(epoch FROM now() - min(r.expires_at)), 0)::float8
    FROM slot_reservations r WHERE r.status = 'held' AND r.expires_at <= now()
  UNION ALL
  SELECT 'deliver_notifications', coalesce(extract(epoch FROM now() - min(n.next_attempt_at)), 0)::float8
    FROM notification_outbox n
   WHERE n.status = 'pending' AND n.next_attempt_at <= now()
     AND (n.locked_until IS NULL OR n.locked_until <= now())
  UNION ALL
  SELECT 'release_lapsed_payments', coalesce(extract(epoch FROM now() - min(b.payment_expires_at)), 0)::float8
    FROM bookings b WHERE b.status = 'pending_payment' AND b.payment_expires_at <= now()
$$;

REVOKE ALL ON FUNCTION job_lag() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_lag() TO bookingtms_app;
