import { HaproxyError, UnsafeInputError, snippet, type ErrorContext } from './errors.js';
import {
  BACKEND_NAME_SOURCE,
  MAX_WEIGHT,
  MIN_SET_WEIGHT,
  SAFE_NAME,
  SAFE_NAME_RULE,
  SAFE_SERVER_NAME,
  SERVER_NAME_SOURCE,
  SHOW_CLI_LEVEL,
  WEIGHT_SOURCE,
  commandForms,
  unaddressableServerName,
} from './runtime-grammar.js';
import type { AdminState, ObservedBackend, ObservedServer } from './types.js';

export { MAX_WEIGHT, MIN_SET_WEIGHT } from './runtime-grammar.js';

/**
 * The HAProxy runtime API as we speak it: the only commands we ever build, the batch line that
 * carries them, and total parsers for what HAProxy 2.6 prints back. Pure: no I/O.
 *
 * Replies were recorded from a real HAProxy 2.6.12 (test/fixtures/haproxy/, re-recorded by
 * test/scripts/record-haproxy-fixtures.sh). Every parser either returns a value or throws a
 * HaproxyError: a reply we do not fully understand is never turned into a weight.
 */

/** The five command forms we may send; anything else is refused before it reaches a socket. */
export type RuntimeCommand =
  | { readonly kind: 'set-weight'; readonly backend: string; readonly server: string; readonly weight: number }
  | { readonly kind: 'get-weight'; readonly backend: string; readonly server: string }
  | { readonly kind: 'show-stat'; readonly backend: string }
  | { readonly kind: 'show-servers-state'; readonly backend: string }
  | { readonly kind: 'show-cli-level' };

// The grammar's forms with capturing groups: backend, server, weight.
const CAPTURING = commandForms(`(${BACKEND_NAME_SOURCE})`, `(${SERVER_NAME_SOURCE})`, `(${WEIGHT_SOURCE})`);
const SET_WEIGHT = new RegExp(`^${CAPTURING.setWeight}$`);
const GET_WEIGHT = new RegExp(`^${CAPTURING.getWeight}$`);
const SHOW_STAT = new RegExp(`^${CAPTURING.showStat}$`);
const SHOW_SERVERS_STATE = new RegExp(`^${CAPTURING.showServersState}$`);

function assertName(value: string, what: 'backend' | 'server'): void {
  if (typeof value !== 'string' || !(what === 'backend' ? SAFE_NAME : SAFE_SERVER_NAME).test(value)) {
    throw new UnsafeInputError(`Refusing ${what} name "${snippet(String(value), 80)}": it ${SAFE_NAME_RULE}`, {
      [what]: snippet(String(value), 80),
    });
  }
}

function assertSetWeight(weight: number, backend: string, server: string): void {
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < MIN_SET_WEIGHT || weight > MAX_WEIGHT) {
    throw new UnsafeInputError(
      `Refusing weight "${snippet(String(weight), 40)}" for ${backend}/${server}: it must be an integer from ${MIN_SET_WEIGHT} to ${MAX_WEIGHT}`,
      { backend, server },
    );
  }
}

/** `set server <backend>/<server> weight <n>`, the current form (`set weight` is deprecated). */
export function setWeightCommand(backend: string, server: string, weight: number): string {
  assertName(backend, 'backend');
  assertName(server, 'server');
  assertSetWeight(weight, backend, server);
  return commandForms(backend, server, String(weight)).setWeight;
}

/**
 * `set server <backend>/<server> weight <n>` with n from 0 to MAX_WEIGHT: only to put back the weight an
 * operator gave a server (0 included) while a cycle was writing to it, never to decide one.
 */
export function restoreWeightCommand(backend: string, server: string, weight: number): string {
  assertName(backend, 'backend');
  assertName(server, 'server');
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
    throw new UnsafeInputError(`Refusing to put back weight "${snippet(String(weight), 40)}" for ${backend}/${server}: it must be an integer from 0 to ${MAX_WEIGHT}`, { backend, server });
  }
  return commandForms(backend, server, String(weight)).setWeight;
}

/** `show servers state <backend>`: admin state bits and user weight of every server, right now. */
export function serversStateCommand(backend: string): string {
  assertName(backend, 'backend');
  return commandForms(backend, '', '').showServersState;
}

/** `get weight <backend>/<server>`: prints `<current> (initial <configured>)`. */
export function getWeightCommand(backend: string, server: string): string {
  assertName(backend, 'backend');
  assertName(server, 'server');
  return commandForms(backend, server, '').getWeight;
}

