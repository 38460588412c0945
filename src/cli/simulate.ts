import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { mkdir } from 'node:fs/promises';
import { synthesizeSentences } from '../test/audio/fixtures.ts';
import { CHANNEL_USAGE, simulateEmail, simulateWebchat } from './simulate-channels.ts';

const USAGE = `usage: npm run simulate -- sms --from +15551234567 "message text"
       npm run simulate -- messenger --from 24816030402948 "message text"    (--from is the Page-scoped id)
       npm run simulate -- whatsapp --from +15551234567 "message text"
       npm run simulate -- call --from +15551234567 [--unanswered] "what the caller says"
${CHANNEL_USAGE}

Sends a signed inbound message through the running demo's fakes (found via DATA_DIR/demo.json).
call plays a phone call: the text is spoken with flite (16 kHz) and served as the call's recording; the
transcript appears in the patient's timeline once the worker has downloaded and transcribed it.`;

interface DemoFile {
  fakeTwilioUrl: string;
  smsWebhookUrl: string;
  twilioNumber: string;
  fakeMetaUrl?: string;
  messengerWebhookUrl?: string;
  whatsappWebhookUrl?: string;
}

/** Which fake control route sends this kind of message, and with what body. */
async function request(kind: string, demo: DemoFile, from: string, body: string, unanswered: boolean): Promise<{ url: string; json: unknown } | string> {
  switch (kind) {
    case 'call': {
      const dir = join(resolve(process.env.DATA_DIR ?? './data'), 'simulated-calls');
      await mkdir(dir, { recursive: true });
      const [spoken] = await synthesizeSentences(dir, [body]);
      const webhooks = demo.smsWebhookUrl.replace(/\/sms$/, '');
      return {
        url: `${demo.fakeTwilioUrl}/_fake/voice/play-inbound`,
        json: { voiceUrl: `${webhooks}/voice`, statusCallbackUrl: `${webhooks}/call-status`, from, to: demo.twilioNumber, recordingPath: spoken!.path, dial: unanswered ? 'no-answer' : 'answer' },
      };
    }
    case 'sms':
      return { url: `${demo.fakeTwilioUrl}/_fake/inbound-sms`, json: { webhookUrl: demo.smsWebhookUrl, from, to: demo.twilioNumber, body } };
    case 'messenger':
      if (!demo.fakeMetaUrl) return 'the running demo has no fake Meta (real META_* credentials are configured)';
      return { url: `${demo.fakeMetaUrl}/_fake/webhooks/messenger-text`, json: { webhookUrl: demo.messengerWebhookUrl, psid: from, text: body } };
    case 'whatsapp':
      if (!demo.fakeMetaUrl) return 'the running demo has no fake Meta (real META_* credentials are configured)';
      // WhatsApp identifies senders by digits without '+'; the fake sends them so.
      return { url: `${demo.fakeMetaUrl}/_fake/webhooks/whatsapp-text`, json: { webhookUrl: demo.whatsappWebhookUrl, from: from.replace(/\D/g, ''), text: body } };
    default:
      return USAGE;
  }
}

async function run(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === 'email') return simulateEmail(rest);
  if (kind === 'webchat') return simulateWebchat(rest);
  const { values, positionals } = parseArgs({ args: rest, options: { from: { type: 'string' }, unanswered: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const body = positionals.join(' ');
  if (!kind || !['sms', 'messenger', 'whatsapp', 'call'].includes(kind) || !values.from || !body) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const demoFile = join(resolve(process.env.DATA_DIR ?? './data'), 'demo.json');
  let demo: DemoFile;
  try {
    demo = JSON.parse(await readFile(demoFile, 'utf8'));
  } catch {
    process.stderr.write(`no running demo found (${demoFile} is missing); start one with npm start\n`);
    return 1;
  }
  const target = await request(kind, demo, values.from, body, values.unanswered === true);
  if (typeof target === 'string') {
    process.stderr.write(`${target}\n`);
    return 2;
  }
  const response = await fetch(target.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(target.json) }).catch((error: unknown) => {
    process.stderr.write(`the demo's fake at ${new URL(target.url).origin} did not answer (${String(error)}); is npm start running?\n`);
    return null;
  });
  if (!response) return 1;
  const text = await response.text();
  process.stdout.write(`${response.status} ${text}\n`);
  if (!response.ok) return 1;
  // The fake answers 200 with our webhook's own answer inside; that is the one that matters.
  const inner = (JSON.parse(text) as { status?: number }).status;
  return inner === undefined || (inner >= 200 && inner < 300) ? 0 : 1;
}

process.exitCode = await run(process.argv.slice(2));
