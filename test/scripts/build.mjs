// Bundles the CLI and the Lambda handler with esbuild. Runs on `npm ci` (prepare) and `npm run build`.
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, bundleCli, bundleHandler } from './bundle.mjs';

await bundleCli(join(ROOT, 'dist/cli.mjs'));
await chmod(join(ROOT, 'dist/cli.mjs'), 0o755);
await bundleHandler(join(ROOT, 'dist/handler.mjs'));