/**
 * The two commands that observe one backend: `show stat` gives status, user weight, sessions and
 * the algorithm; `show servers state` gives the admin state bits and the configured weight, which
 * show stat lacks. Both are allowed on a `level operator` socket.
 */
export function observeCommands(backend: string): string[] {
  assertName(backend, 'backend');
  const forms = commandForms(backend, '', '');
  return [forms.showStat, forms.showServersState];
}

/** `show cli level`: the level of the session, read without changing anything (see SHOW_CLI_LEVEL). */
export function showCliLevelCommand(): string {
  return SHOW_CLI_LEVEL;
}

/** The levels of a runtime API session, lowest first; `set server ... weight` needs `admin`. */
export const CLI_LEVELS = ['user', 'operator', 'admin'] as const;
export type CliLevel = (typeof CLI_LEVELS)[number];

/**
 * Reads the reply block of `show cli level`. Returns the level, or throws a classified
 * HaproxyError: an HAProxy older than 2.0 does not know the command and answers with its help
 * ("Unknown command"), which is an unexpected reply here, never a level.
 */
export function parseCliLevel(block: string, context: ErrorContext = {}): CliLevel {
  const level = CLI_LEVELS.find((l) => block === `${l}\n`);
  if (level !== undefined) return level;
  throw (
    classifyReplyError(block, context) ??
    new HaproxyError('unexpected-reply', `${messageFor('unexpected-reply', context)}: show cli level did not print admin, operator or user (HAProxy older than 2.0?)`, {
      ...context,
      reply: String(block),
    })
  );
}

/** Parses one command against the whitelist; throws UnsafeInputError for anything else. */
export function parseCommand(command: string): RuntimeCommand {
  if (command === SHOW_CLI_LEVEL) return { kind: 'show-cli-level' };
  if (typeof command === 'string') {
    // The forms leave name lengths to SAFE_NAME and SAFE_SERVER_NAME (see BACKEND_NAME_SOURCE).
    const named = <T extends Exclude<RuntimeCommand, { kind: 'show-cli-level' }>>(parsed: T): T | null =>
      SAFE_NAME.test(parsed.backend) && (!('server' in parsed) || SAFE_SERVER_NAME.test(parsed.server)) ? parsed : null;
    const set = SET_WEIGHT.exec(command);
    const get = GET_WEIGHT.exec(command);
    const stat = SHOW_STAT.exec(command);
    const state = SHOW_SERVERS_STATE.exec(command);
    const parsed =
      set !== null
        ? named({ kind: 'set-weight', backend: set[1] ?? '', server: set[2] ?? '', weight: Number(set[3]) })
        : get !== null
          ? named({ kind: 'get-weight', backend: get[1] ?? '', server: get[2] ?? '' })
          : stat !== null
            ? named({ kind: 'show-stat', backend: stat[1] ?? '' })
            : state !== null
              ? named({ kind: 'show-servers-state', backend: state[1] ?? '' })
              : null;
    if (parsed !== null) return parsed;
  }
  throw new UnsafeInputError(`Refusing runtime command "${snippet(String(command), 120)}": it is not one of the commands haproxy-weighter sends`);
}

/**
 * One batch line: commands joined by `; ` (HAProxy runs them in order on one connection) and a
 * final newline. Every command is re-checked against the whitelist here, at the last point
 * before the wire, so a bug upstream cannot smuggle a `;`, a newline or another command in.
 * Measured: 2,400 commands (100 KB) in one line run fine on 2.6.12, so no split is needed.
 */
export function encodeBatch(commands: readonly string[]): string {
  if (commands.length === 0) throw new UnsafeInputError('Refusing an empty batch: there is nothing to send');
  for (const command of commands) parseCommand(command);
  return `${commands.join('; ')}\n`;
}

/**
 * What HAProxy prints after every command once `prompt` has made the session interactive: the
 * newline that ends each reply in the non-interactive mode, then `> `.
 */
export const PROMPT = '\n> ';

/**
 * The batch in interactive mode, for a client that holds the connection itself (the socket
 * relay): `prompt` first, then the batch line. In the default non-interactive mode HAProxy 2.6
 * ends the session as soon as its request buffer is empty after a command, so a client must
 * half-close to mark the end of its input, and a half-close that arrives while HAProxy still
 * reads a large batch ends the session early (research/bench/half-close.ts on HAProxy 2.6.12: 39 of
 * 90 batches of 1,001 commands cut short after 623 to 959 replies, then a connection reset); a
 * pause between two TCP segments can do the same. An interactive session stays open until the client closes it, so the client
 * reads until one prompt per command has arrived and only then closes: nothing is cut short.
 */
