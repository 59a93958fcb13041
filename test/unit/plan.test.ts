import { describe, expect, it } from 'vitest';
import { parseConfig, type BackendConfig } from '../../functions/core/config.js';
import { updateMemory, type BackendMemory } from '../../functions/core/control-memory.js';
import { boundsOf, decideBackend, estimateLoadsNow, imbalanceOf, inService, planBackend } from '../../functions/core/plan.js';
import type { Action, ObservedBackend, ObservedServer } from '../../functions/core/types.js';

function backendConfig(overrides: Record<string, unknown> = {}): BackendConfig {
  const config = parseConfig({
    graphite: { url: 'http://127.0.0.1:8080' },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/tmp/x.sock' }] },
    backends: [{ name: 'be', target: 'x.*', weighting: { function: 'limited-proportions' }, ...overrides }],
  });
  const [backend] = config.backends;
  if (backend === undefined) throw new Error('no backend');
  return backend;
}

function server(name: string, overrides: Partial<ObservedServer> = {}): ObservedServer {
  return { name, status: 'UP', admin: 'ready', weight: 100, initialWeight: 100, sessions: 0, ...overrides };
}

function observed(servers: ObservedServer[], algorithm = 'leastconn'): ObservedBackend {
  return { backend: 'be', algorithm, servers };
}

function measurement(loads: Record<string, number>, extra: { empty?: string[]; ambiguous?: string[] } = {}) {
  return { loads: new Map(Object.entries(loads)), empty: extra.empty ?? [], ambiguous: extra.ambiguous ?? [] };
}

function actionOf(actions: readonly Action[], name: string): Action {
  const a = actions.find((x) => x.server === name);
  if (a === undefined) throw new Error(`no action for ${name}`);
  return a;
}

