-- Alerts to the operator (HSEA-035): when a tenant is rate limited above the alert threshold,
-- the platform staff are e-mailed. A job in the alerted tenant's scope cannot see other users'
-- rows (users and platform_staff are row-level secured), so this function returns the staff's
-- ids and their sealed e-mail addresses and names (opened with each user's data key, as for any
-- other mail); it reveals nothing else.
CREATE FUNCTION platform_staff_contacts() RETURNS TABLE (user_id uuid, email text, name text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT u.id, u.email::text, u.name::text FROM platform_staff s JOIN users u ON u.id = s.user_id
        ORDER BY u.id $$;
REVOKE ALL ON FUNCTION platform_staff_contacts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_staff_contacts() TO hsea_app_privileges;
