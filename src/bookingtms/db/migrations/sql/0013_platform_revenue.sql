-- 0013: the platform console's live revenue of an organization, in the organization's currency.
-- 0002's revenue_this_month added up total_amount across every currency (unpaid checkouts
-- included), then stood beside the organization's one currency. Now it is the revenue of the
-- bookings made this month as the dashboard's roll-ups define it (daily_stats_revenue: confirmed
-- bookings' totals net of refunds, and the money kept on cancelled ones), in the organization's
-- own currency. bookings_this_month counts what the plan's max_bookings limits
-- (platform/limits.py): bookings not cancelled, made since the month began in UTC.
CREATE OR REPLACE FUNCTION organization_metrics(p_ids uuid[])
RETURNS TABLE (organization_id uuid, venues_count bigint, staff_count bigint, bookings_this_month bigint,
               revenue_this_month bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id,
         (SELECT count(*) FROM venues v WHERE v.organization_id = o.id AND v.status <> 'archived'),
         (SELECT count(*) FROM users u WHERE u.organization_id = o.id AND u.is_active),
         (SELECT count(*) FROM bookings b WHERE b.organization_id = o.id AND b.status <> 'cancelled'
             AND b.created_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')),
         (SELECT coalesce(sum(daily_stats_revenue(b.status, b.payment_status, b.total_amount, b.refund_amount)), 0)::bigint
            FROM bookings b WHERE b.organization_id = o.id AND b.currency = o.currency
             AND b.created_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'))
    FROM organizations o WHERE o.id = ANY(p_ids) AND is_platform_admin()
$$;
