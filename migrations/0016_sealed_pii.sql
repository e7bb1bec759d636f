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
