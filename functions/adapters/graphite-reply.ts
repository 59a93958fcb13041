import { GraphiteError, snippet } from '../core/errors.js';
import type { Series } from '../core/types.js';

/** Loads beyond this are not a rate any ingestion server has: a unit or pipeline bug. */
export const MAX_PLAUSIBLE_LOAD = 1e12;

/**
 * Timestamps are epoch seconds in this window: before it, or after it (epoch milliseconds land
 * there), they are not the time of a measurement.
 */
export const MIN_TIMESTAMP = 946_684_800; // 2000-01-01T00:00:00Z
export const MAX_TIMESTAMP = 4_102_444_800; // 2100-01-01T00:00:00Z

/**
 * Validates a `/render?format=json` body: `[{"target": string, "datapoints": [[value|null, ts], ...]}]`
 * with every value null or a plausible load, and every timestamp epoch seconds, each later than
 * the one before. Anything else is rejected whole, with a message naming the offending value: a
 * reply we cannot fully trust must not move a weight, whether or not the series at fault maps to
 * a server we weight.
 *
 * Two readers, one contract. readRenderReply reads large replies in one pass over the text,
 * building nothing but the series (a reply of 150,000 series is 9 MB; JSON.parse builds a tree of
 * it first, several objects per point, that the validation then walks). It only
 * accepts what it is sure of: on anything else (a malformed reply, an escaped key, a value out
 * of range) it gives up, and the reference reader, JSON.parse followed by a walk of the tree,
 * decides and names the fault. The two agree on every reply the fast one accepts: a property test
 * holds them to it.
 */
export function parseRenderReply(text: string, shownUrl: string): Series[] {
  return (text.length >= FAST_READER_MIN_CHARS ? readRenderReply(text) : undefined) ?? parseRenderReplyReference(text, shownUrl);
}

/**
 * Replies shorter than this go to the reference reader alone. A one-shot CLI runs each reader
 * once, before V8 has compiled it: JSON.parse is native code from the start, the fast reader is
 * not, and on the 70 KB reply of a 500-server backend the reference is the faster by about 2 ms.
 * From about half a megabyte up the fast reader is (twice as fast at 6 MB, and it builds no tree).
 */
export const FAST_READER_MIN_CHARS = 1024 * 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// snippet already shows every character visibly; JSON.stringify on top would double its backslashes.
const seriesLabel = (name: string): string => `"${snippet(name, 80)}"`;

const shown = (value: unknown, max: number): string => (typeof value === 'number' ? String(value) : snippet(JSON.stringify(value) ?? String(value), max));

