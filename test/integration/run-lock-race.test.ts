/**
 * The run lock under a real race: 8 processes, each taking the real lock (functions/adapters/
 * run-lock.ts) on the same endpoint at the same moment, 200 times, each time against a lock
 * file left behind by someone else: the pid of a process that has exited, an empty file,
 * garbage, or the pid of a live process that is not a weighter (a reused pid). Every holder
 * creates a witness file with O_EXCL while it holds the lock, so two holders at once would see
 * each other. Also: a holder killed with SIGKILL leaves a lock the next run takes at once.
 */
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireRunLock, lockPathFor } from '../../functions/adapters/run-lock.js';
import type { LockWorkerReply, LockWorkerRequest } from '../harness/lock-worker.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';

const WORKERS = 8;
const TRIALS = 200;
const ENDPOINT = '/run/haproxy/admin.sock';
const WORKER = new URL('../harness/lock-worker.ts', import.meta.url).pathname;

let dir: string;
const workers: ChildProcess[] = [];

function startWorker(): ChildProcess {
  const child = fork(WORKER, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  workers.push(child);
  return child;
}

function nextReply(child: ChildProcess): Promise<LockWorkerReply> {
  return new Promise((resolve, reject) => {
    const onExit = (): void => reject(new Error(`lock worker ${String(child.pid)} exited`));
    child.once('message', (reply: LockWorkerReply) => {
      child.off('exit', onExit);
      resolve(reply);
    });
    child.once('exit', onExit);
  });
}

/** A pid that belonged to a process that has exited (and was reaped). */
function deadPid(): number {
  const done = spawnSync('/bin/true');
  if (done.pid === undefined) throw new Error('could not run /bin/true');
  return done.pid;
}

/** What a crashed or foreign run may leave in the lock file. */
const STALE: readonly (readonly [string, () => string])[] = [
  ['the pid of a process that exited', () => `${deadPid()}\n`],
  ['an empty file', () => ''],
  ['garbage', () => 'not a pid\u0000\n'],
  ['the pid of a live process that is no weighter', () => `${process.pid}\n`],
];

beforeAll(() => {
  dir = makeTempDir('hw-lock-race');
});

afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  removeTempDir(dir);
});

describe(`${WORKERS} processes racing for the run lock`, () => {
  it(`never gives it to two at once in ${TRIALS} trials, each against a lock left behind`, async () => {
    const racers = Array.from({ length: WORKERS }, startWorker);
    const lockFile = lockPathFor(ENDPOINT, dir);
    const witness = join(dir, 'holder.witness');
    let overlaps = 0;
    let held = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const [, content] = STALE[trial % STALE.length] ?? ['', () => ''];
      writeFileSync(lockFile, content());
      const request: LockWorkerRequest = { kind: 'race', trial, dir, endpoint: ENDPOINT, witness, holdMs: 2 };
      const replies = racers.map(nextReply);
      for (const r of racers) r.send(request);
      for (const reply of await Promise.all(replies)) {
        expect(reply).toMatchObject({ kind: 'raced', trial });
        if (reply.kind === 'raced') {
          held++;
          if (reply.overlap) overlaps++;
        }
      }
    }
    expect(held).toBe(WORKERS * TRIALS);
    expect(overlaps).toBe(0);
  }, 600_000);

  it('takes at once a lock whose holder was killed with SIGKILL while holding it', async () => {
    const holder = startWorker();
    const holding = nextReply(holder);
    holder.send({ kind: 'hold', dir, endpoint: ENDPOINT } satisfies LockWorkerRequest);
    expect(await holding).toEqual({ kind: 'holding' });
    // While it lives, the lock is taken: a single attempt fails and names the holder.
    await expect(acquireRunLock([ENDPOINT], { dir, timeoutMs: 0 })).rejects.toThrow(`another haproxy-weighter (pid ${String(holder.pid)}) is writing to ${ENDPOINT}`);
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    holder.kill('SIGKILL');
    await exited;
    const lock = await acquireRunLock([ENDPOINT], { dir, timeoutMs: 0 });
    await lock.release();
  });
});
