import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HaproxyError, UnsafeInputError, snippet, type HaproxyErrorKind } from '../../functions/core/errors.js';
import {
  adminStateFromBits,
  algorithmKind,
  classifyReplyError,
  encodeBatch,
  encodeInteractiveBatch,
  getWeightCommand,
  isStaticAlgorithm,
  observeCommands,
  parseCliLevel,
  parseCommand,
  parseGetWeight,
  parseObservedBackend,
  parseSetWeightReply,
  plainReplyFromInteractive,
  promptsExpected,
  setWeightCommand,
  splitReplies,
} from '../../functions/core/haproxy-protocol.js';
import type { ObservedBackend } from '../../functions/core/types.js';

/** Replies recorded from a real HAProxy 2.6.12 by test/scripts/record-haproxy-fixtures.sh. */
function fixture(name: string): { commands: string[]; reply: string } {
  const dir = new URL('../fixtures/haproxy/', import.meta.url);
  const request = readFileSync(new URL(`${name}.request.txt`, dir), 'utf8');
  return { commands: request.replace(/\n$/, '').split('; '), reply: readFileSync(new URL(`${name}.reply.txt`, dir), 'utf8') };
}

/** The same request recorded after `prompt`, as the socket relay sends it. */
function interactiveFixture(name: string): { commands: string[]; reply: string } {
  const dir = new URL('../fixtures/haproxy/', import.meta.url);
  return { commands: fixture(name).commands, reply: readFileSync(new URL(`${name}.interactive.reply.txt`, dir), 'utf8') };
}

function blocksOf(name: string): string[] {
  const { commands, reply } = fixture(name);
  return splitReplies(commands, reply);
}

function observe(name: string, backend: string): ObservedBackend {
  const [stat = '', state = ''] = blocksOf(name);
  return parseObservedBackend(backend, stat, state, { loadBalancer: 'lb-1' });
}