describe('planBackend', () => {
  it('gives the loaded server a lower weight than the others', () => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2'), server('s3')]),
      measurement: measurement({ s1: 5000, s2: 1000, s3: 1000 }),
    });
    expect(plan.status).toBe('planned');
    const w = (n: string) => {
      const a = actionOf(plan.actions, n);
      return a.kind === 'set-weight' ? a.weight : a.current;
    };
    expect(w('s1')).toBeLessThan(w('s2'));
    expect(w('s2')).toBe(w('s3'));
  });

  it.each([
    ['maint', { admin: 'maint' as const, status: 'MAINT' }],
    ['drain', { admin: 'drain' as const, status: 'DRAIN' }],
    ['weight-zero', { weight: 0 }],
  ])('never touches a server in %s', (reason, overrides) => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', overrides), server('s2'), server('s3')]),
      measurement: measurement({ s1: 1, s2: 1000, s3: 3000 }),
    });
    expect(plan.status).toBe('planned');
    expect(actionOf(plan.actions, 's1')).toMatchObject({ kind: 'skip', reason });
  });

  it('keeps the share of a server without data while the others are rescaled, and says why', () => {
    const decision = decideBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { weight: 50 }), server('s2'), server('s3')]),
      measurement: measurement({ s2: 1000, s3: 3000 }, { empty: ['s1'] }),
    });
    // limited-proportions: s2 → 256, s3 → 85; the weighed servers went from 200 to 341 in all, so
    // s1 goes from 50 to 50 · 341 / 200: its share of new connections (50 / 250) stays 20%.
    const w = (n: string) => {
      const a = actionOf(decision.plan.actions, n);
      return a.kind === 'set-weight' ? a.weight : a.current;
    };
    expect([w('s2'), w('s3')]).toEqual([256, 85]);
    expect(w('s1')).toBe(Math.round((50 * 341) / 200));
    expect(w('s1') / (w('s1') + w('s2') + w('s3'))).toBeCloseTo(0.2, 2);
    expect(decision.explanations.get('s1')).toMatchObject({ rule: 'keep-share', load: null });
    expect(decision.explanations.get('s1')?.detail).toContain('null');
  });

  it('skips the whole backend when fewer servers than the quorum have data', () => {
    const plan = planBackend({
      backend: backendConfig({ quorum: 0.75 }),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2'), server('s3'), server('s4')]),
      measurement: measurement({ s1: 10, s2: 20 }),
    });
    expect(plan).toMatchObject({ status: 'skipped', reason: 'no-quorum' });
    expect(plan.status === 'skipped' && plan.message).toContain('2 of 4');
    expect(plan.actions.every((a) => a.kind !== 'set-weight')).toBe(true);
  });

  it('tells each server of a skipped backend why it keeps its weight, guards first, in HAProxy order', () => {
    // 10,000 servers: every 10th in MAINT, then by turns with data, only null points, two series, nothing.
    const names = Array.from({ length: 10_000 }, (_, i) => `s${i}`);
    const kinds = ['maint', 'data', 'empty', 'ambiguous', 'missing'] as const;
    const kindOf = (i: number): (typeof kinds)[number] => (i % 10 === 0 ? 'maint' : (kinds[1 + (i % 4)] ?? 'missing'));
    const plan = planBackend({
      backend: backendConfig({ quorum: 0.5 }),
      loadBalancer: 'lb1',
      observed: observed(names.map((n, i) => server(n, kindOf(i) === 'maint' ? { admin: 'maint', status: 'MAINT' } : {}))),
      measurement: measurement(Object.fromEntries(names.filter((_, i) => kindOf(i) === 'data').map((n) => [n, 10])), {
        empty: names.filter((_, i) => kindOf(i) === 'empty'),
        ambiguous: names.filter((_, i) => kindOf(i) === 'ambiguous'),
      }),
    });
    expect(plan).toMatchObject({ status: 'skipped', reason: 'no-quorum' });
    expect(plan.actions.map((a) => a.server)).toEqual(names);
    const expected = {
      maint: { kind: 'skip', reason: 'maint' },
      data: { kind: 'unchanged', load: 10 },
      empty: { kind: 'skip', reason: 'no-data', detail: 'only null points in the window: keeps its weight' },
      ambiguous: { kind: 'skip', reason: 'no-data', detail: 'several Graphite series map to this server: keeps its weight' },
      missing: { kind: 'skip', reason: 'no-data', detail: 'no Graphite series for this server: keeps its weight' },
    };
    plan.actions.forEach((a, i) => expect(a).toMatchObject(expected[kindOf(i)]));
  });

  it('leaves a server the runtime API cannot address alone, with the reason, and plans the others', () => {
    const why = 'its name is 2000 characters long; haproxy-weighter addresses names of up to 1024 characters';
    const long = 'l'.repeat(2000);
    const plan = planBackend({
      backend: backendConfig({ quorum: 1 }),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server(long, { unaddressable: why }), server('s2')]),
      measurement: measurement({ s1: 5000, [long]: 10, s2: 1000 }),
    });
    // Not a candidate: quorum 1 still holds with the other two servers.
    expect(plan.status).toBe('planned');
    expect(actionOf(plan.actions, long)).toEqual({ kind: 'skip', server: long, load: 10, current: 100, reason: 'unaddressable', detail: why });
    expect(plan.actions.map((a) => a.kind)).toEqual(['set-weight', 'skip', 'set-weight']);
  });

  it.each(['static-rr'])('reports a backend balanced by %s as unsupported', (algorithm) => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2')], algorithm),
      measurement: measurement({ s1: 10, s2: 20 }),
    });
    expect(plan).toMatchObject({ status: 'skipped', reason: 'unsupported-algorithm' });
    expect(plan.status === 'skipped' && plan.message).toContain(algorithm);
  });

  it('writes nothing when the new weight equals the current one', () => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { weight: 256 }), server('s2', { weight: 256 })]),
      measurement: measurement({ s1: 10, s2: 10 }),
    });
    expect(plan.actions.map((a) => a.kind)).toEqual(['unchanged', 'unchanged']);
  });

  it('writes unchanged weights too when forced', () => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { weight: 256 }), server('s2', { weight: 256 })]),
      measurement: measurement({ s1: 10, s2: 10 }),
      force: true,
    });
    expect(plan.actions).toEqual([
      { kind: 'set-weight', server: 's1', load: 10, current: 256, weight: 256 },
      { kind: 'set-weight', server: 's2', load: 10, current: 256, weight: 256 },
    ]);
  });

  it('limits the change per cycle when maxChangePerCycle is set', () => {
    const plan = planBackend({
      backend: backendConfig({ maxChangePerCycle: 10 }),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2'), server('s3')]),
      measurement: measurement({ s1: 10_000, s2: 10, s3: 10 }),
    });
    for (const a of plan.actions) {
      if (a.kind === 'set-weight') expect(Math.abs(a.weight - a.current)).toBeLessThanOrEqual(10);
    }
    expect(actionOf(plan.actions, 's1')).toMatchObject({ kind: 'set-weight', weight: 90 });
  });

  it('keeps the servers in HAProxy order and ignores loads of servers HAProxy does not have', () => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('b'), server('a')]),
      measurement: measurement({ a: 1, b: 2, ghost: 3 }),
    });
    expect(plan.actions.map((a) => a.server)).toEqual(['b', 'a']);
  });
});

