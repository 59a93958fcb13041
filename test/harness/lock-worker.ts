/**
 * A process that takes the real run lock on request, for the lock race test: started with fork()
 * (IPC), it answers each message with what happened. While it holds the lock it creates a
 * witness file with O_EXCL, so two holders at once cannot go unseen: the second finds the file.
 */
import { unlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { acquireRunLock } from '../../functions/adapters/run-lock.js';

export type LockWorkerRequest =
  | { readonly kind: 'race'; readonly trial: number; readonly dir: string; readonly endpoint: string; readonly witness: string; readonly holdMs: number }
  /** Takes the lock and keeps it until the process dies. */
  | { readonly kind: 'hold'; readonly dir: string; readonly endpoint: string };

export type LockWorkerReply =
  | { readonly kind: 'raced'; readonly trial: number; readonly overlap: boolean }
  | { readonly kind: 'holding' }
  | { readonly kind: 'failed'; readonly trial?: number; readonly error: string };

const send = (reply: LockWorkerReply): void => {
  process.send?.(reply);
};

async function race(req: Extract<LockWorkerRequest, { kind: 'race' }>): Promise<void> {
  const lock = await acquireRunLock([req.endpoint], { dir: req.dir, timeoutMs: 60_000 });
  let overlap = false;
  try {
    writeFileSync(req.witness, String(process.pid), { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    overlap = true;
  }
  await delay(req.holdMs);
  if (!overlap) unlinkSync(req.witness);
  await lock.release();
  send({ kind: 'raced', trial: req.trial, overlap });
}

process.on('message', (message: LockWorkerRequest) => {
  const work =
    message.kind === 'race'
      ? race(message)
      : acquireRunLock([message.endpoint], { dir: message.dir, timeoutMs: 60_000 }).then(() => send({ kind: 'holding' }));
  work.catch((error: unknown) => send({ kind: 'failed', ...(message.kind === 'race' ? { trial: message.trial } : {}), error: String(error) }));
});
// Exits with its parent: the IPC channel closing is the signal.
process.on('disconnect', () => process.exit(0));
