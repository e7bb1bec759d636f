// A real SMTP server for the e-mail tests (npm smtp-server), reading what arrives with mailparser.
//   node smtp-sink.js OUT_FILE [--refuse N] [--refuse-code 451] [--delay-ms MS]
// Listens on 127.0.0.1 on a free port and prints "listening PORT" once ready. Refuses the first
// N messages with the given code (4xx: try again later, 5xx: refused), optionally waits before
// answering DATA (to kill the sender mid-delivery), and appends each accepted message to
// OUT_FILE as one JSON line: envelope, headers, both parts and the raw message (a refused one:
// {"refused": code, "message_id": ...}). Prints
// "receiving" when a message's data begins. Accepts any AUTH user whose password is "secret".
'use strict';
const fs = require('fs');
const { SMTPServer } = require('smtp-server');
const { simpleParser } = require('mailparser');

const args = process.argv.slice(2);
const out = args[0];
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
let refuse = option('--refuse', 0);
const refuseCode = option('--refuse-code', 451);
const delayMs = option('--delay-ms', 0);

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  onAuth(auth, session, callback) {
    if (auth.password === 'secret') return callback(null, { user: auth.username });
    return callback(new Error('Invalid username or password'));
  },
  onData(stream, session, callback) {
    console.log('receiving');
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', async () => {
      const raw = Buffer.concat(chunks);
      if (refuse > 0) {
        refuse -= 1;
        const parsed = await simpleParser(raw).catch(() => null);
        const id = parsed && parsed.messageId ? parsed.messageId : null;
        fs.appendFileSync(out, JSON.stringify({ refused: refuseCode, message_id: id }) + '\n');
        const err = new Error(refuseCode < 500 ? 'Try again later' : 'Refused');
        err.responseCode = refuseCode;
        return callback(err);
      }
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      try {
        const mail = await simpleParser(raw);
        const headers = {};
        for (const [key, value] of mail.headers) {
          headers[key] = typeof value === 'object' && value !== null && 'text' in value
            ? value.text : String(value);
        }
        const line = {
          mail_from: session.envelope.mailFrom && session.envelope.mailFrom.address,
          rcpt_to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user || null,
          from: mail.from ? mail.from.text : null,
          to: mail.to ? mail.to.text : null,
          subject: mail.subject || null,
          message_id: mail.messageId || null,
          date: mail.date ? mail.date.toISOString() : null,
          content_type: mail.headers.get('content-type') ? mail.headers.get('content-type').value : null,
          headers,
          html: mail.html || null,
          text: mail.text || null,
          raw: raw.toString('utf8'),
        };
        fs.appendFileSync(out, JSON.stringify(line) + '\n');
        callback();
      } catch (e) {
        callback(e);
      }
    });
  },
});
server.on('error', (e) => console.error('smtp-sink:', e.message));
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.server.address().port));
