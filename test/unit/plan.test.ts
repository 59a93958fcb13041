import { describe, expect, it } from 'vitest';
import { parseConfig, type BackendConfig } from '../../functions/core/config.js';
import { imbalanceOf, planBackend } from '../../functions/core/plan.js';
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

  it('keeps the weight of a server without data and says why', () => {
    const plan = planBackend({
      backend: backendConfig(),
      loadBalancer: 'lb1',
      observed: observed([server('s1', { weight: 42 }), server('s2'), server('s3')]),
      measurement: measurement({ s2: 1000, s3: 3000 }, { empty: ['s1'] }),
    });
    expect(actionOf(plan.actions, 's1')).toMatchObject({ kind: 'skip', reason: 'no-data', current: 42 });
    const s1 = actionOf(plan.actions, 's1');
    expect(s1.kind === 'skip' && s1.detail).toContain('null');
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