/** The reference reader: JSON.parse, then every series and point checked, the first fault named. */
export function parseRenderReplyReference(text: string, shownUrl: string): Series[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new GraphiteError(`Graphite at ${shownUrl} did not answer JSON`, { url: shownUrl, reply: text }, { cause });
  }
  if (!Array.isArray(doc)) {
    throw new GraphiteError(`Graphite at ${shownUrl} answered JSON that is not a list of series`, { url: shownUrl, reply: text });
  }
  const out: Series[] = [];
  for (let i = 0; i < doc.length; i++) {
    const item: unknown = doc[i];
    if (!isRecord(item) || typeof item.target !== 'string' || !Array.isArray(item.datapoints)) {
      throw new GraphiteError(`Graphite at ${shownUrl}: series #${i} lacks a string "target" and a "datapoints" list`, {
        url: shownUrl,
        reply: JSON.stringify(item) ?? '',
      });
    }
    const name = item.target;
    const points: unknown[] = item.datapoints;
    const values: (number | null)[] = new Array<number | null>(points.length);
    const timestamps: number[] = new Array<number>(points.length);
    let previous = -Infinity;
    for (let j = 0; j < points.length; j++) {
      const point = points[j];
      if (!Array.isArray(point) || point.length !== 2) {
        throw new GraphiteError(`Graphite at ${shownUrl}: series ${seriesLabel(name)} has a datapoint that is not [value, timestamp]`, {
          url: shownUrl,
          reply: JSON.stringify(point) ?? '',
        });
      }
      const value: unknown = point[0];
      const timestamp: unknown = point[1];
      if (typeof timestamp !== 'number' || !isTimestamp(timestamp)) {
        const hint = typeof timestamp === 'number' && timestamp >= MIN_TIMESTAMP * 1000 && timestamp < MAX_TIMESTAMP * 1000 ? ' (epoch milliseconds?)' : '';
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has timestamp ${shown(timestamp, 40)}${hint} at point #${j}; timestamps must be epoch seconds from ${MIN_TIMESTAMP} (2000) to ${MAX_TIMESTAMP} (2100)`,
          { url: shownUrl },
        );
      }
      if (timestamp <= previous) {
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has timestamp ${timestamp} at point #${j}, not later than ${previous} at point #${j - 1}; timestamps must increase`,
          { url: shownUrl },
        );
      }
      previous = timestamp;
      timestamps[j] = timestamp;
      if (value === null) {
        values[j] = null;
        continue;
      }
      if (typeof value !== 'number' || !isLoad(value)) {
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has value ${shown(value, 40)}; loads must be finite numbers in 0..${MAX_PLAUSIBLE_LOAD}`,
          { url: shownUrl },
        );
      }
      values[j] = value;
    }
    out.push({ name, values, timestamps });
  }
  return out;
}

/** The checks both readers make, written once. */
const isLoad = (value: number): boolean => Number.isFinite(value) && value >= 0 && value <= MAX_PLAUSIBLE_LOAD;
const isTimestamp = (value: number): boolean => Number.isFinite(value) && value >= MIN_TIMESTAMP && value < MAX_TIMESTAMP;

// Character codes the fast reader compares against.
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_LIST = 0x5b;
const CLOSE_LIST = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const LOWER_N = 0x6e;

/** Exact powers of ten: m / 10^k is correctly rounded when m < 2^53 and k <= 22 (both exact doubles). */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, k) => 10 ** k);
/** Digits whose integer is exact in a double, whatever they are. */
const MAX_EXACT_DIGITS = 15;
/** Nesting the fast reader skips over in a member it does not read (graphite-web's "tags" is one level). */
const MAX_SKIPPED_DEPTH = 32;

/**
 * The fast reader: the series of a well-formed reply, or undefined when it is not sure (then the
 * reference reader decides). One pass over the text, no intermediate tree; it accepts a subset of
 * what the reference reader accepts and returns exactly what that one returns for it. Written as
 * loops over a local index (each helper takes the index and returns the next one, -1 to give up):
 * it reads every character of replies of several megabytes.
 */
export function readRenderReply(text: string): Series[] | undefined {
  const out: Series[] = [];
  // The points of the series being read, reused from series to series: each series gets copies of
  // exactly its length (arrays grown by push hold room for 17 points or more, and 150,000 such
  // pairs keep the garbage collector busy).
  const values: (number | null)[] = [];
  const timestamps: number[] = [];
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_LIST) return undefined;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === CLOSE_LIST) return skipSpace(text, i + 1) === text.length ? out : undefined;
  for (;;) {
    // One series: an object with "target" and "datapoints" once each, in any order, other members skipped.
    if (text.charCodeAt(i) !== OPEN_OBJECT) return undefined;
    i = skipSpace(text, i + 1);
    let name: string | undefined;
    let count = -1;
    for (;;) {
      if (text.charCodeAt(i) !== QUOTE) return undefined;
      const keyEnd = plainStringEnd(text, i + 1);
      // A key with an escape may still spell "target": JSON.parse would unescape it first.
      if (keyEnd < 0) return undefined;
      const keyLength = keyEnd - i - 1;
      const key = keyLength === 6 && text.startsWith('target', i + 1) ? 'target' : keyLength === 10 && text.startsWith('datapoints', i + 1) ? 'datapoints' : 'other';
      i = skipSpace(text, keyEnd + 1);
      if (text.charCodeAt(i) !== COLON) return undefined;
      i = skipSpace(text, i + 1);
      if (key === 'target') {
        // A repeated member: JSON.parse keeps the last; let the reference reader do so.
        if (name !== undefined || text.charCodeAt(i) !== QUOTE) return undefined;
        const end = plainStringEnd(text, i + 1);
        if (end >= 0) {
          name = text.slice(i + 1, end);
          i = end + 1;
        } else {
          const quoted = escapedStringEnd(text, i + 1);
          const value = quoted < 0 ? undefined : parsedString(text.slice(i, quoted));
          if (value === undefined) return undefined;
          name = value;
          i = quoted;
        }
      } else if (key === 'datapoints') {
        if (count >= 0 || text.charCodeAt(i) !== OPEN_LIST) return undefined;
        i = skipSpace(text, i + 1);
        count = 0;
        if (text.charCodeAt(i) === CLOSE_LIST) i++;
        else {
          let previous = -Infinity;
          for (;;) {
            if (text.charCodeAt(i) !== OPEN_LIST) return undefined;
            i = skipSpace(text, i + 1);
            let value: number | null;
            if (text.charCodeAt(i) === LOWER_N) {
              if (!text.startsWith('null', i)) return undefined;
              value = null;
              i = skipSpace(text, i + 4);
            } else {
              value = readNumber(text, i);
              if (!isLoad(value)) return undefined;
              i = skipSpace(text, numberEnd);
            }
            if (text.charCodeAt(i) !== COMMA) return undefined;
            i = skipSpace(text, i + 1);
            const timestamp = readNumber(text, i);
            if (!isTimestamp(timestamp) || timestamp <= previous) return undefined;
            previous = timestamp;
            i = skipSpace(text, numberEnd);
            if (text.charCodeAt(i) !== CLOSE_LIST) return undefined;
            values[count] = value;
            timestamps[count] = timestamp;
            count++;
            i = skipSpace(text, i + 1);
            const c = text.charCodeAt(i);
            if (c === CLOSE_LIST) break;
            if (c !== COMMA) return undefined;
            i = skipSpace(text, i + 1);
          }
          i++;
        }
      } else {
        i = skipValue(text, i, 0);
        if (i < 0) return undefined;
      }
      i = skipSpace(text, i);
      const c = text.charCodeAt(i);
      i = skipSpace(text, i + 1);
      if (c === CLOSE_OBJECT) break;
      if (c !== COMMA) return undefined;
    }
    if (name === undefined || count < 0) return undefined;
    // A series of one point (a hostile or too-broad target may send 150,000 of them) gets literals: cheaper than slice.
    out.push(count === 1 ? { name, values: [values[0] ?? null], timestamps: [timestamps[0] ?? NaN] } : { name, values: values.slice(0, count), timestamps: timestamps.slice(0, count) });
    const c = text.charCodeAt(i);
    i = skipSpace(text, i + 1);
    if (c === CLOSE_LIST) return i === text.length ? out : undefined;
    if (c !== COMMA) return undefined;
  }
}

function skipSpace(text: string, from: number): number {
  let i = from;
  for (let c = text.charCodeAt(i); c === SPACE || c === LF || c === CR || c === TAB; c = text.charCodeAt(++i));
  return i;
}

/**
 * The index of the closing quote of a string whose content starts at `from`, when it holds no
 * escape; -1 when it holds one, -2 when it is not a JSON string (a raw control character, no end).
 */
function plainStringEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i;
    if (c === BACKSLASH) return -1;
    if (c < SPACE) return -2;
  }
  return -2;
}

/**
 * Just past the closing quote of a string with escapes whose content starts at `from`; -1 when
 * there is none. Its content is left to JSON.parse (parsedString), which refuses what JSON does.
 */
function escapedStringEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) i++;
  }
  return -1;
}

/** A quoted JSON string with escapes, unescaped by JSON.parse itself; undefined when an escape is not JSON's. */
function parsedString(quoted: string): string | undefined {
  try {
    const value: unknown = JSON.parse(quoted);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Where the number readNumber read last ends. */
let numberEnd = 0;

/**
 * The JSON number at `from`, as JSON.parse reads it, its end in numberEnd; NaN when there is no
 * JSON number there (no JSON number reads as NaN). Plain decimals of up to 15 digits are computed
 * here: m / 10^k is then a division of two exact doubles, correctly rounded as JSON.parse rounds.
 * Others go to Number(), which reads JSON's number syntax the same way once it is checked here.
 */
function readNumber(text: string, from: number): number {
  let i = from;
  let c = text.charCodeAt(i);
  let simple = true;
  if (c === MINUS) {
    simple = false;
    c = text.charCodeAt(++i);
  }
  let mantissa = 0;
  let digits = 0;
  if (c === DIGIT_0) {
    c = text.charCodeAt(++i);
    digits = 1;
  } else if (c > DIGIT_0 && c <= DIGIT_9) {
    do {
      mantissa = mantissa * 10 + (c - DIGIT_0);
      digits++;
      c = text.charCodeAt(++i);
    } while (c >= DIGIT_0 && c <= DIGIT_9);
  } else return NaN;
  let decimals = 0;
  if (c === DOT) {
    c = text.charCodeAt(++i);
    if (!(c >= DIGIT_0 && c <= DIGIT_9)) return NaN;
    do {
      mantissa = mantissa * 10 + (c - DIGIT_0);
      decimals++;
      c = text.charCodeAt(++i);
    } while (c >= DIGIT_0 && c <= DIGIT_9);
  }
  if (c === LOWER_E || c === UPPER_E) {
    simple = false;
    c = text.charCodeAt(++i);
    if (c === PLUS || c === MINUS) c = text.charCodeAt(++i);
    if (!(c >= DIGIT_0 && c <= DIGIT_9)) return NaN;
    do c = text.charCodeAt(++i);
    while (c >= DIGIT_0 && c <= DIGIT_9);
  }
  numberEnd = i;
  if (simple && digits + decimals <= MAX_EXACT_DIGITS) return decimals === 0 ? mantissa : mantissa / (POWERS_OF_TEN[decimals] ?? NaN);
  return Number(text.slice(from, i));
}

/** Just past the JSON value at `from` (a member the weighter does not read), its syntax checked; -1 when it is not one. */
function skipValue(text: string, from: number, depth: number): number {
  if (depth > MAX_SKIPPED_DEPTH) return -1;
  let i = from;
  const c = text.charCodeAt(i);
  if (c === QUOTE) {
    const end = plainStringEnd(text, i + 1);
    if (end >= 0) return end + 1;
    const quoted = escapedStringEnd(text, i + 1);
    return quoted >= 0 && parsedString(text.slice(i, quoted)) !== undefined ? quoted : -1;
  }
  if (c === OPEN_LIST || c === OPEN_OBJECT) {
    const close = c === OPEN_LIST ? CLOSE_LIST : CLOSE_OBJECT;
    i = skipSpace(text, i + 1);
    if (text.charCodeAt(i) === close) return i + 1;
    for (;;) {
      if (close === CLOSE_OBJECT) {
        if (text.charCodeAt(i) !== QUOTE) return -1;
        i = skipValue(text, i, depth + 1);
        if (i < 0) return -1;
        i = skipSpace(text, i);
        if (text.charCodeAt(i) !== COLON) return -1;
        i = skipSpace(text, i + 1);
      }
      i = skipValue(text, i, depth + 1);
      if (i < 0) return -1;
      i = skipSpace(text, i);
      const next = text.charCodeAt(i);
      if (next === close) return i + 1;
      if (next !== COMMA) return -1;
      i = skipSpace(text, i + 1);
    }
  }
  for (const word of LITERALS) if (text.startsWith(word, i)) return i + word.length;
  return Number.isNaN(readNumber(text, i)) ? -1 : numberEnd;
}

const LITERALS = ['null', 'true', 'false'] as const;
