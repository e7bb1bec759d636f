-- Expired sign-in state is pruned daily (a once-per-cluster job, src/identity/module.cpp):
-- refresh tokens past their expiry (a late one is unknown rather than reused: both are 401), and
-- sessions expired or revoked a week ago (their refresh tokens go with them). Sessions and tokens
-- are user-scoped, so this runs as the schema owner.
CREATE FUNCTION auth_prune_expired() RETURNS TABLE (sessions bigint, refresh_tokens bigint)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
DECLARE
  v_tokens bigint;
  v_sessions bigint;
BEGIN
  DELETE FROM refresh_tokens WHERE expires_at < now();
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  DELETE FROM sessions
   WHERE expires_at < now() - interval '7 days' OR revoked_at < now() - interval '7 days';
  GET DIAGNOSTICS v_sessions = ROW_COUNT;
  RETURN QUERY SELECT v_sessions, v_tokens;
END
$$;
REVOKE ALL ON FUNCTION auth_prune_expired() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_prune_expired() TO hsea_app_privileges;
