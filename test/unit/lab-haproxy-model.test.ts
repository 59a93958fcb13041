import { describe, expect, it } from 'vitest';
import { LeastconnBalancer, RoundrobinBalancer } from '../../research/lab/haproxy-model.js';

/** A leastconn balancer with every server up, the given weights and active connections. */
function leastconn(weights: readonly number[], active: readonly number[]): LeastconnBalancer {
  const b = new LeastconnBalancer(weights.length, 256);
  weights.forEach((w, s) => {
    b.setUp(s, true);
    b.setWeight(s, w);
  });
  active.forEach((count, s) => {
    for (let i = 0; i < count; i++) b.connected(s);
  });
  return b;
}

describe('leastconn model', () => {
  it.each([
    // keys floor((active + 1) · 256 / weight): [2·256/256, 3·256/256, 4·256/256] = [2, 3, 4]
    { weights: [256, 256, 256], active: [1, 2, 3], expected: 0 },
    // [4·256/256, 3·256/256, 2·256/128] = [4, 3, 4]
    { weights: [256, 256, 128], active: [3, 2, 1], expected: 1 },
    // a double weight halves the key: [11·256/256, 6·256/64] = [11, 24]
    { weights: [256, 64], active: [10, 5], expected: 0 },
    // [101·256/256, 41·256/100] = [101, 104.96 → 104]: more connections, still the lowest key
    { weights: [256, 100], active: [100, 40], expected: 0 },
    // [21·256/200, 11·256/100] = [26.88 → 26, 28.16 → 28]
    { weights: [200, 100], active: [20, 10], expected: 0 },
  ])('picks the lowest (active + 1) / weight: weights $weights, active $active → server $expected', ({ weights, active, expected }) => {
    expect(leastconn(weights, active).pick()).toBe(expected);
  });

  it('sends the next connection to an idle server whatever its weight (HAProxy key 0)', () => {
    expect(leastconn([256, 256, 1], [1, 1, 0]).pick()).toBe(2);
  });

  it('breaks ties in favour of the server that has held its key the longest', () => {
    // Both at key floor(2 · 256 / 256) = 2; server 1 got there first, then server 0 moved to 3 and back to 2.
    const b = leastconn([256, 256], [0, 1]);
    b.connected(0);
    b.connected(0);
    b.disconnected(0);
    expect(b.pick()).toBe(1);
  });

  it('queues a server behind its equals again when its key changes and comes back', () => {
    const b = leastconn([200, 256], [0, 0]);
    // server 1: 4 active → key floor(5 · 256 / 256) = 5
    for (let i = 0; i < 4; i++) b.connected(1);
    // server 0: 3 active → key floor(4 · 256 / 200) = floor(5.12) = 5, reached after server 1
    for (let i = 0; i < 3; i++) b.connected(0);
    expect(b.pick()).toBe(1);
    // server 1 goes to 5 → key 6 and back to 4 → key 5: now it is the newer of the two
    b.connected(1);
    b.disconnected(1);
    expect(b.pick()).toBe(0);
  });

  it('never picks a server that is down, and picks nothing when all are down', () => {
    const b = leastconn([256, 256], [5, 0]);
    b.setUp(1, false);
    expect(b.pick()).toBe(0);
    b.setUp(0, false);
    expect(b.pick()).toBe(-1);
  });

  it('spreads connections in proportion to the weights as they accumulate', () => {
    const b = leastconn([256, 128, 64], [0, 0, 0]);
    for (let i = 0; i < 700; i++) b.connected(b.pick());
    // shares 4:2:1 of 700
    expect([b.sessions(0), b.sessions(1), b.sessions(2)].map((n) => Math.round(n / 100))).toEqual([4, 2, 1]);
  });
});

describe('roundrobin model', () => {
  it.each([
    { weights: [1, 1, 1], counts: [100, 100, 100] },
    { weights: [1, 2, 3, 4], counts: [30, 60, 90, 120] },
    { weights: [256, 128, 1], counts: [256, 128, 1] },
  ])('gives new connections in proportion to weights $weights', ({ weights, counts }) => {
    const b = new RoundrobinBalancer(weights.length, 1);
    weights.forEach((w, s) => {
      b.setUp(s, true);
      b.setWeight(s, w);
    });
    const total = counts.reduce((a, c) => a + c, 0);
    const got = new Array<number>(weights.length).fill(0);
    for (let i = 0; i < total; i++) {
      const s = b.pick();
      got[s] = (got[s] ?? 0) + 1;
    }
    expect(got).toEqual(counts);
  });

  it('interleaves picks smoothly instead of sending a run to the heaviest server', () => {
    const b = new RoundrobinBalancer(2, 1);
    b.setUp(0, true);
    b.setUp(1, true);
    b.setWeight(0, 2);
    b.setWeight(1, 1);
    expect(Array.from({ length: 6 }, () => b.pick())).toEqual([0, 1, 0, 0, 1, 0]);
  });

  it('ignores how many connections each server holds', () => {
    const b = new RoundrobinBalancer(2, 1);
    b.setUp(0, true);
    b.setUp(1, true);
    for (let i = 0; i < 50; i++) b.connected(0);
    expect([b.pick(), b.pick()]).toEqual([0, 1]);
  });
});
