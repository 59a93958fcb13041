/**
 * What may ever reach an HAProxy runtime API, defined once: names, weights, admin socket paths and
 * the four command forms. The configuration schema, the command builders and parser
 * (haproxy-protocol.ts), the SSM relay's check and the SSM document's `allowedPattern` (a unit test
 * keeps infra/ssm-document.yaml equal to it) are all built from these sources, so the socket path
 * and the SSM path can never disagree about what may be sent.
 *
 * The patterns only use constructs that mean the same in JavaScript, Java and POSIX ERE (plain
 * groups, bracket classes, bounded repeats, `|`), because SSM evaluates `allowedPattern` on its
 * side and the document's script checks the value again with bash `[[ =~ ]]`.
 */

/**
 * Names that reach the runtime API: HAProxy backend and server names we accept. A leading `-`
 * is refused because `show stat -1 ...` would address every proxy.
 */
export const NAME_SOURCE = '[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,63}';
export const SAFE_NAME = new RegExp(`^${NAME_SOURCE}$`);
/** What NAME_SOURCE allows, in words; a leading '-' is the one rule it does not spell out. */
export const SAFE_NAME_CHARS = '1-64 characters of A-Z a-z 0-9 _ . : -';
export const SAFE_NAME_RULE = `must be ${SAFE_NAME_CHARS}`;

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
 * The four command forms, written once: filled with names and a weight they are commands (the
 * builders in haproxy-protocol.ts), filled with NAME_SOURCE and WEIGHT_SOURCE they are the patterns
 * (plain for the SSM document, with capturing groups for the parser).
 */
export function commandForms(
  backend: string,
  server: string,
  weight: string,
): { readonly showStat: string; readonly showServersState: string; readonly getWeight: string; readonly setWeight: string } {
  return {
    // Type mask 6 = backend row (2) + server rows (4); -1 = every service id.
    showStat: `show stat ${backend} 6 -1`,
    showServersState: `show servers state ${backend}`,
    getWeight: `get weight ${backend}/${server}`,
    setWeight: `set server ${backend}/${server} weight ${weight}`,
  };
}

const FORMS = commandForms(NAME_SOURCE, NAME_SOURCE, WEIGHT_SOURCE);

/** One command of the four forms. */
export const COMMAND_SOURCE = `(${[FORMS.showStat, FORMS.showServersState, FORMS.getWeight, FORMS.setWeight].join('|')})`;

/** The SSM document's `Commands` parameter: one or more commands joined by `; `. */
export const COMMANDS_PATTERN_SOURCE = `^${COMMAND_SOURCE}(; ${COMMAND_SOURCE})*$`;

const COMMAND = new RegExp(`^${COMMAND_SOURCE}$`);

/** True when one command is of a form the SSM document accepts. */
export function isAllowedCommand(command: string): boolean {
  return COMMAND.test(command);
}
