-- 0013: the platform console's live figures of an organization count what its dashboard counts.
-- 0002's bookings_this_month counted bookings still awaiting payment, and its revenue_this_month
-- added up total_amount across every currency (and unpaid checkouts), then stood beside the
-- organization's one currency. Now: confirmed bookings, and revenue as the dashboard's roll-ups
-- define it (daily_stats_revenue: net of refunds, money kept on cancellations) in the
-- organization's own currency, of the bookings made this month.
CREATE OR REPLACE FUNCTION organization_metrics(p_ids uuid[])
RETURNS TABLE (organization_id uuid, venues_count bigint, staff_count bigint, bookings_this_month bigint,
               revenue_this_month bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id,
         (SELECT count(*) FROM venues v WHERE v.organization_id = o.id AND v.status <> 'archived'),
         (SELECT count(*) FROM users u WHERE u.organization_id = o.id AND u.is_active),
         (SELECT count(*) FROM bookings b WHERE b.organization_id = o.id AND b.status = 'confirmed'
             AND b.created_at >= date_trunc('month', now())),
         (SELECT coalesce(sum(daily_stats_revenue(b.status, b.payment_status, b.total_amount, b.refund_amount)), 0)::bigint
            FROM bookings b WHERE b.organization_id = o.id AND b.currency = o.currency
             AND b.created_at >= date_trunc('month', now()))
    FROM organizations o WHERE o.id = ANY(p_ids) AND is_platform_admin()
$$;
