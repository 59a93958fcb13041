/**
 * The configuration parsers over arbitrary input: a valid document gives a frozen config whose
 * names are all safe; anything else gives a ConfigError whose issue lines each stay on one line.
 * Nothing else may come out: the CLI maps ConfigError to exit 2 and the Lambda to a clear error.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { propertyRuns } from '../harness/property-runs.js';
import { stringify } from 'yaml';
import { parseConfig, parseConfigText, type Config } from '../../functions/core/config.js';
import { SAFE_NAME } from '../../functions/core/runtime-grammar.js';
import { ConfigError } from '../../functions/core/errors.js';

const RUNS = propertyRuns();

/** fast-check's JSON type: object members may be absent. */
type Json = fc.JsonValue;

const VALID: Json = {
  graphite: { url: 'https://graphite.example:8443/', auth: { type: 'header', header: 'Authorization', prefix: 'Bearer ', valueEnv: 'GRAPHITE_TOKEN' }, timeoutMs: 5000, retries: 2 },
  relay: {
    type: 'socket',
    loadBalancers: [
      { name: 'lb1', endpoint: '/run/haproxy/admin.sock' },
      { name: 'lb2', endpoint: '10.0.0.2:9999' },
    ],
    connectTimeoutMs: 1000,
  },
  backends: [
    { name: 'be_ingest', target: 'aliasByNode(ingest.*.points, 1)', from: '-5min', aggregation: 'average', weighting: { function: 'limited-proportions', limitingFactor: 4 }, quorum: 0.5 },
    { name: 'be.api', target: 'x.*', serverMap: { pattern: '^host-(\\d+)$', template: 'srv$1' }, weighting: { function: 'feedback', gain: 0.3 }, maxChangePerCycle: 20 },
  ],
  intervalSeconds: 30,
};

