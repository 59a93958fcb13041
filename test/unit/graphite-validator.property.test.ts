/**
 * The Graphite validator is the door between an untrusted HTTP body and the weights: whatever
 * the body, it returns series whose every value is null or a plausible load, or it throws a
 * GraphiteError. Nothing else may come out, and its messages hold no control character (a
 * hostile series name cannot forge a log line).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mutatedRealReply as mutatedReal, nearValidReply, tokenText } from '../harness/graphite-arbitraries.js';
import { propertyRuns } from '../harness/property-runs.js';
import { MAX_PLAUSIBLE_LOAD, MAX_TIMESTAMP, MIN_TIMESTAMP, parseRenderReply } from '../../functions/adapters/graphite.js';
import { GraphiteError } from '../../functions/core/errors.js';
import type { Series } from '../../functions/core/types.js';

const RUNS = propertyRuns();
const URL = 'http://graphite.test/render?target=x&format=json';

/** Runs the validator; a GraphiteError is an answer, anything else thrown fails the property. */
function outcome(text: string): Series[] | GraphiteError {
  try {
    return parseRenderReply(text, URL);
  } catch (error) {
    if (error instanceof GraphiteError) return error;
    throw error;
  }
}

function expectSound(result: Series[] | GraphiteError): void {
  if (result instanceof GraphiteError) {
    // eslint-disable-next-line no-control-regex
    expect(result.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    expect(result.message.startsWith(`Graphite at ${URL}`)).toBe(true);
    expect((result.context.reply ?? '').length).toBeLessThanOrEqual(201);
    return;
  }
  for (const series of result) {
    expect(typeof series.name).toBe('string');
    for (const v of series.values) {
      if (v === null) continue;
      expect(Number.isFinite(v) && v >= 0 && v <= MAX_PLAUSIBLE_LOAD).toBe(true);
    }
  }
}

const nearValid = nearValidReply({ timestamp: fc.integer(), tagsDepth: 1 });

/** Datapoints with sane, strictly increasing epoch-second timestamps (steps of 1 s to 1 h). */
const increasingPoints = <T>(values: fc.Arbitrary<T>): fc.Arbitrary<[T, number][]> =>
  fc
    .tuple(fc.integer({ min: MIN_TIMESTAMP, max: MIN_TIMESTAMP + 3_000_000_000 }), fc.array(fc.tuple(values, fc.integer({ min: 1, max: 3600 })), { maxLength: 8 }))
    .map(([start, steps]) => {
      let t = start;
      return steps.map(([v, step]): [T, number] => [v, (t += step)]);
    });

/** A timestamp no reply may carry: not a number, not finite, outside 2000..2100, or epoch milliseconds. */
const badTimestamp = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom<unknown>(null, true, [], {}, -1, 0, MIN_TIMESTAMP - 1, MAX_TIMESTAMP, 1_700_000_000_000),
  fc.double({ noNaN: true }).filter((t) => !(t >= MIN_TIMESTAMP && t < MAX_TIMESTAMP)),
);

describe('parseRenderReply over arbitrary input', () => {
  it('answers arbitrary strings with sound series or a GraphiteError', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), tokenText, mutatedReal), (text) => expectSound(outcome(text))), RUNS);
  });

  it('answers arbitrary JSON values with sound series or a GraphiteError', () => {
    fc.assert(fc.property(fc.jsonValue(), (doc) => expectSound(outcome(JSON.stringify(doc)))), RUNS);
  });

  it('answers documents of nearly the right shape with sound series or a GraphiteError', () => {
    fc.assert(fc.property(nearValid, (doc) => expectSound(outcome(JSON.stringify(doc)))), RUNS);
  });

  it('accepts exactly the well-formed documents, and keeps their values in order', () => {
    const plausible = fc.oneof(fc.constant(null), fc.double({ min: 0, max: MAX_PLAUSIBLE_LOAD, noNaN: true }));
    fc.assert(
      fc.property(fc.array(fc.record({ target: fc.string(), datapoints: increasingPoints(plausible) }), { maxLength: 5 }), (doc) => {
        const result = outcome(JSON.stringify(doc));
        // JSON has no -0: it comes back as 0, which is the same load.
        // The timestamps come with the values (they date the loads).
        expect(result).toEqual(doc.map((s) => ({ name: s.target, values: s.datapoints.map(([v]) => (Object.is(v, -0) ? 0 : v)), timestamps: s.datapoints.map(([, t]) => t) })));
      }),
      RUNS,
    );
  });

  it('rejects every reply with one bad timestamp anywhere, naming it', () => {
    const plausible = fc.oneof(fc.constant(null), fc.double({ min: 0, max: MAX_PLAUSIBLE_LOAD, noNaN: true }));
    fc.assert(
      fc.property(
        fc.array(fc.record({ target: fc.string(), datapoints: increasingPoints(plausible) }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.nat(),
        badTimestamp,
        (doc, seriesAt, pointAt, bad) => {
          const series = doc[seriesAt % doc.length];
          if (series === undefined) return;
          const points: unknown[][] = series.datapoints;
          points.splice(pointAt % (points.length + 1), 0, [1, bad]);
          const result = outcome(JSON.stringify(doc));
          expect(result).toBeInstanceOf(GraphiteError);
          expect(result instanceof GraphiteError && result.message).toMatch(/timestamp/);
        },
      ),
      RUNS,
    );
  });

  it('reaches both outcomes with the mutated replies (the generators are not degenerate)', () => {
    const results = fc.sample(fc.oneof(mutatedReal, nearValid.map((d) => JSON.stringify(d))), { numRuns: 2_000, seed: 7 }).map(outcome);
    expect(results.some((r) => r instanceof GraphiteError)).toBe(true);
    expect(results.some((r) => !(r instanceof GraphiteError) && r.length > 0)).toBe(true);
  });
});