describe('planBackend on hashing backends', () => {
  // show stat prints 'source' for map-based and consistent hashing alike: only HAProxy's answer
  // to the write can tell them apart, so these are planned and the cycle reports a refusal.
  it.each(['source', 'uri'])('plans a backend balanced by %s', (algorithm) => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2')], algorithm),
      measurement: measurement({ s1: 10, s2: 20 }),
    });
    expect(plan.status).toBe('planned');
  });
});

describe('imbalanceOf', () => {
  it.each([
    [[1, 1, 1], 1],
    [[5, 1, 1, 1, 1, 1], 3],
    [[], null],
    [[0, 0], null],
  ])('of %j is %s', (loads, expected) => {
    expect(imbalanceOf(loads)).toBe(expected);
  });
});

/** A memory that has seen `names` once before (with data), so that a server missing from them and without data is new. */
function memoryAfter(names: readonly string[], next: ObservedBackend, now = 120): BackendMemory {
  const first = updateMemory(undefined, observed(names.map((n) => server(n, { sessions: 100, totalSessions: 1000 }))), now - 60, new Set(names));
  return updateMemory(first, next, now, new Set(names));
}

describe('decideBackend: the control loop\'s rules', () => {
  const feedback = (overrides: Record<string, unknown> = {}) => backendConfig({ weighting: { function: 'feedback' }, ...overrides });

  it('gives a server new to the backend, without data yet, the mean weight of the weighed servers', () => {
    const next = observed([server('s1', { sessions: 100, totalSessions: 1100 }), server('s2', { sessions: 100, totalSessions: 1100 }), server('new', { weight: 1, sessions: 0, totalSessions: 0 })]);
    const decision = decideBackend({ backend: feedback(), loadBalancer: 'lb1', observed: next, measurement: measurement({ s1: 900, s2: 1100 }), now: 120, memory: memoryAfter(['s1', 's2'], next) });
    const weights = decision.plan.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    expect(decision.explanations.get('new')?.rule).toBe('new-server');
    // The mean of the unrounded proposals, rounded: within 1 of the mean of the rounded weights.
    expect(Math.abs((weights[2] ?? 0) - ((weights[0] ?? 0) + (weights[1] ?? 0)) / 2)).toBeLessThanOrEqual(1);
  });

  it('gives a new server the configured share of the mean (newServerShare)', () => {
    const next = observed([server('s1', { sessions: 100, totalSessions: 1100 }), server('s2', { sessions: 100, totalSessions: 1100 }), server('new', { weight: 1, sessions: 0, totalSessions: 0 })]);
    const decision = decideBackend({ backend: feedback({ newServerShare: 0.5 }), loadBalancer: 'lb1', observed: next, measurement: measurement({ s1: 1000, s2: 1000 }), now: 120, memory: memoryAfter(['s1', 's2'], next) });
    const w = decision.plan.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    expect((w[2] ?? 0) / (((w[0] ?? 0) + (w[1] ?? 0)) / 2)).toBeCloseTo(0.5, 2);
  });

  it('keeps the share of a server without data when it is not new (a one-shot apply knows no server as new)', () => {
    const next = observed([server('s1', { sessions: 100 }), server('s2', { sessions: 100 }), server('quiet', { weight: 1, sessions: 0 })]);
    const decision = decideBackend({ backend: feedback(), loadBalancer: 'lb1', observed: next, measurement: measurement({ s1: 1000, s2: 1000 }) });
    expect(decision.explanations.get('quiet')?.rule).toBe('keep-share');
    expect(actionOf(decision.plan.actions, 'quiet')).toMatchObject({ kind: 'unchanged', current: 1 });
  });

  it('flags a sinkhole (sessions but no load) and drains it to the lower bound, never giving it more weight or share', () => {
    const decision = decideBackend({
      backend: feedback(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { sessions: 100, weight: 100 }), server('s2', { sessions: 100, weight: 100 }), server('sink', { sessions: 100, weight: 200 })]),
      measurement: measurement({ s1: 1000, s2: 1100, sink: 0 }),
    });
    expect(decision.explanations.get('sink')?.rule).toBe('sinkhole');
    const w = (n: string) => {
      const a = actionOf(decision.plan.actions, n);
      return a.kind === 'set-weight' ? a.weight : a.current;
    };
    // bounds.min (0.25 by default) of the mean weight.
    expect(w('sink')).toBeLessThanOrEqual(Math.ceil(0.25 * ((w('s1') + w('s2')) / 2)));
    expect(w('sink')).toBeLessThan(200);
  });

  it('does not take an idle server without sessions or traffic for a sinkhole', () => {
    const decision = decideBackend({
      backend: feedback(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { sessions: 100 }), server('s2', { sessions: 100 }), server('idle', { sessions: 0 })]),
      measurement: measurement({ s1: 1000, s2: 1000, idle: 0 }),
    });
    expect(decision.explanations.get('idle')?.rule).not.toBe('sinkhole');
  });

  it('keeps every weighed server within the bounds relative to the mean weight', () => {
    const decision = decideBackend({
      backend: backendConfig({ bounds: { min: 0.5, max: 2 } }),
      loadBalancer: 'lb1',
      observed: observed([server('s1'), server('s2'), server('s3'), server('s4')]),
      // limited-proportions alone would give [256, 256, 256, 8].
      measurement: measurement({ s1: 10, s2: 10, s3: 10, s4: 10_000 }),
    });
    const weights = decision.plan.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    const mean = weights.reduce((a, b) => a + b, 0) / weights.length;
    // Against the mean of the bounded weights themselves (within rounding).
    expect(Math.min(...weights) / mean).toBeGreaterThanOrEqual(0.5 - 1 / mean);
    expect(decision.explanations.get('s4')?.rule).toBe('bound');
  });

  it('names the reload the memory saw and scales the deficits by the old process\'s connections', () => {
    const before = observed(['s1', 's2', 's3'].map((n) => server(n, { sessions: 200, totalSessions: 5000 })));
    const after = observed(['s1', 's2', 's3'].map((n, i) => server(n, { weight: 100, sessions: i === 0 ? 1 : 0, totalSessions: i === 0 ? 1 : 0 })));
    const memory = updateMemory(updateMemory(undefined, before, 60), after, 120);
    const decision = decideBackend({ backend: feedback(), loadBalancer: 'lb1', observed: after, measurement: measurement({ s1: 1500, s2: 1000, s3: 500 }), now: 120, memory });
    expect(decision.reload).toContain('fell from 5000 to 1');
    // The server with the one session is the most loaded: it gets the least weight, not the most.
    const w = decision.plan.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    expect(w[0]).toBeLessThan(w[1] ?? 0);
    expect(w[1]).toBeLessThan(w[2] ?? 0);
  });

  it.each([
    ['MAINT', { admin: 'maint' as const, status: 'MAINT' }],
    ['DRAIN', { admin: 'drain' as const, status: 'DRAIN' }],
    ['DOWN', { status: 'DOWN' }],
    ['weight 0', { weight: 0 }],
  ])('leaves a server in %s out of the imbalance', (_, overrides) => {
    const plan = planBackend({
      backend: feedback(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { sessions: 50 }), server('s2', { sessions: 50 }), server('out', overrides)]),
      measurement: measurement({ s1: 500, s2: 500, out: 0 }),
    });
    expect(plan.status === 'planned' && plan.imbalance).toBe(1);
  });

  it('keeps the share of a server out of service (DOWN) rather than weighing its zero load', () => {
    const decision = decideBackend({
      backend: feedback(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { sessions: 50 }), server('s2', { sessions: 50 }), server('down', { status: 'DOWN', weight: 80 })]),
      measurement: measurement({ s1: 400, s2: 600, down: 0 }),
    });
    expect(decision.explanations.get('down')).toMatchObject({ rule: 'keep-share' });
    expect(decision.explanations.get('down')?.detail).toContain('out of service');
  });

  it.each([
    ['UP', true],
    ['UP 1/3', true],
    ['no check', true],
    ['DOWN', false],
    ['DOWN 1/2', false],
    ['NOLB', false],
    ['MAINT', false],
    ['DRAIN', false],
  ])('counts a server whose status is %s as in service: %s', (status, expected) => {
    expect(inService(server('s', { status }))).toBe(expected);
  });
});

