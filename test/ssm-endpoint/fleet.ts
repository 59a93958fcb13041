/**
 * A fleet of emulated load balancers behind the local SSM endpoint: one real HAProxy process per
 * instance id, each instance seeing its own admin socket at the same path (`SOCKET_PATH`), as real
 * load balancers configured alike would. A benchmark of many instances may let several instances
 * share one HAProxy process (`haproxies`) to save CPU: the document still runs once per instance.
 * With `s3`, a local S3 endpoint holds the stack's output bucket and the agent writes there.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RELAY_OUTPUT_PREFIX } from '../../functions/aws/lambda-config.js';
import { createSsmClient, s3ApiFromClient, ssmApiFromClient, type SsmApi, type SsmOutputBucket, type SsmRelaySettings } from '../../functions/adapters/ssm-relay.js';
import { startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { startS3Endpoint, type S3Endpoint } from './s3-endpoint.js';
import { startSsmEndpoint, type EmulatedInstance, type SsmEndpoint, type SsmEndpointOptions, type StoredParameter } from './ssm-endpoint.js';

export const DOCUMENT_PATH = fileURLToPath(new URL('../../infra/ssm-document.yaml', import.meta.url));
export const DOCUMENT_NAME = 'haproxy-weighter-test-relay';
/** Where every emulated instance has its admin socket. */
export const SOCKET_PATH = '/run/haproxy/admin.sock';
export const TAG = { key: 'haproxy-weighter', value: 'test' } as const;
/** The stack's output bucket, in the local S3 endpoint; the key prefix is the handler's own. */
const OUTPUT_BUCKET = 'haproxy-weighter-test-relay-output';

/** Instance ids of the form EC2 uses, stable per index. */
export function instanceId(index: number): string {
  return `i-0${(index + 1).toString(16).padStart(16, '0')}`;
}

export interface SsmFleet {
  readonly haproxies: readonly HaproxyHandle[];
  readonly instanceIds: readonly string[];
  readonly endpoint: SsmEndpoint;
  /** The local S3 endpoint, when the fleet was started with `s3`. */
  readonly s3: S3Endpoint | undefined;
  /** The relay's output bucket (real S3 SDK against the local S3 endpoint), when started with `s3`. */
  readonly output: SsmOutputBucket | undefined;
  /** An SSM API client of the real SDK, pointed at the endpoint. */
  readonly api: SsmApi;
  /** Relay settings for these instances, fast polling. */
  readonly settings: SsmRelaySettings;
  byInstance(id: string): HaproxyHandle;
  stop(): Promise<void>;
}

export const TEST_CREDENTIALS = { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'test-secret-key-not-real' } as const;

export interface SsmFleetOptions extends Partial<Pick<SsmEndpointOptions, 'notFoundPolls' | 'pendingPolls' | 'latency' | 'rateLimits'>> {
  readonly parameters?: Readonly<Record<string, StoredParameter>>;
  /** Start a local S3 endpoint with the output bucket, and let the agent write there. */
  readonly s3?: boolean;
  /** HAProxy processes to start when fewer than the instances (instance i uses process i mod n). */
  readonly haproxies?: number;
  /** The document to run (another version of it, e.g. for a before/after benchmark). */
  readonly documentPath?: string;
  /** SDK attempts per SSM API call (4 by default). */
  readonly maxAttempts?: number;
  /**
   * DIAGNOSTIC for benchmarks only: instances that share a HAProxy process share one run of each
   * command's document (see the endpoint's `shareRunsBy`), which takes most of the instances'
   * document CPU out of the measurement.
   */
  readonly diagnosticShareRuns?: boolean;
  /** Instance i as Systems Manager sees it, when not an online Linux node with the fleet's tag (e.g. offline, Windows). */
  readonly instances?: Readonly<Record<number, Pick<EmulatedInstance, 'online' | 'platform'>>>;
}

export async function startSsmFleet(count: number, backends: readonly BackendSpec[], extra: SsmFleetOptions = {}): Promise<SsmFleet> {
  const haproxies = await startHaproxyFleet(Math.min(count, extra.haproxies ?? count), { backends });
  const instanceIds = Array.from({ length: count }, (_, i) => instanceId(i));
  const processOf = (i: number): HaproxyHandle => {
    const h = haproxies[i % haproxies.length];
    if (h === undefined) throw new Error('no HAProxy started');
    return h;
  };
  // Instances that share a HAProxy process still each see their own socket path (a symbolic link
  // to the shared socket), so that each has its own lock file next to it, as on real instances.
  const links = haproxies.length < count ? makeTempDir('hw-fleet-links') : undefined;
  const socketOf = (i: number): string => {
    if (links === undefined) return processOf(i).adminSocket;
    const dir = join(links, instanceIds[i] ?? String(i));
    mkdirSync(dir);
    symlinkSync(processOf(i).adminSocket, join(dir, 'admin.sock'));
    return join(dir, 'admin.sock');
  };
  let endpoint: SsmEndpoint;
  let s3: S3Endpoint | undefined;
  try {
    s3 = extra.s3 === true ? await startS3Endpoint({ buckets: [OUTPUT_BUCKET] }) : undefined;
    endpoint = await startSsmEndpoint({
      documentPath: extra.documentPath ?? DOCUMENT_PATH,
      documentName: DOCUMENT_NAME,
      instances: instanceIds.map((id, i) => ({ id, tags: { [TAG.key]: TAG.value }, paths: { [SOCKET_PATH]: socketOf(i) }, ...extra.instances?.[i] })),
      ...(extra.notFoundPolls === undefined ? {} : { notFoundPolls: extra.notFoundPolls }),
      ...(extra.pendingPolls === undefined ? {} : { pendingPolls: extra.pendingPolls }),
      ...(extra.latency === undefined ? {} : { latency: extra.latency }),
      ...(extra.rateLimits === undefined ? {} : { rateLimits: extra.rateLimits }),
      ...(extra.parameters === undefined ? {} : { parameters: extra.parameters }),
      ...(s3 === undefined ? {} : { s3: { endpoint: s3.url } }),
      ...(extra.diagnosticShareRuns === true ? { shareRunsBy: (id: string) => String(instanceIds.indexOf(id) % haproxies.length) } : {}),
    });
  } catch (error) {
    await Promise.allSettled([stopAll(haproxies), s3?.close()]);
    if (links !== undefined) removeTempDir(links);
    throw error;
  }
  const client = createSsmClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: extra.maxAttempts ?? 4 });
  const s3Client = s3 === undefined ? undefined : new S3Client({ endpoint: s3.url, forcePathStyle: true, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 4 });
  return {
    haproxies,
    instanceIds,
    endpoint,
    s3,
    output: s3Client === undefined ? undefined : { bucket: OUTPUT_BUCKET, keyPrefix: RELAY_OUTPUT_PREFIX, s3: s3ApiFromClient(s3Client) },
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
      const index = instanceIds.indexOf(id);
      if (index < 0) throw new Error(`no HAProxy for ${id}`);
      return processOf(index);
    },
    async stop() {
      client.destroy();
      s3Client?.destroy();
      await Promise.allSettled([endpoint.close(), stopAll(haproxies), s3?.close()]);
      if (links !== undefined) removeTempDir(links);
    },
  };
}