/** Runs fn and returns what it threw, so that kind and context can be asserted. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function haproxyError(fn: () => unknown): HaproxyError {
  const error = thrown(fn);
  if (!(error instanceof HaproxyError)) throw new Error(`expected a HaproxyError, got ${String(error)}`);
  return error;
}

const HOSTILE_NAMES: readonly (readonly [string, string])[] = [
  ['a command separator', 'a;shutdown sessions'],
  ['a shell substitution', '$(reboot)'],
  ['a space', 'a b'],
  ['a newline', 'a\nshow stat'],
  ['an empty string', ''],
  ['1025 characters', 'x'.repeat(1025)],
  ['unicode letters', 'bäckend'],
  ['a slash', 'be/srv'],
  ['a NUL byte', 'a\u0000b'],
  ['a backquote', '`id`'],
];

describe('setWeightCommand', () => {
  it.each([
    ['ingest', 'ing-a', 1, 'set server ingest/ing-a weight 1'],
    ['ingest', 'node.eu-1:7000', 256, 'set server ingest/node.eu-1:7000 weight 256'],
    ['b'.repeat(64), 's'.repeat(64), 100, `set server ${'b'.repeat(64)}/${'s'.repeat(64)} weight 100`],
  ])('builds the current set-server form for %s/%s weight %d', (backend, server, weight, expected) => {
    expect(setWeightCommand(backend, server, weight)).toBe(expected);
  });

  it.each(HOSTILE_NAMES)('refuses a backend name with %s and names the value', (_label, name) => {
    const error = thrown(() => setWeightCommand(name, 'ing-a', 10));
    expect(error).toBeInstanceOf(UnsafeInputError);
    expect((error as UnsafeInputError).message).toContain(snippet(name, 80));
  });

  it.each(HOSTILE_NAMES)('refuses a server name with %s and names the value', (_label, name) => {
    const error = thrown(() => setWeightCommand('ingest', name, 10));
    expect(error).toBeInstanceOf(UnsafeInputError);
    expect((error as UnsafeInputError).message).toContain(snippet(name, 80));
  });

  it.each([0, 257, 1.5, Number.NaN, -1, Number.POSITIVE_INFINITY, 1e3])('refuses weight %s and names it', (weight) => {
    const error = thrown(() => setWeightCommand('ingest', 'ing-a', weight));
    expect(error).toBeInstanceOf(UnsafeInputError);
    expect((error as UnsafeInputError).message).toContain(`"${String(weight)}"`);
    expect((error as UnsafeInputError).context).toMatchObject({ backend: 'ingest', server: 'ing-a' });
  });
});

describe('getWeightCommand and observeCommands', () => {
  it('builds get weight for one server', () => {
    expect(getWeightCommand('ingest', 'ing-b')).toBe('get weight ingest/ing-b');
  });

  it('observes a backend with show stat (backend and server rows) and show servers state', () => {
    expect(observeCommands('ingest')).toEqual(['show stat ingest 6 -1', 'show servers state ingest']);
  });

  it.each(HOSTILE_NAMES)('refuses to observe a backend name with %s', (_label, name) => {
    expect(() => observeCommands(name)).toThrow(UnsafeInputError);
    expect(() => getWeightCommand(name, 'ing-a')).toThrow(UnsafeInputError);
    expect(() => getWeightCommand('ingest', name)).toThrow(UnsafeInputError);
  });
});

describe('encodeBatch', () => {
  it('joins the commands with "; " on one line that ends with a newline', () => {
    const commands = [...observeCommands('ingest'), setWeightCommand('ingest', 'ing-a', 40), getWeightCommand('ingest', 'ing-a')];
    expect(encodeBatch(commands)).toBe(`${commands.join('; ')}\n`);
    expect(encodeBatch(commands).split('\n')).toHaveLength(2);
  });

  it('accepts the exact lines that were sent to the real HAProxy for the observe fixtures', () => {
    for (const name of ['observe-ingest', 'observe-several', 'observe-big']) {
      const { commands } = fixture(name);
      const request = readFileSync(new URL(`../fixtures/haproxy/${name}.request.txt`, import.meta.url), 'utf8');
      expect(encodeBatch(commands)).toBe(request);
    }
  });

  it.each([
    ['weight 257', 'set server ingest/ing-a weight 257'],
    ['a leading zero', 'set server ingest/ing-a weight 010'],
    ['a relative weight', 'set server ingest/ing-a weight 50%'],
    ['a signed weight', 'set server ingest/ing-a weight +5'],
    ['a decimal weight', 'set server ingest/ing-a weight 5.0'],
    ['the deprecated set weight form', 'set weight ingest/ing-a 5'],
    ['a state change', 'set server ingest/ing-a state maint'],
    ['shutdown sessions', 'shutdown sessions server ingest/ing-a'],
    ['a chained command', 'get weight ingest/ing-a; shutdown sessions server ingest/ing-a'],
    ['an embedded newline', 'set server ingest/ing-a weight 5\nshutdown sessions server ingest/ing-a'],
    ['a trailing space', 'set server ingest/ing-a weight 5 '],
    ['a leading space', ' get weight ingest/ing-a'],
    ['a double space', 'set  server ingest/ing-a weight 5'],
    ['upper case', 'SET server ingest/ing-a weight 5'],
    ['three path parts', 'set server ingest/ing-a/x weight 5'],
    ['get weight without a server', 'get weight ingest'],
    ['another stat type mask', 'show stat ingest 4 -1'],
    ['show stat of every proxy', 'show stat 6 -1'],
    ['show servers state of every backend', 'show servers state'],
    ['two backends to show servers state', 'show servers state ingest rr'],
    ['an unsafe name', 'get weight ingest/$(reboot)'],
    ['an empty command', ''],
  ])('refuses %s', (_label, command) => {
    const error = thrown(() => encodeBatch([getWeightCommand('ingest', 'ing-a'), command]));
    expect(error).toBeInstanceOf(UnsafeInputError);
    expect((error as UnsafeInputError).message).toContain(snippet(command, 120));
  });

  it('refuses an empty batch', () => {
    expect(() => encodeBatch([])).toThrow(UnsafeInputError);
  });
});

describe('parseCommand', () => {
  it.each([
    ['set server ingest/ing-a weight 256', { kind: 'set-weight', backend: 'ingest', server: 'ing-a', weight: 256 }],
    ['get weight ingest/node.eu-1:7000', { kind: 'get-weight', backend: 'ingest', server: 'node.eu-1:7000' }],
    ['show stat ingest 6 -1', { kind: 'show-stat', backend: 'ingest' }],
    ['show servers state ingest', { kind: 'show-servers-state', backend: 'ingest' }],
  ])('reads %s back into its parts', (command, expected) => {
    expect(parseCommand(command)).toEqual(expected);
  });
});

describe('the interactive session of the socket relay', () => {
  it('sends prompt on its own line, then the batch line', () => {
    expect(encodeInteractiveBatch(['get weight a/b', 'get weight a/c'])).toBe('prompt\nget weight a/b; get weight a/c\n');
    expect(promptsExpected(['get weight a/b', 'get weight a/c'])).toBe(3);
  });

  it('checks every command against the whitelist, as the plain batch does', () => {
    expect(() => encodeInteractiveBatch(['get weight a/b', 'shutdown sessions server a/b'])).toThrow(UnsafeInputError);
    expect(() => encodeInteractiveBatch([])).toThrow(UnsafeInputError);
  });

  it.each(['set-weight-errors', 'glued-errors-middle', 'glued-error-end', 'observe-unknown-backend'])(
    'turns the interactive reply of %s into the very bytes the non-interactive mode printed',
    (name) => {
      const interactive = interactiveFixture(name);
      expect(interactive.reply.split('\n> ')).toHaveLength(promptsExpected(interactive.commands) + 1);
      expect(plainReplyFromInteractive(interactive.reply)).toBe(fixture(name).reply);
    },
  );

  it('reads a backend observed in an interactive session like one observed in a plain one', () => {
    const { commands, reply } = interactiveFixture('observe-ingest');
    const [stat = '', state = ''] = splitReplies(commands, plainReplyFromInteractive(reply));
    expect(parseObservedBackend('ingest', stat, state, { loadBalancer: 'lb-1' })).toEqual(observe('observe-ingest', 'ingest'));
  });

  it.each([
    ['nothing at all', '', ''],
    ['part of the first prompt', '\n>', ''],
    ['the first prompt only', '\n> ', ''],
    ['one complete reply and one cut short', '\n> 7 (initial 1)\n\n> 7 (ini', '7 (initial 1)\n\n7 (ini'],
  ])('keeps a reply cut short after %s as it is, so that splitReplies names what is missing', (_what, reply, plain) => {
    expect(plainReplyFromInteractive(reply)).toBe(plain);
  });

  it('refuses a reply that does not start with the prompt, quoting it', () => {
    const error = haproxyError(() => plainReplyFromInteractive('Unknown command: prompt\n'));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('did not answer "prompt" with its prompt: the reply starts with "Unknown command: prompt\\n"');
  });

  it('turns a glued weight error at the end of an interactive reply into the plain form', () => {
    expect(splitReplies(['get weight rr/rr-a', 'set server rr/rr-a weight 9x'], plainReplyFromInteractive(interactiveFixture('glued-error-end').reply))).toEqual([
      '7 (initial 1)\n',
      'Trailing garbage in weight string\n',
    ]);
  });
});

describe('splitReplies on recorded replies', () => {
  it.each([
    ['observe-ingest', 2],
    ['observe-several', 6],
    ['observe-big', 2],
    ['observe-unknown-backend', 2],
    ['observe-frontend-name', 2],
    ['set-weight-batch', 7],
    ['set-weight-errors', 9],
    ['set-weight-operator-socket', 2],
    ['glued-errors-middle', 4],
    ['glued-error-end', 2],
  ])('splits %s into one block per command', (name, count) => {
    const { commands, reply } = fixture(name);
    expect(commands).toHaveLength(count);
    const blocks = splitReplies(commands, reply);
    expect(blocks).toHaveLength(count);
    // Every byte of the reply is accounted for: blocks plus their terminating empty lines.
    const glued = blocks.filter((b) => /^(Empty weight string|Trailing garbage)/.test(b)).length;
    expect(blocks.join('').length + count - glued).toBe(reply.length);
  });

  it('gives an empty block for each successful set and the value for each get', () => {
    expect(blocksOf('set-weight-batch')).toEqual(['', '', '', '1 (initial 1)\n', '256 (initial 5)\n', '', '33 (initial 10)\n']);
  });

  it('separates glued weight errors from the reply that follows them in the middle of a batch', () => {
    expect(blocksOf('glued-errors-middle')).toEqual([
      'Empty weight string empty or preceded by garbage\n',
      '7 (initial 1)\n',
      'Trailing garbage in weight string\n',
      '7 (initial 1)\n',
    ]);
  });

  it('accepts a glued weight error as the last block of a batch', () => {
    expect(blocksOf('glued-error-end')).toEqual(['7 (initial 1)\n', 'Trailing garbage in weight string\n']);
  });

  it('separates a glued error from a successful set that follows it', () => {
    expect(splitReplies(['set server a/b weight 5x', 'set server a/b weight 5'], 'Trailing garbage in weight string\n\n')).toEqual([
      'Trailing garbage in weight string\n',
      '',
    ]);
  });

  it('fails with the reply when there are fewer blocks than commands', () => {
    const { commands, reply } = fixture('set-weight-batch');
    const error = haproxyError(() => splitReplies([...commands, 'get weight rr/rr-a'], reply));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('7 block(s) for 8 command(s)');
    expect(error.context.reply).toBe(snippet(reply));
  });

  it('fails with the leftover text when there are more blocks than commands', () => {
    const { commands, reply } = fixture('set-weight-batch');
    const error = haproxyError(() => splitReplies(commands.slice(0, -1), reply));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('more blocks than the 6 command(s)');
    expect(error.context.reply).toBe(snippet('33 (initial 10)\n\n'));
  });

  it('fails on a reply cut short inside the last block', () => {
    const { commands, reply } = fixture('observe-ingest');
    const error = haproxyError(() => splitReplies(commands, reply.slice(0, reply.length - 40)));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('truncated');
  });

  it('fails on an empty reply to one command and accepts an empty reply to none', () => {
    expect(haproxyError(() => splitReplies(['get weight a/b'], '')).kind).toBe('unexpected-reply');
    expect(splitReplies([], '')).toEqual([]);
  });
});

describe('parseObservedBackend on recorded replies', () => {
  const ingest = observe('observe-ingest', 'ingest');

  it('reads the algorithm from the backend row', () => {
    expect(ingest.backend).toBe('ingest');
    expect(ingest.algorithm).toBe('leastconn');
  });

  it('keeps the servers in the order HAProxy lists them', () => {
    expect(ingest.servers.map((s) => s.name)).toEqual(['ing-a', 'ing-b', 'ing-m', 'ing-t', 'ing-d', 'ing-z', 'ing-x', 'ing-c', 'node.eu-1:7000']);
  });

  it.each([
    // name, status, admin, weight, initialWeight, sessions, total sessions (stot): the states the record script set up
    ['ing-a', 'UP', 'ready', 100, 100, 2, 2],
    ['ing-b', 'UP', 'ready', 80, 100, 0, 0],
    ['ing-m', 'MAINT', 'maint', 100, 100, 0, 0],
    ['ing-t', 'MAINT (via ingest/ing-m)', 'maint', 100, 100, 0, 0],
    ['ing-d', 'DRAIN', 'drain', 100, 100, 0, 0],
    ['ing-z', 'UP', 'ready', 0, 100, 0, 0],
    ['ing-x', 'DOWN', 'ready', 100, 100, 0, 0],
    ['ing-c', 'no check', 'ready', 100, 100, 0, 0],
    ['node.eu-1:7000', 'no check', 'ready', 64, 64, 0, 0],
  ] as const)('reads %s as status %s, admin %s, weight %d of %d, %d sessions, %d since start', (name, status, admin, weight, initialWeight, sessions, totalSessions) => {
    expect(ingest.servers.find((s) => s.name === name)).toEqual({ name, status, admin, weight, initialWeight, sessions, totalSessions });
  });

  it.each([
    ['observe-static', 'static', 'static-rr', ['st-a', 'st-b']],
    ['observe-roundrobin', 'rr', 'roundrobin', ['rr-a', 'rr-b']],
    ['observe-source-map-based', 'src-map', 'source', ['sm-a', 'sm-b']],
    ['observe-source-consistent', 'src-cons', 'source', ['sc-a', 'sc-b']],
    ['observe-empty', 'empty', 'leastconn', []],
  ])('reads %s as backend %s with algorithm %s', (name, backend, algorithm, servers) => {
    const observed = observe(name, backend);
    expect(observed.algorithm).toBe(algorithm);
    expect(observed.servers.map((s) => s.name)).toEqual(servers);
  });

  it('reads several backends observed in one batch', () => {
    const blocks = blocksOf('observe-several');
    const backends = ['ingest', 'static', 'rr'].map((backend, i) => parseObservedBackend(backend, blocks[2 * i] ?? '', blocks[2 * i + 1] ?? ''));
    expect(backends.map((b) => [b.backend, b.algorithm, b.servers.length])).toEqual([
      ['ingest', 'leastconn', 9],
      ['static', 'static-rr', 2],
      ['rr', 'roundrobin', 2],
    ]);
  });

  it('observes through an operator-level socket exactly as through an admin socket', () => {
    expect(observe('observe-operator-socket', 'ingest')).toEqual(ingest);
  });

  it('reads a 200-server backend into 200 servers', () => {
    const big = observe('observe-big', 'big');
    expect(big.servers).toHaveLength(200);
    expect(new Set(big.servers.map((s) => s.name)).size).toBe(200);
    expect(big.servers.every((s) => s.weight === 100 && s.initialWeight === 100 && s.admin === 'ready')).toBe(true);
  });

  it.each([
    ['an unknown backend', 'observe-unknown-backend', 'nobe'],
    ['the name of a frontend', 'observe-frontend-name', 'fe-ingest'],
  ])('reports %s as no-such-backend, naming backend and load balancer', (_label, name, backend) => {
    const [stat = '', state = ''] = blocksOf(name);
    const error = haproxyError(() => parseObservedBackend(backend, stat, state, { loadBalancer: 'lb-1' }));
    expect(error.kind).toBe('no-such-backend');
    expect(error.message).toContain(backend);
    expect(error.message).toContain('lb-1');
    expect(error.context).toMatchObject({ backend, loadBalancer: 'lb-1' });
    expect(error.context.reply).toBeTruthy();
  });

  it('reports permission-denied when a socket refuses to show stats', () => {
    const error = haproxyError(() => parseObservedBackend('ingest', 'Permission denied\n', 'Permission denied\n'));
    expect(error.kind).toBe('permission-denied');
  });
});

/** Parses the recorded ingest observation after editing its blocks. */
function observeEdited(edit: (stat: string, state: string) => readonly [string, string]): ObservedBackend {
  const [stat = '', state = ''] = blocksOf('observe-ingest');
  const [editedStat, editedState] = edit(stat, state);
  return parseObservedBackend('ingest', editedStat, editedState);
}

