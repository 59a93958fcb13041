/**
 * Smoke tests of the shipped CLI: the esbuild bundle (built by the global setup with the options of
 * `npm run build`, scripts/bundle.mjs, so it is never stale) run by its shebang, as the package's
 * `haproxy-weighter` bin runs. What the bundle alone can break (the shebang, the require shim,
 * JSON imports, exit codes through the process) is covered here; the CLI's behaviour is tested
 * in-process (test/unit/cli-rejections.test.ts) and through the spawned bundle in the fault tests.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPORT_SCHEMA_VERSION } from '../../functions/core/report-schema.js';
import { CLI_BUNDLE_ENV, REPO_ROOT, singleReport, writeConfigFile } from '../harness/cli.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir, runCommand } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const PACKAGE_VERSION: unknown = Reflect.get(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as object, 'version');

let dir: string;
let bin: string;
let haproxy: HaproxyHandle;

beforeAll(async () => {
  const bundle = process.env[CLI_BUNDLE_ENV];
  if (bundle === undefined || bundle === '') throw new Error(`${CLI_BUNDLE_ENV} is not set: the integration project's global setup builds the bundle`);
  bin = bundle;
  dir = makeTempDir('hw-cli-bundle-test');
  haproxy = await startHaproxy({ backends: [{ name: 'be_ingest', balance: 'leastconn', servers: [{ name: 's1' }, { name: 's2' }] }] });
});

afterAll(async () => {
  await haproxy.stop();
  removeTempDir(dir);
});

/** The bundle run by its shebang, as the package's bin, with the project's Node.js first on PATH. */
const haproxyWeighter = (args: readonly string[], env: Readonly<Record<string, string>> = {}) =>
  runCommand(bin, args, { cwd: REPO_ROOT, env: { ...process.env, PATH: `${join(REPO_ROOT, 'node_modules/.bin')}:${process.env.PATH ?? ''}`, ...env } });

describe('the bundled CLI', () => {
  it('documents commands, options and exit codes in --help and exits 0', async () => {
    const result = await haproxyWeighter(['--help']);
    expect(result.code).toBe(0);
    for (const word of ['plan', 'apply', 'run', '--config', '--json', '--force', 'Exit codes', '3  partial']) expect(result.stdout).toContain(word);
  });

  it('prints the package version with --version, and nothing else', async () => {
    for (const flag of ['--version', '-V']) {
      const result = await haproxyWeighter([flag]);
      expect(result).toMatchObject({ code: 0, stdout: `${String(PACKAGE_VERSION)}\n`, stderr: '' });
    }
  });

  it('exits 2 for an unknown command and names it', async () => {
    const result = await haproxyWeighter(['rebalance']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('"rebalance"');
  });

  it('exits 2 for an invalid configuration and names the key', async () => {
    const path = writeConfigFile(dir, { graphite: { url: 'http://x' }, relay: { type: 'socket', loadBalancers: [] }, backends: [] }, 'invalid.yaml');
    const result = await haproxyWeighter(['apply', '--config', path]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('relay.loadBalancers');
  });

  async function planConfig(): Promise<string> {
    const graphite = await sharedGraphite();
    const prefix = uniquePrefix('bundle');
    await feedLoads(graphite, prefix, { s1: 3000, s2: 1000 });
    return writeConfigFile(
      dir,
      {
        graphite: { url: graphite.url, timeoutMs: 3000, retries: 1 },
        relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: haproxy.adminSocket }] },
        backends: [{ name: 'be_ingest', target: `aliasByNode(${prefix}.*.load, ${prefix.split('.').length})`, from: '-2min', aggregation: 'average', weighting: { function: 'limited-proportions' } }],
      },
      'plan.yaml',
    );
  }

  it('plans a real cycle and prints a report that matches the shipped schema, with its version', async () => {
    const path = await planConfig();
    const result = await haproxyWeighter(['plan', '--json', '--config', path]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = singleReport(result.stdout);
    expect(report).toMatchObject({ schemaVersion: REPORT_SCHEMA_VERSION, version: PACKAGE_VERSION, mode: 'plan', outcome: 'ok' });
    expect(report.backends[0]?.loadBalancers[0]?.plan.actions.map((a) => a.kind)).toEqual(['set-weight', 'set-weight']);
  });
});
