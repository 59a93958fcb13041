/**
 * Names as HAProxy 2.6 takes them, on a real HAProxy: server names of 72 and 1,024 characters, one
 * starting with `-`, one with `.` and `:`, a backend named with 1,024 characters, and a server
 * whose 2,000-character name HAProxy accepts but we do not address. Every server we can address
 * is weighted; the one we cannot is left alone, alone, with its reason in the report. The loads of
 * the servers Graphite cannot hold under their names (a carbon path node is a file name: 255
 * bytes at most) are added to the real Graphite reply by the fault proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rewriteSeries, runCli, singleReport, startGraphiteFaultProxy, writeConfigFile, type GraphiteFaultProxy } from '../harness/faults.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_names';
const LONG_BACKEND = `be${'b'.repeat(1022)}`;
const NAME_72 = `ingest-${'x'.repeat(65)}`;
const NAME_1024 = `n${'y'.repeat(1023)}`;
const DOTTED = 'node.eu-1:7000';
const DASHED = '-canary';
const TOO_LONG = `z${'z'.repeat(1999)}`;
/** Loads per server: every addressable server's weight moves away from the configured 100. */
const LOADS: Readonly<Record<string, number>> = { s1: 4000, s2: 1000, [DASHED]: 1000, [NAME_72]: 2000, [NAME_1024]: 1000, [DOTTED]: 3000, [TOO_LONG]: 10 };
const WEIGHTED = ['s1', 's2', DASHED, NAME_72, NAME_1024, DOTTED];

let haproxy: HaproxyHandle;
let proxy: GraphiteFaultProxy;
let dir: string;
let target: string;

beforeAll(async () => {
  const graphite = await sharedGraphite();
  const prefix = uniquePrefix('long_names');
  target = await feedLoads(graphite, prefix, { s1: LOADS.s1 ?? 0, s2: LOADS.s2 ?? 0, [DASHED]: LOADS[DASHED] ?? 0 });
  haproxy = await startHaproxy({
    backends: [
      { name: BACKEND, balance: 'leastconn', servers: [...WEIGHTED, TOO_LONG].map((name) => ({ name })) },
      { name: LONG_BACKEND, balance: 'roundrobin', servers: [{ name: 's1' }, { name: 's2' }] },
    ],
  });
  proxy = await startGraphiteFaultProxy(graphite.url);
  // The real reply, plus the servers carbon cannot name, with the same points as s1 and their own loads.
  await proxy.setFault({
    kind: 'rewrite',
    rewrite: (body) =>
      rewriteSeries(body, (series) => {
        const s1 = series.find((s) => s.target === 's1');
        if (s1 === undefined) throw new Error(`the real Graphite returned no s1: ${body.slice(0, 200)}`);
        const added = [NAME_72, NAME_1024, DOTTED, TOO_LONG].map((name) => ({ ...s1, target: name, datapoints: s1.datapoints.map(([v, t]) => [v === null ? null : (LOADS[name] ?? 0), t]) }));
        return [...series, ...added];
      }),
  });
  dir = makeTempDir('hw-long-names');
});

afterAll(async () => {
  await proxy.close();
  await haproxy.stop();
  removeTempDir(dir);
});

function config(): string {
  return writeConfigFile(dir, {
    graphite: { url: proxy.url, retries: 0 },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: haproxy.adminSocket }] },
    backends: [
      { name: BACKEND, target, from: '-15min', aggregation: 'average', weighting: { function: 'limited-proportions' } },
      { name: LONG_BACKEND, target, from: '-15min', aggregation: 'average', weighting: { function: 'limited-proportions' } },
    ],
  });
}

describe('server and backend names as long as HAProxy takes them', () => {
  it('weights every server it can address and leaves the 2,000-character one alone, saying why', async () => {
    const run = await runCli(['apply', '--json', '--config', config()]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = singleReport(run.stdout);
    expect(report.outcome).toBe('ok');

    const [names, longBackend] = report.backends;
    const plan = names?.loadBalancers[0]?.plan;
    expect(plan?.status).toBe('planned');
    const actions = new Map((plan?.actions ?? []).map((a) => [a.server, a]));
    expect(actions.get(TOO_LONG)).toMatchObject({ kind: 'skip', reason: 'unaddressable', current: 100 });
    expect(actions.get(TOO_LONG)?.detail).toContain('its name is 2000 characters long; haproxy-weighter addresses names of up to 1024 characters');
    for (const name of WEIGHTED) {
      const action = actions.get(name);
      expect({ name: name.slice(0, 20), kind: action?.kind }).toEqual({ name: name.slice(0, 20), kind: 'set-weight' });
      expect((await haproxy.getWeight(BACKEND, name)).current).toBe(action?.weight);
    }
    expect((await haproxy.getWeight(BACKEND, TOO_LONG)).current).toBe(100);

    // The backend with a 1,024-character name is observed and written like any other.
    expect(longBackend?.loadBalancers[0]?.plan.status).toBe('planned');
    expect((await haproxy.getWeight(LONG_BACKEND, 's1')).current).toBeLessThan((await haproxy.getWeight(LONG_BACKEND, 's2')).current);
  });

  it('shows the reason in the human report', async () => {
    const run = await runCli(['plan', '--config', config()]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`skip (unaddressable): its name is 2000 characters long`);
  });
});
