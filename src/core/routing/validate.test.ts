import { describe, expect, it } from 'vitest';
import { NINE_TO_FIVE } from './fixtures.ts';
import { validateRuleSet, type ValidationContext } from './validate.ts';

const context: ValidationContext = { coordinatorIds: ['c1', 'c2'], teamIds: ['intake', 'spanish'] };

const validInput = {
  version: 3,
  teams: [{ id: 'intake', timeZone: 'America/New_York', weeklyHours: NINE_TO_FIVE, holidays: ['2026-12-25'] }],
  rules: [
    {
      id: 'after-hours',
      name: 'After hours',
      conditions: { not: { fact: 'time', op: 'within_hours', value: { team: 'intake' } } },
      target: { kind: 'sticky' },
      fallbacks: [{ target: { kind: 'team', teamId: 'intake', strategy: 'round_robin' }, afterMinutes: 0 }],
      actions: [{ type: 'auto_reply', text: 'We are closed. Call 911 in an emergency.', minIntervalMinutes: 240 }],
    },
    {
      id: 'spanish',
      name: 'Spanish speakers',
      conditions: {
        any: [
          { fact: 'patient.language', op: 'eq', value: 'es' },
          { fact: 'message.text', op: 'matches', value: '\\b(hola|gracias)\\b' },
        ],
      },
      target: { kind: 'team', teamId: 'spanish', strategy: 'least_loaded', requiredSkills: ['es'] },
      overrideAssignment: true,
    },
    {
      id: 'vip',
      name: 'VIP',
      conditions: {
        all: [
          { fact: 'patient.attributes.plan', op: 'in', value: ['gold', 'platinum'] },
          { fact: 'message.channel', op: 'in', value: ['sms', 'whatsapp'] },
        ],
      },
      target: { kind: 'coordinator', coordinatorId: 'c2' },
      actions: [{ type: 'set_priority', priority: 'high' }],
    },
  ],
  defaultRule: { target: { kind: 'team', teamId: 'intake', strategy: 'least_loaded' }, queueTeamId: 'intake' },
};

