/**
 * The emulated instances' SSM Agents, in a small process of their own: the local SSM endpoint asks
 * it to run each document step, and it runs the step as its child and answers with what the step
 * printed. Forking a shell from this small process is cheap, and it never blocks the endpoint's
 * event loop (where the relay under test may run too), as real agents on their own instances
 * never would.
 *
 * In: { id, script, cwd, env, timeoutMs }. Out: { id, code, stdout, stderr, timedOut }.
 */
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { clearTimeout, setTimeout } from 'node:timers';

const running = new Map();

process.on('message', (run) => {
  const child = spawn('sh', ['-c', run.script], { cwd: run.cwd, env: run.env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(run.id, child);
  const out = [];
  const err = [];
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, run.timeoutMs);
  child.stdout.on('data', (chunk) => out.push(chunk));
  child.stderr.on('data', (chunk) => err.push(chunk));
  child.on('error', (error) => err.push(Buffer.from(`${error.message}\n`)));
  child.on('close', (code) => {
    clearTimeout(killer);
    running.delete(run.id);
    process.send?.({ id: run.id, code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
  });
});

// The endpoint closed (or died): no step outlives it.
process.on('disconnect', () => {
  for (const child of running.values()) child.kill('SIGKILL');
  process.exit(0);
});
