-- 0010: the widget's embed-key lookup also says the venue's time zone, so a cached lookup is
-- enough to turn an availability request's dates into the venue's local days (the per-day
-- availability cache) without reading the venue first.
DROP FUNCTION venue_by_embed_key(text);
CREATE FUNCTION venue_by_embed_key(p_embed_key text)
RETURNS TABLE (organization_id uuid, venue_id uuid, organization_status text, timezone text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT v.organization_id, v.id, o.status, v.timezone
    FROM venues v JOIN organizations o ON o.id = v.organization_id
   WHERE v.embed_key = p_embed_key AND v.status = 'active'
   LIMIT 1
$$;
REVOKE ALL ON FUNCTION venue_by_embed_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION venue_by_embed_key(text) TO bookingtms_app;
