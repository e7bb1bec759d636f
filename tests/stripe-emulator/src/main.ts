// Command line: node dist/src/main.js [--port N] [--host H] [--webhook-url URL --webhook-secret S]
// Prints "listening <port>" on stdout once it accepts connections.
import http from 'node:http';

import { createEmulator } from './emulator';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(arg('port') ?? 0);
const host = arg('host') ?? '127.0.0.1';
const server = http.createServer();
server.listen(port, host, () => {
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  createEmulator(server, `http://${host}:${actual}`, {
    webhookUrl: arg('webhook-url'),
    webhookSecret: arg('webhook-secret'),
  });
  process.stdout.write(`listening ${actual}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
// A test that crashed leaves no emulator behind: exit when the parent is gone.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
