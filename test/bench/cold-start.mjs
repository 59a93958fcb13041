// Cold-start benchmark of the Lambda bundle: builds dist/handler.mjs the way scripts/build.mjs
// does (into a temp dir), prints its size, then times a fresh `node` importing it against a bare
// `node -e 0`, interleaved in the same run so both see the same machine load.
// Usage: node test/bench/cold-start.mjs [runs]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { bundleHandler } from '../../scripts/bundle.mjs';

const runs = Math.max(3, Math.min(100, Number(process.argv[2] ?? 15) || 15));
const dir = mkdtempSync(join(tmpdir(), 'hw-bench-'));
const bundle = join(dir, 'handler.mjs');

try {
  await bundleHandler(bundle);
  const bytes = statSync(bundle).size;
  const gzipped = gzipSync(readFileSync(bundle)).length;

  // No CONFIG_PARAMETER: the module builds its handler but fetches no parameter, so this is the
  // import cost alone. A clean environment keeps AWS settings of the machine out of it.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, AWS_REGION: 'eu-west-1' };
  const time = (args) => {
    const start = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${r.stderr}`);
    return ms;
  };
  const importArgs = ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(bundle).href)})`];
  time(['-e', '0']);
  time(importArgs);
  const bare = [];
  const withBundle = [];
  for (let i = 0; i < runs; i++) {
    bare.push(time(['-e', '0']));
    withBundle.push(time(importArgs));
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 === 0 ? (s[m - 1] + s[m]) / 2 : s[m];
  };
  const bareMs = median(bare);
  const bundleMs = median(withBundle);
  const fmt = (n) => n.toFixed(1);
  console.log(`bundle: ${bytes} bytes (${(bytes / 1024).toFixed(1)} KiB), ${gzipped} bytes gzipped`);
  console.log(`node -e 0:              median ${fmt(bareMs)} ms over ${runs} runs`);
  console.log(`node + import(bundle):  median ${fmt(bundleMs)} ms over ${runs} runs`);
  console.log(`import cost:            ${fmt(bundleMs - bareMs)} ms; ratio ${(bundleMs / bareMs).toFixed(2)}x of a bare node start`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
