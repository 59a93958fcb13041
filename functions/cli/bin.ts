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
process.exitCode = code;
// Signal listeners would keep nothing alive, but an idle keep-alive socket of undici could.
setTimeout(() => process.exit(code), 50).unref();
