import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CHANNEL_USAGE, simulateEmail, simulateWebchat } from './simulate-channels.ts';

const USAGE = `usage: npm run simulate -- sms --from +15551234567 "message text"
${CHANNEL_USAGE}

Sends a signed inbound SMS through the running demo's fake Twilio (found via DATA_DIR/demo.json).`;

async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === 'email') return simulateEmail(rest);
  if (kind === 'webchat') return simulateWebchat(rest);
  const { values, positionals } = parseArgs({ args: rest, options: { from: { type: 'string' } }, allowPositionals: true, strict: true });
  const body = positionals.join(' ');
  if (kind !== 'sms' || !values.from || !body) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const demoFile = join(resolve(process.env.DATA_DIR ?? './data'), 'demo.json');
  let demo: { fakeTwilioUrl: string; smsWebhookUrl: string; twilioNumber: string };
  try {
    demo = JSON.parse(await readFile(demoFile, 'utf8'));
  } catch {
    process.stderr.write(`no running demo found (${demoFile} is missing); start one with npm start\n`);
    return 1;
  }
  const response = await fetch(`${demo.fakeTwilioUrl}/_fake/inbound-sms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ webhookUrl: demo.smsWebhookUrl, from: values.from, to: demo.twilioNumber, body }),
  }).catch((error: unknown) => {
    process.stderr.write(`the demo's fake Twilio at ${demo.fakeTwilioUrl} did not answer (${String(error)}); is npm start running?\n`);
    return null;
  });
  if (!response) return 1;
  const text = await response.text();
  process.stdout.write(`${response.status} ${text}\n`);
  return response.ok ? 0 : 1;
}

process.exitCode = await run(process.argv.slice(2));
