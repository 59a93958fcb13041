import { NAME_SOURCE } from '../core/config.js';
import { WEIGHT_SOURCE } from '../core/haproxy-protocol.js';

/**
 * The runtime commands the SSM document accepts, as regular expressions. The same source text is
 * the `allowedPattern` of the document's `Commands` parameter (a unit test keeps the two equal) and
 * the relay's own check before it sends anything: a command that SSM would reject is rejected here
 * first, with a message that names it.
 *
 * The pattern only uses constructs that mean the same in JavaScript, Java and POSIX ERE (plain
 * groups, bracket classes, bounded repeats, `|`), because SSM evaluates `allowedPattern` on its
 * side and the document's script checks the value again with bash `[[ =~ ]]`.
 */

/**
 * One command of the four forms the product sends. Names and weights are the core's own grammar
 * (`NAME_SOURCE`: what `SAFE_NAME` accepts; `WEIGHT_SOURCE`: 0..256), so the socket path and the
 * SSM path can never disagree about what may be sent.
 */
export const COMMAND_SOURCE =
  `(show stat ${NAME_SOURCE} 6 -1` +
  `|show servers state ${NAME_SOURCE}` +
  `|get weight ${NAME_SOURCE}/${NAME_SOURCE}` +
  `|set server ${NAME_SOURCE}/${NAME_SOURCE} weight ${WEIGHT_SOURCE})`;

/** The whole `Commands` parameter: one or more commands joined by `; `. */
export const COMMANDS_PATTERN_SOURCE = `^${COMMAND_SOURCE}(; ${COMMAND_SOURCE})*$`;

/** The `SocketPath` parameter: an absolute path of safe characters (as `relay.socketPath`). */
export const SOCKET_PATH_PATTERN_SOURCE = '^/[A-Za-z0-9_./-]{1,200}$';

const COMMAND = new RegExp(`^${COMMAND_SOURCE}$`);

/** True when one command is of a form the document accepts. */
export function isAllowedCommand(command: string): boolean {
  return COMMAND.test(command);
}
