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