/** Replaces one named CSV column of one server row of the ingest show stat block. */
function setStatColumn(stat: string, server: string, column: string, value: string): string {
  const lines = stat.split('\n');
  const header = (lines[0] ?? '').slice(2).split(',');
  const index = header.indexOf(column);
  return lines
    .map((line) => {
      const fields = line.split(',');
      if (fields[1] !== server) return line;
      fields[index] = value;
      return fields.join(',');
    })
    .join('\n');
}

function setStateColumn(state: string, server: string, column: string, value: string): string {
  const lines = state.split('\n');
  const header = (lines[1] ?? '').slice(2).split(' ');
  const index = header.indexOf(column);
  return lines
    .map((line) => {
      const fields = line.split(' ');
      if (fields[3] !== server || line.startsWith('#')) return line;
      fields[index] = value;
      return fields.join(' ');
    })
    .join('\n');
}

/** Applies the same column permutation to every line of a delimited block. */
function permuteColumns(lines: readonly string[], separator: string, order: readonly number[]): string[] {
  return lines.map((line) => {
    const fields = line.split(separator);
    return order.map((i) => fields[i] ?? '').join(separator);
  });
}

describe('parseObservedBackend reads columns by name and refuses what it cannot trust', () => {
  it('gives the same result when the columns of both outputs come in another order', () => {
    const expected = observe('observe-ingest', 'ingest');
    const result = observeEdited((stat, state) => {
      const statLines = stat.slice(0, -1).split('\n');
      const statHeader = (statLines[0] ?? '').slice(2);
      const width = statHeader.split(',').length;
      // Reverse every named column, keep the trailing empty field last.
      const statOrder = [...Array.from({ length: width - 1 }, (_, i) => width - 2 - i), width - 1];
      const permutedStat = permuteColumns([statHeader, ...statLines.slice(1)], ',', statOrder);
      const stateLines = state.slice(0, -1).split('\n');
      const stateHeader = (stateLines[1] ?? '').slice(2);
      const stateWidth = stateHeader.split(' ').length;
      const stateOrder = Array.from({ length: stateWidth }, (_, i) => stateWidth - 1 - i);
      const permutedState = permuteColumns([stateHeader, ...stateLines.slice(2)], ' ', stateOrder);
      return [
        `# ${permutedStat[0] ?? ''}\n${permutedStat.slice(1).join('\n')}\n`,
        `${stateLines[0] ?? ''}\n# ${permutedState[0] ?? ''}\n${permutedState.slice(1).join('\n')}\n`,
      ];
    });
    expect(result).toEqual(expected);
  });

  it('reads a quoted CSV field that holds commas and quotes', () => {
    const result = observeEdited((stat, state) => [stat.replace('Layer4 check passed', '"Layer4, ""check"" passed"'), state]);
    expect(result).toEqual(observe('observe-ingest', 'ingest'));
  });

  it('reads a column it uses when HAProxy quotes it, on a row that also quotes a field with a comma', () => {
    const result = observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'check_desc', '"Layer4, ok"').replace('ingest,ing-b,', '"ingest","ing-b",'), state]);
    expect(result).toEqual(observe('observe-ingest', 'ingest'));
  });

  it.each([
    ['an unterminated quote', (stat: string, state: string) => [stat.replace('Layer4 check passed', '"Layer4 check passed'), state] as const, 'not CSV'],
    ['a missing uweight column', (stat: string, state: string) => [stat.replace(',uweight,', ',uweightx,'), state] as const, 'column uweight is missing'],
    ['a duplicated scur column', (stat: string, state: string) => [stat.replace(',smax,', ',scur,'), state] as const, 'column scur appears 2 times'],
    ['a row with a missing field', (stat: string, state: string) => [stat.replace('ingest,ing-b,0,', 'ingest,ing-b,'), state] as const, 'fields for'],
    ['a row with a field too many', (stat: string, state: string) => [stat.replace('ingest,ing-b,0,', 'ingest,ing-b,0,0,'), state] as const, 'fields for'],
    ['a quoted row with a field too many', (stat: string, state: string) => [stat.replace('ingest,ing-b,0,', '"ingest",ing-b,0,0,'), state] as const, 'fields for'],
    ['a servers state row with a field too many', (stat: string, state: string) => [stat, state.replace('4 ingest 2 ing-b', '4 ingest 2 ing-b x')] as const, 'fields for'],
    ['a servers state row with a missing field', (stat: string, state: string) => [stat, state.replace('4 ingest 2 ing-b ', '4 ingest ing-b ')] as const, 'fields for'],
    ['a row of another proxy', (stat: string, state: string) => [stat.replace('ingest,ing-b,', 'other,ing-b,'), state] as const, 'proxy "other"'],
    ['a missing header', (stat: string, state: string) => [stat.slice(2), state] as const, 'header'],
    ['a servers state format version 2', (stat: string, state: string) => [stat, state.replace(/^1\n/, '2\n')] as const, 'version "2"'],
    ['a servers state row of another backend', (stat: string, state: string) => [stat, state.replace('4 ingest 2 ing-b', '4 other 2 ing-b')] as const, 'backend "other"'],
    ['a missing srv_iweight column', (stat: string, state: string) => [stat, state.replace('srv_iweight', 'srv_iweightx')] as const, 'column srv_iweight is missing'],
    ['a duplicated stot column', (stat: string, state: string) => [stat.replace(',bin,', ',stot,'), state] as const, 'column stot appears more than once'],
  ])('refuses %s as unexpected-reply', (_label, edit, reason) => {
    const error = haproxyError(() => observeEdited(edit));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain(reason);
    expect(error.context.backend).toBe('ingest');
  });

  it.each([
    ['uweight', '257'],
    ['uweight', '-1'],
    ['uweight', '1.5'],
    ['uweight', ''],
    ['uweight', 'NaN'],
    ['scur', 'x'],
    ['scur', '-2'],
    ['scur', '1e3'],
    ['status', ''],
    ['stot', '-5'],
    ['stot', 'x'],
    ['stot', '1.5'],
  ])('refuses show stat column %s = "%s" on a server row, naming the server', (column, value) => {
    const error = haproxyError(() => observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', column, value), state]));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.context.server).toBe('ing-b');
  });

  it.each([
    ['srv_admin_state', '256'],
    ['srv_admin_state', 'x'],
    ['srv_iweight', '300'],
    ['srv_uweight', '1.0'],
  ])('refuses show servers state column %s = "%s", naming the server', (column, value) => {
    const error = haproxyError(() => observeEdited((stat, state) => [stat, setStateColumn(state, 'ing-b', column, value)]));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.context.server).toBe('ing-b');
  });

  it('reads a show stat cut down to the columns it needs (the SSM document\'s compaction) without the session counter', () => {
    const result = observeEdited((stat, state) => {
      const lines = stat.split('\n');
      const header = (lines[0] ?? '').slice(2).split(',');
      const keep = ['pxname', 'svname', 'type', 'status', 'scur', 'uweight', 'algo'].map((c) => header.indexOf(c));
      const cut = lines.map((line, i) => (line === '' ? line : `${i === 0 ? '# ' : ''}${keep.map((k) => (i === 0 ? line.slice(2) : line).split(',')[k]).join(',')}`));
      return [cut.join('\n'), state];
    });
    const full = observe('observe-ingest', 'ingest');
    expect(result.servers.map((s) => s.name)).toEqual(full.servers.map((s) => s.name));
    expect(result.servers.every((s) => s.totalSessions === undefined)).toBe(true);
    expect(result.servers.map(({ totalSessions: _t, ...rest }) => rest)).toEqual(full.servers.map(({ totalSessions: _t, ...rest }) => rest));
  });

  it('refuses a server that show servers state lists but show stat does not', () => {
    const error = haproxyError(() => observeEdited((stat, state) => [stat.split('\n').filter((l) => !l.startsWith('ingest,ing-d,')).join('\n'), state]));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.context.server).toBe('ing-d');
    expect(error.message).toContain('not in show stat');
  });

  it('refuses a server that show stat lists but show servers state does not', () => {
    const error = haproxyError(() => observeEdited((stat, state) => [stat, state.split('\n').filter((l) => !l.startsWith('4 ingest 5 ing-d ')).join('\n')]));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.context.server).toBe('ing-d');
    expect(error.message).toContain('not in show servers state');
  });

  it('refuses a user weight that differs between the two outputs', () => {
    const error = haproxyError(() => observeEdited((stat, state) => [stat, setStateColumn(state, 'ing-b', 'srv_uweight', '81')]));
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('uweight 80');
  });

  it('refuses a server listed twice', () => {
    const error = haproxyError(() =>
      observeEdited((stat, state) => {
        const row = stat.split('\n').find((l) => l.startsWith('ingest,ing-b,')) ?? '';
        return [stat.replace(`${row}\n`, `${row}\n${row}\n`), state];
      }),
    );
    expect(error.kind).toBe('unexpected-reply');
    expect(error.message).toContain('twice');
  });

  it('treats a server as in maintenance when its status says MAINT even if the admin bits do not', () => {
    const result = observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'status', 'MAINT (resolution)'), state]);
    expect(result.servers.find((s) => s.name === 'ing-b')?.admin).toBe('maint');
  });

  it('treats a server as draining when its status says DRAIN even if the admin bits do not', () => {
    const result = observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'status', 'DRAIN (agent)'), state]);
    expect(result.servers.find((s) => s.name === 'ing-b')?.admin).toBe('drain');
  });

  it('reads the long status of a server tracking one with 64-character names', () => {
    const status = `MAINT (via ${'b'.repeat(64)}/${'s'.repeat(64)})`;
    const result = observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'status', status), state]);
    expect(result.servers.find((s) => s.name === 'ing-b')).toMatchObject({ status, admin: 'maint' });
  });

  it('identifies the backend row by its type, so a server may be named BACKEND', () => {
    const result = observeEdited((stat, state) => [stat.replace('ingest,ing-b,', 'ingest,BACKEND,'), state.replace('4 ingest 2 ing-b ', '4 ingest 2 BACKEND ')]);
    expect(result.servers.map((s) => s.name)).toContain('BACKEND');
    expect(result.algorithm).toBe('leastconn');
  });
});

