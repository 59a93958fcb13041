/**
 * Messages that help (issue 9, item 7), from the real CLI bundle (`plan --json`) against real
 * servers on loopback: graphite-web, which speaks plain HTTP; a node:https server whose
 * self-signed certificate `openssl` makes for this file; and the Graphite fault proxy answering
 * 401 in front of graphite-web. Each mistake is named in one line of the report, with what to do.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CycleReport } from '../../functions/core/cycle.js';
import { problemsOf, runCli, singleReport, startGraphiteFaultProxy, writeConfigFile, type GraphiteFaultProxy } from '../harness/faults.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { listenOnLoopback } from '../harness/loopback-server.js';
import { makeTempDir, removeTempDir, runCommand } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_ingest';
const SERVERS = ['s1', 's2'];

let haproxy: HaproxyHandle;
let graphiteUrl: URL;
let target: string;
let dir: string;
let tls: Server;
let tlsPort: number;
let tlsRequests = 0;
let proxy: GraphiteFaultProxy;

beforeAll(async () => {
  const graphite = await sharedGraphite();
  graphiteUrl = new URL(graphite.url);
  const prefix = uniquePrefix('graphite_messages');
  target = await feedLoads(graphite, prefix, { s1: 100, s2: 200 });
  haproxy = await startHaproxy({ backends: [{ name: BACKEND, balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }] });
  dir = makeTempDir('hw-graphite-messages');
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const made = await runCommand('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  if (made.code !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr}`);
  tls = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => {
    tlsRequests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
  });
  tlsPort = await listenOnLoopback(tls, 'the TLS server');
  proxy = await startGraphiteFaultProxy(graphite.url);
});

afterAll(async () => {
  await Promise.allSettled([haproxy?.stop(), proxy?.close(), new Promise<void>((resolve) => (tls ? tls.close(() => resolve()) : resolve()))]);
  tls?.closeAllConnections();
  if (dir !== undefined) removeTempDir(dir);
});

async function plan(graphite: Record<string, unknown>, env: Record<string, string> = {}): Promise<{ code: number | null; report: CycleReport }> {
  const configPath = writeConfigFile(dir, {
    graphite: { timeoutMs: 5_000, retries: 2, ...graphite },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: haproxy.adminSocket }] },
    backends: [{ name: BACKEND, target, from: '-15min', weighting: { function: 'limited-proportions' } }],
  });
  const run = await runCli(['plan', '--json', '--config', configPath], { env });
  expect(run.stderr).toBe('');
  return { code: run.code, report: singleReport(run.stdout) };
}

/** The one Graphite problem of the report, as the operator reads it. */
function graphiteProblem(report: CycleReport): string {
  expect(problemsOf(report).map(([code]) => code)).toHaveLength(1);
  const message = report.backends[0]?.graphite.error ?? '';
  expect(message).not.toContain('\n');
  return message;
}

describe('a TLS or plain-HTTP mistake in graphite.url is named in one line', () => {
  it('says graphite-web speaks plain HTTP when graphite.url says https://, without retrying', async () => {
    const { code, report } = await plan({ url: `https://${graphiteUrl.host}/` });
    expect(code).toBe(1);
    expect(problemsOf(report)).toEqual([['graphite-unreachable', null, BACKEND, null]]);
    expect(graphiteProblem(report)).toMatch(
      new RegExp(`^Graphite at https://${graphiteUrl.host.replace(/\./g, '\\.')}/render\\?target=.* failed after 1 attempt\\(s\\): ${graphiteUrl.host.replace(/\./g, '\\.')} answered the TLS handshake in plain HTTP, but graphite\\.url says https://: use http://, or the port that serves HTTPS$`),
    );
  });

  it('says the port speaks TLS when graphite.url says http://, and stops at the first attempt', async () => {
    const before = tlsRequests;
    const { code, report } = await plan({ url: `http://127.0.0.1:${tlsPort}/` });
    expect(code).toBe(1);
    expect(problemsOf(report)).toEqual([['graphite-unreachable', null, BACKEND, null]]);
    expect(graphiteProblem(report)).toMatch(new RegExp(`failed after 1 attempt\\(s\\): 127\\.0\\.0\\.1:${tlsPort} speaks TLS, but graphite\\.url says http://: use https://$`));
    expect(tlsRequests).toBe(before);
  });

  it('reaches graphite-web with the http:// URL (the control case)', async () => {
    const { code, report } = await plan({ url: graphiteUrl.toString() });
    expect(code).toBe(0);
    expect(report.backends[0]?.graphite.ok).toBe(true);
  });
});

describe('a refused key names what to check and where the key comes from', () => {
  it('names the environment variable the url-key is read from, and never the key', async () => {
    await proxy.setFault({ kind: 'status', status: 401, count: 100 });
    const { code, report } = await plan({ url: proxy.url, auth: { type: 'url-key', keyEnv: 'HW_TEST_GRAPHITE_KEY' } }, { HW_TEST_GRAPHITE_KEY: 'not-the-key-4711' });
    expect(code).toBe(1);
    expect(problemsOf(report)).toEqual([['graphite-auth', null, BACKEND, null]]);
    const message = graphiteProblem(report);
    expect(message).toMatch(/^Graphite at http:\/\/127\.0\.0\.1:\d+\/\*\*\*\/render\?target=/);
    expect(message).toMatch(/did not accept the credentials \(HTTP 401\): check the API key sent in the URL path \(graphite\.auth url-key\), read from environment variable HW_TEST_GRAPHITE_KEY$/);
    expect(JSON.stringify(report)).not.toContain('not-the-key-4711');
    expect(proxy.requests).toHaveLength(1);
  });
});
