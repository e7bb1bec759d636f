-- Periodic tasks that run once per cluster (daily maintenance, later the job scheduler's
-- periods): one row per task, the start of its latest run and the node that ran it. A node
-- claims a period with one conditional upsert (src/db/module.cpp), so two nodes whose timers
-- fire together cannot both run it. Platform data: no tenant_id, no personal data.
CREATE TABLE periodic_task_runs (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
  last_started_at timestamptz NOT NULL,
  node text NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON periodic_task_runs TO hsea_app_privileges;

-- Audit entries are written by more than requests now: jobs, Stripe webhooks and operator
-- commands name themselves as the actor.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
  CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous', 'job', 'stripe_webhook',
                        'operator'));
