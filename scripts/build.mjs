// Bundles the CLI and the Lambda handler with esbuild into dist/. Run by `npm run build`, an explicit
// step (CI, the demo, before a deploy): installing the package runs nothing, so `npm ci --omit=dev`
// works without esbuild.
import { chmod, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, bundleCli, bundleHandler } from './bundle.mjs';

// Chunks carry a content hash in their names: those of an earlier build go first.
const dist = join(ROOT, 'dist');
for (const file of await readdir(dist).catch(() => [])) if (/^(cli|handler)-.*\.mjs$/.test(file)) await rm(join(dist, file));

await bundleCli(join(ROOT, 'dist/cli.mjs'));
await chmod(join(ROOT, 'dist/cli.mjs'), 0o755);
await bundleHandler(join(ROOT, 'dist/handler.mjs'));
