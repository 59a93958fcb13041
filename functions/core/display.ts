/**
 * Text from outside (series names, HAProxy replies, error messages of other libraries, config
 * values) made safe to show: every character that a terminal, a log viewer or a browser would not
 * show as itself is written as a visible escape instead. That is the control characters (C0, DEL,
 * C1: a newline would split a report line or forge a log line, ESC would drive the terminal),
 * the format characters (bidi overrides and isolates such as U+202E, which reorder what is shown
 * so that `s1<U+202E>xam` reads `s1max`; zero-width spaces and joiners, soft hyphen, BOM, tag
 * characters), the other default-ignorable characters (fillers, variation selectors), the line
 * and paragraph separators, and lone surrogate halves. Pure.
 */

const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Default_Ignorable_Code_Point}]/gu;
const HAS_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Default_Ignorable_Code_Point}]/u;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.codePointAt(0) ?? 0;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16).toUpperCase().padStart(4, '0')}}`;
}

/** Whether the text holds any character displaySafe would escape. */
export function hasUnsafeCharacters(text: string): boolean {
  return HAS_UNSAFE.test(text);
}

/** One line of visible text: `\n`, `\r`, `\t`, `\xNN` up to U+00FF, `\u{XXXX}` beyond. */
export function displaySafe(text: string): string {
  return HAS_UNSAFE.test(text) ? text.replace(UNSAFE, escapeOne) : text;
}

/** displaySafe line by line: for text whose line breaks are its own structure (a usage message, a list of config issues). */
export function displaySafeLines(text: string): string {
  return text.split('\n').map(displaySafe).join('\n');
}

/**
 * Plain JSON data (a report, log attributes) whose every string, keys included, has been through
 * displaySafe (a copy, or the data itself when no string needed it): a name or message inside it can neither split a line of the human
 * report nor reorder what a terminal shows of the JSON one.
 */
export function displaySafeDeep<T>(value: T): T {
  // Most reports hold nothing to escape, and walking one of a few thousand servers costs more
  // than the cycle's own work (15 ms of a 3 x 500-server plan). Its JSON text answers at once:
  // JSON.stringify writes C0 controls and lone surrogates as backslash escapes, and every other
  // character displaySafe escapes as it is; text without a backslash or such a character holds
  // none in any string.
  const text = JSON.stringify(value);
  if (text === undefined || (!text.includes('\\') && !HAS_UNSAFE.test(text))) return value;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return displaySafe(v);
    if (Array.isArray(v)) return v.map(walk);
    if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [displaySafe(k), walk(x)]));
    return v;
  };
  // Only plain JSON data goes through here, and the shape is unchanged.
  return walk(value) as T;
}

/** A JSON.stringify replacer (e.g. for a JSON logger) that writes every string value through displaySafe. */
export function displaySafeReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? displaySafe(value) : value;
}
