import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireRunLock, lockPathFor } from '../../functions/adapters/run-lock.js';

const dirs: string[] = [];
const freshDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'hw-lock-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('acquireRunLock', () => {
  it('makes a second writer on the same endpoint wait until the first releases', async () => {
    const dir = freshDir();
    const first = await acquireRunLock(['/run/a.sock', '/run/b.sock'], { dir });
    const order: string[] = [];
    const second = acquireRunLock(['/run/b.sock'], { dir, pollMs: 5 }).then((lock) => {
      order.push('second');
      return lock;
    });
    await new Promise((r) => setTimeout(r, 50));
    order.push('first-release');
    await first.release();
    await (await second).release();
    expect(order).toEqual(['first-release', 'second']);
  });

  it('gives up with a message naming the endpoint and the owner pid', async () => {
    const dir = freshDir();
    const held = await acquireRunLock(['/run/a.sock'], { dir });
    await expect(acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 30, pollMs: 5 })).rejects.toThrow(new RegExp(`pid ${process.pid}.*/run/a.sock`));
    await held.release();
  });

  it('takes over a lock whose owner process is gone', async () => {
    const dir = freshDir();
    const path = lockPathFor('/run/a.sock', dir);
    writeFileSync(path, '999999999');
    const lock = await acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 100 });
    expect(readFileSync(path, 'utf8')).toBe(String(process.pid));
    await lock.release();
    expect(existsSync(path)).toBe(false);
  });

  it('releases what it took when a later endpoint cannot be locked', async () => {
    const dir = freshDir();
    const held = await acquireRunLock(['/run/z.sock'], { dir });
    await expect(acquireRunLock(['/run/a.sock', '/run/z.sock'], { dir, timeoutMs: 20, pollMs: 5 })).rejects.toThrow();
    expect(existsSync(lockPathFor('/run/a.sock', dir))).toBe(false);
    await held.release();
  });
});
