import type { Db } from './db/db.ts';

/** Demo data for the web app: a team with a supervisor and canned responses. Runs once, on a fresh demo database. */
export async function seedInboxDemo(db: Db): Promise<void> {
  const team = await db.query<{ id: string }>(`INSERT INTO teams (name) VALUES ('Primary care') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id`);
  const teamId = team.rows[0]!.id;
  await db.query(
    `INSERT INTO team_members (team_id, coordinator_id, role)
     SELECT $1, id, CASE WHEN role = 'supervisor' THEN 'supervisor' ELSE 'member' END FROM coordinators
     WHERE email LIKE '%@demo.switchboard.test' AND role <> 'admin'
     ON CONFLICT DO NOTHING`,
    [teamId],
  );
  const canned = [
    ['refill', 'Refill approved', 'Your refill has been approved. You can pick it up at your pharmacy after 3pm today.'],
    ['reschedule', 'Reschedule', 'Happy to help you reschedule. Which days and times work best for you this week?'],
    ['insurance', 'Insurance check', "I'll check with your insurance and get back to you within one business day."],
    ['thanks', 'Thanks', 'Thank you for letting us know. Is there anything else I can help with?'],
  ];
  for (const [shortcut, title, body] of canned) {
    await db.query(`INSERT INTO canned_responses (shortcut, title, body) VALUES ($1, $2, $3) ON CONFLICT (shortcut) DO NOTHING`, [shortcut, title, body]);
  }
}
