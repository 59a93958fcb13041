/**
 * A fleet of emulated load balancers behind the local SSM endpoint: one real HAProxy process per
 * instance id, each instance seeing its own admin socket at the same path (`SOCKET_PATH`), as real
 * load balancers configured alike would.
 */
import { fileURLToPath } from 'node:url';
import { createSsmClient, ssmApiFromClient, type SsmApi, type SsmRelaySettings } from '../../functions/adapters/ssm-relay.js';
import { startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { startSsmEndpoint, type SsmEndpoint, type SsmEndpointOptions, type StoredParameter } from './ssm-endpoint.js';

export const DOCUMENT_PATH = fileURLToPath(new URL('../../infra/ssm-document.yaml', import.meta.url));
export const DOCUMENT_NAME = 'haproxy-weighter-test-relay';
/** Where every emulated instance has its admin socket. */
export const SOCKET_PATH = '/run/haproxy/admin.sock';
export const TAG = { key: 'haproxy-weighter', value: 'test' } as const;

/** Instance ids of the form EC2 uses, stable per index. */
export function instanceId(index: number): string {
  return `i-0${(index + 1).toString(16).padStart(16, '0')}`;
}

export interface SsmFleet {
  readonly haproxies: readonly HaproxyHandle[];
  readonly instanceIds: readonly string[];
  readonly endpoint: SsmEndpoint;
  /** An SSM API client of the real SDK, pointed at the endpoint. */
  readonly api: SsmApi;
  /** Relay settings for these instances, fast polling. */
  readonly settings: SsmRelaySettings;
  byInstance(id: string): HaproxyHandle;
  stop(): Promise<void>;
}

export const TEST_CREDENTIALS = { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'test-secret-key-not-real' } as const;

export async function startSsmFleet(
  count: number,
  backends: readonly BackendSpec[],
  extra: Partial<Pick<SsmEndpointOptions, 'notFoundPolls' | 'pendingPolls'>> & { readonly parameters?: Readonly<Record<string, StoredParameter>> } = {},
): Promise<SsmFleet> {
  const haproxies = await startHaproxyFleet(count, { backends });
  const instanceIds = haproxies.map((_, i) => instanceId(i));
  let endpoint: SsmEndpoint;
  try {
    endpoint = await startSsmEndpoint({
      documentPath: DOCUMENT_PATH,
      documentName: DOCUMENT_NAME,
      instances: haproxies.map((h, i) => ({ id: instanceId(i), tags: { [TAG.key]: TAG.value }, paths: { [SOCKET_PATH]: h.adminSocket } })),
      ...extra,
    });
  } catch (error) {
    await stopAll(haproxies);
    throw error;
  }
  const client = createSsmClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 4 });
  return {
    haproxies,
    instanceIds,
    endpoint,
    api: ssmApiFromClient(client),
    settings: {
      documentName: DOCUMENT_NAME,
      socketPath: SOCKET_PATH,
      targets: { instanceIds: [...instanceIds] },
      commandTimeoutSeconds: 60,
      pollIntervalMs: 20,
      maxWaitMs: 15_000,
    },
    byInstance(id) {
      const h = haproxies[instanceIds.indexOf(id)];
      if (h === undefined) throw new Error(`no HAProxy for ${id}`);
      return h;
    },
    async stop() {
      client.destroy();
      await Promise.allSettled([endpoint.close(), stopAll(haproxies)]);
    },
  };
}
