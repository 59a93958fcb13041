import { describe, expect, it } from 'vitest';
import { createControlMemory, cyclesPerLifetime, HISTORY_SECONDS, RELOAD_MEMORY_SECONDS, reloadEvidence, updateMemory } from '../../functions/core/control-memory.js';
import type { ObservedBackend } from '../../functions/core/types.js';

function observed(servers: Record<string, { sessions: number; stot?: number }>): ObservedBackend {
  return {
    backend: 'be',
    algorithm: 'leastconn',
    servers: Object.entries(servers).map(([name, s]) => ({
      name,
      status: 'UP',
      admin: 'ready' as const,
      weight: 100,
      initialWeight: 100,
      sessions: s.sessions,
      ...(s.stot === undefined ? {} : { totalSessions: s.stot }),
    })),
  };
}

describe('updateMemory', () => {
  it('keeps the observations of one process, oldest first, up to the history horizon', () => {
    let memory = updateMemory(undefined, observed({ s1: { sessions: 1, stot: 1 } }), 0);
    for (let t = 60; t <= HISTORY_SECONDS + 120; t += 60) memory = updateMemory(memory, observed({ s1: { sessions: 1, stot: 1 + t } }), t);
    expect(memory.records[0]?.at).toBe(120);
    expect(memory.records.at(-1)?.at).toBe(HISTORY_SECONDS + 120);
    expect(memory.reload).toBeNull();
  });

  it('sees a reload when a session counter falls, names it, and remembers the old process\'s connections', () => {
    const before = updateMemory(updateMemory(undefined, observed({ s1: { sessions: 300, stot: 9000 }, s2: { sessions: 100, stot: 4000 } }), 0), observed({ s1: { sessions: 300, stot: 9100 }, s2: { sessions: 100, stot: 4050 } }), 60);
    const after = updateMemory(before, observed({ s1: { sessions: 2, stot: 2 }, s2: { sessions: 0, stot: 0 } }), 120);
    expect(after.reloadedNow).toBe(true);
    expect(after.reload?.why).toContain('s1 fell from 9100 to 2');
    expect(after.reload?.countScale).toBe(200);
    // 400 held, 150 placed in 60 s: a connection lives 400 / 150 ≈ 2.7 cycles.
    expect(after.reload?.cyclesPerLifetime).toBeCloseTo(400 / 150, 6);
    expect(after.records).toHaveLength(1);
    const later = updateMemory(after, observed({ s1: { sessions: 20, stot: 20 }, s2: { sessions: 10, stot: 10 } }), 180);
    expect(later.reloadedNow).toBe(false);
    expect(later.reload?.at).toBe(120);
  });

  it('forgets the reload once the new process holds as many connections, or after a while', () => {
    const reloaded = updateMemory(updateMemory(undefined, observed({ s1: { sessions: 100, stot: 500 } }), 0), observed({ s1: { sessions: 0, stot: 0 } }), 60);
    expect(updateMemory(reloaded, observed({ s1: { sessions: 100, stot: 100 } }), 120).reload).toBeNull();
    expect(updateMemory(reloaded, observed({ s1: { sessions: 10, stot: 10 } }), 60 + RELOAD_MEMORY_SECONDS + 1).reload).toBeNull();
    expect(updateMemory(reloaded, observed({ s1: { sessions: 10, stot: 10 } }), 120).reload).not.toBeNull();
  });

  it('knows a server as new from when it appears until its metrics arrive, and none on the first observation', () => {
    const first = updateMemory(undefined, observed({ a: { sessions: 0 }, quiet: { sessions: 0 } }), 0, new Set(['a']));
    // quiet has no data, but it was there from the start: it cannot be told from broken metrics.
    expect([...first.newServers]).toEqual([]);
    const added = updateMemory(first, observed({ a: { sessions: 0 }, quiet: { sessions: 0 }, b: { sessions: 0 } }), 60, new Set(['a']));
    expect([...added.newServers]).toEqual(['b']);
    // Still no data a cycle later (a dry run in between changes nothing): still new.
    const later = updateMemory(added, observed({ a: { sessions: 0 }, quiet: { sessions: 0 }, b: { sessions: 3 } }), 120, new Set(['a']));
    expect([...later.newServers]).toEqual(['b']);
    // Its metrics arrive: known from then on, even if they stop again.
    const withData = updateMemory(later, observed({ a: { sessions: 0 }, quiet: { sessions: 0 }, b: { sessions: 3 } }), 180, new Set(['a', 'b']));
    expect([...withData.newServers]).toEqual([]);
    expect([...updateMemory(withData, observed({ a: { sessions: 0 }, quiet: { sessions: 0 }, b: { sessions: 3 } }), 240, new Set(['a'])).newServers]).toEqual([]);
  });
});

describe('reloadEvidence', () => {
  it.each([
    ['a counter that grew', 10, 12, false],
    ['a counter that stayed', 10, 10, false],
    ['a counter that fell', 10, 3, true],
  ])('with %s says %s', (_, before, after, reload) => {
    const prev = { at: 0, servers: new Map([['s1', { sessions: 0, totalSessions: before}]]) };
    const now = new Map([['s1', { sessions: 0, totalSessions: after}]]);
    expect(reloadEvidence(prev, now) !== null).toBe(reload);
  });

  it('cannot tell without the stot column: no reload', () => {
    const prev = { at: 0, servers: new Map([['s1', { sessions: 100, totalSessions: undefined}]]) };
    expect(reloadEvidence(prev, new Map([['s1', { sessions: 0, totalSessions: undefined}]]))).toBeNull();
  });
});

describe('cyclesPerLifetime', () => {
  it('is connections held over connections placed per cycle (Little\'s law)', () => {
    const records = [0, 60, 120].map((at) => ({ at, servers: new Map([['s1', { sessions: 300, totalSessions: at / 6}]]) }));
    // 20 placed in 120 s = 10 per 60 s cycle; 300 held → 30 cycles.
    expect(cyclesPerLifetime(records)).toBeCloseTo(30, 6);
    expect(cyclesPerLifetime(records.slice(0, 1))).toBeUndefined();
  });
});

describe('createControlMemory', () => {
  it('keeps one memory per backend and load balancer', () => {
    const store = createControlMemory();
    const m = updateMemory(undefined, observed({ a: { sessions: 1 } }), 0);
    store.set('be', 'lb1', m);
    expect(store.get('be', 'lb1')).toBe(m);
    expect(store.get('be', 'lb2')).toBeUndefined();
  });
});
