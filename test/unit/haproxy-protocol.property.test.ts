import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../harness/property-runs.js';
import { SAFE_NAME, SAFE_SERVER_NAME } from '../../functions/core/runtime-grammar.js';
import { HaproxyError, UnsafeInputError } from '../../functions/core/errors.js';
import {
  classifyReplyError,
  encodeBatch,
  getWeightCommand,
  observeCommands,
  parseCommand,
  parseGetWeight,
  parseObservedBackend,
  parseSetWeightReply,
  restoreWeightCommand,
  setWeightCommand,
  splitReplies,
} from '../../functions/core/haproxy-protocol.js';

const RUNS = propertyRuns();

function fixture(name: string): { commands: string[]; reply: string } {
  const dir = new URL('../fixtures/haproxy/', import.meta.url);
  const request = readFileSync(new URL(`${name}.request.txt`, dir), 'utf8');
  return { commands: request.replace(/\n$/, '').split('; '), reply: readFileSync(new URL(`${name}.reply.txt`, dir), 'utf8') };
}

const ingest = fixture('observe-ingest');
const [ingestStat = '', ingestState = ''] = splitReplies(ingest.commands, ingest.reply);
const REPLIES = ['observe-ingest', 'set-weight-errors', 'glued-errors-middle', 'glued-error-end', 'set-weight-batch'].map(fixture);
const BLOCKS = REPLIES.flatMap(({ commands, reply }) => splitReplies(commands, reply));

/** Characters that steer the parsers into their branches: separators, digits, quotes, headers. */
const token = fc.constantFrom('\n', '\n\n', ',', ' ', '# ', '"', '""', '0', '1', '2', '5', '6', '9', '256', '257', '-', ';', 'a', '(initial ', ')', 'UP', 'MAINT', 'ingest', 'ing-b', 'BACKEND', '\u0000', 'é', '𝕏');
const tokenText = fc.string({ unit: token, maxLength: 40 });

/** A recorded text with a few random cuts and insertions: close to valid, so it reaches deep. */
function mutated(bases: readonly string[]): fc.Arbitrary<string> {
  return fc
    .record({
      base: fc.constantFrom(...bases),
      edits: fc.array(fc.record({ at: fc.nat(), cut: fc.nat({ max: 30 }), insert: tokenText }), { minLength: 1, maxLength: 4 }),
    })
    .map(({ base, edits }) =>
      edits.reduce((text, { at, cut, insert }) => {
        const i = text.length === 0 ? 0 : at % (text.length + 1);
        return text.slice(0, i) + insert + text.slice(i + cut);
      }, base),
    );
}

const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), tokenText, mutated([...BLOCKS, ingestStat, ingestState]));

/** Runs fn; a HaproxyError is an answer, anything else thrown fails the property. */
function haproxyOutcome<T>(fn: () => T): T | HaproxyError {
  try {
    return fn();
  } catch (error) {
    if (error instanceof HaproxyError) return error;
    throw error;
  }
}

const isWeight = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 256;

