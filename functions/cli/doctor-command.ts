import { createGraphiteSource, type GraphiteSource } from '../adapters/graphite.js';
import { createSocketRelay } from '../adapters/socket-relay.js';
import { displaySafeDeep } from '../core/display.js';
import { doctorExitCode, runDoctor, type Unavailable } from '../core/doctor.js';
import { ConfigError, describeError } from '../core/errors.js';
import type { RuntimeRelay } from '../core/types.js';
import { VERSION } from '../version.js';
import { loadConfig } from './cycle-command.js';
import { formatDoctorReport } from './doctor-format.js';
import type { CliIo, Parsed } from './main.js';

/**
 * `haproxy-weighter doctor` once the arguments are read (main.ts). A Graphite client or a relay
 * that cannot even be built (a secret missing from the environment) is a failed check, not a usage
 * error, so every other check still runs. Nothing is written, so no lock is taken.
 */
export async function runDoctorCommand(cli: Parsed, io: CliIo): Promise<number> {
  let config;
  try {
    config = await loadConfig(cli.configPath);
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return 2;
  }
  let metrics: GraphiteSource | Unavailable;
  try {
    metrics = createGraphiteSource(config.graphite, { env: io.env });
  } catch (error) {
    metrics = { error };
  }
  let relay: RuntimeRelay | Unavailable;
  try {
    relay = createSocketRelay(config.relay);
  } catch (error) {
    relay = { error };
  }
  try {
    const report = displaySafeDeep(await runDoctor({ config, metrics, relay, now: io.now, version: VERSION }, cli.backends === undefined ? {} : { backends: cli.backends }));
    io.stdout(cli.json ? JSON.stringify(report) : formatDoctorReport(report));
    return doctorExitCode(report);
  } catch (error) {
    // Only a bad request (an unknown --backend) can escape the doctor.
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return error instanceof ConfigError ? 2 : 1;
  } finally {
    // The Graphite client's connections are the only thing left open.
    if ('close' in metrics) await metrics.close();
  }
}