describe('parseObservedBackend and server names HAProxy accepts but we do not address', () => {
  /** The recorded observation with ing-b renamed in both outputs, as HAProxy would print a server of that name. */
  const renamed = (name: string): ObservedBackend =>
    observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'svname', name), setStateColumn(state, 'ing-b', 'srv_name', name)]);

  it.each([
    ['72 characters', 's'.repeat(72)],
    ['1024 characters, the longest we address', 's'.repeat(1024)],
    ['a leading -', '-canary'],
  ])('reads a server named with %s like any other', (_what, name) => {
    const b = renamed(name);
    expect(b.servers.find((s) => s.name === name)).toMatchObject({ name, weight: 80 });
    expect(b.servers.find((s) => s.name === name)?.unaddressable).toBeUndefined();
  });

  it.each([
    ['1025 characters', 's'.repeat(1025), 'its name is 1025 characters long; haproxy-weighter addresses names of up to 1024 characters'],
    ['16,000 characters', 's'.repeat(16_000), 'its name is 16000 characters long'],
    ['a character HAProxy names never hold', 'ing-\u00fc', 'its name holds characters HAProxy names never hold (only A-Z a-z 0-9 _ . : -)'],
  ])('keeps a server named with %s, marked as one we leave alone, and reads the others', (_what, name, why) => {
    const b = renamed(name);
    expect(b.servers).toHaveLength(observe('observe-ingest', 'ingest').servers.length);
    expect(b.servers.find((s) => s.name === name)?.unaddressable).toContain(why);
    expect(b.servers.filter((s) => s.unaddressable !== undefined)).toHaveLength(1);
  });

  it('refuses a server row without a name', () => {
    const error = haproxyError(() => observeEdited((stat, state) => [setStatColumn(stat, 'ing-b', 'svname', ''), state]));
    expect(error.message).toContain('a server row has no name');
  });
});