export function encodeInteractiveBatch(commands: readonly string[]): string {
  return `prompt\n${encodeBatch(commands)}`;
}

/** The number of prompts that end the reply to encodeInteractiveBatch(commands). */
export function promptsExpected(commands: readonly string[]): number {
  return commands.length + 1;
}

/**
 * Turns the reply to encodeInteractiveBatch into the non-interactive form splitReplies reads:
 * the reply is the prompt printed after `prompt`, then each command's output followed by a
 * prompt, and each prompt stands where the non-interactive mode prints a newline. Text after
 * the last prompt is a reply cut short and is kept as it is, so that splitReplies says so. HAProxy
 * names hold no space, and every line of the outputs we read starts with a name, a digit or `#`,
 * so a prompt never occurs inside an output.
 */
export function plainReplyFromInteractive(reply: string): string {
  if (PROMPT.startsWith(reply)) return '';
  if (!reply.startsWith(PROMPT)) {
    throw new HaproxyError('unexpected-reply', `HAProxy did not answer "prompt" with its prompt: the reply starts with "${snippet(reply, 80)}"`, { reply: tail(reply) });
  }
  const parts = reply.slice(PROMPT.length).split(PROMPT);
  const cutShort = parts.pop() ?? '';
  return `${parts.map((part) => `${part}\n`).join('')}${cutShort}`;
}

/**
 * Weight parser errors that HAProxy 2.6 prints WITHOUT the empty line that ends every other
 * reply, so the next command's reply is glued to them (measured on 2.6.12).
 */
const GLUED_ERRORS: readonly string[] = ['Empty weight string empty or preceded by garbage', 'Trailing garbage in weight string'];

/**
 * Splits the reply to a batch into one block per command, in order. Each block is the command's
 * own output without the empty line that terminates it: `''` for a successful `set server`,
 * `'80 (initial 100)\n'` for `get weight`, the CSV lines for `show stat`. A glued error (see
 * GLUED_ERRORS) is a block of its own. HAProxy closes the connection after a non-interactive
 * batch, so the whole reply is here: a missing terminator means a truncated reply.
 */
export function splitReplies(commands: readonly string[], reply: string): string[] {
  if (typeof reply !== 'string') throw new HaproxyError('unexpected-reply', 'HAProxy reply is not text');
  const blocks: string[] = [];
  let pos = 0;
  for (let i = 0; i < commands.length; i++) {
    const command = snippet(String(commands[i]), 80);
    if (pos >= reply.length) {
      throw new HaproxyError(
        'unexpected-reply',
        `HAProxy replied with ${i} block(s) for ${commands.length} command(s): nothing for command ${i + 1} (${command})`,
        { reply: tail(reply) },
      );
    }
    const glued = GLUED_ERRORS.find((message) => reply.startsWith(`${message}\n`, pos));
    if (glued !== undefined) {
      blocks.push(`${glued}\n`);
      pos += glued.length + 1;
      continue;
    }
    if (reply[pos] === '\n') {
      blocks.push('');
      pos += 1;
      continue;
    }
    const end = reply.indexOf('\n\n', pos);
    if (end < 0) {
      throw new HaproxyError(
        'unexpected-reply',
        `HAProxy reply to command ${i + 1} of ${commands.length} (${command}) does not end with an empty line: the reply is truncated`,
        { reply: tail(reply) },
      );
    }
    blocks.push(reply.slice(pos, end + 1));
    pos = end + 2;
  }
  if (pos !== reply.length) {
    throw new HaproxyError('unexpected-reply', `HAProxy replied with more blocks than the ${commands.length} command(s) sent`, {
      reply: reply.slice(pos),
    });
  }
  return blocks;
}

function tail(text: string): string {
  return text.length > 160 ? `…${text.slice(-160)}` : text;
}

/** Known one-line error replies of HAProxy 2.6 and what they mean for us. */
const REPLY_ERRORS: ReadonlyMap<string, HaproxyError['kind']> = new Map([
  ['No such server.', 'no-such-server'],
  ['No such backend.', 'no-such-backend'],
  // `show stat <name>` for a name that is no proxy at all.
  ['No such proxy.', 'no-such-backend'],
  // `show servers state <name>` for a name that is no backend (also a frontend's name).
  ["Can't find backend.", 'no-such-backend'],
  ['Permission denied', 'permission-denied'],
  ["Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.", 'static-algorithm'],
  ['Absolute weight can only be between 0 and 256 inclusive.', 'out-of-range'],
  ['Relative weight must be positive.', 'out-of-range'],
  ['Empty weight string empty or preceded by garbage', 'bad-weight-string'],
  ['Trailing garbage in weight string', 'bad-weight-string'],
  ['Require <weight> or <weight%>.', 'bad-weight-string'],
]);

