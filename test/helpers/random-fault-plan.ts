import type { ConnectionFaults, FaultPlan } from './cutting-proxy.js';

/** Options of `randomPlan`. */
export interface RandomPlanOptions {
  /** The same seed gives the same faults for the same connection numbers. */
  readonly seed: number;
  /** Chance (0..1) that a connection is cut, up or down with equal chance. */
  readonly cutProbability: number;
  /** Fault positions are drawn uniformly from 0 .. maxPosition - 1. */
  readonly maxPosition: number;
  /**
   * Connections given any fault (cut or flip) before every later one passes untouched (default 5), so that
   * a client that retries on new connections always gets through in the end.
   */
  readonly maxCuts?: number;
  /** Chance (0..1) that a connection also gets one byte flipped, up or down (default 0). */
  readonly flipProbability?: number;
}

const DEFAULT_MAX_CUTS = 5;

/** mulberry32: a small, fast 32-bit PRNG, plenty for choosing test faults. Yields [0, 1). */
function mulberry32(state: number): () => number {
  let a = state | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes the seed and a connection number into one PRNG state (murmur3's finalizer), so neighbours differ. */
function mix(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

function drawFaults(options: RandomPlanOptions, index: number): ConnectionFaults {
  const random = mulberry32(mix(options.seed, index));
  const position = () => Math.floor(random() * options.maxPosition);
  const faults: { -readonly [K in keyof ConnectionFaults]: ConnectionFaults[K] } = {};
  // Every draw is made whether or not it is used, so that changing one probability leaves the others' picks.
  const cut = random() < options.cutProbability;
  const cutUp = random() < 0.5;
  const cutAt = position();
  const flip = random() < (options.flipProbability ?? 0);
  const flipUp = random() < 0.5;
  const flipAt = position();
  if (cut) faults[cutUp ? 'cutUpAt' : 'cutDownAt'] = cutAt;
  if (flip) faults[flipUp ? 'flipUpAt' : 'flipDownAt'] = flipAt;
  return faults;
}

/**
 * A reproducible plan for `startCuttingProxy`: each connection draws its own faults from a PRNG seeded by
 * `seed` and its number, until `maxCuts` connections have had a fault; later ones pass untouched. Several
 * cuts in one transfer thus come from several connections, each cut once. `plan(i)` depends only on the
 * options and `i`, not on the order in which connections are asked about.
 */
export function randomPlan(options: RandomPlanOptions): FaultPlan {
  const { cutProbability, maxPosition } = options;
  const maxCuts = options.maxCuts ?? DEFAULT_MAX_CUTS;
  const flipProbability = options.flipProbability ?? 0;
  for (const [name, p] of [
    ['cutProbability', cutProbability],
    ['flipProbability', flipProbability],
  ] as const) {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`randomPlan: ${name} must be in 0..1, got ${p}`);
  }
  if (!(Number.isInteger(maxPosition) && maxPosition > 0))
    throw new RangeError(`randomPlan: maxPosition must be a whole number > 0, got ${maxPosition}`);
  if (!(Number.isInteger(maxCuts) && maxCuts >= 0))
    throw new RangeError(`randomPlan: maxCuts must be a whole number >= 0, got ${maxCuts}`);

  // The plan of connections 0..n-1, drawn in order (the cap depends on the connections before).
  const drawn: ConnectionFaults[] = [];
  let faulty = 0;
  return function plannedFaults(index: number): ConnectionFaults {
    while (drawn.length <= index) {
      const faults = faulty < maxCuts ? drawFaults(options, drawn.length) : {};
      if (Object.keys(faults).length > 0) faulty++;
      drawn.push(faults);
    }
    return drawn[index]!;
  };
}
