import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

const A_PHONE = '+15550000001';
const B_PHONE = '+15550000002';

describe.each(backends())('identity linking and patient merges over HTTP on $name', (backend) => {
  let h: Harness;
  let admin: { id: string; token: string };
  let ada: { id: string; token: string };

  beforeEach(async () => {
    h = await startHarness(backend, { fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 } });
    ada = await h.createCoordinator({ name: 'Ada' });
    admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
  });
  afterEach(async () => {
    await h.close();
  });

  async function patientOf(phone: string): Promise<string> {
    const row = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE channel = 'sms' AND address = $1`, [phone]);
    return row.rows[0]!.patient_id;
  }

  async function timeline(patientId: string, token = admin.token): Promise<any[]> {
    const response = await h.api('GET', `/api/patients/${patientId}/timeline?limit=500`, { token });
    expect(response.status).toBe(200);
    return response.json.items;
  }

  const messageBodies = (items: any[]) => items.filter((i) => i.type === 'message').map((i) => i.body);

  async function sms(from: string, body: string) {
    const result = await h.sendSms(from, body);
    expect(result.status).toBe(200);
  }

  async function reply(patientId: string, body: string, token = ada.token) {
    const sent = await h.api('POST', `/api/patients/${patientId}/messages`, { token, body: { body } });
    expect(sent.status).toBe(201);
    return sent.json;
  }

  async function audit(patientId: string): Promise<any[]> {
    const response = await h.api('GET', `/api/admin/audit?patientId=${patientId}&limit=1000`, { token: admin.token });
    expect(response.status).toBe(200);
    return response.json.entries;
  }

  it('links a new identity, normalised to E.164, and later messages from it join the same patient', async () => {
    await sms(A_PHONE, 'hello from my mobile');
    const patientId = await patientOf(A_PHONE);

    const linked = await h.api('POST', `/api/patients/${patientId}/identities`, { token: ada.token, body: { channel: 'sms', address: '(555) 222-3333' } });
    expect(linked.status).toBe(201);
    expect(linked.json.identity).toMatchObject({ channel: 'sms', address: '+15552223333', patientId });

    const again = await h.api('POST', `/api/patients/${patientId}/identities`, { token: ada.token, body: { channel: 'sms', address: '+1 555-222-3333' } });
    expect(again.status).toBe(200);
    expect(again.json.alreadyLinked).toBe(true);

    await sms('+15552223333', 'now from my work phone');
    expect(await patientOf('+15552223333')).toBe(patientId);
    const items = await timeline(patientId);
    expect(messageBodies(items)).toEqual(['hello from my mobile', 'now from my work phone']);
    expect(items.find((i) => i.type === 'event' && i.kind === 'identity_linked')).toMatchObject({ actorId: ada.id, detail: { channel: 'sms', address: '+15552223333' } });
    expect(items.map((i) => i.seq)).toEqual(items.map((_, i) => i + 1));

    const identities = await h.api('GET', `/api/patients/${patientId}/identities`, { token: ada.token });
    expect(identities.json.identities.map((i: any) => i.address).sort()).toEqual([A_PHONE, '+15552223333']);
    expect((await audit(patientId)).filter((e) => e.action === 'identity.link')).toMatchObject([{ actor_id: ada.id, detail: { address: '+15552223333' } }]);
  });

  it('refuses bad links: 409 for an identity of another patient, 400 for bad input, 404 for patients you cannot see', async () => {
    await sms(A_PHONE, 'a');
    await sms(B_PHONE, 'b');
    const a = await patientOf(A_PHONE);
    const b = await patientOf(B_PHONE);

    const taken = await h.api('POST', `/api/patients/${a}/identities`, { token: admin.token, body: { channel: 'sms', address: '555-000-0002' } });
    expect(taken.status).toBe(409);
    expect(taken.json.code).toBe('identity_taken');
    expect(taken.json.message).toContain(b);
    expect(taken.json.message).toContain('/merge');

    const badAddress = await h.api('POST', `/api/patients/${a}/identities`, { token: admin.token, body: { channel: 'sms', address: 'not a number' } });
    expect(badAddress.status).toBe(400);
    expect(badAddress.json.code).toBe('invalid_address');
    const badChannel = await h.api('POST', `/api/patients/${a}/identities`, { token: admin.token, body: { channel: 'pigeon', address: '+15551112222' } });
    expect(badChannel.status).toBe(400);
    expect(badChannel.json.code).toBe('invalid_input');

    const grace = await h.createCoordinator({ name: 'Grace' });
    const hidden = await h.api('POST', `/api/patients/${a}/identities`, { token: grace.token, body: { channel: 'sms', address: '+15553334444' } });
    expect(hidden.status).toBe(404);
    const unknown = await h.api('POST', `/api/patients/00000000-0000-4000-8000-000000000000/identities`, { token: admin.token, body: { channel: 'sms', address: '+15553334444' } });
    expect(unknown.status).toBe(404);
    // Nothing was written by any refusal.
    const count = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM channel_identities`);
    expect(count.rows[0]!.n).toBe(2);
  });

  it('merges two patients into one log interleaved by time, each log in its own order, and replies use the last medium across both', async () => {
    await sms(A_PHONE, 'a1');
    await sms(B_PHONE, 'b1');
    await sms(A_PHONE, 'a2');
    const a = await patientOf(A_PHONE);
    const b = await patientOf(B_PHONE);
    await reply(b, 'reply to b');
    await sms(B_PHONE, 'b2');
    const before = { a: await timeline(a), b: await timeline(b) };

    const merged = await h.api('POST', `/api/patients/${a}/merge`, { token: ada.token, body: { patientId: b } });
    expect(merged.status).toBe(201);
    expect(merged.json).toMatchObject({ survivorId: a, absorbedId: b, messagesMoved: 3, identitiesMoved: 1 });

    const items = await timeline(a);
    expect(messageBodies(items)).toEqual(['a1', 'b1', 'a2', 'reply to b', 'b2']);
    expect(items.map((i) => i.seq)).toEqual(items.map((_, i) => i + 1));
    // Each log's own order is kept exactly.
    const ids = items.map((i) => i.id);
    for (const log of [before.a, before.b]) {
      const positions = log.map((i: any) => ids.indexOf(i.id));
      expect(positions.every((p: number) => p >= 0)).toBe(true);
      expect(positions).toEqual([...positions].sort((x, y) => x - y));
    }
    // Each message keeps its identity.
    expect(items.filter((i) => i.type === 'message' && i.direction === 'inbound').map((i) => i.address)).toEqual([A_PHONE, B_PHONE, A_PHONE, B_PHONE]);
    expect(items.at(-1)).toMatchObject({ type: 'event', kind: 'merged', actorId: ada.id, detail: { absorbedPatientId: b, identities: [{ channel: 'sms', address: B_PHONE }] } });

    // The absorbed patient is gone from view; its number is the survivor's now.
    expect((await h.api('GET', `/api/patients/${b}/timeline`, { token: admin.token })).status).toBe(404);
    expect((await h.api('GET', '/api/inbox?scope=all', { token: admin.token })).json.patients.map((p: any) => p.patientId)).toEqual([a]);
    expect(await patientOf(B_PHONE)).toBe(a);

    await h.startRelay();
    const r1 = await reply(a, 'after merge 1');
    expect(r1).toMatchObject({ channel: 'sms', address: B_PHONE });
    await sms(A_PHONE, 'a3');
    const r2 = await reply(a, 'after merge 2');
    expect(r2.address).toBe(A_PHONE);
    await eventually(() => h.fake.received.some((m) => m.body === 'after merge 2'), { what: 'both replies at the fake' });
    const sends = h.fake.received.filter((m) => m.body.startsWith('after merge')).map((m) => [m.body, m.to]);
    expect(sends).toEqual([
      ['after merge 1', B_PHONE],
      ['after merge 2', A_PHONE],
    ]);
    await eventually(
      async () => (await timeline(a)).filter((i) => i.type === 'message' && i.body.startsWith('after merge') && i.status === 'delivered').length === 2,
      { what: 'both replies delivered' },
    );

    const entries = await audit(b);
    expect(entries.filter((e) => e.action === 'patient.merge')).toMatchObject([{ actor_id: ada.id, detail: { survivorId: a, absorbedId: b } }]);
    expect((await audit(a)).filter((e) => e.action === 'patient.merge')).toHaveLength(1);
  });

  it('keeps open outbox rows exactly once and in order across a merge', async () => {
    await sms(A_PHONE, 'a');
    await sms(B_PHONE, 'b');
    const a = await patientOf(A_PHONE);
    const b = await patientOf(B_PHONE);
    for (let i = 1; i <= 3; i++) {
      await reply(a, `to a ${i}`);
      await reply(b, `to b ${i}`);
    }
    const merged = await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: b } });
    expect(merged.status).toBe(201);
    const outbox = await h.database.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.patient_id = m.patient_id AND o.seq = m.seq AND o.patient_id = $1`,
      [a],
    );
    expect(outbox.rows[0]!.n).toBe(6);

    await h.startRelay();
    await eventually(() => h.fake.received.length >= 6, { what: 'six sends' });
    const bodies = h.fake.received.map((m) => m.body);
    expect(bodies).toHaveLength(6);
    expect(bodies.filter((x) => x.startsWith('to a'))).toEqual(['to a 1', 'to a 2', 'to a 3']);
    expect(bodies.filter((x) => x.startsWith('to b'))).toEqual(['to b 1', 'to b 2', 'to b 3']);
    expect(h.fake.received.filter((m) => m.body.startsWith('to b')).every((m) => m.to === B_PHONE)).toBe(true);
    // Every reply ends delivered in the survivor's timeline, each with its own provider id.
    const delivered = await eventually(
      async () => {
        const replies = (await timeline(a)).filter((i) => i.type === 'message' && i.direction === 'outbound');
        return replies.length === 6 && replies.every((r) => r.status === 'delivered') && replies;
      },
      { what: 'six delivered replies' },
    );
    expect(new Set(delivered.map((r: any) => r.providerMessageId)).size).toBe(6);
  });

  it('undo restores both patients exactly; what was written after the merge follows its identity', async () => {
    await sms(A_PHONE, 'a1');
    await sms(B_PHONE, 'b1');
    const a = await patientOf(A_PHONE);
    const b = await patientOf(B_PHONE);
    await reply(a, 'reply a');
    await h.api('POST', `/api/patients/${b}/identities`, { token: admin.token, body: { channel: 'messenger', address: 'PSID-77' } });
    const before = { a: await timeline(a), b: await timeline(b) };
    const assignmentsBefore = (await h.database.db.query(`SELECT patient_id, coordinator_id FROM assignments ORDER BY patient_id`)).rows;

    const merged = await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: b } });
    expect(merged.status).toBe(201);
    await sms(B_PHONE, 'b after merge');
    const toB = await reply(a, 'reply after merge');
    expect(toB.address).toBe(B_PHONE);
    await sms(A_PHONE, 'a after merge');

    const undone = await h.api('POST', `/api/merges/${merged.json.mergeId}/undo`, { token: ada.token });
    expect(undone.status).toBe(200);
    expect(undone.json).toMatchObject({ survivorId: a, absorbedId: b, movedToAbsorbed: 2 });

    const after = { a: await timeline(a), b: await timeline(b) };
    const pick = (items: any[]) => items.map((i) => ({ id: i.id, seq: i.seq, body: i.body, kind: i.kind, address: i.address }));
    expect(pick(after.a.slice(0, before.a.length))).toEqual(pick(before.a));
    expect(pick(after.b.slice(0, before.b.length))).toEqual(pick(before.b));
    // Routing's `routed` items are events, and events written after a merge stay with the survivor (docs/ARCHITECTURE.md §3).
    const notRouted = (items: any[]) => items.filter((i) => i.kind !== 'routed').map((i) => i.body ?? i.kind);
    expect(notRouted(after.a.slice(before.a.length))).toEqual(['merged', 'a after merge', 'merge_undone']);
    expect(notRouted(after.b.slice(before.b.length))).toEqual(['b after merge', 'reply after merge', 'merge_undone']);
    for (const items of [after.a, after.b]) expect(items.map((i) => i.seq)).toEqual(items.map((_, i) => i + 1));

    expect(await patientOf(B_PHONE)).toBe(b);
    const bIdentities = await h.api('GET', `/api/patients/${b}/identities`, { token: admin.token });
    expect(bIdentities.json.identities.map((i: any) => i.address).sort()).toEqual(['+15550000002', 'PSID-77']);
    expect((await h.database.db.query(`SELECT patient_id, coordinator_id FROM assignments ORDER BY patient_id`)).rows).toEqual(assignmentsBefore);
    const inbox = await h.api('GET', '/api/inbox?scope=all', { token: admin.token });
    expect(inbox.json.patients.map((p: any) => p.patientId).sort()).toEqual([a, b].sort());
    // B's message after the merge was answered (the reply followed it to B); A's was not.
    const waiting = Object.fromEntries(inbox.json.patients.map((p: any) => [p.patientId, p.waitingSince !== null]));
    expect(waiting).toEqual({ [a]: true, [b]: false });

    // The open reply written after the merge follows B, exactly once.
    const outbox = await h.database.db.query<{ patient_id: string; seq: number; mseq: number }>(
      `SELECT o.patient_id, o.seq, m.seq AS mseq FROM outbox o JOIN messages m ON m.id = o.message_id WHERE m.body = 'reply after merge'`,
    );
    expect(outbox.rows).toEqual([{ patient_id: b, seq: outbox.rows[0]!.mseq, mseq: outbox.rows[0]!.mseq }]);

    expect((await audit(a)).filter((e) => e.action === 'patient.merge_undo')).toMatchObject([{ actor_id: ada.id, detail: { mergeId: merged.json.mergeId } }]);
    expect((await audit(b)).filter((e) => e.action === 'patient.merge_undo')).toHaveLength(1);

    const twice = await h.api('POST', `/api/merges/${merged.json.mergeId}/undo`, { token: admin.token });
    expect(twice.status).toBe(409);
    expect(twice.json.code).toBe('already_undone');
    expect((await h.api('POST', `/api/merges/00000000-0000-4000-8000-000000000000/undo`, { token: admin.token })).status).toBe(404);
    expect((await h.api('POST', `/api/merges/not-a-uuid/undo`, { token: admin.token })).status).toBe(404);
  });

  it('undoes merges last-first and refuses bad merges', async () => {
    await sms(A_PHONE, 'a');
    await sms(B_PHONE, 'b');
    await sms('+15550000003', 'c');
    const [a, b, c] = [await patientOf(A_PHONE), await patientOf(B_PHONE), await patientOf('+15550000003')];
    expect((await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: a } })).status).toBe(400);
    expect((await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: 'nope' } })).status).toBe(400);
    expect((await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: '00000000-0000-4000-8000-000000000000' } })).status).toBe(404);
    const grace = await h.createCoordinator({ name: 'Grace' });
    expect((await h.api('POST', `/api/patients/${a}/merge`, { token: grace.token, body: { patientId: b } })).status).toBe(404);

    const first = await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: b } });
    const second = await h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: c } });
    expect([first.status, second.status]).toEqual([201, 201]);
    // b is merged: neither side of a new merge (404: it is out of view).
    expect((await h.api('POST', `/api/patients/${b}/merge`, { token: admin.token, body: { patientId: a } })).status).toBe(404);

    const early = await h.api('POST', `/api/merges/${first.json.mergeId}/undo`, { token: admin.token });
    expect(early.status).toBe(409);
    expect(early.json.code).toBe('merge_not_latest');
    expect((await h.api('POST', `/api/merges/${second.json.mergeId}/undo`, { token: admin.token })).status).toBe(200);
    expect((await h.api('POST', `/api/merges/${first.json.mergeId}/undo`, { token: admin.token })).status).toBe(200);
    expect(messageBodies(await timeline(a))).toEqual(['a']);
    expect(messageBodies(await timeline(b))).toEqual(['b']);
    expect(messageBodies(await timeline(c))).toEqual(['c']);
    const merges = await h.api('GET', `/api/patients/${a}/merges`, { token: admin.token });
    expect(merges.json.merges).toHaveLength(2);
    expect(merges.json.merges.every((m: any) => m.undoneAt !== null)).toBe(true);
  });

  it('loses no inbound message that races a merge', async () => {
    await sms(A_PHONE, 'a0');
    await sms(B_PHONE, 'b0');
    const a = await patientOf(A_PHONE);
    const b = await patientOf(B_PHONE);
    const burst = Array.from({ length: 10 }, (_, i) => [h.sendSms(A_PHONE, `a${i + 1}`), h.sendSms(B_PHONE, `b${i + 1}`)]).flat();
    const merge = h.api('POST', `/api/patients/${a}/merge`, { token: admin.token, body: { patientId: b } });
    const [results, merged] = await Promise.all([Promise.all(burst), merge]);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(merged.status).toBe(201);

    const items = await timeline(a);
    const bodies = messageBodies(items);
    expect(bodies).toHaveLength(22);
    expect(new Set(bodies).size).toBe(22);
    expect(items.map((i) => i.seq)).toEqual(items.map((_, i) => i + 1));
    const stray = await h.database.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM messages WHERE patient_id = $1)::int + (SELECT count(*) FROM patient_events WHERE patient_id = $1)::int AS n`,
      [b],
    );
    expect(stray.rows[0]!.n).toBe(0);
    // Per-number order is the order we accepted them in (each log's order survived the merge).
    const aOrder = items.filter((i) => i.type === 'message' && i.address === A_PHONE).map((i) => i.body);
    const accepted = await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE address = $1 ORDER BY created_at, seq`, [A_PHONE]);
    expect(aOrder[0]).toBe('a0');
    expect(new Set(aOrder)).toEqual(new Set(accepted.rows.map((r) => r.body)));
  });
});