describe('parseCliLevel', () => {
  it.each([
    ['cli-level-admin', 'admin'],
    ['cli-level-operator', 'operator'],
  ])('reads the level HAProxy printed on the socket of %s', (name, level) => {
    const { commands, reply } = fixture(name);
    expect(commands[0]).toBe('show cli level');
    expect(parseCliLevel(splitReplies(commands, reply)[0] ?? '')).toBe(level);
  });

  it('reads the same level from the interactive session', () => {
    const { commands, reply } = interactiveFixture('cli-level-admin');
    expect(parseCliLevel(splitReplies(commands, plainReplyFromInteractive(reply))[0] ?? '')).toBe('admin');
  });

  it.each([
    ['an HAProxy that does not know the command', 'Unknown command, but maybe one of the following ones is a better match:\n  show cli sockets\n'],
    ['a level HAProxy has not', 'root\n'],
    ['a level without its newline', 'admin'],
    ['two lines', 'admin\nadmin\n'],
  ])('refuses %s as an unexpected reply', (_what, block) => {
    expect(() => parseCliLevel(block, { loadBalancer: 'lb1' })).toThrow(HaproxyError);
    expect(() => parseCliLevel(block, { loadBalancer: 'lb1' })).toThrow(/show cli level did not print admin, operator or user/);
  });

  it('classifies a refusal HAProxy prints as what it is', () => {
    expect(() => parseCliLevel('Permission denied\n')).toThrow(expect.objectContaining({ kind: 'permission-denied' }));
  });
});

