import { parentPort } from 'node:worker_threads';
import { executeJob, type Job } from './contest.js';

/** A lab worker thread: runs contest jobs as the pool sends them (see worker-pool.ts). */

const port = parentPort;
if (port === null) throw new Error('contest-worker.ts must run as a worker thread');

port.on('message', (message: { id: number; job: Job }) => {
  try {
    port.postMessage({ type: 'done', id: message.id, result: executeJob(message.job) });
  } catch (error) {
    port.postMessage({ type: 'failed', id: message.id, message: error instanceof Error ? error.message : String(error) });
  }
});
port.postMessage({ type: 'ready' });
