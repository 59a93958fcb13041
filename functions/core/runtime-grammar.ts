/**
 * What may ever reach an HAProxy runtime API, defined once: names, weights, admin socket paths and
 * the five command forms. The configuration schema, the command builders and parser
 * (haproxy-protocol.ts), the SSM relay's check and the SSM document's `allowedPattern` (a unit test
 * keeps infra/ssm-document.yaml equal to it) are all built from these sources, so the socket path
 * and the SSM path can never disagree about what may be sent.
 *
 * The patterns only use constructs that mean the same in JavaScript, Java and POSIX ERE (plain
 * groups, bracket classes, bounded repeats, `|`), because SSM evaluates `allowedPattern` on its
 * side and the document's script checks the value again with bash `[[ =~ ]]`.
 */

/**
 * Names that reach the runtime API. HAProxy 2.6 accepts in proxy and server names letters, digits
 * and `_ . : -`, in any position and of any length (measured with `haproxy -c` on 2.6.12: every
 * other printable ASCII character, and any non-ASCII one, is refused). Its runtime API, though,
 * reads each command, and prints each `show stat` line, within one buffer (tune.bufsize, 16 KB by
 * default): measured, a 16,000-character server name still works and a 17,000-character one
 * makes HAProxy close the session, batch and all. So we address names of up to NAME_MAX_LENGTH
 * characters, which keeps any command and any line with two such names far inside even an 8 KB
 * buffer, and is four times the longest DNS name. A server with a longer name is left alone.
 */
export const NAME_MAX_LENGTH = 1024;
const NAME_CHARACTERS = 'A-Za-z0-9_.:-';
const NAME_CHARACTERS_IN_WORDS = 'A-Z a-z 0-9 _ . : -';

/**
 * A backend name in a pattern. A leading `-` is refused because `show stat -1 ...` would address
 * every proxy. The length is unbounded here and checked apart (NAME_TOO_LONG_SOURCE): a POSIX ERE
 * engine such as bash's expands a bounded repeat into that many states, and a bound of 1,023 in
 * the batch pattern costs bash about a second per batch.
 */
export const BACKEND_NAME_SOURCE = `[A-Za-z0-9_.:][${NAME_CHARACTERS}]*`;
/** A server name in a pattern: HAProxy's characters, a leading `-` included (it always follows `backend/`). */
export const SERVER_NAME_SOURCE = `[${NAME_CHARACTERS}]+`;
/** A run of name characters longer than any name we address: a batch that holds one is refused. */
export const NAME_TOO_LONG_SOURCE = `[${NAME_CHARACTERS}]{${NAME_MAX_LENGTH + 1}}`;

const ONLY_NAME_CHARACTERS = new RegExp(`^[${NAME_CHARACTERS}]+$`);

/** Backend names (and the names of load balancers in the configuration). */
export const SAFE_NAME = new RegExp(`^[A-Za-z0-9_.:][${NAME_CHARACTERS}]{0,${NAME_MAX_LENGTH - 1}}$`);
/** Server names. */
export const SAFE_SERVER_NAME = new RegExp(`^[${NAME_CHARACTERS}]{1,${NAME_MAX_LENGTH}}$`);
/** What SAFE_NAME allows, in words; a leading '-' is the one rule it does not spell out. */
export const SAFE_NAME_CHARS = `1-${NAME_MAX_LENGTH} characters of ${NAME_CHARACTERS_IN_WORDS}`;
export const SAFE_NAME_RULE = `must be ${SAFE_NAME_CHARS}`;

/**
 * Why the runtime API cannot be asked about a server HAProxy reported, or null when it can: a name
 * longer than we address, or one with characters HAProxy names never hold (a reply that did not
 * come from HAProxy). Such a server is left alone; the rest of its backend is not.
 */
export function unaddressableServerName(name: string): string | null {
  if (SAFE_SERVER_NAME.test(name)) return null;
  if (name.length > NAME_MAX_LENGTH && ONLY_NAME_CHARACTERS.test(name)) {
    return `its name is ${name.length} characters long; haproxy-weighter addresses names of up to ${NAME_MAX_LENGTH} characters (the runtime API reads each command within one buffer): left alone`;
  }
  return `its name holds characters HAProxy names never hold (only ${NAME_CHARACTERS_IN_WORDS}): left alone`;
}

/** Lowest weight we decide: 0 stops new connections, which is the operator's tool, not ours. */
export const MIN_SET_WEIGHT = 1;
/** HAProxy's SRV_UWGHT_MAX: the largest user weight it accepts. */
export const MAX_WEIGHT = 256;
/**
 * A weight in a command: 0..MAX_WEIGHT without leading zeros, so the text of a command has exactly
 * one spelling. 0 only ever comes from putting back an operator's weight (restoreWeightCommand);
 * the planner never decides it.
 */
export const WEIGHT_SOURCE = '(25[0-6]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';

/** The admin socket path on a load balancer (SSM relay): absolute, of safe characters. */
export const SOCKET_PATH_SOURCE = '^/[A-Za-z0-9_./-]{1,200}$';
export const SOCKET_PATH = new RegExp(SOCKET_PATH_SOURCE);

/**
 * `show cli level` prints the level of the session (`admin`, `operator` or `user`) and changes
 * nothing: how `doctor` proves a socket may set weights without setting one. Measured on HAProxy
 * 2.6.12 with one socket of each level; `set server` needs `admin`. It takes no argument, so it
 * is one fixed text in every pattern.
 */
export const SHOW_CLI_LEVEL = 'show cli level';

/**
 * The five command forms, written once: filled with names and a weight they are commands (the
 * builders in haproxy-protocol.ts), filled with the name and weight sources they are the patterns
 * (plain for the SSM document, with capturing groups for the parser).
 */
export function commandForms(
  backend: string,
  server: string,
  weight: string,
): { readonly showStat: string; readonly showServersState: string; readonly getWeight: string; readonly setWeight: string; readonly showCliLevel: string } {
  return {
    // Type mask 6 = backend row (2) + server rows (4); -1 = every service id.
    showStat: `show stat ${backend} 6 -1`,
    showServersState: `show servers state ${backend}`,
    getWeight: `get weight ${backend}/${server}`,
    setWeight: `set server ${backend}/${server} weight ${weight}`,
    showCliLevel: SHOW_CLI_LEVEL,
  };
}

const FORMS = commandForms(BACKEND_NAME_SOURCE, SERVER_NAME_SOURCE, WEIGHT_SOURCE);

/** One command of the five forms. */
export const COMMAND_SOURCE = `(${[FORMS.showStat, FORMS.showServersState, FORMS.getWeight, FORMS.setWeight, FORMS.showCliLevel].join('|')})`;

/** The SSM document's `Commands` parameter: one or more commands joined by `; `. */
export const COMMANDS_PATTERN_SOURCE = `^${COMMAND_SOURCE}(; ${COMMAND_SOURCE})*$`;

const COMMAND = new RegExp(`^${COMMAND_SOURCE}$`);
const TOO_LONG = new RegExp(NAME_TOO_LONG_SOURCE);

/** True when one command is of a form the SSM document accepts, its names no longer than NAME_MAX_LENGTH. */
export function isAllowedCommand(command: string): boolean {
  return COMMAND.test(command) && !TOO_LONG.test(command);
}