function describeTarget(context: ErrorContext): string {
  const target =
    context.backend !== undefined && context.server !== undefined
      ? `${context.backend}/${context.server}`
      : context.backend !== undefined
        ? `backend ${context.backend}`
        : 'the command';
  return context.loadBalancer !== undefined ? `${target} on load balancer ${context.loadBalancer}` : target;
}

function onLoadBalancer(context: ErrorContext): string {
  return context.loadBalancer !== undefined ? ` on load balancer ${context.loadBalancer}` : '';
}

function messageFor(kind: HaproxyError['kind'], context: ErrorContext): string {
  const target = describeTarget(context);
  switch (kind) {
    case 'no-such-backend':
      return `HAProxy has no ${context.backend !== undefined ? `backend ${context.backend}` : 'such backend'}${context.server !== undefined ? ` (for server ${context.server})` : ''}${onLoadBalancer(context)}`;
    case 'no-such-server':
      return `HAProxy has no ${context.server !== undefined ? `server ${context.server}` : 'such server'}${context.backend !== undefined ? ` in backend ${context.backend}` : ''}${onLoadBalancer(context)}`;
    case 'permission-denied':
      return `HAProxy denied the command for ${target}: changing weights needs a runtime socket at "level admin" (Permission denied)`;
    case 'static-algorithm':
      return `HAProxy refused the weight for ${target}: the backend uses a static balance algorithm (static-rr or map-based hashing), which only takes weights 0% and 100%`;
    case 'out-of-range':
      return `HAProxy refused the weight for ${target} as out of range`;
    case 'bad-weight-string':
      return `HAProxy could not parse the weight sent for ${target}`;
    case 'unexpected-reply':
      return `HAProxy gave an unexpected reply for ${target}`;
  }
}

/**
 * Recognises a one-line HAProxy error reply (with or without its newline) and returns it as a
 * classified HaproxyError, or null when the text is not a known error. The whole text must be
 * the message: an error phrase inside other output is not an error reply.
 */
export function classifyReplyError(text: string, context: ErrorContext = {}): HaproxyError | null {
  if (typeof text !== 'string') return null;
  const line = text.endsWith('\n') ? text.slice(0, -1) : text;
  const kind = REPLY_ERRORS.get(line);
  if (kind === undefined) return null;
  return new HaproxyError(kind, messageFor(kind, context), { ...context, reply: text });
}

/**
 * Reads the reply block of `set server ... weight`: null on success (HAProxy prints nothing),
 * otherwise the classified error. Returned, not thrown: one refused server in a batch is a
 * result to report, not a reason to stop reading the others.
 */
export function parseSetWeightReply(
  block: string,
  context: { readonly backend: string; readonly server: string; readonly loadBalancer?: string },
): HaproxyError | null {
  if (block === '') return null;
  return (
    classifyReplyError(block, context) ??
    new HaproxyError('unexpected-reply', messageFor('unexpected-reply', context), { ...context, reply: String(block) })
  );
}

const GET_WEIGHT_REPLY = /^(\d{1,3}) \(initial (\d{1,3})\)\n$/;

/** Reads the reply block of `get weight`: `80 (initial 100)`. Errors are thrown, classified. */
export function parseGetWeight(block: string, context: ErrorContext = {}): { current: number; initial: number } {
  const m = typeof block === 'string' ? GET_WEIGHT_REPLY.exec(block) : null;
  if (m !== null) {
    const current = Number(m[1]);
    const initial = Number(m[2]);
    if (current <= MAX_WEIGHT && initial <= MAX_WEIGHT) return { current, initial };
  }
  throw (
    classifyReplyError(block, context) ??
    new HaproxyError('unexpected-reply', `${messageFor('unexpected-reply', context)}: get weight did not print "<current> (initial <configured>)"`, {
      ...context,
      reply: String(block),
    })
  );
}

/**
 * `srv_admin_state` bits of HAProxy 2.6 (include/haproxy/server-t.h, `enum srv_admin`). What
 * counts as maintenance is HAProxy's own SRV_ADMF_MAINT mask, FMAINT|IMAINT|RMAINT (0x23), not
 * "any bit with MAINT in its name":
 * - CMAINT (0x04) marks a server declared `disabled` in the configuration and stays set after
 *   `set server ... state ready` puts it back in service (measured: admin state 4 with status
 *   `no check` and traffic flowing). While it is really disabled FMAINT is set too (state 5).
 * - 0x40, documented as HMAINT, only records that the FQDN was changed over the CLI.
 */