describe('parsers are total over arbitrary text', () => {
  it('parseObservedBackend returns sound servers or throws a HaproxyError', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant('ingest'), fc.stringMatching(SAFE_NAME)),
        fc.oneof(anyText, mutated([ingestStat]), fc.constant(ingestStat)),
        fc.oneof(anyText, mutated([ingestState]), fc.constant(ingestState)),
        (backend, stat, state) => {
          const result = haproxyOutcome(() => parseObservedBackend(backend, stat, state, { loadBalancer: 'lb-1' }));
          if (result instanceof HaproxyError) return;
          expect(result.backend).toBe(backend);
          for (const server of result.servers) {
            // Any name may be read; only a name we can address comes without a reason to leave it alone.
            expect(server.unaddressable === undefined).toBe(SAFE_SERVER_NAME.test(server.name));
            expect(isWeight(server.weight)).toBe(true);
            expect(isWeight(server.initialWeight)).toBe(true);
            expect(Number.isSafeInteger(server.sessions) && server.sessions >= 0).toBe(true);
            expect(['ready', 'maint', 'drain']).toContain(server.admin);
          }
        },
      ),
      RUNS,
    );
  });

  it('parseObservedBackend still reads most single edits of the recorded reply or names the problem', () => {
    // Guards the mutation arbitrary itself: it must reach both outcomes, or the test above proves little.
    const outcomes = fc.sample(mutated([ingestStat]), { numRuns: 500, seed: 42 }).map((stat) => haproxyOutcome(() => parseObservedBackend('ingest', stat, ingestState)));
    expect(outcomes.some((o) => o instanceof HaproxyError)).toBe(true);
    expect(outcomes.some((o) => !(o instanceof HaproxyError))).toBe(true);
  });

  it('parseGetWeight returns integer weights from 0 to 256 or throws a HaproxyError', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, fc.tuple(fc.integer({ min: -5, max: 400 }), fc.integer({ min: -5, max: 400 })).map(([c, i]) => `${c} (initial ${i})\n`)), (block) => {
        const result = haproxyOutcome(() => parseGetWeight(block, { backend: 'rr', server: 'rr-a' }));
        if (result instanceof HaproxyError) return;
        expect(isWeight(result.current) && isWeight(result.initial)).toBe(true);
      }),
      RUNS,
    );
  });

  it('parseSetWeightReply never throws and succeeds only on an empty block', () => {
    fc.assert(
      fc.property(anyText, (block) => {
        const result = parseSetWeightReply(block, { backend: 'rr', server: 'rr-a', loadBalancer: 'lb-1' });
        if (block === '') expect(result).toBeNull();
        else {
          expect(result).toBeInstanceOf(HaproxyError);
          expect(result?.context).toMatchObject({ backend: 'rr', server: 'rr-a', loadBalancer: 'lb-1' });
        }
      }),
      RUNS,
    );
  });

  it('classifyReplyError never throws and returns null or a HaproxyError', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const result = classifyReplyError(text, { backend: 'rr' });
        expect(result === null || result instanceof HaproxyError).toBe(true);
      }),
      RUNS,
    );
  });

  it('splitReplies returns one block per command or throws a HaproxyError', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 30 }), { maxLength: 8 }), fc.oneof(anyText, mutated(REPLIES.map((r) => r.reply))), (commands, reply) => {
        const result = haproxyOutcome(() => splitReplies(commands, reply));
        if (result instanceof HaproxyError) return;
        expect(result).toHaveLength(commands.length);
      }),
      RUNS,
    );
  });
});

