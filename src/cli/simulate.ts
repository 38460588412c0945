import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { mkdir } from 'node:fs/promises';
import { synthesizeSentences } from '../test/audio/fixtures.ts';

const USAGE = `usage: npm run simulate -- sms --from +15551234567 "message text"
       npm run simulate -- call --from +15551234567 [--unanswered] "what the caller says"

sms sends a signed inbound SMS through the running demo's fake Twilio (found via DATA_DIR/demo.json).
call plays a phone call: the text is spoken with flite (16 kHz) and served as the call's recording; the
transcript appears in the patient's timeline once the worker has downloaded and transcribed it.`;

async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, options: { from: { type: 'string' }, unanswered: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const body = positionals.join(' ');
  if ((kind !== 'sms' && kind !== 'call') || !values.from || !body) {
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
  let request: { path: string; payload: unknown } = {
    path: '/_fake/inbound-sms',
    payload: { webhookUrl: demo.smsWebhookUrl, from: values.from, to: demo.twilioNumber, body },
  };
  if (kind === 'call') {
    const dir = join(resolve(process.env.DATA_DIR ?? './data'), 'simulated-calls');
    await mkdir(dir, { recursive: true });
    const [spoken] = await synthesizeSentences(dir, [body]);
    const webhooks = demo.smsWebhookUrl.replace(/\/sms$/, '');
    request = {
      path: '/_fake/voice/play-inbound',
      payload: {
        voiceUrl: `${webhooks}/voice`,
        statusCallbackUrl: `${webhooks}/call-status`,
        from: values.from,
        to: demo.twilioNumber,
        recordingPath: spoken!.path,
        dial: values.unanswered ? 'no-answer' : 'answer',
      },
    };
  }
  const response = await fetch(`${demo.fakeTwilioUrl}${request.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request.payload),
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