const ADMF_FMAINT = 0x01;
const ADMF_IMAINT = 0x02;
const ADMF_FDRAIN = 0x08;
const ADMF_IDRAIN = 0x10;
const ADMF_RMAINT = 0x20;
const ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT;
const ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN;

/** Maps `srv_admin_state` bits to the state the guards read. */
export function adminStateFromBits(bits: number): AdminState {
  if ((bits & ADMF_MAINT) !== 0) return 'maint';
  if ((bits & ADMF_DRAIN) !== 0) return 'drain';
  return 'ready';
}

/**
 * The stricter of the admin bits and the `status` column (`MAINT`, `MAINT (via be/srv)`,
 * `MAINT (resolution)`, `DRAIN`, `DRAIN (agent)` ...): when the two sources disagree the server
 * is treated as the less available one, because a wrongly skipped server costs one cycle and a
 * wrongly touched one costs the operator's trust.
 */
function adminState(bits: number, status: string): AdminState {
  const fromBits = adminStateFromBits(bits);
  if (fromBits === 'maint' || /^MAINT\b/.test(status)) return 'maint';
  if (fromBits === 'drain' || /^DRAIN\b/.test(status)) return 'drain';
  return 'ready';
}

/**
 * Balance algorithms as the `algo` column of `show stat` names them, and how they take runtime
 * weights. Measured on 2.6.12:
 * - `balance source` prints `source` both with the default `hash-type map-based` (static: HAProxy
 *   refuses weights) and with `hash-type consistent` (dynamic: weights apply). Stats print the
 *   algorithm with the hash-type bits masked off, so observation cannot tell them apart; the same
 *   holds for `uri`, `url_param`, `hdr`, `rdp-cookie` and `hash`.
 * - `balance random` prints `unknown` (2.6's backend_lb_algo_str has no entry for it).
 * - L7 hashing in a TCP backend falls back to round robin and prints `roundrobin`.
 */
export type AlgorithmKind = 'dynamic' | 'static' | 'hash' | 'unrecognised';

const DYNAMIC_ALGORITHMS: ReadonlySet<string> = new Set(['roundrobin', 'leastconn', 'first', 'random', 'unknown']);
const HASH_ALGORITHMS: ReadonlySet<string> = new Set(['source', 'uri', 'url_param', 'hdr', 'rdp-cookie', 'hash']);

export function algorithmKind(algo: string): AlgorithmKind {
  if (algo === 'static-rr') return 'static';
  if (DYNAMIC_ALGORITHMS.has(algo)) return 'dynamic';
  // `hdr(name)` and `rdp-cookie(name)` as some versions print the argument too.
  const base = algo.replace(/\(.*\)$/, '');
  if (HASH_ALGORITHMS.has(base)) return 'hash';
  return 'unrecognised';
}

/**
 * True when observation alone proves the backend cannot take our weights: only `static-rr`.
 * Hashing algorithms return false on purpose: `show stat` cannot tell map-based (static) from
 * consistent (dynamic) hashing (see AlgorithmKind), refusing them all would refuse consistent
 * hashing that works, and HAProxy itself refuses each weight of a map-based backend with
 * "Backend is using a static LB algorithm" (kind 'static-algorithm') and changes nothing. It does
 * accept a weight equal to the configured one there, which is no change either.
 */
export function isStaticAlgorithm(algo: string): boolean {
  return algorithmKind(algo) === 'static';
}

/** Splits one CSV record as HAProxy writes it: strings are quoted only when needed, `""` escapes. */
function splitCsvLine(line: string): string[] | null {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= line.length) return null;
        const c = line[i];
        if (c === '"') {
          if (line[i + 1] === '"') {
            value += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += c;
        i++;
      }
      fields.push(value);
      if (i === line.length) return fields;
      if (line[i] !== ',') return null;
      i++;
    } else {
      const comma = line.indexOf(',', i);
      if (comma < 0) {
        fields.push(line.slice(i));
        return fields;
      }
      fields.push(line.slice(i, comma));
      i = comma + 1;
    }
  }
}

function blockLines(block: string, fail: (why: string) => HaproxyError): string[] {
  if (!block.endsWith('\n')) throw fail('it does not end with a newline');
  return block.slice(0, -1).split('\n');
}

/**
 * The columns a reply is read by, by header name, never by position: each `required` column must
 * appear exactly once, each `optional` one at most once (absent, it reads as undefined). Adding a
 * column to what the weighter reads is one name in one of these lists.
 */
interface Columns<R extends string, O extends string> {
  readonly required: readonly R[];
  readonly optional: readonly O[];
}

