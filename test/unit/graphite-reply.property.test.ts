/**
 * The Graphite reply has two readers (graphite-reply.ts): a fast one that reads the replies
 * Graphite sends in one pass, and the reference one (JSON.parse, then every point checked) that
 * decides whenever the fast one is not sure. Whatever the body, the fast reader either steps aside
 * or returns exactly what the reference returns; and it does not step aside for the replies
 * graphite-web writes, or it would be no faster.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REAL_RENDER_REPLY as REAL, mutatedRealReply as mutatedReal, nearValidReply, tokenText } from '../harness/graphite-arbitraries.js';
import { propertyRuns } from '../harness/property-runs.js';
import { FAST_READER_MIN_CHARS, MAX_PLAUSIBLE_LOAD, MIN_TIMESTAMP, parseRenderReply, parseRenderReplyReference, readRenderReply } from '../../functions/adapters/graphite-reply.js';
import { GraphiteError } from '../../functions/core/errors.js';
import type { Series } from '../../functions/core/types.js';

const RUNS = propertyRuns();
const URL = 'http://graphite.test/render?target=x&format=json';

function reference(text: string): Series[] | GraphiteError {
  try {
    return parseRenderReplyReference(text, URL);
  } catch (error) {
    if (error instanceof GraphiteError) return error;
    throw error;
  }
}

/** The fast reader's answer must be the reference's (toStrictEqual tells 0 from -0, and a hole from a value). */
function expectAgreement(text: string): void {
  const fast = readRenderReply(text);
  if (fast === undefined) return;
  expect(fast).toStrictEqual(reference(text));
}

const nearValid = nearValidReply({ timestamp: fc.integer({ min: MIN_TIMESTAMP, max: MIN_TIMESTAMP + 10 }), tagsDepth: 3 });

/** Well-formed replies: increasing epoch-second timestamps, plausible loads written as graphite-web or anyone might. */
const wellFormed = fc.array(
  fc.record({
    target: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_.:-]{1,30}$/), fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 })),
    tags: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
    datapoints: fc
      .tuple(
        fc.integer({ min: MIN_TIMESTAMP, max: MIN_TIMESTAMP + 3_000_000_000 }),
        fc.array(fc.tuple(fc.oneof(fc.constant(null), fc.double({ min: 0, max: MAX_PLAUSIBLE_LOAD, noNaN: true }), fc.integer({ min: 0, max: 1e9 })), fc.integer({ min: 1, max: 3600 })), { maxLength: 8 }),
      )
      .map(([start, steps]) => {
        let t = start;
        return steps.map(([v, step]): [number | null, number] => [v, (t += step)]);
      }),
  }),
  { maxLength: 5 },
);

/** graphite-web's layout (", " and ": ") and others: none, pretty-printed, CRLF and tabs. */
const layout = fc.constantFrom<(doc: unknown) => string>(
  (doc) => JSON.stringify(doc),
  (doc) => JSON.stringify(doc, null, 2),
  (doc) => JSON.stringify(doc, null, '\t').replaceAll('\n', '\r\n'),
  (doc) => JSON.stringify(doc).replaceAll(',', ', ').replaceAll(':', ': '),
);

