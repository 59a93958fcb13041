/**
 * Hostile text end to end, through the real CLI process, a real HAProxy behind the recording
 * socket proxy and the real Graphite behind the fault proxy: series names, a Graphite error body,
 * a runtime API reply (as a compromised or fake socket would send it) and configuration keys full
 * of bidi, zero-width and control characters. No output (human report, JSON report, stderr)
 * shows one of them raw; each is shown as its visible escape, and a newline inside a message
 * never makes a line of its own.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NAMES_SHOWN } from '../../functions/cli/format.js';
import { HOSTILE_CHARACTERS, rawHostileCharacters, rewriteSeries, runCli, runMain, singleReport, writeConfigFile } from '../harness/faults.js';
import { INGEST_BACKEND as BACKEND, startRecordedIngest, type RecordedIngest } from '../harness/recorded-ingest.js';

/** One series name per hostile character: `evil<char>name`. */
const hostileName = (raw: string): string => `evil${raw}name`;

let rig: RecordedIngest;

beforeAll(async () => {
  rig = await startRecordedIngest('hostile_text');
});

afterAll(async () => {
  await rig.close();
});

afterEach(async () => {
  await rig.reset();
});

const config = (extra: Record<string, unknown> = {}): string => rig.config({ extra });

/** Each stream of a run, checked: no hostile character raw, the human one may break lines. */
function expectClean(run: { stdout: string; stderr: string }, json: boolean): void {
  expect({ stdout: rawHostileCharacters(run.stdout.replace(/\n$/, ''), { lines: !json }), stderr: rawHostileCharacters(run.stderr, { lines: true }) }).toEqual({ stdout: [], stderr: [] });
}

describe('hostile series names from Graphite', () => {
  const withHostileSeries = (body: string): string =>
    rewriteSeries(body, (series) => [...series, ...HOSTILE_CHARACTERS.map(([, raw]) => ({ target: hostileName(raw), datapoints: [[1, 1_700_000_000]] }))]);

  it('are listed escaped in the JSON report, which holds none of their characters raw', async () => {
    await rig.graphiteProxy.setFault({ kind: 'rewrite', rewrite: withHostileSeries });
    const run = await runCli(['plan', '--json', '--config', config()]);
    expect(run.code).toBe(0);
    expectClean(run, true);
    const unmapped = singleReport(run.stdout).backends[0]?.graphite.unmapped ?? [];
    expect(unmapped).toEqual(HOSTILE_CHARACTERS.map(([, , escaped]) => hostileName(escaped)));
  });

  it('are listed escaped in the human report, on the one line that names the first of them and counts the rest', async () => {
    await rig.graphiteProxy.setFault({ kind: 'rewrite', rewrite: withHostileSeries });
    const run = await runCli(['plan', '--config', config()]);
    expect(run.code).toBe(0);
    expectClean(run, false);
    const listed = run.stdout.split('\n').filter((l) => l.includes('evil'));
    expect(listed).toHaveLength(1);
    // More hostile names than the human view names on a line: the JSON report above holds them all.
    expect(HOSTILE_CHARACTERS.length).toBeGreaterThan(NAMES_SHOWN);
    for (const [, , escaped] of HOSTILE_CHARACTERS.slice(0, NAMES_SHOWN)) expect(listed[0]).toContain(hostileName(escaped));
    expect(listed[0]).toMatch(new RegExp(` and ${HOSTILE_CHARACTERS.length - NAMES_SHOWN} more \\(${HOSTILE_CHARACTERS.length} in all; --json lists every one\\)$`));
  });
});

describe('a Graphite error whose body is hostile text', () => {
  const body = `upstream broke\n  problem: none, all good\r${HOSTILE_CHARACTERS.map(([, raw]) => raw).join('')}`;

  it.each([
    ['the human report', false],
    ['the JSON report', true],
  ])('is quoted escaped in %s, and its newline makes no line of its own', async (_what, json) => {
    await rig.graphiteProxy.setFault({ kind: 'body', body, contentType: 'application/json' });
    const run = await runCli(['apply', ...(json ? ['--json'] : []), '--config', config()]);
    expect(run.code).toBe(1);
    expectClean(run, json);
    if (json) {
      expect(run.stdout.trimEnd().split('\n')).toHaveLength(1);
      const report = singleReport(run.stdout);
      expect(report.backends[0]?.graphite.error).toContain('did not answer JSON');
    } else {
      const problems = run.stdout.split('\n').filter((l) => l.includes('problem:'));
      expect(problems).toHaveLength(1);
      expect(run.stdout).not.toContain('\n  problem: none, all good');
    }
  });
});

describe('a runtime API reply that names a server with hostile characters', () => {
  // A newline would end the reply's line: that is a framing error, not a name. A lone surrogate
  // cannot travel as UTF-8 bytes (it arrives as U+FFFD, a visible character).
  const inName = HOSTILE_CHARACTERS.filter(([, raw]) => raw !== '\n' && raw !== '\ud800');
  const evil = `s2${inName.map(([, raw]) => raw).join('')}x`;
  const evilShown = `s2${inName.map(([, , escaped]) => escaped).join('')}x`;
  // Both outputs of the observation name the same hostile server, as a fake socket would.
  const rename = (reply: string): string => reply.replaceAll(`${BACKEND},s2,`, `${BACKEND},${evil},`).replaceAll(` ${BACKEND} 2 s2 `, ` ${BACKEND} 2 ${evil} `);

  it.each([
    ['the human report', false],
    ['the JSON report', true],
  ])('is named escaped in %s', async (_what, json) => {
    rig.socketProxy.setFault((request) => (request.includes('show stat') ? { kind: 'rewrite-reply', rewrite: rename } : { kind: 'pass' }));
    const run = await runCli(['plan', ...(json ? ['--json'] : []), '--config', config()]);
    expectClean(run, json);
    expect(rig.socketProxy.connections.some((c) => c.fault === 'rewrite-reply')).toBe(true);
    const shown = json ? JSON.stringify(singleReport(run.stdout)) : run.stdout;
    // Long names are shortened in messages: the start is enough to recognise it.
    const start = evilShown.slice(0, 40);
    expect(shown).toContain(json ? JSON.stringify(start).slice(1, -1) : start);
  });
});

describe('hostile text in the configuration', () => {
  it('names an unknown key escaped on stderr', async () => {
    const key = `graphite${HOSTILE_CHARACTERS.map(([, raw]) => raw).join('')}`;
    const run = await runMain(['plan', '--config', config({ [key]: 1 })]);
    expect(run.code).toBe(2);
    expectClean(run, false);
    expect(run.stderr).toContain('unknown key(s)');
  });

  it('refuses a socket path with bidi or invisible characters, and names it escaped', async () => {
    const file = writeConfigFile(rig.dir, {
      graphite: { url: rig.graphiteProxy.url },
      relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: `/run/haproxy/admin\u202egnp.sock` }] },
      backends: [{ name: BACKEND, target: 'x.*', weighting: { function: 'limited-proportions' } }],
    }, 'socket-path.yaml');
    const run = await runMain(['plan', '--config', file]);
    expect(run.code).toBe(2);
    expectClean(run, false);
    expect(run.stderr).toContain('relay.loadBalancers.0.endpoint: must be an absolute Unix socket path or host:port');
    expect(run.stderr).toContain('admin\\u{202E}gnp.sock');
  });
});
