-- Identity, API keys, access grants, and a tamper-evident audit trail (issue 3).

-- ---------------------------------------------------------------------------------------------
-- Users: token versions (a bump revokes every earlier token at once), MFA, single sign-on.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE users
  ADD COLUMN token_version   integer NOT NULL DEFAULT 1 CHECK (token_version >= 1),
  ADD COLUMN totp_secret     text,
  ADD COLUMN totp_enabled    boolean NOT NULL DEFAULT false,
  ADD COLUMN recovery_codes  jsonb NOT NULL DEFAULT '[]'::jsonb,
  ADD COLUMN oidc_subject    text,
  ADD COLUMN deactivated_at  timestamptz,
  ADD COLUMN invited_by      uuid,
  ADD CONSTRAINT users_totp_needs_secret CHECK (NOT totp_enabled OR totp_secret IS NOT NULL);
CREATE UNIQUE INDEX users_oidc_subject_key ON users (oidc_subject) WHERE oidc_subject IS NOT NULL;

-- Refresh tokens: stored as SHA-256 of a 256-bit random secret; a family is one login's chain of
-- rotations. Presenting a used token revokes its whole family.
CREATE TABLE refresh_tokens (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id        uuid NOT NULL REFERENCES users(id),
  family_id      uuid NOT NULL,
  token_hash     text NOT NULL UNIQUE,
  token_version  integer NOT NULL,
  expires_at     timestamptz NOT NULL,
  used_at        timestamptz,
  revoked_at     timestamptz,
  ip             inet,
  user_agent     text,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tokens ON refresh_tokens
  USING (user_id = (SELECT current_app_user_id())) WITH CHECK (user_id = (SELECT current_app_user_id()));

-- Password reset tokens (hashed, single use, short-lived).
CREATE TABLE password_resets (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users(id),
  token_hash  text NOT NULL UNIQUE,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE password_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_resets FORCE ROW LEVEL SECURITY;
CREATE POLICY own_resets ON password_resets
  USING (user_id = (SELECT current_app_user_id())) WITH CHECK (user_id = (SELECT current_app_user_id()));

-- ---------------------------------------------------------------------------------------------
-- API keys: one organization, named permissions, shown once, stored hashed.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE api_keys (
  organization_id  uuid NOT NULL REFERENCES organizations(id),
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  prefix           text NOT NULL CHECK (length(prefix) BETWEEN 8 AND 32),
  secret_hash      text NOT NULL,
  permissions      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(permissions) = 'array'),
  created_by       uuid,
  last_used_at     timestamptz,
  expires_at       timestamptz,
  revoked_at       timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  UNIQUE (organization_id, prefix),
  FOREIGN KEY (organization_id, created_by) REFERENCES users (organization_id, id)
);
CREATE INDEX idx_api_keys_prefix ON api_keys (prefix);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
  USING (organization_id = (SELECT get_my_organization_id()))
  WITH CHECK (organization_id = (SELECT get_my_organization_id()));

-- ---------------------------------------------------------------------------------------------
-- Access grants: the only way a platform admin acts inside an organization.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE access_grants (
  organization_id  uuid NOT NULL REFERENCES organizations(id),
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  admin_user_id    uuid NOT NULL REFERENCES users(id),
  reason           text NOT NULL CHECK (length(reason) BETWEEN 3 AND 500),
  expires_at       timestamptz NOT NULL,
  revoked_at       timestamptz,
  expiry_audited   boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CHECK (expires_at > created_at)
);
CREATE INDEX idx_access_grants_live ON access_grants (admin_user_id, organization_id, expires_at) WHERE revoked_at IS NULL;
ALTER TABLE access_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_grants FORCE ROW LEVEL SECURITY;
-- The platform manages grants; an organization can see who was let in.
CREATE POLICY grant_access ON access_grants
  USING ((SELECT is_platform_admin()) OR organization_id = (SELECT get_my_organization_id()))
  WITH CHECK ((SELECT is_platform_admin()));

-- ---------------------------------------------------------------------------------------------
-- Audit trail: append-only, and each row carries the hash of its predecessor in its chain (one
-- chain per organization, one for the platform), so a changed or removed row is detectable.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE audit_log
  ADD COLUMN actor_label  text,
  ADD COLUMN chain_seq    bigint,
  ADD COLUMN prev_hash    text,
  ADD COLUMN row_hash     text;
CREATE UNIQUE INDEX audit_log_chain ON audit_log ((coalesce(organization_id, '00000000-0000-0000-0000-000000000000'::uuid)), chain_seq);

CREATE FUNCTION audit_row_hash(p_prev_hash text, p_seq bigint, p_org uuid, p_actor uuid, p_actor_type text,
                               p_actor_label text, p_action text, p_target_type text, p_target_id text,
                               p_request_id text, p_ip inet, p_changes jsonb, p_created_at timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
  SELECT encode(sha256(convert_to(concat_ws(chr(31), p_prev_hash, p_seq::text, p_org::text, p_actor::text,
           p_actor_type, p_actor_label, p_action, p_target_type, p_target_id, p_request_id, host(p_ip),
           p_changes::text, (extract(epoch FROM p_created_at) * 1000000)::bigint::text), 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_chain uuid := coalesce(NEW.organization_id, '00000000-0000-0000-0000-000000000000'::uuid);
  v_prev record;
BEGIN
  -- One writer per chain at a time; the lock lasts until the inserting transaction ends.
  PERFORM pg_advisory_xact_lock(hashtextextended('audit:' || v_chain::text, 0));
  SELECT chain_seq, row_hash INTO v_prev FROM audit_log
   WHERE coalesce(organization_id, '00000000-0000-0000-0000-000000000000'::uuid) = v_chain
   ORDER BY chain_seq DESC LIMIT 1;
  NEW.created_at := clock_timestamp();
  NEW.chain_seq := coalesce(v_prev.chain_seq, 0) + 1;
  NEW.prev_hash := coalesce(v_prev.row_hash, '');
  NEW.row_hash := audit_row_hash(NEW.prev_hash, NEW.chain_seq, NEW.organization_id, NEW.actor_id, NEW.actor_type,
                                 NEW.actor_label, NEW.action, NEW.target_type, NEW.target_id, NEW.request_id,
                                 NEW.ip, NEW.changes, NEW.created_at);
  RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_chain();

-- An organization reads all of its own trail; the platform reads its own chain and what platform
-- admins did anywhere (tenant events stay the tenant's, as all tenant data does).
DROP POLICY audit_read ON audit_log;
CREATE POLICY audit_read ON audit_log FOR SELECT
  USING (organization_id = (SELECT get_my_organization_id())
         OR ((SELECT is_platform_admin()) AND (organization_id IS NULL OR actor_type = 'platform')));

-- ---------------------------------------------------------------------------------------------
-- Lookups before a tenant or user is known (SECURITY DEFINER, identifiers only).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION find_refresh_token(p_token_hash text)
RETURNS TABLE (token_id uuid, user_id uuid, organization_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.user_id, u.organization_id FROM refresh_tokens t JOIN users u ON u.id = t.user_id
   WHERE t.token_hash = p_token_hash
$$;

CREATE FUNCTION find_password_reset(p_token_hash text)
RETURNS TABLE (reset_id uuid, user_id uuid, organization_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT r.id, r.user_id, u.organization_id FROM password_resets r JOIN users u ON u.id = r.user_id
   WHERE r.token_hash = p_token_hash
$$;

CREATE FUNCTION find_api_key(p_prefix text)
RETURNS TABLE (organization_id uuid, key_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT k.organization_id, k.id FROM api_keys k WHERE k.prefix = p_prefix
$$;

-- What a token check needs to know about a user, cached by the app and invalidated on change.
CREATE FUNCTION user_auth_state(p_user_id uuid)
RETURNS TABLE (is_active boolean, token_version integer, role text, organization_id uuid, organization_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.is_active, u.token_version, u.role, u.organization_id, o.status
    FROM users u LEFT JOIN organizations o ON o.id = u.organization_id WHERE u.id = p_user_id
$$;

CREATE FUNCTION find_oidc_user(p_subject text, p_email text)
RETURNS TABLE (user_id uuid, organization_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.organization_id FROM users u
   WHERE u.oidc_subject = p_subject OR (u.oidc_subject IS NULL AND u.email = lower(p_email))
   ORDER BY (u.oidc_subject = p_subject) DESC NULLS LAST LIMIT 1
$$;

-- Grants whose end has passed and has not been written to the audit trail yet (the job does).
CREATE FUNCTION organizations_with_ended_grants(p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT DISTINCT g.organization_id FROM access_grants g
   WHERE NOT g.expiry_audited AND (g.expires_at <= now() OR g.revoked_at IS NOT NULL) LIMIT p_limit
$$;

-- Live metrics for the platform's organization list (counts over each tenant; platform only).
CREATE FUNCTION organization_metrics(p_ids uuid[])
RETURNS TABLE (organization_id uuid, venues_count bigint, staff_count bigint, bookings_this_month bigint,
               revenue_this_month bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT o.id,
         (SELECT count(*) FROM venues v WHERE v.organization_id = o.id AND v.status <> 'archived'),
         (SELECT count(*) FROM users u WHERE u.organization_id = o.id AND u.is_active),
         (SELECT count(*) FROM bookings b WHERE b.organization_id = o.id AND b.status <> 'cancelled'
             AND b.created_at >= date_trunc('month', now())),
         (SELECT coalesce(sum(b.total_amount), 0)::bigint FROM bookings b WHERE b.organization_id = o.id
             AND b.status <> 'cancelled' AND b.created_at >= date_trunc('month', now()))
    FROM organizations o WHERE o.id = ANY(p_ids) AND is_platform_admin()
$$;

REVOKE ALL ON FUNCTION find_refresh_token(text), find_password_reset(text), find_api_key(text), user_auth_state(uuid),
  find_oidc_user(text, text), organizations_with_ended_grants(integer), organization_metrics(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION find_refresh_token(text), find_password_reset(text), find_api_key(text),
  user_auth_state(uuid), find_oidc_user(text, text), organizations_with_ended_grants(integer),
  organization_metrics(uuid[]) TO bookingtms_app;
GRANT SELECT, INSERT, UPDATE ON refresh_tokens, password_resets, api_keys, access_grants TO bookingtms_app;
