/**
 * Scale on the real parts: one backend of 200 servers on 3 real HAProxy processes. The socket relay
 * is wrapped only to count round trips; every byte still goes to the real runtime sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGraphiteSource } from '../../functions/adapters/graphite.js';
import { createSocketRelay } from '../../functions/adapters/socket-relay.js';
import { parseConfig } from '../../functions/core/config.js';
import { runCycle } from '../../functions/core/cycle.js';
import { checkedReport } from '../harness/report.js';
import type { RelayRequest, RuntimeRelay } from '../../functions/core/types.js';
import { uniquePrefix, writeAndWait } from '../harness/graphite.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const SERVERS = 200;
const names = Array.from({ length: SERVERS }, (_, i) => `srv${String(i).padStart(3, '0')}`);
let fleet: HaproxyHandle[] = [];

beforeAll(async () => {
  fleet = await startHaproxyFleet(3, { backends: [{ name: 'be_big', balance: 'leastconn', servers: names.map((name) => ({ name })) }] });
});
afterAll(async () => {
  await stopAll(fleet);
});

describe('a cycle over 200 servers on 3 load balancers', () => {
  it('sends exactly one observe batch and one write batch per load balancer, and every weight lands', async () => {
    const graphite = await sharedGraphite();
    const prefix = uniquePrefix('scale');
    const now = Math.floor(Date.now() / 1000);
    // Loads 1000..1199: every weight lands in 213..256, so none equals the configured 100.
    const points = names.map((n, i) => ({ path: `${prefix}.${n}.load`, value: 1000 + i, timestamp: now }));
    await writeAndWait(graphite, points, `${prefix}.*.load`);

    const config = parseConfig({
      graphite: { url: graphite.url },
      relay: { type: 'socket', loadBalancers: fleet.map((h, i) => ({ name: `lb${i}`, endpoint: h.adminSocket })) },
      backends: [
        {
          name: 'be_big',
          target: `aliasByNode(${prefix}.*.load, ${prefix.split('.').length})`,
          from: '-1min',
          aggregation: 'leading-edge',
          weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
        },
      ],
    });
    if (config.relay.type !== 'socket') throw new Error('socket relay expected');
    const real = createSocketRelay(config.relay);
    const calls: RelayRequest[][] = [];
    const counting: RuntimeRelay = {
      loadBalancers: real.loadBalancers,
      run: (requests) => {
        calls.push([...requests]);
        return real.run(requests);
      },
    };

    const report = checkedReport(await runCycle({ config, metrics: createGraphiteSource(config.graphite, { env: {} }), relay: counting, now: Date.now, version: '0.0.0-test' }, { mode: 'apply' }));

    expect(report.outcome).toBe('ok');
    expect(calls).toHaveLength(2);
    const [observeCall, writeCall] = calls;
    expect(observeCall?.map((r) => r.loadBalancer).sort()).toEqual(['lb0', 'lb1', 'lb2']);
    expect(writeCall?.map((r) => r.loadBalancer).sort()).toEqual(['lb0', 'lb1', 'lb2']);
    // One `show servers state` (the guard state at write time), then one command per server.
    for (const request of writeCall ?? []) expect(request.commands).toHaveLength(SERVERS + 1);
    expect(report.serversChanged).toBe(SERVERS * 3);

    const plan = report.backends[0]?.loadBalancers[0]?.plan;
    const planned = new Map((plan?.actions ?? []).flatMap((a) => (a.kind === 'set-weight' ? [[a.server, a.weight] as const] : [])));
    expect(planned.size).toBe(SERVERS);
    for (const lb of fleet) {
      for (const name of [names[0], names[99], names[199]]) {
        if (name === undefined) continue;
        expect((await lb.getWeight('be_big', name)).current).toBe(planned.get(name));
      }
    }
    // Least load gets the most weight.
    expect(planned.get('srv000')).toBe(256);
    expect(planned.get('srv199')).toBeLessThan(planned.get('srv100') ?? 0);
  });
});
