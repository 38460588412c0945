import { describe, expect, it } from 'vitest';
import { coordinator } from './fixtures.ts';
import type { CoordinatorFact } from './facts.ts';
import { pickFromPool } from './strategies.ts';

const minutesAgo = (n: number) => new Date(Date.parse('2026-03-09T15:00:00Z') - n * 60_000).toISOString();

describe('round robin', () => {
  it('cycles through the team in id order as assignments are recorded', () => {
    let team = ['c3', 'c1', 'c2'].map((id) => coordinator(id));
    const picked: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { coordinatorId } = pickFromPool(team, { teamId: 'intake', strategy: 'round_robin' });
      picked.push(coordinatorId ?? 'none');
      team = team.map((c) => (c.id === coordinatorId ? { ...c, lastAssignedAt: new Date(Date.UTC(2026, 2, 9, 15, i)) } : c));
    }
    expect(picked).toEqual(['c1', 'c2', 'c3', 'c1', 'c2', 'c3']);
  });

  it('skips whoever is at capacity or unavailable, and serves the least recently assigned', () => {
    const team = [
      coordinator('c1', { lastAssignedAt: minutesAgo(30) }),
      coordinator('c2', { lastAssignedAt: minutesAgo(60), load: 5, capacity: 5 }),
      coordinator('c3', { lastAssignedAt: minutesAgo(90), status: 'away' }),
      coordinator('c4', { lastAssignedAt: minutesAgo(20) }),
    ];
    const pick = pickFromPool(team, { teamId: 'intake', strategy: 'round_robin' });
    expect(pick).toEqual({ coordinatorId: 'c1', members: 4, eligible: 2, excluded: { unavailable: 1, atCapacity: 1, missingSkills: 0 } });
  });
});

describe('least loaded', () => {
  it('picks the lowest load, then the least recently assigned, then the lowest id', () => {
    const team = [
      coordinator('c1', { load: 2 }),
      coordinator('c2', { load: 1, lastAssignedAt: minutesAgo(5) }),
      coordinator('c3', { load: 1, lastAssignedAt: minutesAgo(50) }),
      coordinator('c4', { load: 0, status: 'out_of_office' }),
    ];
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded' }).coordinatorId).toBe('c3');
    const tied = [coordinator('b', { load: 1 }), coordinator('a', { load: 1 })];
    expect(pickFromPool(tied, { teamId: 'intake', strategy: 'least_loaded' }).coordinatorId).toBe('a');
  });

  it('never picks someone at capacity, however light the others are', () => {
    const team = [coordinator('c1', { load: 3, capacity: 3 }), coordinator('c2', { load: 9, capacity: 10 })];
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded' }).coordinatorId).toBe('c2');
  });
});

describe('longest idle', () => {
  it('picks the earliest idleSince, falling back to lastAssignedAt; never active comes first', () => {
    const team = [
      coordinator('c1', { idleSince: minutesAgo(10), lastAssignedAt: minutesAgo(200) }),
      coordinator('c2', { idleSince: minutesAgo(40) }),
      coordinator('c3', { lastAssignedAt: minutesAgo(30) }),
    ];
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'longest_idle' }).coordinatorId).toBe('c2');
    expect(pickFromPool([...team, coordinator('c9')], { teamId: 'intake', strategy: 'longest_idle' }).coordinatorId).toBe('c9');
  });

  it('breaks ties by load, then id', () => {
    const same = minutesAgo(15);
    const team = [coordinator('c1', { idleSince: same, load: 2 }), coordinator('c3', { idleSince: same, load: 1 }), coordinator('c2', { idleSince: same, load: 1 })];
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'longest_idle' }).coordinatorId).toBe('c2');
  });
});

describe('pool membership and skills', () => {
  const team: CoordinatorFact[] = [
    coordinator('c1', { teamIds: ['intake'], languages: ['en'] }),
    coordinator('c2', { teamIds: ['intake', 'spanish'], languages: ['en', 'ES'] }),
    coordinator('c3', { teamIds: ['intake'], skills: ['insulin-pump'], languages: ['es'] }),
    coordinator('c4', { teamIds: ['cardio'], skills: ['insulin-pump'], languages: ['es'] }),
  ];

  it('only considers members of the team', () => {
    const pick = pickFromPool(team, { teamId: 'cardio', strategy: 'least_loaded' });
    expect(pick.coordinatorId).toBe('c4');
    expect(pick.members).toBe(1);
  });

  it('requires every skill, counting languages as skills, case-insensitively', () => {
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded', requiredSkills: ['es'] }).coordinatorId).toBe('c2');
    const both = pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded', requiredSkills: ['es', 'insulin-pump'] });
    expect(both).toEqual({ coordinatorId: 'c3', members: 3, eligible: 1, excluded: { unavailable: 0, atCapacity: 0, missingSkills: 2 } });
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded', requiredSkills: ['fr'] }).coordinatorId).toBeNull();
  });

  it('leaves out excluded coordinators', () => {
    expect(pickFromPool(team, { teamId: 'intake', strategy: 'least_loaded', excludeIds: new Set(['c1']) }).coordinatorId).toBe('c2');
  });

  it('answers null for an empty or unknown team', () => {
    expect(pickFromPool([], { teamId: 'intake', strategy: 'round_robin' })).toEqual({
      coordinatorId: null,
      members: 0,
      eligible: 0,
      excluded: { unavailable: 0, atCapacity: 0, missingSkills: 0 },
    });
  });

  it('treats a missing or NaN capacity as no room', () => {
    const odd = [coordinator('c1', { capacity: Number.NaN }), coordinator('c2', { capacity: Infinity, load: 1000 })];
    expect(pickFromPool(odd, { teamId: 'intake', strategy: 'least_loaded' }).coordinatorId).toBe('c2');
  });
});
