-- Personal data sealed where the product writes it (HSEA-047, docs/encryption.md).
--
-- pii_current_key for a transaction that writes sealed values: a tenant or user created in that
-- same transaction (sign-up) gets its data key there, since data_keys references it. The server
-- caches an owner's current key, but must not cache one that this transaction created: if the
-- transaction rolls back, the key is gone, and anything sealed with it later would never open
-- again. created_here tells it: a row's created_at is now(), the transaction's start, only for a
-- key made by this transaction (a coincidence with another transaction's start just means the
-- key is asked for again).
CREATE FUNCTION pii_current_key_in_tx(p_tenant uuid, p_user uuid, p_wrapped text)
  RETURNS TABLE (id uuid, wrapped text, created_here boolean)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
BEGIN
  INSERT INTO data_keys (owner_tenant, owner_user, wrapped)
    VALUES (p_tenant, p_user, p_wrapped) ON CONFLICT DO NOTHING;
  RETURN QUERY SELECT k.id, k.wrapped, k.created_at = now() FROM data_keys k
    WHERE k.retired_at IS NULL AND (k.owner_tenant = p_tenant OR k.owner_user = p_user);
END $$;
REVOKE ALL ON FUNCTION pii_current_key_in_tx(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_current_key_in_tx(uuid, uuid, text) TO hsea_app_privileges;

-- users.email and users.name are sealed under the user's key (their text is no longer
-- comparable), and look-ups by address go through email_index, the blind index of the
-- normalised address (pii::blind_index("users.email", ...)), which carries the uniqueness.
-- SQL cannot compute it (it needs the server's secret): rows from before have none until
-- `hsea keys rotate-data` seals them and fills it; until then they are found, and kept unique,
-- by their plaintext address (users_plain_email).
ALTER TABLE users DROP CONSTRAINT users_email_key;
ALTER TABLE users DROP CONSTRAINT users_email_check;
ALTER TABLE users DROP CONSTRAINT users_name_check;
ALTER TABLE users ALTER COLUMN email TYPE text;
ALTER TABLE users ADD COLUMN email_index text;
CREATE UNIQUE INDEX users_email_index ON users (email_index);
CREATE UNIQUE INDEX users_plain_email ON users (lower(email)) WHERE email_index IS NULL;

-- A sign-up seals the new user's address under the user's key before the user row exists
-- (the row holds the sealed text): the key's reference to its user is checked at commit.
ALTER TABLE data_keys ALTER CONSTRAINT data_keys_owner_user_fkey DEFERRABLE INITIALLY DEFERRED;

DROP FUNCTION auth_user_by_email(text);
CREATE FUNCTION auth_user_by_email(p_index text, p_email text)
  RETURNS TABLE (id uuid, password_hash text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT id, password_hash FROM users
        WHERE email_index = p_index
           OR (email_index IS NULL AND lower(email) = lower(p_email)) $$;
REVOKE ALL ON FUNCTION auth_user_by_email(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_by_email(text, text) TO hsea_app_privileges;

-- Account tokens' addresses (the one a link was mailed to, or an e-mail change's new one) are
-- sealed under the user's key too; tokens are found by hash, never by address.
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_email_check;
ALTER TABLE account_tokens ALTER COLUMN email TYPE text;

-- Invitations' addresses are sealed under the tenant's key; the one-open-invitation-per-address
-- rule moves onto their blind index (pii::blind_index("invitations.email", ...)). Rows from
-- before sealing keep it by their text until `hsea keys rotate-data` seals and indexes them.
DROP INDEX invitations_open_email;
ALTER TABLE invitations DROP CONSTRAINT invitations_email_check;
ALTER TABLE invitations ALTER COLUMN email TYPE text;
ALTER TABLE invitations ADD COLUMN email_index text;
CREATE UNIQUE INDEX invitations_open_email ON invitations (tenant_id, email_index)
  WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE UNIQUE INDEX invitations_open_plain_email ON invitations (tenant_id, lower(email))
  WHERE email_index IS NULL AND accepted_at IS NULL AND revoked_at IS NULL;
