/** Where the repository is, for tests and harness modules that read its files or run its parts. */
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
