-- Outbound webhooks (HSEA-074): each tenant's endpoints, one delivery per event and endpoint,
-- and every attempt of a delivery. All three are tenant-owned (the rule of 0001's header).

CREATE TABLE webhook_endpoints (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
  -- Empty: every event type.
  event_types text[] NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  -- The signing secrets, sealed with a key derived from HSEA_SECRET_KEY; never plain text.
  secret_sealed text NOT NULL,
  previous_secret_sealed text,
  previous_secret_expires_at timestamptz,
  -- Since when every attempt failed (NULL after a success); past the limit it is disabled.
  failing_since timestamptz,
  disabled_at timestamptz,
  disabled_reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO hsea_app_privileges;

-- One row per (endpoint, event): the body sent on every attempt, so retries send the same
-- bytes and the same webhook-id (the event id) even after the event is pruned.
CREATE TABLE webhook_deliveries (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  endpoint_id uuid NOT NULL,
  event_id uuid NOT NULL,
  event_type text NOT NULL,
  body text NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
  attempts int NOT NULL DEFAULT 0,
  last_status_code int,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, endpoint_id, event_id),
  FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id)
    ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id);
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO hsea_app_privileges;

-- The delivery log: one row per HTTP attempt.
CREATE TABLE webhook_attempts (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  delivery_id uuid NOT NULL,
  endpoint_id uuid NOT NULL,
  event_id uuid NOT NULL,
  attempt int NOT NULL,
  status_code int,
  duration_ms int NOT NULL,
  response_body text NOT NULL DEFAULT '' CHECK (octet_length(response_body) <= 1024),
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
    ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (tenant_id, delivery_id, id);
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- Append-only for the application.
GRANT SELECT, INSERT ON webhook_attempts TO hsea_app_privileges;

-- Finished deliveries (and their attempts) older than p_days go, in every tenant; the daily
-- webhooks-prune task calls it.
CREATE FUNCTION webhook_deliveries_prune(p_days int) RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH gone AS (
    DELETE FROM webhook_deliveries
    WHERE status IN ('delivered', 'failed')
      AND updated_at < now() - make_interval(days => GREATEST(p_days, 1))
    RETURNING 1)
  SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION webhook_deliveries_prune(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_deliveries_prune(int) TO hsea_app_privileges;