describe('validateRuleSet', () => {
  it('accepts a valid rule set and fills in defaults', () => {
    const result = validateRuleSet(validInput, context);
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    expect(result.ruleSet.rules[0]).toMatchObject({ enabled: true, overrideAssignment: false });
    expect(result.ruleSet.rules[1]?.fallbacks).toEqual([]);
    expect(result.ruleSet.defaultRule.name).toBe('Default');
  });

  it('lists every error at once: schema, references, facts, regexes', () => {
    const input = {
      teams: [{ id: 'ghost-team', timeZone: 'Mars/Olympus', weeklyHours: { mon: [{ start: '17:00', end: '09:00' }] } }],
      rules: [
        {
          id: 'a',
          name: 'Broken conditions',
          conditions: {
            all: [
              { fact: 'patient.langauge', op: 'eq', value: 'es' },
              { fact: 'message.text', op: 'matches', value: '(a)\\1' },
              { fact: 'message.text', op: 'matches', value: '([a-z' },
              { fact: 'patient.tags', op: 'gt', value: 3 },
              { fact: 'message.channel', op: 'eq', value: 'smss' },
              { fact: 'message.hasMedia', op: 'eq', value: 'true' },
              { fact: 'time', op: 'within_hours', value: { team: 'spanish' } },
              { fact: 'patient.program', op: 'exists', value: false },
              { fact: 'patient.program', op: 'between', value: [1, 2] },
              { all: [], any: [] },
            ],
          },
          target: { kind: 'coordinator', coordinatorId: 'nobody' },
          fallbacks: [{ target: { kind: 'team', teamId: 'no-team', strategy: 'random' }, afterMinutes: -1 }],
          actions: [{ type: 'auto_reply', text: '' }],
        },
        { id: 'a', name: 'Duplicate id', conditions: { all: [] }, target: { kind: 'team', teamId: 'nope', strategy: 'round_robin' } },
        { id: 'default', name: 'Reserved', conditions: { all: [] }, target: { kind: 'sticky' }, queueTeamId: 'nope2' },
      ],
    };
    const result = validateRuleSet(input, context);
    expect(result.ok).toBe(false);
    const errors = result.ok ? [] : result.errors;
    const at = (path: string) => errors.filter((e) => e.path === path).map((e) => e.message);

    expect(at('defaultRule')).toEqual([expect.stringContaining('default rule is required')]);
    expect(at('teams[0].id')).toEqual(['unknown team "ghost-team"']);
    expect(at('teams[0].timeZone')).toEqual(['unknown IANA time zone']);
    expect(at('teams[0].weeklyHours.mon[0].end')).toEqual([expect.stringContaining('start must be before end')]);

    const c = 'rules[0].conditions.all';
    expect(at(`${c}[0].fact`)).toEqual(['unknown fact "patient.langauge"; did you mean "patient.language"?']);
    expect(at(`${c}[1].value`)).toEqual([expect.stringContaining('backreferences (\\1) are not supported')]);
    expect(at(`${c}[2].value`)).toEqual([expect.stringContaining('invalid regular expression')]);
    expect(at(`${c}[3].op`)).toEqual(['"gt" does not apply to patient.tags (a list)']);
    expect(at(`${c}[4].value`)).toEqual(['message.channel: "smss" is not one of sms, messenger, whatsapp, webchat, email, voice']);
    expect(at(`${c}[5].value`)).toEqual(['message.hasMedia: expected true or false, got "true"']);
    expect(at(`${c}[6].value.team`)).toEqual([`team "spanish" has no business hours in this rule set's "teams"`]);
    expect(at(`${c}[7]`)).toEqual([expect.stringContaining('value')]);
    expect(at(`${c}[8].op`)).toEqual([expect.stringContaining('Invalid discriminator')]);
    expect(at(`${c}[9]`)).toEqual([expect.stringContaining('exactly one of')]);

    expect(at('rules[0].target.coordinatorId')).toEqual(['unknown coordinator "nobody"']);
    expect(at('rules[0].fallbacks[0].target.teamId')).toEqual(['unknown team "no-team"']);
    expect(at('rules[0].fallbacks[0].target.strategy')).toHaveLength(1);
    expect(at('rules[0].fallbacks[0].afterMinutes')).toHaveLength(1);
    expect(at('rules[0].actions[0].text')).toHaveLength(1);
    expect(at('rules[0].actions[0].minIntervalMinutes')).toHaveLength(1);
    expect(at('rules[1].id')).toEqual(['rule id "a" is used twice']);
    expect(at('rules[1].target.teamId')).toEqual(['unknown team "nope"']);
    expect(at('rules[2].id')).toEqual(['"default" is reserved for the default rule']);
    expect(at('rules[2].queueTeamId')).toEqual(['unknown team "nope2"']);
    expect(errors.length).toBeGreaterThanOrEqual(24);
    // Sorted by position in the document, so an editor can walk them top to bottom.
    expect(errors[0]?.path).toBe('defaultRule');
  });

  it('refuses what RE2 cannot run, naming the feature', () => {
    const cases: Array<[string, string]> = [
      ['(a)\\1', 'backreferences (\\1) are not supported'],
      ['(?<n>a)\\k<n>', 'named backreferences'],
      ['foo(?=bar)', 'lookahead'],
      ['foo(?!bar)', 'lookahead'],
      ['(?<=\\$)\\d+', 'lookbehind'],
      ['(?<!no )pain', 'lookbehind'],
      ['(.*a){1,32000}[bc]', 'invalid regular expression'],
    ];
    for (const [pattern, message] of cases) {
      const input = structuredClone(validInput);
      (input.rules[1]!.conditions as { any: Array<{ value: unknown }> }).any[1]!.value = pattern;
      const result = validateRuleSet(input, context);
      expect(result.ok ? [] : result.errors, pattern).toEqual([
        { path: 'rules[1].conditions.any[1].value', message: expect.stringContaining(message) },
      ]);
    }
  });

  it('accepts nested quantifiers, which RE2 runs in linear time, and literal look-alikes', () => {
    for (const pattern of ['(a+)+$', '^(a|a)*$', '(x+x+)+y', '[(?=]x', '\\(?=', '\\\\1']) {
      const input = structuredClone(validInput);
      (input.rules[1]!.conditions as { any: Array<{ value: unknown }> }).any[1]!.value = pattern;
      expect(validateRuleSet(input, context).ok, pattern).toBe(true);
    }
  });

  it('checks references in the default rule', () => {
    const input = { ...validInput, defaultRule: { target: { kind: 'coordinator', coordinatorId: 'zed' }, queueTeamId: 'gone' } };
    const result = validateRuleSet(input, context);
    expect(result.ok ? [] : result.errors).toEqual([
      { path: 'defaultRule.queueTeamId', message: 'unknown team "gone"' },
      { path: 'defaultRule.target.coordinatorId', message: 'unknown coordinator "zed"' },
    ]);
  });

  it('accepts any custom attribute unless knownFactPaths lists them', () => {
    expect(validateRuleSet(validInput, context).ok).toBe(true);
    const strict = validateRuleSet(validInput, { ...context, knownFactPaths: ['patient.attributes.tier'] });
    expect(strict.ok ? [] : strict.errors).toEqual([
      { path: 'rules[2].conditions.all[0].fact', message: 'unknown fact "patient.attributes.plan"' },
    ]);
    expect(validateRuleSet(validInput, { ...context, knownFactPaths: ['patient.attributes.plan'] }).ok).toBe(true);
  });

  it('reports schema errors in one rule and reference errors in another together', () => {
    const input = structuredClone(validInput) as { rules: Array<Record<string, unknown>> };
    input.rules[0]!.name = 42;
    input.rules[2]!.target = { kind: 'coordinator', coordinatorId: 'ghost' };
    const result = validateRuleSet(input, context);
    expect((result.ok ? [] : result.errors).map((e) => e.path)).toEqual(['rules[0].name', 'rules[2].target.coordinatorId']);
  });

  it('refuses conditions nested absurdly deep, without throwing', () => {
    let conditions: unknown = { fact: 'patient.program', op: 'exists' };
    for (let i = 0; i < 5000; i++) conditions = { not: conditions };
    const input = structuredClone(validInput) as { rules: Array<Record<string, unknown>> };
    input.rules[0]!.conditions = conditions;
    const result = validateRuleSet(input, context);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.errors.map((e) => e.message)).toContainEqual(expect.stringContaining('nested deeper than 32'));
  });

  it('rejects input that is not a rule set at all', () => {
    for (const input of [null, 42, 'rules', [], {}]) {
      const result = validateRuleSet(input, context);
      expect(result.ok).toBe(false);
    }
  });
});