type ColumnRow<R extends string, O extends string> = { readonly [K in R]: string } & { readonly [K in O]: string | undefined };

/**
 * A regular expression that matches a record of exactly `width` fields and captures the fields
 * at `wanted` (ascending indexes), one group each: `show stat` has about 120 columns and the
 * weighter reads 7, and one native match per record replaces splitting every field of every row
 * into a map (most of a cycle's CPU before, research/bench/start-up.ts). A field never holds the
 * separator, nor, with `quoted`, a `"`: such a record is not matched, and is read as CSV instead.
 */
function recordPattern(width: number, wanted: readonly number[], separator: ',' | ' ', quoted: boolean): RegExp {
  const field = `[^${separator}${quoted ? '"' : ''}]*`;
  let source = '^';
  let index = 0;
  for (const w of wanted) {
    if (w > index) source += `(?:${field}${separator}){${w - index}}`;
    source += `(${field})`;
    index = w + 1;
    if (index < width) source += separator;
  }
  if (index < width) source += `(?:${field}${separator}){${width - index - 1}}${field}`;
  return new RegExp(`${source}$`);
}

/**
 * Reads records by header name; only the wanted columns' fields are cut out, and every record
 * must have as many fields as the header. With `quoted`, a record holding a `"` is split as CSV
 * (HAProxy quotes a field only when it must).
 */
function readColumns<R extends string, O extends string>(
  header: readonly string[],
  records: readonly string[],
  columns: Columns<R, O>,
  options: { readonly separator: ',' | ' '; readonly quoted: boolean },
  fail: (why: string) => HaproxyError,
): ColumnRow<R, O>[] {
  for (const name of columns.required) {
    const count = header.filter((h) => h === name).length;
    if (count !== 1) throw fail(count === 0 ? `column ${name} is missing` : `column ${name} appears ${count} times`);
  }
  for (const name of columns.optional) {
    if (header.filter((h) => h === name).length > 1) throw fail(`column ${name} appears more than once`);
  }
  const wanted = [...columns.required, ...columns.optional]
    .map((name) => ({ name, index: header.indexOf(name) }))
    .filter((column) => column.index >= 0)
    .sort((a, b) => a.index - b.index);
  const width = header.length;
  const { separator, quoted } = options;
  const pattern = recordPattern(
    width,
    wanted.map((column) => column.index),
    separator,
    quoted,
  );

  return records.map((line, lineIndex) => {
    const row: Record<string, string> = {};
    const match = pattern.exec(line);
    if (match !== null) {
      for (let k = 0; k < wanted.length; k++) row[wanted[k]?.name ?? ''] = match[k + 1] ?? '';
    } else if (quoted && line.includes('"')) {
      const fields = splitCsvLine(line);
      if (fields === null) throw fail(`line ${lineIndex + 1} is not CSV`);
      if (fields.length !== width) throw fail(`line ${lineIndex + 1} has ${fields.length} fields for ${width} columns`);
      for (const { name, index } of wanted) row[name] = fields[index] ?? '';
    } else {
      throw fail(`line ${lineIndex + 1} has ${line.split(separator).length} fields for ${width} columns`);
    }
    // Each wanted name is set above, an absent optional column stays undefined: the shape ColumnRow describes.
    return row as ColumnRow<R, O>;
  });
}

