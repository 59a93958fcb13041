/**
 * Where the CLI keeps Node.js's compile cache: code it will run, so only in directories no other
 * user can write. Real directories in a private temporary directory.
 */
import { chmodSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileCacheDirectory, enableCliCompileCache } from '../../functions/cli/compile-cache.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';

let root: string;
let uid: number;

beforeEach(() => {
  root = makeTempDir('hw-compile-cache');
  uid = statSync(root).uid;
});
afterEach(() => removeTempDir(root));

describe('compileCacheDirectory', () => {
  it.each([
    ['$XDG_CACHE_HOME/haproxy-weighter/compile-cache', () => ({ XDG_CACHE_HOME: join(root, 'xdg'), HOME: join(root, 'home') }), 'xdg/haproxy-weighter/compile-cache'],
    ['~/.cache/haproxy-weighter/compile-cache without XDG_CACHE_HOME', () => ({ HOME: join(root, 'home') }), 'home/.cache/haproxy-weighter/compile-cache'],
    ['~/.cache when XDG_CACHE_HOME is relative (the XDG rule: ignored)', () => ({ XDG_CACHE_HOME: 'cache', HOME: join(root, 'home') }), 'home/.cache/haproxy-weighter/compile-cache'],
  ])('uses %s, created 0700', (_where, env, expected) => {
    const dir = compileCacheDirectory(env(), uid);
    expect(dir).toBe(join(root, expected));
    expect(statSync(join(dir ?? '', '..')).mode & 0o777).toBe(0o700);
    expect(statSync(dir ?? '').mode & 0o777).toBe(0o700);
  });

  it.each([
    ['no home and no XDG_CACHE_HOME', () => ({})],
    ['a relative home', () => ({ HOME: 'home' })],
    [
      'a directory that group and others may write',
      () => {
        mkdirSync(join(root, 'xdg/haproxy-weighter/compile-cache'), { recursive: true });
        chmodSync(join(root, 'xdg/haproxy-weighter/compile-cache'), 0o777);
        return { XDG_CACHE_HOME: join(root, 'xdg') };
      },
    ],
    [
      'a cache directory that others may write',
      () => {
        mkdirSync(join(root, 'xdg'));
        chmodSync(join(root, 'xdg'), 0o777);
        return { XDG_CACHE_HOME: join(root, 'xdg') };
      },
    ],
    [
      'a symbolic link in place of its directory',
      () => {
        mkdirSync(join(root, 'xdg'));
        mkdirSync(join(root, 'elsewhere'), { mode: 0o700 });
        symlinkSync(join(root, 'elsewhere'), join(root, 'xdg/haproxy-weighter'));
        return { XDG_CACHE_HOME: join(root, 'xdg') };
      },
    ],
    [
      'a file in place of its directory',
      () => {
        mkdirSync(join(root, 'xdg'));
        writeFileSync(join(root, 'xdg/haproxy-weighter'), '');
        return { XDG_CACHE_HOME: join(root, 'xdg') };
      },
    ],
  ])('finds none with %s', (_what, env) => {
    expect(compileCacheDirectory(env(), uid)).toBeUndefined();
  });

  it("finds none in directories of another user's", () => {
    expect(compileCacheDirectory({ XDG_CACHE_HOME: join(root, 'xdg') }, uid + 1)).toBeUndefined();
  });
});

describe('enableCliCompileCache', () => {
  it('stays off when NODE_DISABLE_COMPILE_CACHE is set, and creates nothing', () => {
    expect(enableCliCompileCache({ XDG_CACHE_HOME: join(root, 'xdg'), NODE_DISABLE_COMPILE_CACHE: '1' }, uid)).toBeUndefined();
    expect(() => statSync(join(root, 'xdg'))).toThrow();
  });
});
