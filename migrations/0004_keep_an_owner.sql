-- The last-owner rule in the database: a tenant always keeps at least one owner, however its
-- owners leave. DELETE /api/me removes the user and, by ON DELETE CASCADE, every membership of
-- theirs; PATCH and DELETE /api/members/{id} demote or remove one. The handlers still check
-- first, to answer with a helpful 409; this trigger makes the rule hold under concurrency,
-- where a check and the change that follows it are not atomic (two co-owners leaving at once).
--
-- After each statement that updates or deletes owners' memberships, memberships_keep_an_owner()
-- locks the rows of the tenants concerned (FOR NO KEY UPDATE, in id order, so two statements
-- never deadlock over them; foreign-key checks take KEY SHARE and are not blocked) and only
-- then counts the owners left. In READ COMMITTED, the server's isolation level, that count
-- takes a fresh snapshot: of two concurrent departures the second waits for the first to
-- commit, sees it, and is refused. A tenant deleted by the same transaction (the purge, whose
-- cascade removes its memberships) is no longer visible and is not checked.
--
-- The refusal is SQLSTATE 23000 (integrity_constraint_violation, answered 409) naming the
-- constraint memberships_keep_an_owner. No table is added: the RLS lint rules of 0001 hold.

CREATE FUNCTION memberships_keep_an_owner()
  RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
DECLARE
  orphaned uuid;
BEGIN
  PERFORM 1 FROM tenants
    WHERE id IN (SELECT tenant_id FROM old_rows WHERE role = 'owner')
    ORDER BY id
    FOR NO KEY UPDATE;
  SELECT t.id INTO orphaned FROM tenants t
   WHERE t.id IN (SELECT tenant_id FROM old_rows WHERE role = 'owner')
     AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = t.id AND m.role = 'owner')
   ORDER BY t.id
   LIMIT 1;
  IF orphaned IS NOT NULL THEN
    RAISE EXCEPTION 'tenant % would be left without an owner', orphaned
      USING ERRCODE = 'integrity_constraint_violation',
            CONSTRAINT = 'memberships_keep_an_owner';
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION memberships_keep_an_owner() FROM PUBLIC;

CREATE TRIGGER memberships_keep_an_owner_on_delete
  AFTER DELETE ON memberships
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION memberships_keep_an_owner();
CREATE TRIGGER memberships_keep_an_owner_on_update
  AFTER UPDATE ON memberships
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION memberships_keep_an_owner();