/** Block contents as HAProxy prints them: empty, a glued error, or lines that are never empty. */
const replyBlock = fc.oneof(
  fc.constant(''),
  fc.constantFrom('Empty weight string empty or preceded by garbage\n', 'Trailing garbage in weight string\n'),
  fc
    .array(fc.string({ unit: fc.constantFrom('a', 'Z', '0', ' ', ',', '#', '(', ')', '.', ';', '"'), minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 5 })
    .filter((lines) => !/^(Empty weight string|Trailing garbage)/.test(lines[0] ?? ''))
    .map((lines) => `${lines.join('\n')}\n`),
);

function serialise(blocks: readonly string[]): string {
  return blocks.map((b) => (/^(Empty weight string|Trailing garbage)/.test(b) ? b : `${b}\n`)).join('');
}

describe('splitReplies inverts how HAProxy writes a batch reply', () => {
  it('gives back exactly the blocks that were written, glued errors included', () => {
    fc.assert(
      fc.property(fc.array(replyBlock, { maxLength: 12 }), (blocks) => {
        const commands = blocks.map((_, i) => `get weight be/s${i}`);
        expect(splitReplies(commands, serialise(blocks))).toEqual(blocks);
      }),
      RUNS,
    );
  });
});

// The grammar written out again, independently of the module, for the round trips.
/**
 * The command grammar as documented, spelled here independently of the code: names of 1-1024
 * characters of A-Z a-z 0-9 _ . : -, a backend's not starting with -, and weights from 0 to 256
 * written without leading zeros (0 only ever goes out to put back an operator's weight 0).
 */
const DOC_BACKEND = '([A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,1023})';
const DOC_SERVER = '([A-Za-z0-9_.:-]{1,1024})';
const SET = new RegExp(`^set server ${DOC_BACKEND}/${DOC_SERVER} weight (\\d+)$`);
const GET = new RegExp(`^get weight ${DOC_BACKEND}/${DOC_SERVER}$`);
const STAT = new RegExp(`^show stat ${DOC_BACKEND} 6 -1$`);
const STATE = new RegExp(`^show servers state ${DOC_BACKEND}$`);
const isDocumentedWeight = (text: string): boolean => /^(0|[1-9][0-9]{0,2})$/.test(text) && Number(text) <= 256;

const name = fc.stringMatching(SAFE_NAME);
const serverName = fc.stringMatching(SAFE_SERVER_NAME);
const weight = fc.integer({ min: 1, max: 256 });

describe('commands built from valid input always reach the wire intact', () => {
  it('a set-weight command is accepted by encodeBatch and parses back to its backend, server and weight', () => {
    fc.assert(
      fc.property(name, serverName, weight, (backend, server, w) => {
        const command = setWeightCommand(backend, server, w);
        const line = encodeBatch([command]);
        expect(line.endsWith('\n')).toBe(true);
        const m = SET.exec(line.slice(0, -1));
        expect([m?.[1], m?.[2], Number(m?.[3])]).toEqual([backend, server, w]);
        expect(parseCommand(command)).toEqual({ kind: 'set-weight', backend, server, weight: w });
      }),
      RUNS,
    );
  });

  it('a batch of get-weight and observe commands splits back into the same commands', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(name, serverName), { minLength: 1, maxLength: 5 }), (pairs) => {
        const commands = pairs.flatMap(([backend, server]) => [getWeightCommand(backend, server), ...observeCommands(backend)]);
        const line = encodeBatch(commands);
        const parts = line.slice(0, -1).split('; ');
        expect(parts).toEqual(commands);
        pairs.forEach(([backend, server], i) => {
          expect(GET.exec(parts[3 * i] ?? '')?.slice(1)).toEqual([backend, server]);
          expect(STAT.exec(parts[3 * i + 1] ?? '')?.[1]).toBe(backend);
          expect(STATE.exec(parts[3 * i + 2] ?? '')?.[1]).toBe(backend);
        });
      }),
      RUNS,
    );
  });

  it('encodeBatch accepts exactly the grammar: every command in it, nothing outside it', () => {
    const validCommand = fc.oneof(
      fc.tuple(name, serverName, weight).map(([b, s, w]) => setWeightCommand(b, s, w)),
      fc.tuple(name, serverName, fc.integer({ min: 0, max: 256 })).map(([b, s, w]) => restoreWeightCommand(b, s, w)),
      fc.tuple(name, serverName).map(([b, s]) => getWeightCommand(b, s)),
      name.map((b) => observeCommands(b)[0] ?? ''),
    );
    fc.assert(
      fc.property(fc.oneof(anyText, mutated(['set server ingest/ing-a weight 100', 'get weight ingest/ing-a', 'show stat ingest 6 -1', 'show servers state ingest']), validCommand), (command) => {
        let accepted: boolean;
        try {
          encodeBatch([command]);
          accepted = true;
        } catch (error) {
          expect(error).toBeInstanceOf(UnsafeInputError);
          accepted = false;
        }
        const set = SET.exec(command);
        const inGrammar = (set !== null && isDocumentedWeight(set[3] ?? '')) || GET.test(command) || STAT.test(command) || STATE.test(command);
        expect(accepted).toBe(inGrammar);
      }),
      {
        ...RUNS,
        // Past counterexamples of a model that disagreed with the grammar, kept in every run.
        examples: [
          ['set server ingest/ing-a weight 0'],
          ['set server ingest/ing-a weight 00'],
          ['set server ingest/ing-a weight 257'],
          ['get weight -ngest/ing-a'],
          ['show stat -1 6 -1'],
        ],
      },
    );
  });
});
