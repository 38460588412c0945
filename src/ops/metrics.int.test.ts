import { spawnSync } from 'node:child_process';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { recordInboundCall, recordRecording } from '../db/calls.ts';
import { createOpsMetrics, type OpsMetrics } from './metrics.ts';
import { createOutbound } from '../db/messages.ts';
import { startOps } from './start.ts';

const METRICS_TOKEN = 'metrics-token-0123456789';
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool) console.warn('\n*** promtool NOT FOUND: the `promtool check metrics` test is SKIPPED. Install Debian package `prometheus`. ***\n');

/** The text format's samples: `name{labels} value` → value, keyed by `name{labels}` exactly as printed. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe.each(backends())('GET /metrics on $name', (backend) => {
  let h: Harness;
  let metrics: OpsMetrics;

  beforeEach(async () => {
    metrics = createOpsMetrics();
    h = await startHarness(backend, { fake: { autoStatuses: ['sent', 'delivered'] }, app: { metrics, metricsToken: METRICS_TOKEN } });
  });
  afterEach(() => h.close());

  const scrape = async () => {
    const response = await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };

  it('needs the bearer token', async () => {
    expect((await fetch(`${h.baseUrl}/metrics`)).status).toBe(401);
    expect((await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    expect((await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(200);
  });

  it('counts what crossed the wire and reads gauges from the database', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.startRelay({ metrics });
    const first = await h.sendSms('+15550001001', 'hello', 'SM' + 'a'.repeat(32));
    expect(first.status).toBe(200);
    expect((await h.sendSms('+15550001001', 'hello', 'SM' + 'a'.repeat(32))).status).toBe(200);
    const forged = await h.api('POST', '/webhooks/twilio/sms', { rawBody: 'From=%2B1555&Body=x&MessageSid=SMx', contentType: 'application/x-www-form-urlencoded' });
    expect(forged.status).toBe(403);
    const patientId = (await h.database.db.query<{ id: string }>(`SELECT id FROM patients`)).rows[0]!.id;

    let text = samples(await scrape());
    expect(text.get('switchboard_waiting_patients')).toBe(1);
    expect(text.get('switchboard_patient_wait_max_seconds')).toBeGreaterThanOrEqual(0);
    expect(text.get(`switchboard_coordinator_patient_wait_max_seconds{coordinator="${ada.id}"}`)).toBeGreaterThanOrEqual(0);

    const reply = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Hi, how can I help?' } });
    expect(reply.status).toBe(201);
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM messages WHERE status = 'delivered'`)).rowCount === 1, { what: 'delivery' });

    text = samples(await scrape());
    expect(text.get('switchboard_messages_inbound_total{channel="sms"}')).toBe(1);
    expect(text.get('switchboard_duplicates_dropped_total{kind="inbound"}')).toBe(1);
    expect(text.get('switchboard_webhook_signature_failures_total{provider="twilio"}')).toBe(1);
    expect(text.get('switchboard_messages_outbound_total{channel="sms",automatic="false"}')).toBe(1);
    expect(text.get('switchboard_outbound_final_total{status="delivered"}')).toBe(1);
    expect(text.get('switchboard_webhook_to_stored_seconds_count{kind="inbound"}')).toBe(2);
    expect(text.get('switchboard_reply_to_provider_accepted_seconds_count')).toBe(1);
    expect(text.get('switchboard_provider_accepted_to_delivered_seconds_count')).toBe(1);
    expect(text.get('switchboard_first_response_seconds_count')).toBe(1);
    expect(text.get('switchboard_reply_time_seconds_count')).toBe(1);
    expect(text.get('switchboard_waiting_patients')).toBe(0);
    expect(text.get('switchboard_outbox_depth')).toBe(0);
    expect(text.get('switchboard_transcription_queue_depth')).toBe(0);

    // A call's recording queues a download job; the gauge counts it until its transcript is done.
    const call = await recordInboundCall(h.database.db, { callSid: 'CA' + '1'.repeat(32), from: '+15550001001', to: TEST_TWILIO.fromNumber });
    await recordRecording(h.database.db, {
      call: call.call, recordingSid: 'RE' + '1'.repeat(32), providerStatus: 'completed', sourceUrl: `${h.fake.url}/recording`, kind: 'voicemail',
      durationSec: 5, channels: 1, errorCode: null, downloadMaxAttempts: 3,
    });
    expect(samples(await scrape()).get('switchboard_transcription_queue_depth')).toBe(1);
    await h.database.db.query(`UPDATE media_jobs SET state = 'done'`);
    expect(samples(await scrape()).get('switchboard_transcription_queue_depth')).toBe(0);

    // The same conversation: a second wait is a reply time but not a first response; an automatic reply is neither.
    expect((await h.sendSms('+15550001001', 'one more thing')).status).toBe(200);
    const notice = await createOutbound(h.database.db, { patientId, authorId: null, body: 'Auto: we got it.', automatic: true }, metrics);
    expect('error' in notice).toBe(false);
    expect((await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Sure.' } })).status).toBe(201);
    text = samples(await scrape());
    expect(text.get('switchboard_reply_time_seconds_count')).toBe(2);
    expect(text.get('switchboard_first_response_seconds_count')).toBe(1);
    expect(text.get('switchboard_messages_outbound_total{channel="sms",automatic="true"}')).toBe(1);
    expect(text.get('switchboard_messages_outbound_total{channel="sms",automatic="false"}')).toBe(2);
    // The webhook_silence rule's figures: two inbound SMS this week, one gap between them.
    const [firstIn, secondIn] = (await h.database.db.query<{ created_at: Date }>(`SELECT created_at FROM messages WHERE direction = 'inbound' ORDER BY created_at`)).rows;
    expect(text.get('switchboard_channel_inbound_messages_7d{channel="sms"}')).toBe(2);
    expect(text.get('switchboard_channel_inbound_gap_p95_seconds{channel="sms"}')).toBeCloseTo((secondIn!.created_at.getTime() - firstIn!.created_at.getTime()) / 1000, 2);

    // A second process (its own registry) over the same database reports the same gauges and none of our counts.
    const other = samples(await createOpsMetrics().render(h.database.db));
    expect(other.get('switchboard_waiting_patients')).toBe(0);
    expect(other.get(`switchboard_coordinator_assigned_patients{coordinator="${ada.id}"}`)).toBe(1);
    expect(other.get('switchboard_waiting_patients')).toBe(text.get('switchboard_waiting_patients'));
    expect(other.get('switchboard_messages_inbound_total{channel="sms"}')).toBeUndefined();
  });

  it.skipIf(!hasPromtool)('passes promtool check metrics', async () => {
    await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550001002', 'hello');
    const body = await scrape();
    const checked = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(checked.stderr + checked.stdout).toBe('');
    expect(checked.status).toBe(0);
  });

  it('serves /metrics without a token on a separate listener when METRICS_PORT is set', async () => {
    const ops = await startOps({
      db: h.database.db,
      logger: pino({ level: 'silent' }),
      adapters: h.adapters,
      metrics,
      config: { metricsPort: 0, metricsHost: '127.0.0.1', alertsIntervalMs: 60_000 },
      evaluateAlerts: false,
    });
    try {
      const response = await fetch(ops.metricsUrl!);
      expect(response.status).toBe(200);
      expect(await response.text()).toContain('switchboard_waiting_patients');
    } finally {
      await ops.stop();
    }
  });
});
