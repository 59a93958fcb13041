import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_COMMAND_CHARS } from '../../functions/adapters/ssm-relay.js';
import {
  BACKEND_NAME_SOURCE,
  COMMANDS_PATTERN_SOURCE,
  NAME_MAX_LENGTH,
  NAME_TOO_LONG_SOURCE,
  SAFE_NAME,
  SAFE_SERVER_NAME,
  SERVER_NAME_SOURCE,
  SOCKET_PATH_SOURCE,
  WEIGHT_SOURCE,
  isAllowedCommand,
} from '../../functions/core/runtime-grammar.js';
import { loadCommandDocument } from '../ssm-endpoint/ssm-endpoint.js';
import { readFileSync } from 'node:fs';

const DOCUMENT = fileURLToPath(new URL('../../infra/ssm-document.yaml', import.meta.url));
const doc = loadCommandDocument(DOCUMENT);
const commandsParam = doc.parameters.get('Commands');
const socketParam = doc.parameters.get('SocketPath');
const commandsPattern = new RegExp(commandsParam?.allowedPattern ?? '(?!)');
const socketPattern = new RegExp(socketParam?.allowedPattern ?? '(?!)');
const script = doc.steps[0]?.runCommand.join('\n') ?? '';

/** Every `$SSM_…` expansion in a shell script and whether it sits inside double quotes. */
function parameterExpansions(text: string): { at: number; quoted: boolean }[] {
  const found: { at: number; quoted: boolean }[] = [];
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== "'" && c === '\\') {
      i++;
    } else if (quote === null && c === '#' && (i === 0 || /\s/.test(text[i - 1] ?? ''))) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (quote === null && (c === '"' || c === "'")) {
      quote = c;
    } else if (quote === c) {
      quote = null;
    } else if (quote !== "'" && c === '$' && /^\{?SSM_/.test(text.slice(i + 1, i + 6))) {
      found.push({ at: i, quoted: quote === '"' });
    }
  }
  return found;
}

const HOSTILE_COMMANDS: readonly (readonly [string, string])[] = [
  ['a command separator in a server name', 'set server be/a;shutdown sessions weight 5'],
  ['a separator without the space', 'get weight be/s1;shutdown sessions server be/s1'],
  ['a command substitution', 'get weight be/$(reboot)'],
  ['backticks', 'get weight be/`reboot`'],
  ['a newline inside', 'get weight be/s1\nshutdown sessions server be/s1'],
  ['a trailing newline', 'get weight be/s1\n'],
  ['a carriage return', 'get weight be/s1\r'],
  ['a quote', `get weight be/s1'`],
  ['a weight above 256', 'set server be/s1 weight 257'],
  ['a weight with a leading zero', 'set server be/s1 weight 050'],
  ['a relative weight', 'set server be/s1 weight 50%'],
  ['another runtime command', 'shutdown sessions server be/s1'],
  ['show stat of everything', 'show stat -1 6 -1'],
  ['an empty batch', ''],
  ['a dangling separator', 'get weight be/s1; '],
  ['a double space', 'get weight  be/s1'],
  ['a backend name that starts with -', 'show servers state -be'],
  ['a name with a character HAProxy names never hold', 'get weight be/s\u00e9'],
];

/** Of the right form, with a name longer than NAME_MAX_LENGTH: refused by the script and the relay, whose length check the pattern leaves to them. */
const TOO_LONG_COMMANDS: readonly (readonly [string, string])[] = [
  ['a server name of 1025 characters', `get weight be/${'s'.repeat(NAME_MAX_LENGTH + 1)}`],
  ['a backend name of 1025 characters', `show stat ${'b'.repeat(NAME_MAX_LENGTH + 1)} 6 -1`],
  ['a long name after a short command', `get weight be/s1; set server be/${'s'.repeat(5000)} weight 3`],
];

