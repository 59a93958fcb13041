/**
 * How many cases each property test tries. Every test run (CI included) uses a modest count, so
 * the unit tests stay fast and a slow machine never times them out; `npm run test:deep` sets
 * PROPERTY_RUNS for a long search (10,000 cases per property), to run by hand or nightly.
 */
export const DEFAULT_PROPERTY_RUNS = 300;

export function propertyRuns(env: Readonly<Record<string, string | undefined>> = process.env): { readonly numRuns: number } {
  const raw = env.PROPERTY_RUNS;
  if (raw === undefined || raw === '') return { numRuns: DEFAULT_PROPERTY_RUNS };
  const runs = Number(raw);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`PROPERTY_RUNS must be a positive integer (got ${JSON.stringify(raw)})`);
  return { numRuns: runs };
}
