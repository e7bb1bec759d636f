-- Foundation: the tenant registry and the row-level-security pattern every tenant-owned
-- table follows (see docs/ARCHITECTURE.md, "Tenant isolation"):
--   * tenant_id uuid NOT NULL, first column of the primary key or of an index;
--   * ALTER TABLE ... ENABLE ROW LEVEL SECURITY and FORCE ROW LEVEL SECURITY;
--   * one policy FOR ALL with USING and WITH CHECK on the transaction's tenant:
--       tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
--   * privileges granted to hsea_app_privileges table by table, only what the server needs.
-- `hsea migrate` refuses a schema where a table holding tenant_id breaks this rule.

CREATE TABLE tenants (
  id uuid PRIMARY KEY,
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The tenant registry is keyed by id rather than tenant_id: a tenant context sees only its own
-- row. Creating a tenant sets app.tenant_id to the new id first.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants FOR ALL
  USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON tenants TO hsea_app_privileges;
