import { describe, expect, it } from 'vitest';
import { COMMANDS_PATTERN_SOURCE, MAX_WEIGHT, MIN_SET_WEIGHT, SAFE_NAME, SOCKET_PATH, WEIGHT_SOURCE, isAllowedCommand } from '../../functions/core/runtime-grammar.js';
import { parseCommand, restoreWeightCommand, setWeightCommand } from '../../functions/core/haproxy-protocol.js';

const WEIGHT = new RegExp(`^${WEIGHT_SOURCE}$`);

describe('the runtime grammar', () => {
  it('spells every weight from 0 to MAX_WEIGHT one way, and nothing else', () => {
    const accepted = Array.from({ length: 1000 }, (_, n) => String(n)).filter((text) => WEIGHT.test(text));
    expect(accepted).toEqual(Array.from({ length: MAX_WEIGHT + 1 }, (_, n) => String(n)));
    for (const text of ['00', '01', '-1', '256.0', '1e2', ' 1', '']) expect(WEIGHT.test(text)).toBe(false);
  });

  it('lets the planner decide weights from MIN_SET_WEIGHT up, and only a put-back send 0', () => {
    expect(MIN_SET_WEIGHT).toBe(1);
    expect(() => setWeightCommand('be', 's1', 0)).toThrow(/from 1 to 256/);
    expect(restoreWeightCommand('be', 's1', 0)).toBe('set server be/s1 weight 0');
    expect(isAllowedCommand('set server be/s1 weight 0')).toBe(true);
  });

  it.each([
    ['show stat be 6 -1', { kind: 'show-stat', backend: 'be' }],
    ['show servers state be', { kind: 'show-servers-state', backend: 'be' }],
    ['get weight be/s1', { kind: 'get-weight', backend: 'be', server: 's1' }],
    ['set server be/s1 weight 256', { kind: 'set-weight', backend: 'be', server: 's1', weight: 256 }],
  ])('accepts %j in the SSM pattern and parses it the same way', (command, parsed) => {
    expect(new RegExp(COMMANDS_PATTERN_SOURCE).test(command)).toBe(true);
    expect(isAllowedCommand(command)).toBe(true);
    expect(parseCommand(command)).toEqual(parsed);
  });

  it('refuses a name with a leading "-", which would address every proxy', () => {
    expect(SAFE_NAME.test('-1')).toBe(false);
    expect(isAllowedCommand('show stat -1 6 -1')).toBe(false);
  });

  it.each([
    ['/run/haproxy/admin.sock', true],
    ['run/haproxy/admin.sock', false],
    ['/tmp/a;reboot', false],
  ])('judges the admin socket path %j allowed: %s', (path, allowed) => {
    expect(SOCKET_PATH.test(path)).toBe(allowed);
  });
});
