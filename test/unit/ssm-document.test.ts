import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DOCUMENT_ALLOWANCE_BYTES, MAX_COMMANDS_CHARS, MAX_DOCUMENT_BYTES, MAX_SOCKET_PATH_BYTES, decodeDocumentOutput } from '../../functions/adapters/ssm-relay.js';
import { parseObservedBackend, parseServerStates, splitReplies } from '../../functions/core/haproxy-protocol.js';
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
import { MAX_DOCUMENT_BYTES as ENDPOINT_MAX_DOCUMENT_BYTES, commandBytes, loadCommandDocument } from '../ssm-endpoint/ssm-endpoint.js';

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
  ['show cli level with an argument', 'show cli level admin'],
  ['a command that lowers the level', 'operator'],
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
  // The doctor's probe of the level, before its observation.
  'show cli level',
  'show cli level; show stat be_a 6 -1; show servers state be_a',
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
    expect(script).toContain('socat -t5 -T30 stdio "UNIX-CONNECT:$SSM_SocketPath,shut-none"');
    expect(script).toMatch(/^set -euo pipefail$/m);
  });

  it('holds the lock next to the socket for exactly the socat exchange, giving up after 10 s with its own exit code', () => {
    expect(script).toContain('lock="$SSM_SocketPath.haproxy-weighter.lock"');
    expect(script).toContain('flock -E 75 -w 10 "$lock" socat -t5 -T30 stdio "UNIX-CONNECT:$SSM_SocketPath,shut-none"');
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

  it(`stays within the ${DOCUMENT_ALLOWANCE_BYTES.toLocaleString('en-US')} bytes the relay keeps for it, as deployed (JSON)`, () => {
    expect(doc.contentBytes).toBeLessThanOrEqual(DOCUMENT_ALLOWANCE_BYTES);
  });

  it('takes the longest Commands value the relay sends with the longest socket path within the 64 KB quota', () => {
    const longest = { Commands: 'x'.repeat(MAX_COMMANDS_CHARS), SocketPath: `/${'a'.repeat(MAX_SOCKET_PATH_BYTES - 1)}` };
    expect(socketPattern.test(longest.SocketPath)).toBe(true);
    expect(ENDPOINT_MAX_DOCUMENT_BYTES).toBe(MAX_DOCUMENT_BYTES);
    expect(commandBytes(doc.contentBytes, longest)).toBeLessThanOrEqual(MAX_DOCUMENT_BYTES);
    expect(commandBytes(doc.contentBytes, { ...longest, Commands: 'x'.repeat(MAX_DOCUMENT_BYTES) })).toBeGreaterThan(MAX_DOCUMENT_BYTES);
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

const FIXTURES = fileURLToPath(new URL('../fixtures/haproxy/', import.meta.url));
const OBSERVE_FIXTURES = readdirSync(FIXTURES)
  .filter((f) => /^observe-.*\.request\.txt$/.test(f))
  .map((f) => f.replace(/\.request\.txt$/, ''));

/** What the core reads from one backend's blocks: the observation, or the error it throws. */
function readBackend(backend: string, stat: string, state: string): unknown {
  try {
    return parseObservedBackend(backend, stat, state, { loadBalancer: 'lb' });
  } catch (error) {
    return { threw: error instanceof Error ? error.name : String(error), kind: Reflect.get(Object(error), 'kind') };
  }
}

describe('the document’s reply, cut to the columns the weighter reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hw-ssm-doc-compact-'));
  const path = join(dir, '_script.sh');
  writeFileSync(path, script, { mode: 0o755 });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the script against a socket that answers with a recorded HAProxy reply. */
  const relayThrough = async (request: string, reply: string): Promise<string> => {
    const socket = join(dir, `${Math.random().toString(16).slice(2)}.sock`);
    const server = createServer((c) => {
      c.on('data', () => undefined);
      c.end(reply);
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const child = spawn('sh', ['-c', path], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SSM_Commands: request, SSM_SocketPath: socket }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      return decodeDocumentOutput(stdout, 'lb');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  };

  it.each(OBSERVE_FIXTURES)('gives the core the same reading of %s as the full reply', async (name) => {
    const request = readFileSync(join(FIXTURES, `${name}.request.txt`), 'utf8').replace(/\n$/, '');
    const raw = readFileSync(join(FIXTURES, `${name}.reply.txt`), 'utf8');
    const commands = request.split('; ');
    const compact = await relayThrough(request, raw);
    const full = splitReplies(commands, raw);
    const cut = splitReplies(commands, compact);

    commands.forEach((command, i) => {
      const stat = /^show stat (\S+) 6 -1$/.exec(command);
      if (stat !== null) {
        const backend = stat[1] ?? '';
        expect(readBackend(backend, cut[i] ?? '', cut[i + 1] ?? '')).toEqual(readBackend(backend, full[i] ?? '', full[i + 1] ?? ''));
        if (!(full[i] ?? '').startsWith('# ')) expect(cut[i]).toBe(full[i]);
      } else if (!command.startsWith('show servers state ')) {
        expect(cut[i]).toBe(full[i]);
      }
    });
    expect(compact.length).toBeLessThanOrEqual(raw.length);
  });

  it('keeps a quoted field holding a comma in its column (a tcp-check comment, recorded from HAProxy)', async () => {
    const raw = readFileSync(join(FIXTURES, 'observe-quoted-comma.reply.txt'), 'utf8');
    expect(raw).toContain('"Connection refused at step 2 of tcp-check (connect) comment: \'hello, world\'"');
    const compact = await relayThrough('show stat be_a 6 -1; show servers state be_a; get weight be_a/s2', raw);

    expect(compact.split('\n').slice(0, 4)).toEqual(['# pxname,svname,type,status,scur,stot,uweight,algo', 'be_a,s1,2,DOWN,0,0,10,', 'be_a,s2,2,no check,0,0,20,', 'be_a,BACKEND,1,UP,0,0,20,leastconn']);
    expect(compact.endsWith('\n20 (initial 20)\n\n')).toBe(true);
  });

  it('cuts the operator-state read of a write batch too, which the guards still read', async () => {
    const raw = readFileSync(join(FIXTURES, 'observe-ingest.reply.txt'), 'utf8');
    const full = splitReplies(['show stat ingest 6 -1', 'show servers state ingest'], raw);
    const state = full[1] ?? '';
    const compact = await relayThrough('show servers state ingest; set server ingest/ing-a weight 5', `${state}\n\n`);
    const [cut = '', written = ''] = splitReplies(['show servers state ingest', 'set server ingest/ing-a weight 5'], compact);

    expect(cut.split('\n')[1]).toBe('# be_name srv_name srv_admin_state srv_uweight srv_iweight');
    expect(parseServerStates('ingest', cut)).toEqual(parseServerStates('ingest', state));
    expect(written).toBe('');
  });
});