describe('adminStateFromBits', () => {
  it.each([
    [0x00, 'ready'],
    [0x01, 'maint'], // FMAINT: set server state maint
    [0x02, 'maint'], // IMAINT: tracks a server in maintenance
    [0x04, 'ready'], // CMAINT alone: a `disabled` server put back in service (measured)
    [0x05, 'maint'], // FMAINT|CMAINT: `disabled` in the configuration (measured)
    [0x08, 'drain'], // FDRAIN
    [0x10, 'drain'], // IDRAIN
    [0x18, 'drain'],
    [0x20, 'maint'], // RMAINT: address resolution failed
    [0x40, 'ready'], // FQDN changed over the CLI, not a maintenance state
    [0x09, 'maint'], // maintenance wins over drain
    [0x30, 'maint'],
  ])('reads admin bits 0x%s as %s', (bits, expected) => {
    expect(adminStateFromBits(bits)).toBe(expected);
  });
});

describe('parseGetWeight', () => {
  it('reads the recorded reply as current and initial weight', () => {
    const [block = ''] = blocksOf('get-weight');
    expect(parseGetWeight(block)).toEqual({ current: 80, initial: 100 });
  });

  it.each([
    ['0 (initial 0)\n', 0, 0],
    ['256 (initial 1)\n', 256, 1],
  ])('reads %j', (block, current, initial) => {
    expect(parseGetWeight(block)).toEqual({ current, initial });
  });

  it.each([
    ['No such server.\n', 'no-such-server'],
    ['No such backend.\n', 'no-such-backend'],
    ['Permission denied\n', 'permission-denied'],
    ['257 (initial 1)\n', 'unexpected-reply'],
    ['1 (initial 300)\n', 'unexpected-reply'],
    ['80 (initial 100)', 'unexpected-reply'],
    [' 80 (initial 100)\n', 'unexpected-reply'],
    ['80(initial 100)\n', 'unexpected-reply'],
    ['-1 (initial 100)\n', 'unexpected-reply'],
    ['', 'unexpected-reply'],
    ['80 (initial 100)\n81 (initial 100)\n', 'unexpected-reply'],
  ])('throws on %j as %s', (block, kind) => {
    const error = haproxyError(() => parseGetWeight(block, { backend: 'rr', server: 'rr-a', loadBalancer: 'lb-1' }));
    expect(error.kind).toBe(kind);
    expect(error.context).toMatchObject({ backend: 'rr', server: 'rr-a', loadBalancer: 'lb-1', reply: snippet(block) });
  });

  it('reads the get weight replies recorded in a batch, including after glued errors', () => {
    const { commands } = fixture('glued-errors-middle');
    const blocks = blocksOf('glued-errors-middle');
    const weights = commands.flatMap((command, i) => (command.startsWith('get weight') ? [parseGetWeight(blocks[i] ?? '')] : []));
    expect(weights).toEqual([
      { current: 7, initial: 1 },
      { current: 7, initial: 1 },
    ]);
  });
});

