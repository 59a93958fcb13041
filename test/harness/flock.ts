/**
 * Holding an flock(2) lock from a test, with the real `flock` command, and seeing who waits for
 * it: the SSM document takes the same lock around its exchange with HAProxy.
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';

export interface HeldLock {
  /** Releases the lock (the holder exits) and waits until it is gone. */
  release(): Promise<void>;
}

/** Takes an exclusive lock on `path` (created if missing) and keeps it until released. */
export async function holdLock(path: string): Promise<HeldLock> {
  // The holder keeps the lock while `cat` reads its stdin: closing stdin releases it.
  const child = spawn('flock', ['-x', path, 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('held')) resolve();
    });
    child.once('error', reject);
    child.once('close', (code) => reject(new Error(`flock on ${path} exited with ${String(code)} before taking the lock: ${stderr}`)));
  });
  return {
    release: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

/** How many processes are blocked waiting for the flock on `path` (/proc/locks marks waiters with "->"). */
export function lockWaiters(path: string): number {
  const inode = new RegExp(`:${statSync(path).ino}\\s`);
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((line) => line.includes('->') && line.includes('FLOCK') && inode.test(line)).length;
}
