// The e2e run CTest starts (e2e.web): a fresh database migrated by the real `hsea migrate`, the
// SMTP sink (tests/node/smtp-sink.js), `hsea serve` with the built web UI, then every spec in
// specs/ under `node --test` (one file at a time, each with its own chromium), then cleanup.
//
// Needs HSEA_TEST_DATABASE_ADMIN_URL (scripts/test exports it), HSEA_BINARY and HSEA_WEB_DIR
// (CTest sets them); HSEA_E2E_OUTPUT gets screenshots/ and the server's log.
// Specs named in pending.json need endpoints from branches not merged yet: they are listed as
// NOT RUN, and the run fails if such an endpoint exists (then the spec must run: remove it from
// pending.json).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const source = path.resolve(here, '../..');

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`e2e: ${name} is not set (run through ./scripts/test -R e2e)`);
    process.exit(1);
  }
  return value;
}
const adminUrl = required('HSEA_TEST_DATABASE_ADMIN_URL');
const binary = required('HSEA_BINARY');
const webDir = required('HSEA_WEB_DIR');
const output = process.env.HSEA_E2E_OUTPUT || path.join(source, 'build/e2e-output');
fs.mkdirSync(path.join(output, 'screenshots'), { recursive: true });
if (!fs.existsSync(path.join(webDir, 'index.html'))) {
  console.error(`e2e: ${webDir}/index.html is missing (scripts/build-web builds it)`);
  process.exit(1);
}

const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try {
      await cleanups.pop()();
    } catch (e) {
      console.error('e2e: cleanup:', e.message);
    }
  }
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    await cleanup();
    process.exit(1);
  });
}

function withDatabase(url, db, user, password) {
  const u = new URL(url);
  u.pathname = '/' + db;
  if (user) {
    u.username = user;
    u.password = password;
  }
  return u.toString();
}