describe('parseSetWeightReply', () => {
  it('returns null for every successful set in the recorded batch', () => {
    const { commands } = fixture('set-weight-batch');
    const blocks = blocksOf('set-weight-batch');
    const results = commands.flatMap((command, i) => (command.startsWith('set server') ? [parseSetWeightReply(blocks[i] ?? 'missing', { backend: 'rr', server: 'rr-a' })] : []));
    expect(results).toEqual([null, null, null, null]);
  });

  it.each([
    [0, 'no-such-server'],
    [1, 'no-such-backend'],
    [2, 'out-of-range'],
    [3, 'static-algorithm'], // static-rr
    [4, 'static-algorithm'], // balance source with the default map-based hash
    [7, 'out-of-range'], // relative weight -5%
    [8, null],
  ] as const)('classifies recorded error reply %d as %s', (index, kind) => {
    const { commands } = fixture('set-weight-errors');
    const blocks = blocksOf('set-weight-errors');
    const command = parseCommandLoose(commands[index] ?? '');
    const result = parseSetWeightReply(blocks[index] ?? 'missing', { ...command, loadBalancer: 'lb-1' });
    expect(result?.kind ?? null).toBe(kind);
    if (result !== null) {
      expect(result.message).toContain(command.backend);
      expect(result.message).toContain(command.server);
      expect(result.message).toContain('lb-1');
      expect(result.context).toMatchObject({ ...command, loadBalancer: 'lb-1', reply: snippet(blocks[index] ?? '') });
    }
  });

  it('accepts, on a static-rr backend, a weight equal to the configured one', () => {
    const blocks = blocksOf('set-weight-static-initial');
    expect(parseSetWeightReply(blocks[0] ?? 'missing', { backend: 'static', server: 'st-a' })).toBeNull();
    expect(parseGetWeight(blocks[1] ?? '')).toEqual({ current: 10, initial: 10 });
  });

  it('classifies the recorded reply of an operator-level socket as permission-denied', () => {
    const [block = ''] = blocksOf('set-weight-operator-socket');
    expect(parseSetWeightReply(block, { backend: 'rr', server: 'rr-a' })?.kind).toBe('permission-denied');
  });

  it.each([
    ['glued-errors-middle', 0],
    ['glued-errors-middle', 2],
    ['glued-error-end', 1],
  ])('classifies the glued error in %s block %d as bad-weight-string', (name, index) => {
    const block = blocksOf(name)[index] ?? '';
    expect(parseSetWeightReply(block, { backend: 'rr', server: 'rr-a' })?.kind).toBe('bad-weight-string');
  });

  it('classifies text it does not know as unexpected-reply with the text', () => {
    const result = parseSetWeightReply('usage: set server <backend>/<server> weight\n', { backend: 'rr', server: 'rr-a' });
    expect(result?.kind).toBe('unexpected-reply');
    expect(result?.context.reply).toBe(snippet('usage: set server <backend>/<server> weight\n'));
  });
});