const ACCEPTED_COMMANDS: readonly string[] = [
  'show stat be_ingest 6 -1',
  'show servers state be_ingest',
  'get weight be_ingest/ingest-1.eu-west-1:9000',
  'set server be_ingest/ingest-1 weight 1',
  'set server be_ingest/ingest-1 weight 256',
  // Only to put back an operator's weight 0 (restoreWeightCommand); the planner never decides 0.
  'set server be_ingest/ingest-1 weight 0',
  'show stat be_a 6 -1; show servers state be_a; show stat be_b 6 -1; show servers state be_b',
  'set server b/s1 weight 37; set server b/s2 weight 199; get weight b/s2',
  // HAProxy's own names: any of its characters, a server's first one included, up to NAME_MAX_LENGTH.
  `get weight be_ingest/${'s'.repeat(72)}`,
  'set server be_ingest/-canary weight 9',
  `set server ${'b'.repeat(NAME_MAX_LENGTH)}/${'s'.repeat(NAME_MAX_LENGTH)} weight 256`,
];

describe('the SSM Command document', () => {
  it('is a schema 2.2 document with one aws:runShellScript step', () => {
    expect(doc.steps.map((s) => s.name)).toEqual(['relayRuntimeCommands']);
  });

  it('passes both parameters as environment variables', () => {
    expect(commandsParam?.interpolationType).toBe('ENV_VAR');
    expect(socketParam?.interpolationType).toBe('ENV_VAR');
  });

  it('uses the same allowedPattern as the relay', () => {
    expect(commandsParam?.allowedPattern).toBe(COMMANDS_PATTERN_SOURCE);
    expect(socketParam?.allowedPattern).toBe(SOCKET_PATH_SOURCE);
  });

  it("checks the parameters again in its script with the core's own name, weight and socket path patterns", () => {
    expect(script).toContain(`backend='${BACKEND_NAME_SOURCE}'`);
    expect(script).toContain(`server='${SERVER_NAME_SOURCE}'`);
    expect(script).toContain(`too_long='${NAME_TOO_LONG_SOURCE}'`);
    expect(script).toContain(`weight='${WEIGHT_SOURCE}'`);
    expect(script).toContain(`socket_re='${SOCKET_PATH_SOURCE}'`);
  });

  it('never pastes a parameter into the script text', () => {
    expect(readFileSync(DOCUMENT, 'utf8')).not.toContain('{{');
  });

  it('only ever reads the parameters inside double quotes', () => {
    const uses = parameterExpansions(script);
    expect(uses.length).toBeGreaterThan(4);
    expect(uses.filter((u) => !u.quoted)).toEqual([]);
  });

  it('addresses the socket with UNIX-CONNECT, never as a bare path', () => {
    expect(script).toContain('socat -t5 -T30 stdio "UNIX-CONNECT:$SSM_SocketPath"');
    expect(script).toMatch(/^set -euo pipefail$/m);
  });

  it('holds the lock next to the socket for exactly the socat exchange, giving up after 10 s with its own exit code', () => {
    expect(script).toContain('lock="$SSM_SocketPath.haproxy-weighter.lock"');
    expect(script).toContain('flock -E 75 -w 10 "$lock" socat -t5 -T30 stdio "UNIX-CONNECT:$SSM_SocketPath"');
  });

  it.each(HOSTILE_COMMANDS)('rejects %s in its allowedPattern', (_label, value) => {
    expect(commandsPattern.test(value)).toBe(false);
  });

  it.each(ACCEPTED_COMMANDS)('accepts %j', (value) => {
    expect(commandsPattern.test(value)).toBe(true);
    expect(value.split('; ').every(isAllowedCommand)).toBe(true);
  });

  it.each(TOO_LONG_COMMANDS)('leaves %s to the length check of the script and the relay', (_label, value) => {
    expect(commandsPattern.test(value)).toBe(true);
    expect(value.split('; ').every(isAllowedCommand)).toBe(false);
  });

  it('stays within the 64 KB quota of a document and its parameters with the largest batch the relay sends', () => {
    const documentBytes = Buffer.byteLength(readFileSync(DOCUMENT, 'utf8'));
    const socketPathBytes = 201;
    expect(documentBytes + DEFAULT_MAX_COMMAND_CHARS + socketPathBytes).toBeLessThan(64 * 1024);
  });

  it.each([
    ['/run/haproxy/admin.sock', true],
    ['/var/lib/haproxy/stats', true],
    ['run/haproxy/admin.sock', false],
    ['/tmp/a.sock; reboot', false],
    ['/tmp/$(reboot)', false],
    ['/tmp/a b', false],
    ['/tmp/a\n', false],
  ])('judges the socket path %j allowed: %s', (value, allowed) => {
    expect(socketPattern.test(value)).toBe(allowed);
  });

  it('admits every name the configuration and the observation admit', () => {
    for (const name of ['a', 'be_ingest', 'ingest-1.eu-west-1:9000', 'X'.repeat(NAME_MAX_LENGTH)]) {
      expect(SAFE_NAME.test(name)).toBe(true);
      expect(isAllowedCommand(`get weight ${name}/${name}`)).toBe(true);
    }
    expect(SAFE_SERVER_NAME.test('-canary')).toBe(true);
    expect(isAllowedCommand('get weight be/-canary')).toBe(true);
  });
});

