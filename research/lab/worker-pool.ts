import { Worker } from 'node:worker_threads';
import type { Figures } from './metrics.js';

/**
 * Runs independent jobs on worker threads and returns their results in job order, so the output
 * is the same whatever the number of workers. With one worker (or one job) everything runs in this
 * thread. Worker threads do not inherit tsx's TypeScript loader, so each one starts from a small
 * JavaScript file that loads `contest-worker.ts` through tsx's API.
 */

type WorkerMessage = { readonly type: 'ready' } | { readonly type: 'done'; readonly id: number; readonly result: unknown } | { readonly type: 'failed'; readonly id: number; readonly message: string };

const BOOT = new URL('./contest-worker-boot.mjs', import.meta.url);
const MODULE = new URL('./contest-worker.ts', import.meta.url);

function isMessage(value: unknown): value is WorkerMessage {
  return value !== null && typeof value === 'object' && 'type' in value;
}

const FIGURE_KEYS = ['p50', 'p95', 'max', 'mean', 'oscillation', 'writesPerServerHour'] as const;

/** What crosses back from a worker is checked like any other input before it is used. */
function isFiguresList(value: unknown): value is Figures[] {
  return (
    Array.isArray(value) &&
    value.every(
      (f: unknown) =>
        f !== null &&
        typeof f === 'object' &&
        FIGURE_KEYS.every((k) => typeof Reflect.get(f, k) === 'number') &&
        'shockMinutes' in f &&
        (f.shockMinutes === null || typeof f.shockMinutes === 'number') &&
        'sinkholeShare' in f &&
        (f.sinkholeShare === null || typeof f.sinkholeShare === 'number') &&
        'shockServers' in f &&
        (f.shockServers === null || typeof f.shockServers === 'number'),
    )
  );
}

export async function runJobs<J>(jobs: readonly J[], workers: number, execute: (job: J) => readonly Figures[]): Promise<(readonly Figures[])[]> {
  if (workers <= 1 || jobs.length <= 1) return jobs.map(execute);
  const results = new Array<readonly Figures[]>(jobs.length);
  let next = 0;
  let finished = 0;
  const pool: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const feed = (worker: Worker): void => {
        if (next >= jobs.length) return;
        const id = next++;
        worker.postMessage({ id, job: jobs[id] });
      };
      for (let w = 0; w < Math.min(workers, jobs.length); w++) {
        const worker = new Worker(BOOT, { workerData: { module: MODULE.href } });
        pool.push(worker);
        worker.on('message', (message: unknown) => {
          if (!isMessage(message)) return reject(new Error('unexpected message from a lab worker'));
          if (message.type === 'ready') return feed(worker);
          if (message.type === 'failed') return reject(new Error(`lab job ${message.id} failed: ${message.message}`));
          if (!isFiguresList(message.result)) return reject(new Error(`lab job ${message.id} returned something other than figures`));
          results[message.id] = message.result;
          finished++;
          if (finished === jobs.length) resolve();
          else feed(worker);
        });
        worker.on('error', (error) => reject(new Error('a lab worker crashed', { cause: error })));
        worker.on('exit', (code) => {
          if (code !== 0 && finished < jobs.length) reject(new Error(`a lab worker exited with code ${code}`));
        });
      }
    });
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
  return results;
}