describe('boundsOf', () => {
  const BOUNDS = { min: 0.25, max: 10 };
  const feedback = () => backendConfig({ weighting: { function: 'feedback' } });
  // Under roundrobin, with ℓ cycles per lifetime and a count c times the mean: the shares that keep
  // the count expected at the next cycle, c · (1 − 1/ℓ) + s/ℓ, within [0.25, 10] times the mean.
  it.each([
    { algorithm: 'leastconn', lifetime: 30, count: 1, expected: { min: 0.25, max: 10 } },
    { algorithm: 'roundrobin', lifetime: undefined, count: 1, expected: { min: 0.25, max: 10 } },
    { algorithm: 'roundrobin', lifetime: 1, count: 1, expected: { min: 0.25, max: 10 } },
    // An average count: any share down to 0 keeps 29/30 of it, far above a quarter.
    { algorithm: 'roundrobin', lifetime: 30, count: 1, expected: { min: 0, max: 271 } },
    // A count at a fifth of the mean: it must get 30 · 0.25 − 0.2 · 29 = 1.7 even shares.
    { algorithm: 'roundrobin', lifetime: 30, count: 0.2, expected: { min: 1.7, max: 294.2 } },
    // An empty server (a new one): 7.5 even shares at least, as leastconn would fill it first.
    { algorithm: 'roundrobin', lifetime: 30, count: 0, expected: { min: 7.5, max: 300 } },
  ])('bounds a weight under $algorithm, $lifetime cycles per lifetime and $count times the mean count to $expected of the mean', ({ algorithm, lifetime, count, expected }) => {
    const bounds = boundsOf(BOUNDS, algorithm, lifetime, count);
    expect(bounds.min).toBeCloseTo(expected.min, 9);
    expect(bounds.max).toBeCloseTo(expected.max, 9);
  });

  it('lets the default policy give an overloaded roundrobin server no share once the memory knows how long connections live', () => {
    // Three servers of 300 connections; 10 placed per server per minute: connections live 30 cycles.
    const at = (t: number) => observed(['s1', 's2', 's3'].map((n) => server(n, { sessions: 300, totalSessions: 1000 + t / 6 })), 'roundrobin');
    let memory: BackendMemory | undefined;
    for (const t of [0, 60, 120]) memory = updateMemory(memory, at(t), t, new Set(['s1', 's2', 's3']));
    const loads = measurement({ s1: 800, s2: 800, s3: 1400 });
    const withMemory = decideBackend({ backend: feedback(), loadBalancer: 'lb1', observed: at(120), measurement: loads, now: 120, ...(memory === undefined ? {} : { memory }) });
    const weights = withMemory.plan.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    expect(weights[2]).toBe(1);
    expect(withMemory.explanations.get('s3')?.rule).toBe('deficit');
    // Without memory the lifetime is unknown: a gentle tilt, within the configured bounds.
    const oneShot = planBackend({ backend: feedback(), loadBalancer: 'lb1', observed: at(120), measurement: loads });
    const gentle = oneShot.actions.map((a) => (a.kind === 'set-weight' ? a.weight : a.current));
    expect((gentle[2] ?? 0) / (gentle[0] ?? 1)).toBeGreaterThan(0.8);
    expect(gentle[2]).toBeLessThan(gentle[0] ?? 0);
  });
});