describe('the document’s script, run with bash as the agent runs it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hw-ssm-doc-'));
  const path = join(dir, '_script.sh');
  writeFileSync(path, script, { mode: 0o755 });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = (env: Record<string, string>): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync('sh', ['-c', path], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 10_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it.each(HOSTILE_COMMANDS)('refuses %s even when the service let it through', (_label, value) => {
    const r = run({ SSM_Commands: value, SSM_SocketPath: join(dir, 'admin.sock') });
    expect(r.status).toBe(65);
    expect(r.stderr).toContain('rejected the Commands parameter');
    expect(r.stdout).toBe('');
  });

  it.each(TOO_LONG_COMMANDS)('refuses %s', (_label, value) => {
    const r = run({ SSM_Commands: value, SSM_SocketPath: join(dir, 'admin.sock') });
    expect(r.status).toBe(65);
    expect(r.stderr).toContain('rejected the Commands parameter');
  });

  it('takes names of 1024 characters and a server name that starts with -, as HAProxy does', () => {
    const socket = join(dir, 'missing.sock');
    // Past the checks, the missing socket is the first thing it finds.
    const r = run({ SSM_Commands: `set server ${'b'.repeat(NAME_MAX_LENGTH)}/${'s'.repeat(NAME_MAX_LENGTH)} weight 256; get weight be/-canary`, SSM_SocketPath: socket });
    expect(r.status).toBe(66);
  });

  it('refuses a socket path with unsafe characters', () => {
    const r = run({ SSM_Commands: 'get weight b/s', SSM_SocketPath: `${dir}/x;reboot` });
    expect(r.status).toBe(65);
    expect(r.stderr).toContain('rejected the SocketPath parameter');
  });

  it('fails clearly, creating nothing, when the admin socket is missing', () => {
    const socket = join(dir, 'missing.sock');
    const r = run({ SSM_Commands: 'get weight b/s', SSM_SocketPath: socket });
    expect(r.status).toBe(66);
    expect(r.stderr).toBe(`haproxy-weighter: no HAProxy admin socket at ${socket} (is HAProxy running with 'stats socket ${socket} level admin'?)\n`);
    expect(spawnSync('test', ['-e', socket]).status).toBe(1);
  });

  it('asks for a recent SSM Agent when the parameters are not in the environment', () => {
    const r = run({});
    expect(r.status).toBe(64);
    expect(r.stderr).toContain('SSM Agent 3.3.2746.0 or later is required');
  });
});
