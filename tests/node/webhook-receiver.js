// A webhook receiver for HSEA's black-box tests: verifies every request with the `svix`
// package's own verifier (Standard Webhooks), answers a scripted sequence of statuses, and
// writes one JSON line per request to a log file.
//
//   node webhook-receiver.js <log file> <port file>
//
// It listens on 127.0.0.1, port 0, and writes the port to <port file> once listening. A test
// scripts a path with POST /control {"path": "/a", "statuses": [500, 200],
// "secrets": {"new": "whsec_...", "old": "whsec_..."}}; a request to that path is answered with
// the next status (200 once the list is used up) and verified with each named secret alone.
// Log line: {"path", "headers", "body", "status", "verified": {"new": true, ...}, "error"}.
'use strict';
const fs = require('fs');
const http = require('http');
const { Webhook } = require('svix');

const [logFile, portFile] = process.argv.slice(2);
if (!logFile || !portFile) {
  console.error('usage: node webhook-receiver.js <log file> <port file>');
  process.exit(2);
}

const scripts = new Map(); // path -> {statuses: [...], secrets: {label: secret}}

function verify(secret, body, headers) {
  try {
    new Webhook(secret).verify(body, {
      'webhook-id': headers['webhook-id'],
      'webhook-timestamp': headers['webhook-timestamp'],
      'webhook-signature': headers['webhook-signature'],
    });
    return [true, null];
  } catch (e) {
    return [false, String(e && e.message)];
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.url === '/control') {
      const c = JSON.parse(body);
      scripts.set(c.path, { statuses: c.statuses || [], secrets: c.secrets || {} });
      res.writeHead(204);
      res.end();
      return;
    }
    const script = scripts.get(req.url) || { statuses: [], secrets: {} };
    const status = script.statuses.length ? script.statuses.shift() : 200;
    const verified = {};
    const errors = {};
    for (const [label, secret] of Object.entries(script.secrets)) {
      [verified[label], errors[label]] = verify(secret, body, req.headers);
    }
    fs.appendFileSync(logFile, JSON.stringify({
      path: req.url, method: req.method, headers: req.headers, body, status, verified, errors,
    }) + '\n');
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(status >= 200 && status < 300 ? 'ok' : 'receiver says ' + status + ' ' + 'x'.repeat(2000));
  });
});

server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile + '.tmp', String(server.address().port));
  fs.renameSync(portFile + '.tmp', portFile);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
// A test that crashed leaves no receiver behind.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
