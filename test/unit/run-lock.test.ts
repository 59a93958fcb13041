import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireRunLock, lockDirectory, lockPathFor } from '../../functions/adapters/run-lock.js';

const dirs: string[] = [];
const freshDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'hw-lock-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const uid = process.getuid?.() ?? 0;

describe('acquireRunLock', () => {
  it('makes a second writer on the same endpoint wait until the first releases', async () => {
    const dir = freshDir();
    const first = await acquireRunLock(['/run/a.sock', '/run/b.sock'], { dir });
    const order: string[] = [];
    const second = acquireRunLock(['/run/b.sock'], { dir }).then((lock) => {
      order.push('second');
      return lock;
    });
    await delay(50);
    order.push('first-release');
    await first.release();
    await (await second).release();
    expect(order).toEqual(['first-release', 'second']);
  });

  it('gives up with a message naming the endpoint and the owner pid', async () => {
    const dir = freshDir();
    const held = await acquireRunLock(['/run/a.sock'], { dir });
    await expect(acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 30 })).rejects.toThrow(new RegExp(`pid ${process.pid}.*/run/a.sock.*gave up after 30 ms`));
    await expect(acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 0 })).rejects.toThrow(/another haproxy-weighter/);
    await held.release();
  });

  it.each([
    ['the pid of a process that is gone', '999999999\n'],
    ['an empty file', ''],
    ['garbage', 'not a pid'],
    ['the pid of a live process that is no weighter', `${process.pid}\n`],
  ])('takes at once a lock file holding %s, and writes its own pid into it', async (_what, content) => {
    const dir = freshDir();
    const path = lockPathFor('/run/a.sock', dir);
    writeFileSync(path, content);
    const lock = await acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 0, pid: 4242 });
    expect(readFileSync(path, 'utf8')).toBe('4242\n');
    await lock.release();
    // The file stays: the kernel lock on it is what was released.
    expect(existsSync(path)).toBe(true);
    await (await acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 0 })).release();
  });

  it('releases what it took when a later endpoint cannot be locked', async () => {
    const dir = freshDir();
    const held = await acquireRunLock(['/run/z.sock'], { dir });
    await expect(acquireRunLock(['/run/a.sock', '/run/z.sock'], { dir, timeoutMs: 20 })).rejects.toThrow(/\/run\/z.sock/);
    await (await acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 0 })).release();
    await held.release();
  });

  it('refuses a symbolic link planted where a lock file belongs', async () => {
    const dir = freshDir();
    symlinkSync(join(dir, 'elsewhere'), lockPathFor('/run/a.sock', dir));
    await expect(acquireRunLock(['/run/a.sock'], { dir, timeoutMs: 0 })).rejects.toThrow(/cannot open the run lock .* for \/run\/a.sock/);
    expect(existsSync(join(dir, 'elsewhere'))).toBe(false);
  });

  it('keeps its lock files in the directory lockDirectory gives for the environment', async () => {
    const runtime = freshDir();
    const lock = await acquireRunLock(['/run/a.sock'], { env: { XDG_RUNTIME_DIR: runtime }, timeoutMs: 0 });
    expect(existsSync(lockPathFor('/run/a.sock', join(runtime, 'haproxy-weighter')))).toBe(true);
    await lock.release();
  });
});

describe('lockDirectory', () => {
  it('creates haproxy-weighter with mode 700 in XDG_RUNTIME_DIR', async () => {
    const runtime = freshDir();
    const dir = await lockDirectory({ XDG_RUNTIME_DIR: runtime });
    expect(dir).toBe(join(runtime, 'haproxy-weighter'));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    // A second call finds it and checks it again.
    expect(await lockDirectory({ XDG_RUNTIME_DIR: runtime })).toBe(dir);
  });

  it.each([
    ['unset', {}],
    ['empty', { XDG_RUNTIME_DIR: '' }],
    ['relative', { XDG_RUNTIME_DIR: 'run/user' }],
  ])('uses haproxy-weighter-<uid> in TMPDIR when XDG_RUNTIME_DIR is %s', async (_what, env) => {
    const tmp = freshDir();
    const dir = await lockDirectory({ ...env, TMPDIR: tmp });
    expect(dir).toBe(join(tmp, `haproxy-weighter-${uid}`));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('refuses a lock directory other users may write into, naming its mode', async () => {
    const tmp = freshDir();
    const planted = join(tmp, `haproxy-weighter-${uid}`);
    mkdirSync(planted);
    chmodSync(planted, 0o777);
    await expect(lockDirectory({ TMPDIR: tmp })).rejects.toThrow(`refusing the run lock directory ${planted}: its mode is 777, so other users may write into it; it must be 700`);
  });

  it('refuses a lock directory that belongs to another user', async () => {
    const tmp = freshDir();
    await expect(lockDirectory({ TMPDIR: tmp }, uid + 4242)).rejects.toThrow(`belongs to uid ${uid}, not to this user (uid ${uid + 4242})`);
  });

  it('refuses a symbolic link in place of the lock directory', async () => {
    const tmp = freshDir();
    const target = join(tmp, 'target');
    mkdirSync(target, { mode: 0o700 });
    symlinkSync(target, join(tmp, `haproxy-weighter-${uid}`));
    await expect(lockDirectory({ TMPDIR: tmp })).rejects.toThrow(/it is not a directory \(a symbolic link or a file is in its place\)/);
  });

  it('refuses an XDG_RUNTIME_DIR that other users may write into', async () => {
    const runtime = freshDir();
    chmodSync(runtime, 0o1777);
    await expect(lockDirectory({ XDG_RUNTIME_DIR: runtime })).rejects.toThrow(`refusing XDG_RUNTIME_DIR ${runtime} for the run lock: its mode is 777`);
  });
});
