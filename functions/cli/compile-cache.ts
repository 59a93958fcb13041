import { lstatSync, mkdirSync } from 'node:fs';
import { constants, enableCompileCache } from 'node:module';
import { isAbsolute, join } from 'node:path';

/**
 * Node.js's compile cache for the CLI: V8's compiled code of the chunks a `plan` or `apply` loads,
 * kept between runs, so that later runs skip compiling them (docs/performance.md has the figures).
 *
 * The cache is code the CLI will run, so it lives only where no other user can write:
 * $XDG_CACHE_HOME/haproxy-weighter/compile-cache, or ~/.cache/haproxy-weighter/compile-cache,
 * created 0700, and each of its directories checked before use: a directory, not a link, owned by
 * this user (the user's cache directory itself may be root's, as /var/cache is), not writable by
 * group or others. Anything else (no home directory, a directory another user may write into)
 * runs without a cache, as Node.js does by default.
 * NODE_DISABLE_COMPILE_CACHE=1, Node.js's own switch, turns it off too.
 */

/** The cache directory for `env`, created if needed; undefined when there is none that only this user may write. */
export function compileCacheDirectory(env: Readonly<Record<string, string | undefined>>, uid: number): string | undefined {
  const base = absolute(env.XDG_CACHE_HOME) ?? withHome(env.HOME);
  if (base === undefined) return undefined;
  const ours = join(base, 'haproxy-weighter');
  const dir = join(ours, 'compile-cache');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return undefined;
  }
  // The base (the user's cache directory) may also be root's, as /var/cache is; ours are the user's own.
  return onlyUserWrites(base, uid, true) && onlyUserWrites(ours, uid) && onlyUserWrites(dir, uid) ? dir : undefined;
}

/** Turns the compile cache on for the modules loaded from now on; returns its directory, or undefined when it stays off. */
export function enableCliCompileCache(env: Readonly<Record<string, string | undefined>>, uid = process.getuid?.()): string | undefined {
  if (uid === undefined || env.NODE_DISABLE_COMPILE_CACHE !== undefined) return undefined;
  const dir = compileCacheDirectory(env, uid);
  if (dir === undefined) return undefined;
  const result = enableCompileCache(dir);
  return result.status === constants.compileCacheStatus.ENABLED || result.status === constants.compileCacheStatus.ALREADY_ENABLED ? (result.directory ?? dir) : undefined;
}

function absolute(path: string | undefined): string | undefined {
  return path !== undefined && isAbsolute(path) ? path : undefined;
}

function withHome(home: string | undefined): string | undefined {
  const dir = absolute(home);
  return dir === undefined ? undefined : join(dir, '.cache');
}

/** A real directory, owned by `uid` (or root, when `rootToo`), that neither group nor others may write. */
function onlyUserWrites(path: string, uid: number, rootToo = false): boolean {
  try {
    const st = lstatSync(path);
    return st.isDirectory() && (st.uid === uid || (rootToo && st.uid === 0)) && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}
