// Bundles the CLI and the Lambda handler with esbuild into dist/. Run by `npm run build`, an explicit
// step (CI, the demo, before a deploy): installing the package runs nothing, so `npm ci --omit=dev`
// works without esbuild.
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, bundleCli, bundleHandler } from './bundle.mjs';

await bundleCli(join(ROOT, 'dist/cli.mjs'));
await chmod(join(ROOT, 'dist/cli.mjs'), 0o755);
await bundleHandler(join(ROOT, 'dist/handler.mjs'));
