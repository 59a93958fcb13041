/**
 * A local Amazon S3 endpoint for tests: the part of S3's REST protocol that the real
 * `@aws-sdk/client-s3` speaks for PutObject and GetObject with path-style addressing
 * (`PUT|GET /<bucket>/<key>`), on loopback. The local SSM endpoint uploads command output here as
 * the SSM Agent does (with the real SDK), and the relay reads it back with the real SDK.
 *
 * Reproduced where the relay depends on it: SigV4-signed requests only, `NoSuchBucket` and
 * `NoSuchKey` as S3 answers them (XML error bodies, 404), `AccessDenied` for a writer the bucket
 * refuses (an instance profile without s3:PutObject), and the object's bytes exactly as stored.
 */
import { randomUUID, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeHttpServer, listenAsAwsEndpoint } from '../harness/loopback-server.js';

export interface S3Endpoint {
  /** `http://127.0.0.1:<port>` for the SDK's `endpoint` (with `forcePathStyle: true`). */
  readonly url: string;
  /** Every request: method, bucket, key and the HTTP status answered. */
  readonly requests: readonly S3Request[];
  /** The stored object, or undefined. */
  object(bucket: string, key: string): Buffer | undefined;
  /** Keys stored in a bucket, in the order they were written. */
  keys(bucket: string): readonly string[];
  /** PutObject with this access key id answers AccessDenied (an instance profile without s3:PutObject). */
  denyWritesBy(accessKeyId: string): void;
  close(): Promise<void>;
}

export interface S3Request {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  readonly status: number;
  readonly accessKeyId: string;
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The access key id from a SigV4 Authorization header, or '' when the request is not signed. */
function accessKeyOf(req: IncomingMessage): string {
  const auth = String(req.headers.authorization ?? '');
  return /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\//.exec(auth)?.[1] ?? '';
}

export async function startS3Endpoint(options: { readonly buckets: readonly string[] }): Promise<S3Endpoint> {
  const buckets = new Map<string, Map<string, Buffer>>(options.buckets.map((b) => [b, new Map()]));
  const requests: S3Request[] = [];
  const denied = new Set<string>();

  const error = (res: ServerResponse, status: number, code: string, message: string, resource: string): number => {
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message><Resource>${xmlEscape(resource)}</Resource><RequestId>${randomUUID()}</RequestId></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': randomUUID() });
    res.end(body);
    return status;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer): number => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const slash = path.indexOf('/', 1);
    const bucket = decodeURIComponent(slash < 0 ? path.slice(1) : path.slice(1, slash));
    const key = slash < 0 ? '' : decodeURIComponent(path.slice(slash + 1));
    const accessKey = accessKeyOf(req);
    if (accessKey === '') return error(res, 403, 'AccessDenied', 'Anonymous access is not allowed', path);
    const objects = buckets.get(bucket);
    if (objects === undefined) return error(res, 404, 'NoSuchBucket', 'The specified bucket does not exist', `/${bucket}`);
    if (key === '') return error(res, 400, 'InvalidRequest', 'Only object operations are emulated', path);
    if (req.method === 'PUT') {
      if (denied.has(accessKey)) return error(res, 403, 'AccessDenied', 'Access Denied', path);
      objects.delete(key);
      objects.set(key, body);
      res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"`, 'content-length': 0, 'x-amz-request-id': randomUUID() });
      res.end();
      return 200;
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      const found = objects.get(key);
      if (found === undefined) return error(res, 404, 'NoSuchKey', 'The specified key does not exist.', path);
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': found.length,
        etag: `"${createHash('md5').update(found).digest('hex')}"`,
        'last-modified': new Date().toUTCString(),
        'x-amz-request-id': randomUUID(),
      });
      res.end(req.method === 'GET' ? found : undefined);
      return 200;
    }
    return error(res, 405, 'MethodNotAllowed', `${String(req.method)} is not emulated`, path);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const parts = url.pathname.split('/');
      const status = handle(req, res, Buffer.concat(chunks));
      requests.push({ method: String(req.method), bucket: decodeURIComponent(parts[1] ?? ''), key: decodeURIComponent(parts.slice(2).join('/')), status, accessKeyId: accessKeyOf(req) });
    });
  });
  const url = await listenAsAwsEndpoint(server, 'the S3 endpoint');
  return {
    url,
    requests,
    object: (bucket, key) => buckets.get(bucket)?.get(key),
    keys: (bucket) => [...(buckets.get(bucket)?.keys() ?? [])],
    denyWritesBy: (accessKeyId) => denied.add(accessKeyId),
    close: () => closeHttpServer(server),
  };
}
