/**
 * Loaded into the soak's CLI process with `--import` (the product code is not changed): once a
 * second, after a full garbage collection when node runs with --expose-gc, appends the process's
 * memory figures as one JSON line to the file named by HW_SOAK_HEAP_FILE. A heap measured after
 * a full collection is the live heap, so growth across a thousand cycles would be a leak.
 */
import { appendFileSync } from 'node:fs';

const file = process.env['HW_SOAK_HEAP_FILE'];
if (file !== undefined && file !== '') {
  const sample = (): void => {
    const gc: unknown = Reflect.get(globalThis, 'gc');
    if (typeof gc === 'function') gc();
    const m = process.memoryUsage();
    appendFileSync(file, `${JSON.stringify({ at: Date.now(), heapUsed: m.heapUsed, heapTotal: m.heapTotal, rss: m.rss, external: m.external })}\n`);
  };
  sample();
  // Unref'd: the probe must never keep the CLI alive or change when it exits.
  setInterval(sample, 1_000).unref();
}
