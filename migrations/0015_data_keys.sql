-- Personal data at rest (HSEA-047): each tenant and each user has a data key (32 random bytes)
-- that encrypts its personal data (XChaCha20-Poly1305, src/security/pii.cpp). Keys are stored
-- only wrapped (sealed) under a key derived from HSEA_SECRET_KEY, so neither this table nor a
-- dump of the database opens anything without the server's secret. Deleting a key makes what
-- it encrypted unreadable everywhere, old backups included: a purged tenant's or a deleted
-- user's key goes with its row (ON DELETE CASCADE).
--
-- The app role has no rights on the table: it reads wrapped keys and obtains an owner's current
-- key through the functions below. Which rows a key may open is decided where the ciphertext is
-- read (row-level security of the tables holding it), not here.
CREATE TABLE data_keys (
  id uuid PRIMARY KEY DEFAULT uuid_v7(),
  owner_tenant uuid REFERENCES tenants (id) ON DELETE CASCADE,
  owner_user uuid REFERENCES users (id) ON DELETE CASCADE,
  wrapped text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,  -- `hsea keys rotate-data`: no longer used for new data
  CHECK ((owner_tenant IS NULL) <> (owner_user IS NULL))
);
-- One current key per owner.
CREATE UNIQUE INDEX data_keys_current_tenant ON data_keys (owner_tenant)
  WHERE owner_tenant IS NOT NULL AND retired_at IS NULL;
CREATE UNIQUE INDEX data_keys_current_user ON data_keys (owner_user)
  WHERE owner_user IS NOT NULL AND retired_at IS NULL;
REVOKE ALL ON data_keys FROM PUBLIC;

-- The owner's current key; p_wrapped (a fresh key, wrapped) becomes it when there is none.
-- Concurrent callers all get the one that won.
CREATE FUNCTION pii_current_key(p_tenant uuid, p_user uuid, p_wrapped text)
  RETURNS TABLE (id uuid, wrapped text)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
BEGIN
  INSERT INTO data_keys (owner_tenant, owner_user, wrapped)
    VALUES (p_tenant, p_user, p_wrapped) ON CONFLICT DO NOTHING;
  RETURN QUERY SELECT k.id, k.wrapped FROM data_keys k
    WHERE k.retired_at IS NULL AND (k.owner_tenant = p_tenant OR k.owner_user = p_user);
END $$;
REVOKE ALL ON FUNCTION pii_current_key(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_current_key(uuid, uuid, text) TO hsea_app_privileges;

-- Wrapped keys by id, to open what they encrypted (useless without the server's secret).
CREATE FUNCTION pii_data_keys(p_ids uuid[])
  RETURNS TABLE (id uuid, wrapped text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT k.id, k.wrapped FROM data_keys k WHERE k.id = ANY (p_ids) $$;
REVOKE ALL ON FUNCTION pii_data_keys(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_data_keys(uuid[]) TO hsea_app_privileges;
