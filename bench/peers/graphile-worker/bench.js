// The graphile-worker peer of HSEA's job queue (bench/run, bench_jobs): one round of the
// throughput benchmark. Starts a worker with a no-op task and CONCURRENCY jobs in flight, lets
// it go idle, adds N jobs in one statement (graphile_worker.add_jobs), and measures from just
// before that statement until the N-th job is complete: its task has returned and the queue
// table is empty (graphile-worker deletes a job when it completes). Prints one JSON line.
//
//   DATABASE_URL=postgresql://... N=20000 CONCURRENCY=32 node bench.js
//
// Options (environment): POOL [CONCURRENCY; graphile-worker warns when maxPoolSize is smaller
// than concurrency], IDLE_MS [1000, how long the started worker sits idle before the enqueue],
// LOCAL_QUEUE_SIZE [-1, off: graphile-worker's default], COMPLETE_JOB_BATCH_DELAY [-1, off:
// the default]. Success logging is off (NO_LOG_SUCCESS=1, set below), as HSEA logs no line per
// job.
"use strict";
process.env.NO_LOG_SUCCESS = "1";
const { run, Logger } = require("graphile-worker");
const { Pool } = require("pg");

const env = (name, fallback) => {
  const v = process.env[name];
  return v === undefined || v === "" ? fallback : v;
};
const connectionString = env("DATABASE_URL", null);
if (!connectionString) {
  console.error("DATABASE_URL is required");
  process.exit(2);
}
const N = parseInt(env("N", "20000"), 10);
const concurrency = parseInt(env("CONCURRENCY", "32"), 10);
const pool = parseInt(env("POOL", String(concurrency)), 10);
const idleMs = parseInt(env("IDLE_MS", "1000"), 10);
const localQueueSize = parseInt(env("LOCAL_QUEUE_SIZE", "-1"), 10);
const completeJobBatchDelay = parseInt(env("COMPLETE_JOB_BATCH_DELAY", "-1"), 10);

// Warnings and errors only (no per-job lines).
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let done = 0;
  let lastTaskAt = 0n;
  let resolveAll;
  const allRan = new Promise((resolve) => (resolveAll = resolve));
  const runner = await run({
    connectionString,
    concurrency,
    maxPoolSize: pool,
    noHandleSignals: false,
    logger,
    preset: {
      worker: {
        ...(localQueueSize > 1 ? { localQueue: { size: localQueueSize } } : {}),
        completeJobBatchDelay,
      },
    },
    taskList: {
      noop: async () => {
        if (++done === N) {
          lastTaskAt = process.hrtime.bigint();
          resolveAll();
        }
      },
    },
  });

  const client = new Pool({ connectionString, max: 1 });
  try {
    await client.query("SELECT 1");
    // Left from an interrupted round: none may count.
    await client.query("DELETE FROM graphile_worker._private_jobs");
    // No round inherits the dead rows of the one before (bench/run vacuums HSEA's table too).
    await client.query("VACUUM graphile_worker._private_jobs");
    done = 0;
    await sleep(idleMs);

    // The enqueue: one statement, autocommit.
    const t0 = process.hrtime.bigint();
    await client.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(
         (SELECT array_agg(ROW('noop', '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)
                             ::graphile_worker.job_spec)
            FROM generate_series(1, $1::int)))`,
      [N],
    );
    const tEnqueued = process.hrtime.bigint();
    const timeout = setTimeout(() => {
      console.error(`graphile-worker ran ${done} of ${N} jobs within 600 s`);
      process.exit(1);
    }, 600000);
    await allRan;
    // The last completion is written after its task returns: wait until the queue is empty.
    let left;
    for (;;) {
      left = Number((await client.query("SELECT count(*) AS n FROM graphile_worker._private_jobs")).rows[0].n);
      if (left === 0) break;
      await sleep(1);
    }
    const tEnd = process.hrtime.bigint();
    clearTimeout(timeout);
    const seconds = Number(tEnd - t0) / 1e9;
    console.log(
      JSON.stringify({
        peer: "graphile-worker",
        jobs: N,
        ran: done,
        concurrency,
        max_pool_size: pool,
        local_queue_size: localQueueSize,
        complete_job_batch_delay: completeJobBatchDelay,
        enqueue_seconds: Number(tEnqueued - t0) / 1e9,
        last_task_seconds: Number(lastTaskAt - t0) / 1e9,
        seconds,
        jobs_per_second: N / seconds,
      }),
    );
  } finally {
    await client.end();
    await runner.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