describe('estimateLoadsNow', () => {
  const weighed = (name: string, load: number, overrides: Partial<ObservedServer>) => ({ server: server(name, overrides), load });

  it('leaves a load measured within the last cycle as it is', () => {
    const records = [0, 60].map((at) => ({ at, servers: new Map([['s1', { sessions: 10, totalSessions: at }]]) }));
    const loads = estimateLoadsNow([weighed('s1', 50, { sessions: 10, totalSessions: 60 })], new Map([['s1', { start: 40, end: 50 }]]), records, 60, 0);
    expect(loads).toEqual([null]);
  });

  it('adds the mean load of the connections placed since the measurement', () => {
    // Two servers at 100 connections, 1000 load each; s1 took 20 connections after the load's span ended.
    const records = [0, 60, 120, 180].map((at) => ({
      at,
      servers: new Map([
        ['s1', { sessions: at >= 120 ? 120 : 100, totalSessions: at >= 120 ? 120 : 100 }],
        ['s2', { sessions: 100, totalSessions: 100 }],
      ]),
    }));
    const loads = estimateLoadsNow(
      [weighed('s1', 1000, { sessions: 120, totalSessions: 120 }), weighed('s2', 1000, { sessions: 100, totalSessions: 100 })],
      new Map([['s1', { start: 0, end: 10 }], ['s2', { start: 0, end: 10 }]]),
      records,
      180,
      0,
    );
    // mean load per connection 2000 / 220; s1 gains 20 of them.
    expect(loads[0]).toBeCloseTo(1000 + (20 * 2000) / 220, 6);
    expect(loads[1]).toBeCloseTo(1000, 6);
  });

  it('cannot estimate without memory: the measured load stands', () => {
    expect(estimateLoadsNow([weighed('s1', 5, {})], new Map([['s1', { start: 0, end: 10 }]]), [], 100, 0)).toEqual([null]);
  });
});
