/**
 * Fault matrix, config and invoke (CLI side): invalid configuration files and invalid command
 * lines through the CLI's `main`, in-process (stdio, environment, clock and signals injected).
 * Each must exit 2, print nothing on stdout, name the key path (or the argument) on stderr, and
 * never open a connection to a load balancer: every config's load balancer is a Unix socket that
 * records connections, and must see none. The spawned CLI (the bundle) is smoke-tested in
 * test/integration/cli-bundle.test.ts.
 * (d) An invalid configuration makes the Lambda throw before any cycle, so the metric there is
 * AWS/Lambda Errors and its alarm; the CLI's equivalent signal is exit code 2.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../functions/version.js';
import { runMain, writeConfigFile } from '../harness/cli.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';

let dir: string;
let socketPath: string;
let server: Server;
let connections = 0;

beforeAll(async () => {
  dir = makeTempDir('hw-cli-rejections');
  socketPath = join(dir, 'admin.sock');
  server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  removeTempDir(dir);
});

afterEach(() => {
  // Nothing invalid may ever reach a load balancer.
  expect(connections).toBe(0);
});

const cli = runMain;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function valid(): { [key: string]: Json } {
  return {
    graphite: { url: 'http://127.0.0.1:9', timeoutMs: 1000, retries: 0 },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: socketPath }] },
    backends: [{ name: 'be_ingest', target: 'aliasByNode(ingest.*.load, 1)', weighting: { function: 'limited-proportions' } }],
  };
}

/** A copy of the valid config with the value at `path` replaced (or removed when `value` is undefined). */
function withChange(path: readonly (string | number)[], value: Json | undefined): Json {
  const root: Json = valid();
  let node: Json = root;
  for (const key of path.slice(0, -1)) {
    const next: Json | undefined = Array.isArray(node) && typeof key === 'number' ? node[key] : node !== null && typeof node === 'object' && !Array.isArray(node) ? node[String(key)] : undefined;
    if (next === undefined) throw new Error(`no ${String(key)} in the valid config`);
    node = next;
  }
  const last = path[path.length - 1];
  if (last === undefined) return root;
  if (Array.isArray(node) && typeof last === 'number') {
    if (value === undefined) node.splice(last, 1);
    else node[last] = value;
  } else if (node !== null && typeof node === 'object' && !Array.isArray(node)) {
    if (value === undefined) delete node[String(last)];
    else node[String(last)] = value;
  } else {
    throw new Error(`cannot change ${path.join('.')}`);
  }
  return root;
}

let count = 0;
async function applyWith(config: Json): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = writeConfigFile(dir, config, `invalid-${++count}.yaml`);
  return cli(['apply', '--config', path]);
}