function psql(url, sql) {
  const r = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qtAc', sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Starts a process and resolves once a line of its output matches.
function start(command, args, env, ready, logFile) {
  return new Promise((resolve, reject) => {
    const log = fs.createWriteStream(logFile);
    const child = spawn(command, args, { env: { ...process.env, ...env } });
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${command} did not start:\n${seen}`)), 30000);
    const onData = (chunk) => {
      log.write(chunk);
      if (seen === null) return;
      seen += chunk.toString();
      const m = seen.match(ready);
      if (m) {
        clearTimeout(timer);
        seen = null;
        resolve({ child, match: m });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      if (seen !== null) {
        clearTimeout(timer);
        reject(new Error(`${command} exited (${code}) at start:\n${seen}`));
      }
    });
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function main() {
  const suffix = randomBytes(6).toString('hex');
  const dbName = `hsea_e2e_${suffix}`;
  const role = `hsea_app_e2e_${suffix}`;
  psql(adminUrl, `CREATE DATABASE ${dbName}`);
  cleanups.push(async () => {
    psql(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    psql(adminUrl, `DROP ROLE IF EXISTS ${role}`);
  });
  const dbAdmin = withDatabase(adminUrl, dbName);
  const dbApp = withDatabase(adminUrl, dbName, role, randomBytes(12).toString('hex'));
  const migrate = spawnSync(binary, ['migrate'], {
    env: { ...process.env, HSEA_DATABASE_ADMIN_URL: dbAdmin, HSEA_DATABASE_URL: dbApp },
    encoding: 'utf8',
  });
  if (migrate.status !== 0) throw new Error(`hsea migrate: ${migrate.stdout}${migrate.stderr}`);

  const mailFile = path.join(output, 'mail.jsonl');
  fs.rmSync(mailFile, { force: true });
  const sink = await start('node', [path.join(source, 'tests/node/smtp-sink.js'), mailFile], {},
    /listening (\d+)/, path.join(output, 'smtp-sink.log'));
  cleanups.push(() => stop(sink.child));

  // The Stripe emulator (tests/stripe-emulator) for the billing pages; its webhooks go to the
  // server once it listens.
  const stripeSecret = 'whsec_hsea_e2e_emulator_secret';
  const stripe = await start('node',
    [path.join(source, 'tests/stripe-emulator/dist/src/main.js'), '--port', '0'], {},
    /listening (\d+)/, path.join(output, 'stripe-emulator.log'));
  cleanups.push(() => stop(stripe.child));
  const stripeUrl = `http://127.0.0.1:${stripe.match[1]}`;

  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const serverEnv = {
    HSEA_STRIPE_API_BASE: stripeUrl,
    HSEA_STRIPE_SECRET_KEY: 'sk_test_hsea_e2e',
    HSEA_STRIPE_WEBHOOK_SECRET: stripeSecret,
    HSEA_BILLING_SELLER_NAME: 'HSEA e2e Ltd',
    HSEA_ENV: 'test',
    HSEA_HTTP_HOST: '127.0.0.1',
    HSEA_HTTP_PORT: String(port),
    HSEA_PUBLIC_URL: baseUrl,
    HSEA_THREADS: '2',
    HSEA_DB_POOL_SIZE: '4',
    HSEA_SECRET_KEY: 'e2e-secret-key-0123456789abcdef0123456789',
    HSEA_DATABASE_URL: dbApp,
    HSEA_DATABASE_ADMIN_URL: dbAdmin,
    HSEA_SHUTDOWN_GRACE_SECONDS: '2',
    HSEA_SIGNUPS_PER_IP_PER_HOUR: '0',
    HSEA_WEB_DIR: webDir,
    HSEA_SMTP_URL: `smtp://mailer:secret@127.0.0.1:${sink.match[1]}`,
    HSEA_MAIL_FROM: 'hello@mail.hsea.test',
    HSEA_JOB_POLL_MS: '200',
    // The usage dashboard's chart reads the rollups: bring them up to date as often as the job
    // scheduler allows (seconds), not every 5 min.
    HSEA_METERING_ROLLUP_SECONDS: '2',
    // The rate-limit dashboard's anomalies: the detector observes each tenant's rate at every
    // flush and needs five of them as its warm-up; every second, not every minute.
    HSEA_RATE_LIMIT_FLUSH_SECONDS: '1',
  };
  const server = await start(binary, ['serve'], serverEnv, /listening on http:\/\/[0-9.]+:(\d+)/,
    path.join(output, 'server.log'));
  cleanups.push(() => stop(server.child));
  // A second server on the same database whose access tokens and session cookies expire after
  // five seconds, for the spec of the web UI's refresh on 401 (access-expiry.spec.mjs).
  const shortPort = await freePort();
  const shortUrl = `http://127.0.0.1:${shortPort}`;
  const shortServer = await start(binary, ['serve'], {
    ...serverEnv,
    HSEA_HTTP_PORT: String(shortPort),
    HSEA_PUBLIC_URL: shortUrl,
    HSEA_ACCESS_TOKEN_SECONDS: '5',
    // No in-process worker: mailed links must name the first server, which runs the jobs.
    HSEA_WORKER_THREADS: '0',
  }, /listening on http:\/\/[0-9.]+:(\d+)/, path.join(output, 'server-short-access.log'));
  cleanups.push(() => stop(shortServer.child));
  const hook = await fetch(`${stripeUrl}/_emulator/webhook_endpoint`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ url: `${baseUrl}/api/webhooks/stripe`, secret: stripeSecret }),
  });
  if (!hook.ok) throw new Error(`stripe emulator: webhook endpoint: ${hook.status}`);
  // The plans' Stripe products and prices, as an operator would create them.
  const sync = spawnSync(binary, ['billing', 'sync-plans'], {
    env: {
      ...process.env, HSEA_DATABASE_ADMIN_URL: dbAdmin, HSEA_DATABASE_URL: dbApp,
      HSEA_STRIPE_API_BASE: stripeUrl, HSEA_STRIPE_SECRET_KEY: 'sk_test_hsea_e2e',
      HSEA_STRIPE_WEBHOOK_SECRET: stripeSecret, HSEA_SECRET_KEY: 'e2e-secret-key-0123456789abcdef0123456789',
    },
    encoding: 'utf8',
  });
  if (sync.status !== 0) throw new Error(`hsea billing sync-plans: ${sync.stdout}${sync.stderr}`);

  // Specs waiting for another branch's endpoints.
  const pending = JSON.parse(fs.readFileSync(path.join(here, 'pending.json'), 'utf8')).pending;
  let failed = false;
  for (const [spec, entry] of Object.entries(pending)) {
    for (const endpoint of entry.endpoints) {
      // "METHOD PATH" is missing while it answers 404 not_found to an empty JSON object;
      // "METHOD PATH BODY STATUS CODE" while it answers BODY with STATUS and CODE (an endpoint
      // that exists on main and changes on the branch).
      const [method, route, body = '{}', status = '404', code = 'not_found'] = endpoint.split(' ');
      const r = await fetch(baseUrl + route, {
        method,
        headers: { 'Content-Type': 'application/json' },
        body: method === 'GET' ? undefined : body,
      });
      const answer = await r.json().catch(() => ({}));
      if (!(r.status === Number(status) && answer.code === code)) {
        console.error(`e2e: ${spec} is pending (${entry.branch}), but ${method} ${route} ` +
          `answers ${r.status} ${answer.code ?? ''}, not ${status} ${code}: the branch is ` +
          'merged, so remove the spec from tests/e2e/pending.json and let it run');
        failed = true;
      }
    }
  }
  const specs = fs.readdirSync(path.join(here, 'specs')).filter((f) => f.endsWith('.spec.mjs'))
    .sort();
  const run = specs.filter((s) => !(s in pending));
  for (const s of specs.filter((x) => x in pending)) {
    console.log(`e2e: NOT RUN ${s}: needs branch ${pending[s].branch} (tests/e2e/pending.json)`);
  }
  const unknown = Object.keys(pending).filter((s) => !specs.includes(s));
  if (unknown.length) {
    console.error(`e2e: pending.json names missing specs: ${unknown.join(', ')}`);
    failed = true;
  }

  const status = await new Promise((resolve) => {
    const child = spawn(process.execPath,
      ['--test', '--test-concurrency=1', '--test-reporter=spec',
        ...run.map((s) => path.join(here, 'specs', s))],
      {
        stdio: 'inherit',
        env: {
          ...process.env,
          HSEA_E2E_URL: baseUrl,
          HSEA_E2E_SHORT_ACCESS_URL: shortUrl,
          HSEA_E2E_MAIL_FILE: mailFile,
          HSEA_E2E_OUTPUT: output,
          HSEA_E2E_DATABASE_ADMIN_URL: dbAdmin,
          HSEA_E2E_STRIPE_URL: stripeUrl,
        },
      });
    child.on('exit', (code) => resolve(code ?? 1));
  });
  console.log(`e2e: screenshots in ${path.join(output, 'screenshots')}, server log ` +
    `${path.join(output, 'server.log')}`);
  return status !== 0 || failed ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error('e2e:', e.stack || e.message);
}
await cleanup();
process.exit(code);
