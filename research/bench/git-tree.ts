import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

/**
 * Writes the files of git revision `revision` of the repository at `root` (only `paths` when
 * given) into `dir`: the BEFORE code a benchmark runs beside this tree's. No shell: the revision
 * is an argument, whatever it holds.
 */
export function extractRevision(root: string, revision: string, dir: string, paths: readonly string[] = []): void {
  mkdirSync(dir, { recursive: true });
  const archive = spawnSync('git', ['archive', revision, ...paths], { cwd: root, maxBuffer: 256 * 1024 * 1024 });
  if (archive.status !== 0) throw new Error(`git archive ${revision} failed: ${String(archive.stderr)}`);
  const untar = spawnSync('tar', ['-x', '-C', dir], { input: archive.stdout });
  if (untar.status !== 0) throw new Error(`tar failed: ${String(untar.stderr)}`);
}
