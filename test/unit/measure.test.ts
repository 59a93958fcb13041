import { describe, expect, it } from 'vitest';
import { measure, seriesToServer } from '../../functions/core/measure.js';

describe('seriesToServer', () => {
  it.each([
    ['ingest-1', undefined, 'ingest-1'],
    ['ingest-1', { pattern: '^ingest-(\\d+)$', template: 'srv$1' }, 'srv1'],
    ['other', { pattern: '^ingest-(\\d+)$', template: 'srv$1' }, null],
    ['a;shutdown sessions', undefined, null],
    ['$(reboot)', undefined, null],
    ['s1\nset server x/y weight 1', undefined, null],
    ['x'.repeat(1025), undefined, null],
    ['-canary', undefined, '-canary'],
  ])('maps %j with %j to %j', (name, map, expected) => {
    expect(seriesToServer(name, map)).toBe(expected);
  });
});

describe('measure', () => {
  it('aggregates each series, notes empty and ambiguous servers and unmapped series', () => {
    const m = measure(
      [
        { name: 's1', values: [1, 2, null] },
        { name: 's2', values: [null, null] },
        { name: 's3', values: [5] },
        { name: 's3', values: [6] },
        { name: 'bad name', values: [1] },
      ],
      { aggregation: 'leading-edge', serverMap: undefined },
    );
    expect(Object.fromEntries(m.loads)).toEqual({ s1: 2 });
    expect(m.empty).toEqual(['s2']);
    expect(m.ambiguous).toEqual(['s3']);
    expect(m.unmapped).toEqual(['bad name']);
  });

  it('averages the non-null points when asked to', () => {
    const m = measure([{ name: 's1', values: [1, null, 3] }], { aggregation: 'average', serverMap: undefined });
    expect(m.loads.get('s1')).toBe(2);
  });
});

describe('measure: servers no load balancer has', () => {
  const known = new Set(['s1', 's2']);
  const series = [
    { name: 's1', values: [1, 2] },
    { name: 'ghost-a', values: [7] },
    { name: 's2', values: [null] },
    { name: 'ghost-b', values: [null, null] },
    { name: 'ghost-c', values: [1] },
    { name: 'ghost-c', values: [2] },
    { name: 'ghost-d', values: [null, 3] },
  ];

  it('names the unknown servers with a load, in order, and keeps them out of every other field', () => {
    const m = measure(series, { aggregation: 'leading-edge', serverMap: undefined }, known);
    expect(Object.fromEntries(m.loads)).toEqual({ s1: 2 });
    expect(m.empty).toEqual(['s2']);
    expect(m.ambiguous).toEqual([]);
    // ghost-b has only null points and ghost-c two series: neither has one load to name.
    expect(m.unknownServers).toEqual(['ghost-a', 'ghost-d']);
    expect(m.mappedSeries).toBe(7);
    expect(m.seriesWithPoints).toBe(5);
  });

  it('counts every server as known without the set, as it did before the load balancers answered', () => {
    const m = measure(series, { aggregation: 'leading-edge', serverMap: undefined });
    expect(Object.fromEntries(m.loads)).toEqual({ s1: 2, 'ghost-a': 7, 'ghost-d': 3 });
    expect(m.empty).toEqual(['s2', 'ghost-b']);
    expect(m.ambiguous).toEqual(['ghost-c']);
    expect(m.unknownServers).toEqual([]);
  });

  it('applies the server map before asking whether a load balancer has the server', () => {
    const m = measure([{ name: 'ingest-1', values: [5] }, { name: 'ingest-9', values: [6] }], { aggregation: 'leading-edge', serverMap: { pattern: '^ingest-(\\d+)$', template: 's$1' } }, known);
    expect(Object.fromEntries(m.loads)).toEqual({ s1: 5 });
    expect(m.unknownServers).toEqual(['s9']);
  });
});

describe('measure: when the loads were measured', () => {
  const dated = (values: (number | null)[], start: number, step: number) => ({ values, timestamps: values.map((_, i) => start + i * step) });

  it.each([
    // Points dated 1000, 1010, 1020 (10 s buckets), the newest null: the leading edge covers [1010, 1020).
    ['leading-edge', [1, 2, null], { start: 1010, end: 1020 }],
    // The average covers from the oldest point's bucket to the newest's.
    ['average', [1, 2, null], { start: 1000, end: 1020 }],
    ['average', [null, 4, null, 6], { start: 1010, end: 1040 }],
  ] as const)('with %s over %j covers %j', (aggregation, values, span) => {
    const m = measure([{ name: 's1', ...dated([...values], 1000, 10) }], { aggregation, serverMap: undefined });
    expect(m.spans.get('s1')).toEqual(span);
  });

  it('knows the newest point of any series, to tell an empty window from missing metrics', () => {
    const m = measure([{ name: 's1', ...dated([1, null, null], 1000, 60) }, { name: 's2', ...dated([null, 3, null], 1000, 60) }, { name: 's3', ...dated([null, null, null], 1000, 60) }], {
      aggregation: 'leading-edge',
      serverMap: undefined,
    });
    expect(m.newestPoint).toBe(1120);
    expect(m.mappedSeries).toBe(3);
  });

  it('has no span and no newest point for series without timestamps', () => {
    const m = measure([{ name: 's1', values: [1, 2] }], { aggregation: 'leading-edge', serverMap: undefined });
    expect(m.spans.size).toBe(0);
    expect(m.newestPoint).toBeNull();
  });
});
