import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { displaySafe, displaySafeDeep, displaySafeLines, displaySafeReplacer, hasUnsafeCharacters } from '../../functions/core/display.js';
import { describeError, snippet } from '../../functions/core/errors.js';
import { HOSTILE_CHARACTERS, rawHostileCharacters } from '../harness/faults.js';
import { propertyRuns } from '../harness/property-runs.js';

describe('displaySafe', () => {
  it.each(HOSTILE_CHARACTERS)('writes the %s as its visible escape', (_label, raw, escaped) => {
    expect(displaySafe(`a${raw}b`)).toBe(`a${escaped}b`);
    expect(hasUnsafeCharacters(`a${raw}b`)).toBe(true);
  });

  it.each([
    ['plain ASCII', 'backend be_ingest/s1: weight 256 (max/mean 1.52)'],
    ['letters with accents', 'bäckend café'],
    ['Cyrillic and CJK', 'ѕ1 服务器'],
    ['an emoji', 'load 🔥'],
    ['a space, a tab-free punctuation run', '"s1;shutdown sessions" $(reboot) `id` \\ |'],
  ])('leaves %s as it is', (_what, text) => {
    expect(displaySafe(text)).toBe(text);
    expect(hasUnsafeCharacters(text)).toBe(false);
  });

  it('leaves no hostile character in any string', () => {
    const hostile = fc.constantFrom(...HOSTILE_CHARACTERS.map(([, raw]) => raw));
    const text = fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 4 }), hostile), { maxLength: 12 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, (t) => {
        const shown = displaySafe(t);
        expect(rawHostileCharacters(shown)).toEqual([]);
        expect(hasUnsafeCharacters(shown)).toBe(false);
        // Nothing else changes: the text without escapable characters is kept whole.
        if (!hasUnsafeCharacters(t)) expect(shown).toBe(t);
      }),
      propertyRuns(),
    );
  });
});

describe('displaySafeLines', () => {
  it('keeps the line breaks of a multi-line message and escapes the rest', () => {
    expect(displaySafeLines('Invalid configuration:\n  - a\u202eb: unknown\r')).toBe('Invalid configuration:\n  - a\\u{202E}b: unknown\\r');
  });
});

describe('displaySafeDeep', () => {
  it('escapes every string of plain data, keys included, and keeps its shape and the other values', () => {
    const data = { problems: [{ message: 'x\ny', server: null, n: 3 }], 'k\u200b': { ok: true, list: ['\u202e'] } };
    expect(displaySafeDeep(data)).toEqual({ problems: [{ message: 'x\\ny', server: null, n: 3 }], 'k\\u{200B}': { ok: true, list: ['\\u{202E}'] } });
  });

  it.each(HOSTILE_CHARACTERS)('finds the %s however deep it sits in a value or a key', (_label, raw, escaped) => {
    const deep = (text: string): unknown => ({ a: [1, { b: [null, { [`k${text}`]: ['x', `v${text}`] }] }] });
    expect(displaySafeDeep(deep(raw))).toEqual({ a: [1, { b: [null, { [`k${escaped}`]: ['x', `v${escaped}`] }] }] });
  });

  it('gives the value of a string-by-string walk for any JSON data, with or without characters to escape', () => {
    const walk = (v: unknown): unknown =>
      typeof v === 'string' ? displaySafe(v) : Array.isArray(v) ? v.map(walk) : typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).map(([k, x]) => [displaySafe(k), walk(x)])) : v;
    const unit = fc.oneof(fc.constantFrom(...HOSTILE_CHARACTERS.map(([, raw]) => raw), '\\', '"', 'a'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
    const text = fc.string({ unit });
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3, stringUnit: unit }), text, (value, extra) => {
        expect(displaySafeDeep(value)).toEqual(walk(value));
        expect(displaySafeDeep({ extra, value })).toEqual(walk({ extra, value }));
      }),
      propertyRuns(),
    );
  });

  it('hands back the data itself when it holds nothing to escape', () => {
    const data = { backends: [{ name: 'be_ingest', loads: { s1: 1.5 } }], problems: [] };
    expect(displaySafeDeep(data)).toBe(data);
  });
});

describe('displaySafeReplacer', () => {
  it('makes a JSON log line hold no hostile character raw', () => {
    const line = JSON.stringify({ message: 'cycle finished', problems: ['s1\u202exam', 'a\u2028b'] }, displaySafeReplacer);
    expect(rawHostileCharacters(line)).toEqual([]);
    expect(line).toContain('s1\\\\u{202E}xam');
  });
});

describe('where untrusted text enters', () => {
  it('snippet escapes bidi and invisible characters, not only controls', () => {
    expect(snippet('s1\u202e\u200b\n', 80)).toBe('s1\\u{202E}\\u{200B}\\n');
  });

  it("describeError makes another library's message one visible line", () => {
    expect(describeError(new Error('connect failed\n\u202etoor'))).toBe('connect failed\\n\\u{202E}toor');
  });
});