describe('invalid configuration files: exit 2, the key path named, nothing sent', () => {
  const lb = ['relay', 'loadBalancers', 0];
  const be = ['backends', 0];
  const cases: [string, (string | number)[], Json | undefined, string][] = [
    ['the graphite section missing', ['graphite'], undefined, 'graphite: '],
    ['a graphite url that is not http(s)', ['graphite', 'url'], 'ftp://127.0.0.1/', 'graphite.url: must be an http(s) URL'],
    ['a graphite url that is no URL at all', ['graphite', 'url'], 'graphite;reboot', 'graphite.url: must be an http(s) URL'],
    ['credentials in the graphite url', ['graphite', 'url'], 'http://user:secret@127.0.0.1:9', 'graphite.url: must not embed credentials'],
    ['a graphite timeout given as text', ['graphite', 'timeoutMs'], '5s', 'graphite.timeoutMs: '],
    ['too many graphite retries', ['graphite', 'retries'], 9, 'graphite.retries: '],
    ['a size cap below 1 KB', ['graphite', 'maxResponseBytes'], 10, 'graphite.maxResponseBytes: '],
    ['basic auth without its password variable', ['graphite', 'auth'], { type: 'basic', username: 'u' }, 'graphite.auth.passwordEnv: '],
    ['a secret variable name in lower case', ['graphite', 'auth'], { type: 'url-key', keyEnv: 'graphite key' }, 'graphite.auth.keyEnv: must be an environment variable name'],
    ['an unknown top-level key', ['colour'], 'blue', '(root): unknown key(s) "colour"'],
    ['the relay section missing', ['relay'], undefined, 'relay: '],
    ['an unknown relay type', ['relay', 'type'], 'carrier-pigeon', 'relay.type: '],
    ['no load balancers', ['relay', 'loadBalancers'], [], 'relay.loadBalancers: '],
    ['a relative socket path', [...lb, 'endpoint'], 'admin.sock', 'relay.loadBalancers.0.endpoint: must be an absolute Unix socket path or host:port'],
    ['a TCP port out of range', [...lb, 'endpoint'], '127.0.0.1:70000', 'relay.loadBalancers.0.endpoint: '],
    ['two load balancers with one name', ['relay', 'loadBalancers', 1], { name: 'lb1', endpoint: '/run/other.sock' }, 'relay.loadBalancers: load balancer names must be unique'],
    ['a negative read timeout', ['relay', 'readTimeoutMs'], -1, 'relay.readTimeoutMs: '],
    ['an unknown key in a load balancer', [...lb, 'socket'], '/run/x.sock', 'relay.loadBalancers.0: unknown key(s) "socket"'],
    ['the backends missing', ['backends'], undefined, 'backends: '],
    ['a backend name with a space', [...be, 'name'], 'be ingest', 'backends.0.name: must be 1-1024 characters'],
    ['a backend without a target', [...be, 'target'], undefined, 'backends.0.target: '],
    ['a target with a newline', [...be, 'target'], 'a\nb', 'backends.0.target: must not contain control characters'],
    ['an unknown weighting function', [...be, 'weighting'], { function: 'magic' }, 'backends.0.weighting.function: '],
    ['a limiting factor of 0', [...be, 'weighting'], { function: 'limited-proportions', limitingFactor: 0 }, 'backends.0.weighting.limitingFactor: '],
    ['an aggressiveness out of range', [...be, 'weighting'], { function: 'normalised-exponential', aggressiveness: 100 }, 'backends.0.weighting.aggressiveness: '],
    ['a misspelt weighting key', [...be, 'weighting'], { function: 'limited-proportions', agressiveness: 2 }, 'backends.0.weighting: unknown key(s) "agressiveness"'],
    ['a feedback gain above 1', [...be, 'weighting'], { function: 'feedback', gain: 2 }, 'backends.0.weighting.gain: '],
    ['a quorum of 0', [...be, 'quorum'], 0, 'backends.0.quorum: '],
    ['a window Graphite does not understand', [...be, 'from'], 'yesterday', 'backends.0.from: must look like -5min'],
    ['an unknown aggregation', [...be, 'aggregation'], 'median', 'backends.0.aggregation: '],
    ['a max change of 0', [...be, 'maxChangePerCycle'], 0, 'backends.0.maxChangePerCycle: '],
    ['a server map pattern that is no regular expression', [...be, 'serverMap'], { pattern: '(', template: '$1' }, 'backends.0.serverMap.pattern: must be a valid regular expression'],
    ['a server map template with shell characters', [...be, 'serverMap'], { pattern: '(.*)', template: '$1;reboot' }, 'backends.be_ingest.serverMap.template: may only hold'],
    ['two backends with one name', ['backends', 1], { name: 'be_ingest', target: 'x', weighting: { function: 'feedback' } }, 'backends: backend names must be unique'],
    ['an interval of 0 seconds', ['intervalSeconds'], 0, 'intervalSeconds: '],
  ];

  it.each(cases)('rejects %s', async (_what, path, value, named) => {
    const run = await applyWith(withChange(path, value));
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('Invalid configuration in ');
    expect(run.stderr).toContain(named);
    // The usage text follows only errors the CLI did not recognise as a configuration error.
    expect(run.stderr).not.toContain('Usage:');
  });

  it('rejects the ssm relay in the CLI and says which relay to use', async () => {
    const run = await applyWith(
      withChange(['relay'], { type: 'ssm', documentName: 'HaproxyWeighterRelay', socketPath: '/run/haproxy/admin.sock', targets: { instanceIds: ['i-0123456789abcdef0'] } }),
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('relay.type is "ssm": the CLI talks to runtime sockets directly');
  });

  it('names the missing environment variable of a Graphite secret', async () => {
    const run = await applyWith(withChange(['graphite', 'auth'], { type: 'url-key', keyEnv: 'HW_FAULT_TEST_UNSET_KEY' }));
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('graphite.auth.keyEnv: environment variable HW_FAULT_TEST_UNSET_KEY is not set');
  });

  it.each([
    ['a YAML syntax error', 'graphite: [unclosed\n', 'Cannot parse'],
    ['an empty file', '', '(root): '],
    ['a list instead of a mapping', '- graphite\n- relay\n', '(root): '],
    ['a YAML alias that refers to itself', 'graphite: &loop [*loop]\n', 'graphite: '],
  ])('rejects %s', async (_what, text, named) => {
    const path = join(dir, `text-${++count}.yaml`);
    writeFileSync(path, text);
    const run = await cli(['apply', '--config', path]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(named);
    expect(run.stderr).not.toContain('Usage:');
  });
});

describe('invalid command lines: exit 2, the argument named, nothing sent', () => {
  let config: string;
  beforeAll(() => {
    config = writeConfigFile(dir, valid(), 'valid.yaml');
  });

  it.each([
    ['an unknown command', () => ['rebalance', '--config', config], '"rebalance"'],
    ['no command', () => ['--config', config], 'Missing command'],
    ['no --config', () => ['apply'], 'Missing --config'],
    ['a config file that does not exist', () => ['apply', '--config', join(dir, 'absent.yaml')], 'Cannot read config file'],
    ['--force with plan', () => ['plan', '--force', '--config', config], '--force has no meaning with plan'],
    ['an interval of 0', () => ['run', '--interval', '0', '--config', config], '--interval must be seconds between 0.1 and 86400 (got "0")'],
    ['an interval that is no number', () => ['run', '--interval', 'soon', '--config', config], '(got "soon")'],
    ['an unknown option', () => ['apply', '--colour', 'blue', '--config', config], '--colour'],
    ['an extra argument', () => ['apply', 'now', '--config', config], 'Unexpected argument(s): now'],
    ['a backend that is not configured', () => ['apply', '--backend', 'be_other', '--config', config], 'Unknown backend(s) "be_other"; configured: be_ingest'],
  ])('rejects %s', async (_what, args, named) => {
    const run = await cli(args());
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(named);
  });

  it('follows an error of the command line itself with the usage', async () => {
    const run = await cli(['apply', '--colour', 'blue', '--config', config]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Usage:');
  });

  it('prints the help on stdout and exits 0 with --help, reading no configuration', async () => {
    const run = await cli(['--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const word of ['plan', 'apply', 'run', 'doctor', '--config', '--json', '--changes', '--force', '--version', 'Exit codes', '3  partial']) expect(run.stdout).toContain(word);
  });

  it('prints the version on stdout and exits 0 with --version, reading no configuration', async () => {
    const run = await cli(['--version', '--config', '/nonexistent.yaml']);
    expect(run).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  it.each([
    [['doctor', '--force'], '--force has no meaning with doctor'],
    [['doctor', '--changes'], '--changes has no meaning with doctor'],
    [['plan', '--changes', '--json'], '--changes shapes the human report: it has no meaning with --json'],
    [['apply', '--interval', '5'], '--interval has no meaning with apply'],
  ])('refuses %j as a usage error', async (args, message) => {
    const run = await cli([...args, '--config', config]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });
});
