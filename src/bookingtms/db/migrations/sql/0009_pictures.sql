-- 0009: pictures of venues and activities (issue 6 item 6), and the venues the platform console
-- lists on an organization's page.
--
-- image_url is the picture's path on this site (`/media/<organization id>/<sha256>.webp`); its
-- thumbnail sits beside it (`...-thumb.webp`). Only the upload routes write it.
ALTER TABLE venues ADD COLUMN image_url text
  CONSTRAINT venues_image_url_shape CHECK (length(image_url) <= 300 AND image_url ~ '^/media/[A-Za-z0-9._/-]+$');
ALTER TABLE activities ADD COLUMN image_url text
  CONSTRAINT activities_image_url_shape CHECK (length(image_url) <= 300 AND image_url ~ '^/media/[A-Za-z0-9._/-]+$');

-- What the platform team sees of an organization's venues without an access grant: what the
-- widget shows the public anyway (name, place, time zone) and the status. Nothing else.
CREATE FUNCTION organization_venues(p_org uuid)
RETURNS TABLE (id uuid, name text, slug text, timezone text, city text, country text, status text,
               created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT v.id, v.name, v.slug, v.timezone, v.city, v.country, v.status, v.created_at
    FROM venues v
   WHERE v.organization_id = p_org AND is_platform_admin()
   ORDER BY v.status = 'archived', v.name, v.id
$$;

-- Who owns it (the platform created that account) and whether they have signed in yet: what
-- onboarding support needs to see. Not the password state beyond that, nor anyone else.
CREATE FUNCTION organization_owner(p_org uuid)
RETURNS TABLE (id uuid, email text, full_name text, must_change_password boolean, last_login_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.email, u.full_name, u.must_change_password, u.last_login_at
    FROM organizations o JOIN users u ON u.id = o.owner_id AND u.organization_id = o.id
   WHERE o.id = p_org AND is_platform_admin()
$$;

REVOKE ALL ON FUNCTION organization_venues(uuid), organization_owner(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION organization_venues(uuid), organization_owner(uuid) TO bookingtms_app;
