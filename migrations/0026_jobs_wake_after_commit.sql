-- hsea's own enqueues wake the workers after their transaction commits (this process's workers
-- at once, other nodes through one NOTIFY per burst of commits, sent outside them) instead of
-- through a NOTIFY inside the transaction. PostgreSQL commits notifying transactions one at a
-- time (a lock on the notification queue is held through the commit's WAL flush), which held
-- every enqueuing transaction, such as a Stripe event's intake, to one WAL flush each.
-- A transaction marks itself with the local setting hsea.jobs_wake = 'after_commit' in the
-- statement that enqueues; anything else that inserts or requeues jobs (SQL, an operator, an
-- older node during a rolling deploy) still notifies from the trigger.
CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger
  LANGUAGE plpgsql
AS $$
BEGIN
  IF current_setting('hsea.jobs_wake', true) IS DISTINCT FROM 'after_commit' THEN
    PERFORM pg_notify('hsea_jobs', '');
  END IF;
  RETURN NULL;
END
$$;