describe('readRenderReply (the fast reader) against the reference reader', () => {
  it('agrees on arbitrary strings', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), tokenText, mutatedReal), expectAgreement), RUNS);
  });

  it('agrees on arbitrary JSON and on documents of nearly the right shape', () => {
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), nearValid), layout, (doc, write) => expectAgreement(write(doc))), RUNS);
  });

  it('reads every well-formed reply itself, in any layout, as the reference does', () => {
    fc.assert(
      fc.property(wellFormed, layout, (doc, write) => {
        const text = write(doc);
        const fast = readRenderReply(text);
        expect(fast).toBeDefined();
        expect(fast).toStrictEqual(parseRenderReplyReference(text, URL));
      }),
      RUNS,
    );
  });

  it('reads numbers as JSON.parse does, to the last bit', () => {
    const number = fc.oneof(
      fc.double({ min: 0, max: MAX_PLAUSIBLE_LOAD, noNaN: true }).map((v) => String(v)),
      fc.tuple(fc.nat({ max: 999_999_999 }), fc.stringMatching(/^[0-9]{1,20}$/)).map(([i, f]) => `${i}.${f}`),
      fc.tuple(fc.nat({ max: 9_999 }), fc.integer({ min: -30, max: 8 })).map(([m, e]) => `${m}e${e}`),
    );
    fc.assert(
      fc.property(number, (text) => {
        const fast = readRenderReply(`[{"target":"s","datapoints":[[${text},1700000000]]}]`);
        expect(fast?.[0]?.values).toStrictEqual([JSON.parse(text)]);
      }),
      RUNS,
    );
  });

  it.each([
    ['the recorded graphite-web reply', REAL],
    ['an empty list', ' [ ] '],
    ['a series without points', '[{"target":"s1","datapoints":[]}]'],
    ['a name with escapes', '[{"target":"s\\u0031\\"x\\\\","datapoints":[[1,1700000000]]}]'],
    ['members in another order, and some it does not read', '[{"datapoints":[[0.5,1700000000],[null,1700000060]],"x":[{"y":[true,false,null,-1.5e-3]}],"target":"s1"}]'],
  ])('reads %s itself', (_what, text) => {
    expect(readRenderReply(text)).toStrictEqual(parseRenderReplyReference(text, URL));
  });

  it.each([
    ['a duplicated target (JSON.parse keeps the last one)', '[{"target":"s1","target":"s2","datapoints":[[1,1700000000]]}]'],
    ['a key written with an escape', '[{"\\u0074arget":"s1","datapoints":[[1,1700000000]]}]'],
    ['a value out of range', '[{"target":"s1","datapoints":[[-1,1700000000]]}]'],
    ['a timestamp in milliseconds', '[{"target":"s1","datapoints":[[1,1700000000000]]}]'],
    ['a number JSON does not have', '[{"target":"s1","datapoints":[[01,1700000000]]}]'],
    ['a byte order mark', '\ufeff[]'],
    ['a raw control character in a name', '[{"target":"s\n1","datapoints":[]}]'],
    ['a raw control character in a name with escapes', '[{"target":"s\\"\t","datapoints":[]}]'],
    ['a raw control character in a member it does not read', '[{"target":"s1","tags":{"name":"s\u00011"},"datapoints":[]}]'],
  ])('leaves %s to the reference reader', (_what, text) => {
    expect(readRenderReply(text)).toBeUndefined();
  });

  describe(`a reply of ${FAST_READER_MIN_CHARS} characters or more (the fast reader's)`, () => {
    const series = Array.from({ length: 30_000 }, (_, i) => `{"target":"ghost-${i}","datapoints":[[1,1700000000],[null,1700000010]]}`);
    const reply = (edit: (items: string[]) => void): string => {
      const items = [...series];
      edit(items);
      const text = `[${items.join(',')}]`;
      expect(text.length).toBeGreaterThanOrEqual(FAST_READER_MIN_CHARS);
      return text;
    };

    it('is read as the reference reads it', () => {
      const text = reply(() => undefined);
      expect(readRenderReply(text)).toBeDefined();
      expect(parseRenderReply(text, URL)).toStrictEqual(parseRenderReplyReference(text, URL));
    });

    it('is refused for a garbage point in any series, used or not, with the reference message', () => {
      const text = reply((items) => (items[20_777] = '{"target":"ghost-20777","datapoints":[[1,1700000000],["x",1700000010]]}'));
      expect(() => parseRenderReply(text, URL)).toThrow(`Graphite at ${URL}: series "ghost-20777" has value "x"; loads must be finite numbers in 0..${MAX_PLAUSIBLE_LOAD}`);
    });

    it('is refused for a timestamp that goes back, naming it', () => {
      const text = reply((items) => (items[29_999] = '{"target":"ghost-29999","datapoints":[[1,1700000010],[1,1700000000]]}'));
      expect(() => parseRenderReply(text, URL)).toThrow('series "ghost-29999" has timestamp 1700000000 at point #1, not later than 1700000010 at point #0; timestamps must increase');
    });
  });
});
