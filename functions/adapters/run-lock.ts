import { setTimeout as delay } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RelayError } from '../core/errors.js';

/**
 * Cross-process exclusion per runtime endpoint, so that two `apply` runs against the same load
 * balancers never interleave their batches. One lock file per endpoint (O_EXCL create holding the
 * owner's pid), taken in sorted order so that two runs over overlapping sets cannot deadlock. A
 * lock whose owner process is gone is stale and taken over.
 */
export interface RunLock {
  release(): Promise<void>;
}

export interface RunLockOptions {
  readonly dir?: string;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly pid?: number;
}

export function lockPathFor(endpoint: string, dir = tmpdir()): string {
  const digest = createHash('sha256').update(endpoint).digest('hex').slice(0, 20);
  return join(dir, `haproxy-weighter-${digest}.lock`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function takeOne(path: string, endpoint: string, options: Required<RunLockOptions>): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      await writeFile(path, String(options.pid), { flag: 'wx', mode: 0o600 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new RelayError(`cannot create lock file ${path} for ${endpoint}: ${(error as Error).message}`, {}, { cause: error });
      }
    }
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new RelayError(`another haproxy-weighter (pid ${Number.isInteger(owner) && owner > 0 ? owner : 'unknown'}) is writing to ${endpoint}; gave up after ${options.timeoutMs} ms (lock ${path})`);
    }
    await delay(options.pollMs);
  }
}

export async function acquireRunLock(endpoints: readonly string[], options: RunLockOptions = {}): Promise<RunLock> {
  const full: Required<RunLockOptions> = { dir: tmpdir(), timeoutMs: 60_000, pollMs: 50, pid: process.pid, ...options };
  const held: string[] = [];
  try {
    for (const endpoint of [...new Set(endpoints)].sort()) {
      const path = lockPathFor(endpoint, full.dir);
      await takeOne(path, endpoint, full);
      held.push(path);
    }
  } catch (error) {
    await Promise.all(held.map((p) => unlink(p).catch(() => undefined)));
    throw error;
  }
  return {
    release: async () => {
      await Promise.all(held.reverse().map((p) => unlink(p).catch(() => undefined)));
    },
  };
}
