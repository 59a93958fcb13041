import { describe, expect, it } from 'vitest';
import { aggregate, relativeLoads } from '../../functions/core/aggregate.js';
import { UnsafeInputError } from '../../functions/core/errors.js';

describe('aggregate', () => {
  it.each([
    { name: 'takes the last point', values: [1, 2, 3], expected: 3 },
    { name: 'skips trailing nulls (the newest Graphite bucket is often still empty)', values: [1, 2, 7, null, null], expected: 7 },
    { name: 'skips nulls between points', values: [null, 4, null, 5, null], expected: 5 },
    { name: 'reads a single point', values: [42], expected: 42 },
    { name: 'keeps a last point of 0 as a load of 0, not as missing', values: [5, 0, null], expected: 0 },
    { name: 'returns null when every point is null', values: [null, null, null], expected: null },
    { name: 'returns null for an empty series', values: [], expected: null },
  ])('leading edge $name', ({ values, expected }) => {
    expect(aggregate(values, 'leading-edge')).toBe(expected);
  });

  it.each([
    { name: 'is the mean of the points', values: [1, 2, 3, 6], expected: 3 },
    { name: 'ignores nulls instead of counting them as 0', values: [null, 2, null, 4, null], expected: 3 },
    { name: 'of a single point is that point', values: [null, 42, null], expected: 42 },
    { name: 'counts zeros', values: [0, 0, 9], expected: 3 },
    { name: 'does not overflow for huge loads', values: [1e308, 1e308], expected: 1e308 },
    { name: 'is null when every point is null', values: [null, null], expected: null },
    { name: 'is null for an empty series', values: [], expected: null },
  ])('average $name', ({ values, expected }) => {
    expect(aggregate(values, 'average')).toBe(expected);
  });

  it.each([
    { value: Number.NaN, shown: 'NaN' },
    { value: Number.POSITIVE_INFINITY, shown: 'Infinity' },
    { value: Number.NEGATIVE_INFINITY, shown: '-Infinity' },
    { value: -1, shown: '-1' },
  ])('rejects a point of $shown, naming it and its position, with either method', ({ value, shown }) => {
    for (const method of ['leading-edge', 'average'] as const) {
      expect(() => aggregate([1, value, null], method)).toThrow(UnsafeInputError);
      expect(() => aggregate([1, value, null], method)).toThrow(`point #1 is ${shown}`);
    }
  });
});

describe('relativeLoads', () => {
  it.each([
    { loads: [100, 200, 300, 400], expected: [0.4, 0.8, 1.2, 1.6] },
    { loads: [0, 100, 100, 200], expected: [0, 1, 1, 2] },
    { loads: [5, 5, 5], expected: [1, 1, 1] },
    { loads: [1e308, 1e308, 0], expected: [1.5, 1.5, 0] },
  ])('divides $loads by their mean', ({ loads, expected }) => {
    const relative = relativeLoads(loads);
    expect(relative).not.toBeNull();
    relative?.forEach((r, i) => expect(r).toBeCloseTo(expected[i] ?? Number.NaN, 12));
  });

  it.each([{ loads: [0, 0, 0] }, { loads: [] }])('is null for $loads: nothing tells the servers apart', ({ loads }) => {
    expect(relativeLoads(loads)).toBeNull();
  });

  // Summed in input order, the first list gives ratios that differ in the last bit when reversed:
  // the mean is summed in sorted order so that weights never depend on the order of the servers.
  it.each([{ loads: [0.1, 0.7, 3.3, 0.2, 0.3] }, { loads: [0.1, 0.7, 1e9, 3.3, 0.2, 12345.678, 0] }])(
    'gives bit-identical ratios for $loads in reverse order',
    ({ loads }) => {
      const reversed = relativeLoads([...loads].reverse());
      expect(reversed?.reverse()).toEqual(relativeLoads(loads));
    },
  );

  it('rejects a negative load, naming its position', () => {
    expect(() => relativeLoads([1, 2, -3])).toThrow('load #2 is -3');
  });
});
