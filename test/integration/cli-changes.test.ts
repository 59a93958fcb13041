/**
 * The changes-only view (`--changes`) of a large backend through the real CLI, against a real
 * HAProxy with 300 servers and the real Graphite of the test run: the rows it prints are exactly
 * the weights the same cycle's JSON report changes and the servers it left alone for a reason
 * nobody chose, never one an operator took out, and the summary line counts the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, singleReport, writeConfigFile } from '../harness/cli.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const COUNT = 300;
const names = Array.from({ length: COUNT }, (_, i) => `srv${String(i + 1).padStart(3, '0')}`);
// Three heavy servers, two idle ones, ten in MAINT, five without a series; the rest near the mean.
// Which of the others change is the weighting policy's business: the test reads it from the same
// cycle's JSON report.
const HEAVY = new Set(['srv001', 'srv002', 'srv003']);
const IDLE = new Set(['srv004', 'srv005']);
const MAINT = new Set(names.slice(10, 20));
const NO_DATA = new Set(names.slice(20, 25));

let lb: HaproxyHandle;
let dir: string;
let configPath: string;

beforeAll(async () => {
  const graphite = await sharedGraphite();
  dir = makeTempDir('hw-changes');
  lb = await startHaproxy({ backends: [{ name: 'be_big', balance: 'leastconn', servers: names.map((name) => ({ name, ...(MAINT.has(name) ? { state: 'maint' as const } : {}) })) }] });
  const loads = Object.fromEntries(names.filter((n) => !NO_DATA.has(n)).map((n, i) => [n, HEAVY.has(n) ? 1000 : IDLE.has(n) ? 10 : 100 + (i % 7)]));
  const target = await feedLoads(graphite, uniquePrefix('changes'), loads);
  configPath = writeConfigFile(dir, {
    graphite: { url: graphite.url, timeoutMs: 10_000, retries: 1 },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: lb.adminSocket }] },
    // A wide deadband: servers near the mean keep their weight.
    backends: [{ name: 'be_big', target, from: '-2min', weighting: { function: 'feedback' } }],
  });
});

afterAll(async () => {
  await lb.stop();
  removeTempDir(dir);
});

const serverRows = (text: string): string[] => text.split('\n').filter((l) => /^ {4}srv\d{3}\s/.test(l)).map((l) => l.trim().split(/\s+/)[0] ?? '');

describe('plan --changes on a 300-server backend', () => {
  it('prints only the servers whose weight changes, never the ones in MAINT, and a summary line that counts the rest', async () => {
    const json = await runCli(['plan', '--json', '--config', configPath]);
    expect(json.code).toBe(0);
    const actions = singleReport(json.stdout).backends[0]?.loadBalancers[0]?.plan.actions ?? [];
    const changing = actions.filter((a) => a.kind === 'set-weight').map((a) => a.server);
    const unchanged = actions.filter((a) => a.kind === 'unchanged').length;
    // Skips nobody chose (no data, an unaddressable name) are listed; MAINT, DRAIN and weight 0 only counted.
    const listedSkips = actions.filter((a) => a.kind === 'skip' && a.reason !== 'maint' && a.reason !== 'drain' && a.reason !== 'weight-zero').map((a) => a.server);
    const skipsBy = new Map<string, number>();
    for (const a of actions) if (a.kind === 'skip') skipsBy.set(a.reason ?? '', (skipsBy.get(a.reason ?? '') ?? 0) + 1);
    expect(changing).toEqual(expect.arrayContaining([...HEAVY, ...IDLE]));
    expect(skipsBy.get('maint')).toBe(MAINT.size);
    expect(changing.length + unchanged + [...skipsBy.values()].reduce((a, b) => a + b, 0)).toBe(COUNT);

    const changes = await runCli(['plan', '--changes', '--config', configPath]);
    expect(changes.code).toBe(0);
    expect(serverRows(changes.stdout)).toEqual(names.filter((n) => changing.includes(n) || listedSkips.includes(n)));
    const skipped = [...skipsBy.values()].reduce((a, b) => a + b, 0);
    expect(changes.stdout).toContain(`  summary: ${COUNT} server(s); ${changing.length} to change, ${unchanged} unchanged, ${skipped} skipped (${[...skipsBy].map(([r, n]) => `${r} ${n}`).join(', ')}); imbalance `);

    for (const server of MAINT) expect(changes.stdout).not.toContain(`    ${server} `);

    const full = await runCli(['plan', '--config', configPath]);
    expect(serverRows(full.stdout)).toEqual(names);
  });
});
