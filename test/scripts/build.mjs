// Bundles the CLI and the Lambda handler with esbuild. Runs on `npm ci` (prepare) and `npm run build`.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { chmod } from 'node:fs/promises';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: false,
  legalComments: 'none',
  // Error class names (ConfigError, GraphiteError...) are part of what operators read.
  keepNames: true,
  logLevel: 'warning',
  // ESM bundles of CommonJS dependencies need a real require.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};

await build({ ...common, entryPoints: ['functions/cli/bin.ts'], outfile: 'dist/cli.mjs', banner: { js: `#!/usr/bin/env node\n${common.banner.js}` } });
await chmod('dist/cli.mjs', 0o755);
if (existsSync('functions/handler.ts')) {
  await build({ ...common, entryPoints: ['functions/handler.ts'], outfile: 'dist/handler.mjs', minify: true });
}
