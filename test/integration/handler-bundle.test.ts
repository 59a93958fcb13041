/**
 * The Lambda bundle itself, as `npm run build` makes it (scripts/bundle.mjs: minified, split into
 * an entry and the chunks it loads on demand, undici's parts, built-ins through require), runs a
 * cycle: its createHandler with the configuration as YAML in the local SSM endpoint's Parameter
 * Store (so the YAML parser's chunk loads), Run Command to two real HAProxy processes, loads from
 * the real Graphite. The other handler tests run the source; this one catches what only the
 * bundle can break.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type * as HandlerModule from '../../functions/handler.js';
import { bundleHandler } from '../../scripts/bundle.mjs';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { currentWeights } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { checkedReport } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { DOCUMENT_NAME, TAG, TEST_CREDENTIALS, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { CONFIG_PARAMETER, LAMBDA_CONTEXT, SCHEDULED_EVENT, capture, must, plannedWeights, ssmTestConfig } from '../ssm-endpoint/lambda-invoke.js';

const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];

let fleet: SsmFleet;
let dir: string;
let bundled: typeof HandlerModule;
let target: string;
let graphiteUrl: string;

beforeAll(async () => {
  const graphite = await sharedGraphite();
  graphiteUrl = graphite.url;
  target = await feedLoads(graphite, uniquePrefix('handler_bundle'), { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 }, 'points');
  fleet = await startSsmFleet(2, [{ name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }]);
  dir = makeTempDir('hw-handler-bundle');
  await bundleHandler(join(dir, 'handler.mjs'));
  const loaded: unknown = await import(pathToFileURL(join(dir, 'handler.mjs')).href);
  if (typeof loaded !== 'object' || loaded === null || typeof Reflect.get(loaded, 'createHandler') !== 'function') throw new Error('the bundle exports no createHandler');
  bundled = loaded as typeof HandlerModule;
});

afterAll(async () => {
  await fleet?.stop();
  if (dir !== undefined) removeTempDir(dir);
});

describe('the Lambda bundle', () => {
  it('is an entry and chunks beside it', () => {
    const files = readdirSync(dir).sort();
    expect(files).toContain('handler.mjs');
    expect(files.length).toBeGreaterThan(1);
    for (const file of files) expect(file).toMatch(/^handler(-[\w-]+)?\.mjs$/);
  });

  it('runs a cycle from a YAML configuration and sets the weights on every load balancer', async () => {
    fleet.endpoint.setParameter(CONFIG_PARAMETER, { type: 'String', value: stringify(ssmTestConfig(fleet, { url: graphiteUrl }, target, { maxWaitMs: 15_000 })) });
    const handler = bundled.createHandler({
      env: { CONFIG_PARAMETER, RELAY_DOCUMENT_NAME: DOCUMENT_NAME, TARGET_TAG_KEY: TAG.key, TARGET_TAG_VALUE: TAG.value },
      aws: { endpoint: fleet.endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 4 },
      cache: { key: `handler-bundle-${process.pid}`, expiryMs: -1 },
    });
    const { result, error } = await capture(() => handler(SCHEDULED_EVENT, { ...LAMBDA_CONTEXT }));
    expect(error).toBeUndefined();
    const report = checkedReport(must(result));
    expect(report.outcome).toBe('ok');
    expect(report.serversChanged).toBe(6);
    for (const [i, id] of fleet.instanceIds.entries()) expect(await currentWeights(must(fleet.haproxies[i]), 'be_ingest', SERVERS)).toEqual(plannedWeights(report, id));
  });
});
