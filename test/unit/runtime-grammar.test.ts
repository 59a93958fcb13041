import { describe, expect, it } from 'vitest';
import {
  COMMANDS_PATTERN_SOURCE,
  MAX_WEIGHT,
  MIN_SET_WEIGHT,
  NAME_MAX_LENGTH,
  SAFE_NAME,
  SAFE_SERVER_NAME,
  SOCKET_PATH,
  WEIGHT_SOURCE,
  isAllowedCommand,
  unaddressableServerName,
} from '../../functions/core/runtime-grammar.js';
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
    ['show cli level', { kind: 'show-cli-level' }],
  ])('accepts %j in the SSM pattern and parses it the same way', (command, parsed) => {
    expect(new RegExp(COMMANDS_PATTERN_SOURCE).test(command)).toBe(true);
    expect(isAllowedCommand(command)).toBe(true);
    expect(parseCommand(command)).toEqual(parsed);
  });

  it.each(['show cli level ', 'show cli', 'show cli level; ', 'show cli levels', 'show cli level admin', 'operator'])('accepts show cli level only as its exact text, not %j', (command) => {
    expect(isAllowedCommand(command)).toBe(false);
    expect(() => parseCommand(command)).toThrow(/not one of the commands/);
  });

  it('refuses a name with a leading "-", which would address every proxy', () => {
    expect(SAFE_NAME.test('-1')).toBe(false);
    expect(isAllowedCommand('show stat -1 6 -1')).toBe(false);
  });

  it.each([
    ['a 72-character server name', 's'.repeat(72), true, true],
    ['a 1024-character name', 'n'.repeat(NAME_MAX_LENGTH), true, true],
    ['a 1025-character name', 'n'.repeat(NAME_MAX_LENGTH + 1), false, false],
    ['a name with a leading -', '-canary', false, true],
    ['a name of digits only', '42', true, true],
    ['a name with a character HAProxy refuses in names', 's/1', false, false],
  ])('judges %s as a backend name: %s, as a server name: %s', (_what, name, backend, server) => {
    expect(SAFE_NAME.test(name)).toBe(backend);
    expect(SAFE_SERVER_NAME.test(name)).toBe(server);
    expect(isAllowedCommand(`get weight be/${name}`)).toBe(server);
    expect(isAllowedCommand(`show servers state ${name}`)).toBe(backend);
  });

  it.each([
    ['s1', null],
    ['-canary', null],
    ['s'.repeat(NAME_MAX_LENGTH), null],
    ['s'.repeat(NAME_MAX_LENGTH + 1), `its name is ${NAME_MAX_LENGTH + 1} characters long; haproxy-weighter addresses names of up to ${NAME_MAX_LENGTH} characters`],
    ['s\u202e1', 'its name holds characters HAProxy names never hold (only A-Z a-z 0-9 _ . : -)'],
    ['s 1', 'its name holds characters HAProxy names never hold'],
  ])('says why the runtime API cannot address a server named %j: %j', (name, why) => {
    const found = unaddressableServerName(name);
    if (why === null) expect(found).toBeNull();
    else expect(found).toContain(why);
  });

  it.each([
    ['/run/haproxy/admin.sock', true],
    ['run/haproxy/admin.sock', false],
    ['/tmp/a;reboot', false],
  ])('judges the admin socket path %j allowed: %s', (path, allowed) => {
    expect(SOCKET_PATH.test(path)).toBe(allowed);
  });
});
