-- Platform administration (issue 3, item 7): platform-wide statistics.
-- Row-level security hides every tenant's rows from the bare platform context (a platform admin
-- sees tenant data only under an access grant), so the totals come from one SECURITY DEFINER
-- function that returns aggregates only, never a row, and only to a platform context.

CREATE FUNCTION platform_stats()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  WITH month AS (
    -- the calendar month in UTC, like the plans' monthly booking limit
    SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS start
  ), orgs AS (
    SELECT jsonb_build_object(
             'total', count(*),
             'by_status', jsonb_build_object(
               'active', count(*) FILTER (WHERE o.status = 'active'),
               'suspended', count(*) FILTER (WHERE o.status = 'suspended')),
             'by_subscription_status', jsonb_build_object(
               'trial', count(*) FILTER (WHERE o.subscription_status = 'trial'),
               'active', count(*) FILTER (WHERE o.subscription_status = 'active'),
               'past_due', count(*) FILTER (WHERE o.subscription_status = 'past_due'),
               'suspended', count(*) FILTER (WHERE o.subscription_status = 'suspended'),
               'cancelled', count(*) FILTER (WHERE o.subscription_status = 'cancelled'))) AS j
      FROM organizations o
  ), venue_totals AS (
    SELECT jsonb_build_object('total', count(*),
                              'active', count(*) FILTER (WHERE v.status = 'active')) AS j
      FROM venues v WHERE v.status <> 'archived'
  ), per_currency AS (
    SELECT b.currency,
           count(*) AS bookings_all_time,
           count(*) FILTER (WHERE b.created_at >= m.start) AS bookings_this_month,
           coalesce(sum(b.total_amount), 0)::bigint AS revenue_all_time,
           coalesce(sum(b.total_amount) FILTER (WHERE b.created_at >= m.start), 0)::bigint AS revenue_this_month
      FROM bookings b CROSS JOIN month m
     WHERE b.status <> 'cancelled'
     GROUP BY b.currency
  ), booking_totals AS (
    SELECT jsonb_build_object(
             'this_month', coalesce(sum(bookings_this_month), 0)::bigint,
             'all_time', coalesce(sum(bookings_all_time), 0)::bigint) AS bookings,
           coalesce(jsonb_agg(jsonb_build_object(
             'currency', currency, 'this_month', revenue_this_month, 'all_time', revenue_all_time)
             ORDER BY currency) FILTER (WHERE currency IS NOT NULL), '[]'::jsonb) AS revenue
      FROM per_currency
  ), user_totals AS (
    SELECT jsonb_build_object(
             'active', count(*) FILTER (WHERE u.is_active),
             'signed_in_last_30_days', count(*) FILTER (WHERE u.is_active AND u.last_login_at >= now() - interval '30 days'))
           AS j
      FROM users u WHERE u.organization_id IS NOT NULL
  )
  SELECT jsonb_build_object(
           'organizations', orgs.j, 'venues', venue_totals.j, 'bookings', booking_totals.bookings,
           'revenue', booking_totals.revenue, 'users', user_totals.j, 'month_start', month.start)
    FROM orgs, venue_totals, booking_totals, user_totals, month
   WHERE is_platform_admin()
$$;

REVOKE ALL ON FUNCTION platform_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_stats() TO bookingtms_app;

-- The plan's monthly booking limit is checked on every hold and staff booking: one count of the
-- organization's live bookings since the start of the month, answered from this index alone
-- (index-only scan) instead of visiting each booking row to read its status.
CREATE INDEX idx_bookings_org_created_live ON bookings (organization_id, created_at) WHERE status <> 'cancelled';
