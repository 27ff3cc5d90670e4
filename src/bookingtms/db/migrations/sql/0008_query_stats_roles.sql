-- 0008: the platform's view of the top statements leaves out role statements. pg_stat_statements
-- keeps utility statements' text as sent, and `bookingtms migrate` sets the app role's password
-- with ALTER ROLE on every start (now as a SCRAM verifier, never in plain text; still not shown).
CREATE OR REPLACE FUNCTION query_stats(p_limit integer, p_order text)
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
               AND s.query !~* '^\s*(alter|create)\s+(role|user)\M'
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
