/**
 * The load generator for npm run bench, run as its own process: in production Twilio and the coordinators'
 * browsers are not in our event loop, so neither are they here. Reads one JSON job from argv[2], prints one
 * JSON result line on stdout.
 */
import { randomBytes } from 'node:crypto';
import { signTwilioRequest } from '../src/test/fake-twilio.ts';

interface InboundJob {
  mode: 'inbound';
  url: string;
  authToken: string;
  accountSid: string;
  to: string;
  count: number;
  concurrency: number;
}

interface RepliesJob {
  mode: 'replies';
  baseUrl: string;
  token: string;
  patientIds: string[];
  ratePerSecond: number;
  total: number;
}

const nowMs = () => performance.timeOrigin + performance.now();

async function inbound(job: InboundJob): Promise<{ seconds: number }> {
  // Signed up front, so the figure is the server's work, not the signing.
  const requests = Array.from({ length: job.count }, (_, i) => {
    const params = { AccountSid: job.accountSid, Body: `inbound ${i}`, From: `+1555910${String(i % 500).padStart(4, '0')}`, MessageSid: `SM${randomBytes(16).toString('hex')}`, NumMedia: '0', To: job.to };
    return { body: new URLSearchParams(params).toString(), signature: signTwilioRequest(job.authToken, job.url, params) };
  });
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (next < job.count) {
        const request = requests[next++]!;
        const response = await fetch(job.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': request.signature }, body: request.body });
        await response.arrayBuffer();
        if (response.status !== 200) throw new Error(`inbound webhook answered ${response.status}`);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000 };
}

/** Open loop: requests leave on schedule whether or not earlier ones have finished. */
async function replies(job: RepliesJob): Promise<{ sentAt: Record<string, number> }> {
  const sentAt: Record<string, number> = {};
  const intervalMs = 1000 / job.ratePerSecond;
  const start = nowMs();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < job.total; i++) {
    const wait = start + i * intervalMs - nowMs();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const body = `latency probe ${i} ${randomBytes(3).toString('hex')}`;
    sentAt[body] = nowMs();
    inFlight.push(
      fetch(`${job.baseUrl}/api/patients/${job.patientIds[i % job.patientIds.length]}/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${job.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ body }),
      }).then(async (response) => {
        await response.arrayBuffer();
        if (response.status !== 201) throw new Error(`reply API answered ${response.status}`);
      }),
    );
  }
  await Promise.all(inFlight);
  return { sentAt };
}

const job = JSON.parse(process.argv[2] ?? '{}') as InboundJob | RepliesJob;
const result = job.mode === 'inbound' ? await inbound(job) : await replies(job);
process.stdout.write(JSON.stringify(result) + '\n');