/** Runs fn; a ConfigError is an answer, anything else thrown fails the property. */
function outcome(fn: () => Config): Config | ConfigError {
  try {
    return fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

async function textOutcome(text: string): Promise<Config | ConfigError> {
  try {
    return await parseConfigText(text);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

function expectSound(result: Config | ConfigError): void {
  if (result instanceof ConfigError) {
    // eslint-disable-next-line no-control-regex
    for (const issue of result.issues) expect(issue).not.toMatch(/[\u0000-\u001f\u007f]/);
    return;
  }
  expect(isDeepFrozen(result)).toBe(true);
  for (const b of result.backends) expect(b.name).toMatch(SAFE_NAME);
  if (result.relay.type === 'socket') for (const lb of result.relay.loadBalancers) expect(lb.name).toMatch(SAFE_NAME);
}

/** Every path into the valid document, so that a mutation can land at any depth. */
function paths(node: Json, prefix: (string | number)[] = []): (string | number)[][] {
  if (node === null || typeof node !== 'object') return [prefix];
  const children: [string | number, Json | undefined][] = Array.isArray(node) ? node.map((v, i) => [i, v]) : Object.entries(node);
  return [prefix, ...children.flatMap(([k, v]) => (v === undefined ? [] : paths(v, [...prefix, k])))];
}
const PATHS = paths(VALID);

type Edit = { at: number; op: 'replace' | 'delete' | 'add'; key: string; value: Json };

function applyEdit(doc: Json, { at, op, key, value }: Edit): Json {
  const path = PATHS[at % PATHS.length] ?? [];
  if (path.length === 0) return op === 'replace' ? value : doc;
  let node: Json = doc;
  for (const k of path.slice(0, -1)) {
    const next: Json | undefined = Array.isArray(node) && typeof k === 'number' ? node[k] : node !== null && typeof node === 'object' && !Array.isArray(node) ? node[String(k)] : undefined;
    if (next === undefined) return doc;
    node = next;
  }
  const last = path[path.length - 1] ?? '';
  if (node === null || typeof node !== 'object') return doc;
  if (Array.isArray(node)) {
    const i = Number(last);
    if (op === 'delete') node.splice(i, 1);
    else if (op === 'replace') node[i] = value;
    else node.push(value);
  } else {
    const k = String(last);
    if (op === 'delete') delete node[k];
    else if (op === 'replace') node[k] = value;
    // An own property, as JSON.parse makes it: assigning `__proto__` would set the prototype.
    else Object.defineProperty(node, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return doc;
}

const edit: fc.Arbitrary<Edit> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('replace' as const, 'delete' as const, 'add' as const),
  key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'name', 'url', 'type', 'weighting')),
  value: fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom<Json>('a;shutdown sessions', '$(reboot)', '../x', 'x\ny', -1, 0, 1e308, '', [], {}, 'socket', 'ssm', 'feedback'),
  ),
});

/** The valid document after one to three random edits: mostly invalid, sometimes still valid. */
const mutatedDoc = fc.array(edit, { minLength: 1, maxLength: 3 }).map((edits) => edits.reduce<Json>((doc, e) => applyEdit(doc, e), structuredClone(VALID)));

/** YAML syntax pieces, anchors and aliases (which can build cycles) and tags included. */
const yamlToken = fc.constantFrom(
  'graphite', 'relay', 'backends', 'url', ':', ': ', '\n', '\n  ', '- ', '[', ']', '{', '}', ',', '"', "'", '#', '&a ', '*a', '&b ', '*b', '<<: ',
  '!!binary ', '!!set ', '!!str ', '!!int ', '!!map ', '!<tag:yaml.org,2002:js/undefined> ', '? ', '|', '>', '---', '...', '%YAML 1.1\n', 'null', '~',
  '1e400', '0x1F', '.nan', '.inf', 'true', 'on', '\t', '\u0000', 'é',
);
const yamlText = fc.string({ unit: yamlToken, maxLength: 40 });
const VALID_YAML = stringify(VALID);
const mutatedYaml = fc
  .array(fc.record({ at: fc.nat(), cut: fc.nat({ max: 15 }), insert: yamlText }), { minLength: 1, maxLength: 3 })
  .map((edits) => edits.reduce((text, { at, cut, insert }) => text.slice(0, at % (text.length + 1)) + insert + text.slice((at % (text.length + 1)) + cut), VALID_YAML));

const VALID_JSON = JSON.stringify(VALID, null, 1);
const jsonToken = fc.constantFrom('{', '}', '[', ']', ',', ':', '"', '\\', '"graphite": {}', '"url": 1', '"name": "x"', 'null', ' ', '\n', '1e999', '\u0000');
/** The valid JSON text after one to three random cuts and insertions: JSON, YAML or neither. */
const mutatedJson = fc
  .array(fc.record({ at: fc.nat(), cut: fc.nat({ max: 15 }), insert: fc.string({ unit: jsonToken, maxLength: 6 }) }), { minLength: 1, maxLength: 3 })
  .map((edits) => edits.reduce((text, { at, cut, insert }) => text.slice(0, at % (text.length + 1)) + insert + text.slice((at % (text.length + 1)) + cut), VALID_JSON));

describe('parseConfig over arbitrary JSON values', () => {
  it('accepts the reference document (the mutations start from a valid config)', () => {
    expectSound(parseConfig(structuredClone(VALID)));
  });

  it('answers arbitrary JSON values with a sound config or a ConfigError', () => {
    fc.assert(fc.property(fc.jsonValue(), (doc) => expectSound(outcome(() => parseConfig(doc)))), RUNS);
  });

  it('answers the valid document with random edits at any depth with a sound config or a ConfigError', () => {
    fc.assert(fc.property(mutatedDoc, (doc) => expectSound(outcome(() => parseConfig(doc)))), RUNS);
  });

  it('reaches both outcomes with the edited documents (the generator is not degenerate)', () => {
    const accepted = fc.sample(mutatedDoc, { numRuns: 2_000, seed: 11 }).map((doc) => {
      try {
        parseConfig(doc);
        return true;
      } catch {
        return false;
      }
    });
    expect(accepted).toContain(true);
    expect(accepted).toContain(false);
  });
});

describe('parseConfigText over arbitrary strings', () => {
  // The yaml library reports unresolved tags and collection keys through process.emitWarning:
  // thousands of them would bury the test output.
  beforeAll(() => {
    vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('answers arbitrary strings with a sound config or a ConfigError', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), yamlText), async (text) => expectSound(await textOutcome(text))), RUNS);
  });

  it('answers the valid JSON with random edits with a sound config or a ConfigError', async () => {
    await fc.assert(fc.asyncProperty(mutatedJson, async (text) => expectSound(await textOutcome(text))), RUNS);
  });

  it('answers the valid YAML with random edits with a sound config or a ConfigError', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedYaml, async (text) => expectSound(await textOutcome(text))),
      // A YAML alias that refers to its own anchor builds a cyclic document: a known hard case.
      { ...RUNS, examples: [['graphite: &a [*a]'], ['&a {graphite: *a}']] },
    );
  });
});
