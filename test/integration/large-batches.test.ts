/**
 * Large write batches on the real parts: one backend of 1,000 servers on 3 real HAProxy 2.6
 * processes, 50 consecutive `apply --force` cycles through the CLI's own main() (in process, so
 * 50 cycles do not pay 50 Node.js start-ups) against the real Graphite. Each cycle writes 1,001
 * commands per load balancer in one batch; with a half-close right after the batch, HAProxy
 * answered only part of such batches (npm run bench:half-close). Consecutive cycles
 * alternate between two load patterns so that every cycle writes other weights than the one before,
 * and every weight is read back from HAProxy itself, not from the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMain, singleReport, writeConfigFile } from '../harness/cli.js';
import { uniquePrefix, writeAndWait } from '../harness/graphite.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const SERVERS = 1_000;
const CYCLES = 50;
const BACKEND = 'be_big';
const names = Array.from({ length: SERVERS }, (_, i) => `srv${String(i).padStart(4, '0')}`);

let fleet: HaproxyHandle[] = [];
let dir: string;
let configs: [string, string];

beforeAll(async () => {
  dir = makeTempDir('hw-large-batches');
  fleet = await startHaproxyFleet(3, { backends: [{ name: BACKEND, balance: 'leastconn', servers: names.map((name) => ({ name })) }] });
  const graphite = await sharedGraphite();
  const now = Math.floor(Date.now() / 1000);
  // Two patterns: loads rising with the server number, and falling. Weights follow the inverse.
  const rising = uniquePrefix('large_batches_rising');
  const falling = uniquePrefix('large_batches_falling');
  await writeAndWait(
    graphite,
    names.flatMap((n, i) => [
      { path: `${rising}.${n}.load`, value: 1000 + i, timestamp: now },
      { path: `${falling}.${n}.load`, value: 1999 - i, timestamp: now },
    ]),
    `group(${rising}.*.load,${falling}.*.load)`,
  );
  const configFor = (prefix: string, file: string): string =>
    writeConfigFile(
      dir,
      {
        graphite: { url: graphite.url, timeoutMs: 30_000 },
        relay: { type: 'socket', loadBalancers: fleet.map((h, i) => ({ name: `lb${i}`, endpoint: h.adminSocket })), readTimeoutMs: 60_000 },
        backends: [
          {
            name: BACKEND,
            target: `aliasByNode(${prefix}.*.load, ${prefix.split('.').length})`,
            from: '-1h',
            aggregation: 'leading-edge',
            weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
          },
        ],
      },
      file,
    );
  configs = [configFor(rising, 'rising.yaml'), configFor(falling, 'falling.yaml')];
}, 300_000);

afterAll(async () => {
  await stopAll(fleet);
  removeTempDir(dir);
});

/** Every server's user weight as HAProxy holds it, from `show servers state`. */
async function heldWeights(lb: HaproxyHandle): Promise<Map<string, number>> {
  const lines = (await lb.runtime(`show servers state ${BACKEND}`)).split('\n');
  const header = (lines[1] ?? '').replace(/^# /, '').split(' ');
  const nameAt = header.indexOf('srv_name');
  const weightAt = header.indexOf('srv_uweight');
  const out = new Map<string, number>();
  for (const line of lines.slice(2)) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(' ');
    out.set(fields[nameAt] ?? '', Number(fields[weightAt]));
  }
  return out;
}

describe(`${CYCLES} consecutive apply --force cycles over ${SERVERS} servers on 3 load balancers`, () => {
  it('all exit 0, write every weight on every load balancer, and HAProxy holds exactly the weights the report gives', async () => {
    let previous: Map<string, number> | undefined;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const run = await runMain(['apply', '--force', '--json', '--config', configs[cycle % 2] ?? '']);
      expect({ cycle, code: run.code, stderr: run.stderr }).toEqual({ cycle, code: 0, stderr: '' });
      const report = singleReport(run.stdout);
      expect(report).toMatchObject({ outcome: 'ok', problems: [], failedLoadBalancers: [], serversChanged: SERVERS * fleet.length });

      const [backend] = report.backends;
      for (const [i, lb] of fleet.entries()) {
        const entry = backend?.loadBalancers.find((l) => l.loadBalancer === `lb${i}`);
        expect(entry?.apply).toMatchObject({ status: 'applied', changed: SERVERS });
        const planned = new Map((entry?.plan.actions ?? []).flatMap((a) => (a.kind === 'set-weight' ? [[a.server, a.weight] as const] : [])));
        expect(planned.size).toBe(SERVERS);
        const held = await heldWeights(lb);
        expect(held).toEqual(planned);
        if (i === 0) {
          // The two patterns alternate: most weights differ from the cycle before.
          if (previous !== undefined) expect(names.filter((n) => held.get(n) !== previous?.get(n)).length).toBeGreaterThan(SERVERS / 2);
          previous = held;
        }
      }
    }
  }, 1_200_000);
});
