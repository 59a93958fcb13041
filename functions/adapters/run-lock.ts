import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { lstat, mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { RelayError } from '../core/errors.js';

/**
 * Cross-process exclusion per runtime endpoint, so that two `apply` runs against the same load
 * balancers never interleave their batches. One lock file per endpoint, taken in sorted order so
 * that two runs over overlapping sets cannot deadlock.
 *
 * The lock is a kernel lock (flock(2)) on that file, not the file's existence: the kernel grants
 * it to one open file at a time and drops it when its holder exits, however it exits. So there is
 * no staleness to judge (a dead owner, an empty file, a pid reused by another process) and no
 * takeover to race: a lock left by a dead process is simply free. Node.js has no flock binding;
 * util-linux's `flock` takes it on our open file description (passed as its fd 3), which we keep
 * open while we hold the lock, so the lock outlives the short `flock` process. Files are never
 * removed (removing a locked file would let a second holder lock a new file of the same name).
 *
 * The files live in a directory only the user can write ($XDG_RUNTIME_DIR/haproxy-weighter, or
 * haproxy-weighter-<uid> in the temporary directory), checked for owner and mode before use, so
 * another user can neither hold our locks nor plant files in their place.
 */
export interface RunLock {
  release(): Promise<void>;
}

export interface RunLockOptions {
  /** The lock directory; lockDirectory(env) when absent. */
  readonly dir?: string;
  /** Where XDG_RUNTIME_DIR and TMPDIR are read from when `dir` is absent. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** How long to wait for each endpoint's lock; 0 tries once. */
  readonly timeoutMs?: number;
  /** Written into the lock file for the message of a run that has to wait. */
  readonly pid?: number;
}

const FLOCK_CANDIDATES = ['/usr/bin/flock', '/bin/flock'];
/** flock's exit status when the lock is held by someone else (EX_TEMPFAIL). */
const BUSY = 75;

export function lockPathFor(endpoint: string, dir: string): string {
  const digest = createHash('sha256').update(endpoint).digest('hex').slice(0, 20);
  return join(dir, `endpoint-${digest}.lock`);
}

const nonEmpty = (value: string | undefined): string | undefined => (value === undefined || value === '' ? undefined : value);

/** Throws unless `path` is a real directory owned by `uid` that nobody else may read or write. */
async function checkPrivate(path: string, uid: number, what: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (error) {
    throw new RelayError(`cannot use ${what}: ${(error as Error).message}`, {}, { cause: error });
  }
  const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
  if (!st.isDirectory()) throw new RelayError(`refusing ${what}: it is not a directory (a symbolic link or a file is in its place); remove it`);
  if (st.uid !== uid) throw new RelayError(`refusing ${what}: it belongs to uid ${st.uid}, not to this user (uid ${uid}); remove it or set XDG_RUNTIME_DIR`);
  if ((st.mode & 0o077) !== 0) throw new RelayError(`refusing ${what}: its mode is ${mode}, so other users may write into it; it must be 700 (chmod 700 ${path}, or remove it)`);
}

/**
 * The directory of the lock files, created 0700 if needed and checked before use: under
 * $XDG_RUNTIME_DIR (per user by definition, checked all the same) when set, else
 * `haproxy-weighter-<uid>` in TMPDIR (or the system temporary directory).
 */
export async function lockDirectory(env: Readonly<Record<string, string | undefined>>, uid = process.getuid?.() ?? 0): Promise<string> {
  const runtime = nonEmpty(env.XDG_RUNTIME_DIR);
  let dir: string;
  if (runtime !== undefined && isAbsolute(runtime)) {
    await checkPrivate(runtime, uid, `XDG_RUNTIME_DIR ${runtime} for the run lock`);
    dir = join(runtime, 'haproxy-weighter');
  } else {
    dir = join(nonEmpty(env.TMPDIR) ?? tmpdir(), `haproxy-weighter-${uid}`);
  }
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new RelayError(`cannot create the run lock directory ${dir}: ${(error as Error).message}`, {}, { cause: error });
    }
  }
  await checkPrivate(dir, uid, `the run lock directory ${dir}`);
  return dir;
}

function flockBinary(): string {
  const found = FLOCK_CANDIDATES.find((p) => existsSync(p));
  if (found === undefined) throw new RelayError(`cannot take the run lock: the flock command (util-linux) is not installed (looked for ${FLOCK_CANDIDATES.join(', ')})`);
  return found;
}

/** Takes flock(2) on the open file `fd` through util-linux flock: locked, or busy after `timeoutMs`. */
function flock(fd: number, timeoutMs: number): Promise<'locked' | 'busy'> {
  const wait = timeoutMs <= 0 ? ['--nonblock'] : ['--timeout', (timeoutMs / 1000).toFixed(3)];
  const binary = flockBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['--exclusive', ...wait, '--conflict-exit-code', String(BUSY), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', (error) => reject(new RelayError(`cannot run ${binary} to take the run lock: ${error.message}`, {}, { cause: error })));
    child.once('close', (code, signal) => {
      if (code === 0) resolve('locked');
      else if (code === BUSY) resolve('busy');
      else reject(new RelayError(`${binary} could not take the run lock (exit ${String(code ?? signal)}): ${stderr.trim()}`));
    });
  });
}

async function takeOne(path: string, endpoint: string, timeoutMs: number, pid: number): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    // O_NOFOLLOW: a symbolic link planted in place of the file is refused, not followed.
    handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    throw new RelayError(`cannot open the run lock ${path} for ${endpoint}: ${(error as Error).message}`, {}, { cause: error });
  }
  try {
    if ((await flock(handle.fd, timeoutMs)) === 'busy') {
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      const who = Number.isInteger(owner) && owner > 0 ? `pid ${owner}` : 'pid unknown';
      throw new RelayError(`another haproxy-weighter (${who}) is writing to ${endpoint}; gave up after ${timeoutMs} ms (lock ${path})`);
    }
    // Only for the message of whoever waits next: the kernel lock is what excludes.
    await handle.truncate(0);
    await handle.write(`${pid}\n`, 0);
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

export async function acquireRunLock(endpoints: readonly string[], options: RunLockOptions = {}): Promise<RunLock> {
  const dir = options.dir ?? (await lockDirectory(options.env ?? {}));
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pid = options.pid ?? process.pid;
  const held: FileHandle[] = [];
  try {
    for (const endpoint of [...new Set(endpoints)].sort()) held.push(await takeOne(lockPathFor(endpoint, dir), endpoint, timeoutMs, pid));
  } catch (error) {
    await Promise.all(held.map((h) => h.close()));
    throw error;
  }
  return {
    // Closing the only descriptor of an open file description releases its flock.
    release: async () => {
      await Promise.all(held.splice(0).reverse().map((h) => h.close()));
    },
  };
}
