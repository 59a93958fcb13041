/**
 * Seeded random numbers for the convergence lab. Math.random cannot be seeded, and the contest
 * needs every policy to see bit-identical traffic for a given seed, so we carry our own generator.
 */

/** A stream of uniform numbers in [0, 1). */
export type Uniform = () => number;

/** Mixes a 32-bit value (splitmix32 finaliser): turns small, similar seeds into unrelated states. */
function mix32(value: number): number {
  let z = (value + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** FNV-1a of a label, so that streams can be named instead of numbered. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * sfc32 (Chris Doty-Humphrey's small fast counter): 128 bits of state, passes PractRand far
 * beyond the few million draws one lab run makes. One independent stream per (seed, label), so
 * e.g. the metric noise never shifts the traffic when a policy changes.
 */
export function uniform(seed: number, label: string): Uniform {
  let a = mix32(seed);
  let b = mix32(a ^ hashLabel(label));
  let c = mix32(b + 0x6a09e667);
  let d = 1;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // The first outputs of a freshly seeded sfc32 are still correlated with the seed.
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** Exponential with the given mean (inverse CDF; 1 - u keeps log away from 0). */
export function exponential(u: Uniform, mean: number): number {
  return -mean * Math.log(1 - u());
}

/**
 * Bounded (truncated) Pareto on [min, max] with shape alpha, by inverse CDF:
 * F(x) = (1 - (min/x)^α) / (1 - (min/max)^α).
 * With α = 1 every decade of rates carries the same share of the total load: the "few heavy
 * connections" of the seed write-up.
 */
export function boundedPareto(u: Uniform, min: number, max: number, alpha: number): number {
  const tail = 1 - Math.pow(min / max, alpha);
  return min / Math.pow(1 - u() * tail, 1 / alpha);
}

/** Mean of the bounded Pareto above (closed form; α = 1 is the logarithmic special case). */
export function boundedParetoMean(min: number, max: number, alpha: number): number {
  const ratio = Math.pow(min / max, alpha);
  if (Math.abs(alpha - 1) < 1e-12) return ((min * max) / (max - min)) * Math.log(max / min);
  return ((Math.pow(min, alpha) / (1 - ratio)) * (alpha / (alpha - 1))) * (Math.pow(min, 1 - alpha) - Math.pow(max, 1 - alpha));
}

/** Standard normal by Box-Muller (one of the pair is dropped: simplicity over speed here). */
export function normal(u: Uniform): number {
  const r = Math.sqrt(-2 * Math.log(1 - u()));
  return r * Math.cos(2 * Math.PI * u());
}

/**
 * Lognormal with the given mean and shape sigma (the standard deviation of the log), capped at
 * `max`: exp(mu + sigma · z) with mu = ln(mean) - sigma² / 2. Heavy-tailed like the bounded Pareto
 * but with a different shape: most connections near the median, a few far above it.
 */
export function lognormal(u: Uniform, mean: number, sigma: number, max: number): number {
  const mu = Math.log(mean) - (sigma * sigma) / 2;
  return Math.min(max, Math.exp(mu + sigma * normal(u)));
}
