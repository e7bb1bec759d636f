// The Fastify peer of HSEA's API-key read (bench/run, bench_ratelimit): the same work per request
// as the Go peer (bench/peers/go-pgx) and as `GET /api/tenant` with an API key -- SHA-256 of the
// key, a per-process key cache (5 s, like HSEA's per-thread cache), then set_config('app.tenant_id')
// and the tenant SELECT as the application role (row-level security in force), sent in one round
// trip and one implicit transaction, answered as JSON.
//
// node-postgres does not pipeline two extended-protocol queries, so the two statements go as one
// simple-protocol query text (two statements before one Sync: one round trip, one implicit
// transaction, as HSEA and the Go peer send them). The tenant id comes from auth_api_key() and is
// checked to be a UUID before it is put into the text.
//
// With RATE_LIMIT_MAX set, @fastify/rate-limit checks every request on Redis (ioredis, its Lua
// script through EVALSHA), keyed per API key like HSEA's rule: it runs as a preHandler, after the
// key is authenticated (onRequest), and counts per key prefix. A refused request is 429 with
// Retry-After and the X-RateLimit-* headers (the plugin's defaults).
//
//   DATABASE_URL=postgresql://... PORT=8091 POOL=16 node server.js
//   ... REDIS_URL=redis://127.0.0.1:6379 RATE_LIMIT_MAX=100000000 RATE_LIMIT_WINDOW=60000 node server.js
"use strict";
const crypto = require("node:crypto");
const Fastify = require("fastify");
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
const port = parseInt(env("PORT", "8091"), 10);
const pool = new Pool({ connectionString, max: parseInt(env("POOL", "16"), 10) });
const rateLimitMax = env("RATE_LIMIT_MAX", null);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const cache = new Map(); // sha256 hex -> { tenantId, prefix, expires }

const problem = (reply, status, code, detail) =>
  reply.code(status).type("application/problem+json").send({ status, code, detail });

// hsea_<12 hex prefix>_<secret>; null when the key is not valid.
async function keyOf(key) {
  const hash = crypto.createHash("sha256").update(key).digest("hex");
  const hit = cache.get(hash);
  if (hit && Date.now() < hit.expires) return hit;
  if (key.length < 18 || !key.startsWith("hsea_") || key[17] !== "_") return null;
  const prefix = key.slice(5, 17);
  const { rows } = await pool.query(
    "SELECT tenant_id::text, secret_hash, usable FROM auth_api_key($1)", [prefix]);
  const row = rows[0];
  if (!row || !row.usable || !UUID.test(row.tenant_id)) return null;
  const a = Buffer.from(row.secret_hash), b = Buffer.from(hash);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) return null;
  const entry = { tenantId: row.tenant_id, prefix, expires: Date.now() + 5000 };
  cache.set(hash, entry);
  return entry;
}

async function main() {
  const app = Fastify({ logger: false });
  app.decorateRequest("apiKey", null);

  app.addHook("onRequest", async (request, reply) => {
    const auth = request.headers.authorization;
    if (!auth || !auth.startsWith("Bearer ")) return problem(reply, 401, "unauthorized", "Send an API key.");
    const k = await keyOf(auth.slice(7));
    if (!k) return problem(reply, 401, "unauthorized", "The API key is not valid.");
    request.apiKey = k;
  });

  if (rateLimitMax) {
    const Redis = require("ioredis");
    // As the plugin's README recommends for rate limiting: short connect timeout, one retry.
    const redis = new Redis(env("REDIS_URL", "redis://127.0.0.1:6379"),
      { connectTimeout: 500, maxRetriesPerRequest: 1 });
    await app.register(require("@fastify/rate-limit"), {
      hook: "preHandler", // after authentication, as HSEA's rate-limit stage
      max: parseInt(rateLimitMax, 10),
      timeWindow: parseInt(env("RATE_LIMIT_WINDOW", "60000"), 10),
      redis,
      nameSpace: "bench-rl-",
      keyGenerator: (request) => "key:" + request.apiKey.prefix,
    });
  }

  app.get("/api/tenant", async (request, reply) => {
    const results = await pool.query(
      `SELECT set_config('app.tenant_id', '${request.apiKey.tenantId}', true); ` +
      "SELECT id::text, slug, name, status, require_mfa, created_at, updated_at, " +
      "deletion_scheduled_at FROM tenants");
    const t = results[1].rows[0];
    if (!t) return problem(reply, 500, "internal_error", "An unexpected error occurred.");
    return {
      id: t.id, slug: t.slug, name: t.name, status: t.status, require_mfa: t.require_mfa,
      created_at: t.created_at.toISOString(), updated_at: t.updated_at.toISOString(),
      deletion_scheduled_at: t.deletion_scheduled_at ? t.deletion_scheduled_at.toISOString() : null,
    };
  });

  await app.listen({ host: "127.0.0.1", port });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
