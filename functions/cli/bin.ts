import { main } from './main.js';

// The only place the CLI touches the process: argv, stdio, environment, clock, signals, exit code.

const stopSignal = new Promise<string>((resolve) => {
  const onSignal = (signal: string): void => {
    // A second signal while the cycle finishes means the operator wants out now.
    process.once(signal, () => process.exit(130));
    resolve(signal);
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
});

const code = await main(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
  now: () => Date.now(),
  stopSignal,
});
// main has closed what it opened (the Graphite client's connections, the sockets, the lock), so
// the process ends on its own once stdout is flushed.
process.exitCode = code;
