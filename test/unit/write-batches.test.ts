import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitWrites, type WriteOwner } from '../../functions/core/write-batches.js';

const owner = (backend: string, server: string, weight: number): WriteOwner => ({ backend, server, weight });

describe('splitWrites', () => {
  it('keeps every write in one batch, led by each backend’s state, when there is no limit', () => {
    const batches = splitWrites([owner('a', 's1', 5), owner('a', 's2', 6), owner('b', 's1', 7)]);
    expect(batches).toEqual([
      {
        commands: ['show servers state a', 'show servers state b', 'set server a/s1 weight 5', 'set server a/s2 weight 6', 'set server b/s1 weight 7'],
        owners: [owner('a', 's1', 5), owner('a', 's2', 6), owner('b', 's1', 7)],
        guarded: ['a', 'b'],
      },
    ]);
  });

  it.each<[string, number, string[][]]>([
    ['cuts where the next write would pass the limit, and reads the state again in the next batch', 72, [
      ['show servers state a', 'set server a/s1 weight 5', 'set server a/s2 weight 6'],
      ['show servers state a', 'set server a/s3 weight 7'],
    ]],
    ['counts the state read of a backend the batch does not hold yet', 48, [
      ['show servers state a', 'set server a/s1 weight 5'],
      ['show servers state a', 'set server a/s2 weight 6'],
      ['show servers state a', 'set server a/s3 weight 7'],
    ]],
    ['sends a write alone when even that passes the limit', 10, [
      ['show servers state a', 'set server a/s1 weight 5'],
      ['show servers state a', 'set server a/s2 weight 6'],
      ['show servers state a', 'set server a/s3 weight 7'],
    ]],
  ])('%s', (_label, maxChars, expected) => {
    const batches = splitWrites([owner('a', 's1', 5), owner('a', 's2', 6), owner('a', 's3', 7)], maxChars);
    expect(batches.map((b) => b.commands)).toEqual(expected);
  });

  it('gives nothing to write no batch', () => {
    expect(splitWrites([], 100)).toEqual([]);
  });

  it('keeps every write once, in order, each batch within the limit and guarded by the state of exactly the backends it writes', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9_.-]{0,30}$/);
    fc.assert(
      fc.property(fc.array(fc.record({ backend: fc.constantFrom('be_a', 'be_b', 'be-ingest.eu'), server: name, weight: fc.integer({ min: 1, max: 256 }) }), { maxLength: 200 }), fc.integer({ min: 120, max: 5_000 }), (owners, maxChars) => {
        const batches = splitWrites(owners, maxChars);
        expect(batches.flatMap((b) => b.owners)).toEqual(owners);
        for (const b of batches) {
          expect(b.commands.join('; ').length).toBeLessThanOrEqual(maxChars);
          expect(b.guarded).toEqual([...new Set(b.owners.map((o) => o.backend))]);
          expect(b.commands.slice(0, b.guarded.length)).toEqual(b.guarded.map((g) => `show servers state ${g}`));
          expect(b.commands.length).toBe(b.guarded.length + b.owners.length);
        }
      }),
      { numRuns: 200 },
    );
  });
});
