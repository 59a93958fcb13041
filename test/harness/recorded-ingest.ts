/**
 * The rig of the CLI tests that feed hostile input and read every byte that reaches HAProxy: loads
 * for s1-s3 in the shared Graphite under a unique prefix, a real HAProxy with backend `be_ingest`,
 * the recording socket proxy in front of its admin socket, the Graphite fault proxy in front of
 * Graphite, and a temporary directory for configuration files that point the CLI at both proxies.
 */
import { startGraphiteFaultProxy, startSocketProxy, writeConfigFile, type GraphiteFaultProxy, type SocketProxy } from './faults.js';
import { feedLoads, uniquePrefix } from './graphite.js';
import { resetWeights, startHaproxy, type HaproxyHandle } from './haproxy.js';
import { makeTempDir, removeTempDir } from './processes.js';
import { sharedGraphite } from './shared-graphite.js';

export const INGEST_BACKEND = 'be_ingest';
export const INGEST_SERVERS: readonly string[] = ['s1', 's2', 's3'];
/** s1 carries four times the load of the others: a cycle that sees it lowers s1's weight. */
const LOADS: Readonly<Record<string, number>> = { s1: 4000, s2: 1000, s3: 1000 };

export interface ConfigOptions {
  /** Keys of the one backend, over the defaults (name, the loads' target, `from`, weighting). */
  readonly backend?: Readonly<Record<string, unknown>>;
  /** The load balancer's name (default `lb1`). */
  readonly lbName?: string;
  /** Top-level keys added after the others. */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export interface RecordedIngest {
  readonly haproxy: HaproxyHandle;
  readonly socketProxy: SocketProxy;
  readonly graphiteProxy: GraphiteFaultProxy;
  readonly dir: string;
  /** Writes a configuration file (a new one per call) for the CLI through both proxies. */
  config(options?: ConfigOptions): string;
  /** Back to the state after start: no fault, nothing recorded, every weight 100. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export async function startRecordedIngest(label: string): Promise<RecordedIngest> {
  const graphite = await sharedGraphite();
  const target = await feedLoads(graphite, uniquePrefix(label), LOADS);
  const haproxy = await startHaproxy({ backends: [{ name: INGEST_BACKEND, balance: 'leastconn', servers: INGEST_SERVERS.map((name) => ({ name })) }] });
  const socketProxy = await startSocketProxy(haproxy.adminSocket);
  const graphiteProxy = await startGraphiteFaultProxy(graphite.url);
  const dir = makeTempDir(`hw-${label.replaceAll('_', '-')}`);
  let count = 0;
  return {
    haproxy,
    socketProxy,
    graphiteProxy,
    dir,
    config: (options = {}) =>
      writeConfigFile(
        dir,
        {
          graphite: { url: graphiteProxy.url, timeoutMs: 5000, retries: 0 },
          relay: { type: 'socket', loadBalancers: [{ name: options.lbName ?? 'lb1', endpoint: socketProxy.path }] },
          backends: [{ name: INGEST_BACKEND, target, from: '-15min', weighting: { function: 'limited-proportions' }, ...options.backend }],
          ...options.extra,
        },
        `config-${++count}.yaml`,
      ),
    reset: async () => {
      socketProxy.setFault({ kind: 'pass' });
      socketProxy.clear();
      graphiteProxy.clear();
      await graphiteProxy.setFault({ kind: 'pass' });
      await resetWeights([haproxy], INGEST_BACKEND, INGEST_SERVERS);
    },
    close: async () => {
      await graphiteProxy.close();
      await socketProxy.close();
      await haproxy.stop();
      removeTempDir(dir);
    },
  };
}