/** A decimal integer in [min, max] written without sign, or null. */
function integer(text: string, min: number, max: number): number | null {
  if (!/^\d{1,15}$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : null;
}

const STAT_COLUMNS: Columns<'pxname' | 'svname' | 'type' | 'status' | 'scur' | 'uweight' | 'algo', 'stot'> = {
  required: ['pxname', 'svname', 'type', 'status', 'scur', 'uweight', 'algo'],
  /**
   * Read when present: `stot` (sessions since the process started) tells a reload (it falls) and how
   * many connections each server took between two cycles. (`bin` is no help: measured on 2.6.12,
   * it only grows when a TCP connection ends, so it says nothing of long-lived connections' traffic.) A reply cut down to the required columns
   * (the SSM document's compaction) still parses; the control loop then does without it.
   */
  optional: ['stot'],
};
const STATE_COLUMNS: Columns<'be_name' | 'srv_name' | 'srv_admin_state' | 'srv_uweight' | 'srv_iweight', never> = {
  required: ['be_name', 'srv_name', 'srv_admin_state', 'srv_uweight', 'srv_iweight'],
  optional: [],
};
// `type` column values: 0 frontend, 1 backend, 2 server, 3 listener.
const TYPE_BACKEND = '1';
const TYPE_SERVER = '2';

interface StatServer {
  readonly name: string;
  readonly status: string;
  readonly weight: number;
  readonly sessions: number;
  readonly totalSessions: number | undefined;
}

function parseShowStat(backend: string, block: string, context: ErrorContext): { algorithm: string; servers: StatServer[] } {
  const fail = (why: string, server?: string): HaproxyError =>
    new HaproxyError('unexpected-reply', `Cannot read show stat for ${describeTarget(server === undefined ? context : { ...context, server })}: ${why}`, {
      ...context,
      ...(server === undefined ? {} : { server }),
      reply: block,
    });
  const lines = blockLines(block, fail);
  const [headerLine = '', ...dataLines] = lines;
  if (!headerLine.startsWith('# ')) throw fail('the first line is not a "# " header');
  const header = splitCsvLine(headerLine.slice(2));
  if (header === null) throw fail('the header line is not CSV');
  const rows = readColumns(header, dataLines, STAT_COLUMNS, { separator: ',', quoted: true }, fail);

  let algorithm: string | undefined;
  const servers: StatServer[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    // A backend named like `-1` or a numeric id would make HAProxy dump other proxies.
    if (row.pxname !== backend) throw fail(`it holds a row of proxy "${snippet(row.pxname, 80)}"`);
    const type = row.type;
    if (type === TYPE_BACKEND) {
      if (algorithm !== undefined) throw fail('it has more than one backend row');
      const algo = row.algo;
      if (!/^[A-Za-z0-9_.()-]{1,64}$/.test(algo)) throw fail(`the backend row has algo "${snippet(algo, 80)}"`);
      algorithm = algo;
    } else if (type === TYPE_SERVER) {
      // Any name is read; one we cannot address leaves that server alone (unaddressableServerName), not the backend.
      const name = row.svname;
      if (name === '') throw fail('a server row has no name');
      if (seen.has(name)) throw fail('the server appears twice', name);
      seen.add(name);
      const status = row.status;
      if (!/^[\x20-\x7e]{1,256}$/.test(status)) throw fail(`status "${snippet(status, 80)}" is not a status`, name);
      const weight = integer(row.uweight, 0, MAX_WEIGHT);
      if (weight === null) throw fail(`uweight "${snippet(row.uweight, 40)}" is not a weight from 0 to ${MAX_WEIGHT}`, name);
      const sessions = integer(row.scur, 0, Number.MAX_SAFE_INTEGER);
      if (sessions === null) throw fail(`scur "${snippet(row.scur, 40)}" is not a session count`, name);
      let totalSessions: number | undefined;
      if (row.stot !== undefined) {
        const stot = integer(row.stot, 0, Number.MAX_SAFE_INTEGER);
        if (stot === null) throw fail(`stot "${snippet(row.stot, 40)}" is not a session count`, name);
        totalSessions = stot;
      }
      servers.push({ name, status, weight, sessions, totalSessions });
    } else {
      throw fail(`it holds a row of type "${snippet(type, 20)}"`);
    }
  }
  // No backend row: the name is a frontend, or the reply is cut short.
  if (algorithm === undefined) {
    throw new HaproxyError('no-such-backend', `HAProxy has no backend ${backend}: show stat returned no backend row (${describeTarget(context)})`, {
      ...context,
      reply: block,
    });
  }
  return { algorithm, servers };
}

interface StateServer {
  readonly adminBits: number;
  readonly weight: number;
  readonly initialWeight: number;
}

function parseServersState(backend: string, block: string, context: ErrorContext): Map<string, StateServer> {
  const fail = (why: string, server?: string): HaproxyError =>
    new HaproxyError(
      'unexpected-reply',
      `Cannot read show servers state for ${describeTarget(server === undefined ? context : { ...context, server })}: ${why}`,
      { ...context, ...(server === undefined ? {} : { server }), reply: block },
    );
  const lines = blockLines(block, fail);
  const [version, headerLine = '', ...rest] = lines;
  // Columns are read by name, but a new format version may change what a column means.
  if (version !== '1') throw fail(`format version "${snippet(version ?? '', 20)}" is not 1`);
  if (!headerLine.startsWith('# ')) throw fail('the second line is not a "# " header');
  const header = headerLine.slice(2).split(' ');
  // Management guide: every line starting with '#' is a comment.
  const records = rest.filter((line) => !line.startsWith('#'));
  const rows = readColumns(header, records, STATE_COLUMNS, { separator: ' ', quoted: false }, fail);

  const servers = new Map<string, StateServer>();
  for (const row of rows) {
    if (row.be_name !== backend) throw fail(`it holds a row of backend "${snippet(row.be_name, 80)}"`);
    const name = row.srv_name;
    if (name === '') throw fail('a server row has no name');
    if (servers.has(name)) throw fail('the server appears twice', name);
    const adminBits = integer(row.srv_admin_state, 0, 0xff);
    if (adminBits === null) throw fail(`srv_admin_state "${snippet(row.srv_admin_state, 40)}" is not an admin state`, name);
    const weight = integer(row.srv_uweight, 0, MAX_WEIGHT);
    if (weight === null) throw fail(`srv_uweight "${snippet(row.srv_uweight, 40)}" is not a weight from 0 to ${MAX_WEIGHT}`, name);
    const initialWeight = integer(row.srv_iweight, 0, MAX_WEIGHT);
    if (initialWeight === null) throw fail(`srv_iweight "${snippet(row.srv_iweight, 40)}" is not a weight from 0 to ${MAX_WEIGHT}`, name);
    servers.set(name, { adminBits, weight, initialWeight });
  }
  return servers;
}

/** What `show servers state` says of one server: enough to check the guards at write time. */
export interface ServerGuardState {
  readonly admin: AdminState;
  readonly weight: number;
}

/** Reads the reply block of serversStateCommand(backend). */
export function parseServerStates(backend: string, block: string, context: ErrorContext = {}): Map<string, ServerGuardState> {
  assertName(backend, 'backend');
  const ctx: ErrorContext = { ...context, backend };
  const error = typeof block === 'string' ? classifyReplyError(block, ctx) : null;
  if (error !== null) throw error;
  if (typeof block !== 'string') throw new HaproxyError('unexpected-reply', `HAProxy reply for ${describeTarget(ctx)} is not text`, ctx);
  const out = new Map<string, ServerGuardState>();
  for (const [name, s] of parseServersState(backend, block, ctx)) out.set(name, { admin: adminStateFromBits(s.adminBits), weight: s.weight });
  return out;
}

function unaddressable(name: string): { unaddressable?: string } {
  const why = unaddressableServerName(name);
  return why === null ? {} : { unaddressable: why };
}

/**
 * Builds one backend's view from the reply blocks of observeCommands(backend), joined by server
 * name. The two outputs must describe the same servers with the same user weight: a mismatch
 * (a server added or a weight changed between the two commands, or a reply we misread) fails
 * the observation, and the cycle leaves that backend alone.
 */
export function parseObservedBackend(backend: string, showStatBlock: string, serversStateBlock: string, context: ErrorContext = {}): ObservedBackend {
  assertName(backend, 'backend');
  const ctx: ErrorContext = { ...context, backend };
  if (typeof showStatBlock !== 'string' || typeof serversStateBlock !== 'string') {
    throw new HaproxyError('unexpected-reply', `HAProxy reply for ${describeTarget(ctx)} is not text`, ctx);
  }
  const error = classifyReplyError(showStatBlock, ctx) ?? classifyReplyError(serversStateBlock, ctx);
  if (error !== null) throw error;

  const stat = parseShowStat(backend, showStatBlock, ctx);
  const state = parseServersState(backend, serversStateBlock, ctx);

  const servers: ObservedServer[] = stat.servers.map((s) => {
    const st = state.get(s.name);
    if (st === undefined) {
      throw new HaproxyError('unexpected-reply', `Server ${backend}/${s.name} is in show stat but not in show servers state (${describeTarget(ctx)})`, {
        ...ctx,
        server: s.name,
        reply: serversStateBlock,
      });
    }
    if (st.weight !== s.weight) {
      throw new HaproxyError(
        'unexpected-reply',
        `Server ${backend}/${s.name} has uweight ${s.weight} in show stat but srv_uweight ${st.weight} in show servers state (${describeTarget(ctx)})`,
        { ...ctx, server: s.name, reply: serversStateBlock },
      );
    }
    return {
      name: s.name,
      status: s.status,
      admin: adminState(st.adminBits, s.status),
      weight: s.weight,
      initialWeight: st.initialWeight,
      sessions: s.sessions,
      ...unaddressable(s.name),
      ...(s.totalSessions === undefined ? {} : { totalSessions: s.totalSessions }),
    };
  });
  const inStat = new Set(stat.servers.map((s) => s.name));
  for (const name of state.keys()) {
    if (!inStat.has(name)) {
      throw new HaproxyError('unexpected-reply', `Server ${backend}/${name} is in show servers state but not in show stat (${describeTarget(ctx)})`, {
        ...ctx,
        server: name,
        reply: showStatBlock,
      });
    }
  }
  return { backend, algorithm: stat.algorithm, servers };
}
