/**
 * fast-check arbitraries for Graphite render replies, shared by the property tests of the reply's
 * readers and of its validator: pure data, no service.
 */
import fc from 'fast-check';
import { MAX_PLAUSIBLE_LOAD } from '../../functions/adapters/graphite-reply.js';

/** A reply graphite-web really sends (recorded shape: aliasByNode, 10 s points, trailing null). */
export const REAL_RENDER_REPLY =
  '[{"target": "s1", "tags": {"name": "s1"}, "datapoints": [[4000.0, 1700000000], [4000.0, 1700000010], [null, 1700000020]]}, ' +
  '{"target": "s2", "tags": {"name": "s2"}, "datapoints": [[1000.0, 1700000000], [1000.0, 1700000010], [null, 1700000020]]}]';

/** Pieces of JSON and of things that are almost JSON: tokens JSON.stringify never writes included. */
const token = fc.constantFrom(
  '[', ']', '{', '}', ',', ':', '"', '"target"', '"datapoints"', '"tags"', 'null', 'nul', 'true', 'false', '0', '01', '1', '-1', '1.', '.5', '1e', '1e309', '-0', '1e13', '1E+2',
  'NaN', 'Infinity', '-Infinity', '1.5', '"NaN"', '"s1"', '\\u0000', '\\u0074', '\\n', '\\x', '\n', '\t', '\r', ' ', '\u00a0', '\ufeff', 'é', '𝕏', '\u2028', '\ud800',
  '[1,1700000000]', '[null,1700000010]', '"target":"s1"', '"datapoints":[]',
);

/** Text made of those tokens in any order. */
export const tokenText = fc.string({ unit: token, maxLength: 60 });

/** The real reply with a few random cuts and insertions: close to valid, so it reaches deep. */
export const mutatedRealReply = fc
  .array(fc.record({ at: fc.nat(), cut: fc.nat({ max: 20 }), insert: tokenText }), { minLength: 1, maxLength: 4 })
  .map((edits) =>
    edits.reduce((text, { at, cut, insert }) => {
      const i = at % (text.length + 1);
      return text.slice(0, i) + insert + text.slice(i + cut);
    }, REAL_RENDER_REPLY),
  );

/** A datapoint value: every JSON kind, and numbers at and beyond the limits. */
const datapointValue = fc.oneof(
  fc.constant(null),
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, 0.1, 1e-7, 123456789012345, 1234567890123456, MAX_PLAUSIBLE_LOAD, MAX_PLAUSIBLE_LOAD + 1, Number.MAX_VALUE, Number.MIN_VALUE, -1e-300),
  fc.string({ maxLength: 8 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Documents of the right shape at the top, with anything at any depth below, keys in any order. */
export function nearValidReply(options: { readonly timestamp: fc.Arbitrary<number>; readonly tagsDepth: number }): fc.Arbitrary<unknown[]> {
  return fc.array(
    fc.record(
      {
        target: fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.jsonValue({ maxDepth: 1 })),
        datapoints: fc.oneof(
          fc.array(fc.oneof(fc.tuple(datapointValue, options.timestamp), fc.array(datapointValue, { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 })), { maxLength: 6 }),
          fc.jsonValue({ maxDepth: 2 }),
        ),
        tags: fc.jsonValue({ maxDepth: options.tagsDepth }),
      },
      { requiredKeys: [] },
    ),
    { maxLength: 5 },
  );
}