/** The backend and server of a recorded command, including the ones we would never send. */
function parseCommandLoose(command: string): { backend: string; server: string } {
  const m = /^(?:set server|get weight) ([^/ ]+)\/(\S+)/.exec(command);
  return { backend: m?.[1] ?? '', server: m?.[2] ?? '' };
}

describe('classifyReplyError', () => {
  it.each([
    ['No such server.', 'no-such-server'],
    ['No such backend.', 'no-such-backend'],
    ['No such proxy.', 'no-such-backend'],
    ["Can't find backend.", 'no-such-backend'],
    ['Permission denied', 'permission-denied'],
    ["Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.", 'static-algorithm'],
    ['Absolute weight can only be between 0 and 256 inclusive.', 'out-of-range'],
    ['Relative weight must be positive.', 'out-of-range'],
    ['Empty weight string empty or preceded by garbage', 'bad-weight-string'],
    ['Trailing garbage in weight string', 'bad-weight-string'],
  ] as const satisfies readonly (readonly [string, HaproxyErrorKind])[])('classifies %j as %s, with or without its newline', (message, kind) => {
    expect(classifyReplyError(`${message}\n`, { backend: 'rr' })?.kind).toBe(kind);
    expect(classifyReplyError(message, { backend: 'rr' })?.kind).toBe(kind);
  });

  it.each(['7 (initial 1)\n', '', 'No such server. Really.\n', 'ok\nNo such server.\n', 'no such server.\n'])('does not classify %j', (text) => {
    expect(classifyReplyError(text)).toBeNull();
  });
});

describe('isStaticAlgorithm and algorithmKind', () => {
  it.each([
    ['static-rr', 'static', true],
    ['roundrobin', 'dynamic', false],
    ['leastconn', 'dynamic', false],
    ['first', 'dynamic', false],
    ['unknown', 'dynamic', false], // how 2.6 prints `balance random`
    ['random', 'dynamic', false],
    // show stat prints these the same for map-based and consistent hashing: HAProxy's own reply decides.
    ['source', 'hash', false],
    ['uri', 'hash', false],
    ['url_param', 'hash', false],
    ['hdr', 'hash', false],
    ['hdr(host)', 'hash', false],
    ['rdp-cookie', 'hash', false],
    ['hash', 'hash', false],
    ['something-new', 'unrecognised', false],
  ])('reads algo %s as %s (static: %s)', (algo, kind, isStatic) => {
    expect(algorithmKind(algo)).toBe(kind);
    expect(isStaticAlgorithm(algo)).toBe(isStatic);
  });

  it('finds the static algorithm in the recorded static-rr backend', () => {
    expect(isStaticAlgorithm(observe('observe-static', 'static').algorithm)).toBe(true);
    expect(isStaticAlgorithm(observe('observe-roundrobin', 'rr').algorithm)).toBe(false);
  });
});
