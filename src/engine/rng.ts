// Randomness. Two pieces:
//  - `hashUniform(seed, i)`: a counter-based uniform in [0,1) used by dropout masks. The same
//    bit-exact formula lives in native/kernels.c, so masks match across backends and the
//    backward pass regenerates the forward mask instead of storing it.
//  - `Rng`: a small seedable generator (xoshiro128**) whose whole state can be saved and
//    restored, for reproducible init, sampling and resumable training.

/** murmur3 finaliser: a good 32-bit mixer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** uniform(seed, i) = (fmix32(fmix32(i*0x9E3779B9 ^ seed) + seed) >>> 8) / 2^24 (uint32 math). */
export function hashUniform(seed: number, i: number): number {
  const h1 = fmix32((Math.imul(i >>> 0, 0x9e3779b9) ^ seed) >>> 0);
  const h2 = fmix32((h1 + (seed >>> 0)) >>> 0);
  return (h2 >>> 8) * (1 / 16777216);
}

export class Rng {
  private s: Uint32Array;
  constructor(seed = 0) {
    this.s = new Uint32Array(4);
    this.seed(seed);
  }
  seed(seed: number): void {
    // splitmix32 expands one seed into the four state words
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      this.s[i] = fmix32(x) || 1;
    }
  }
  /** Uniform uint32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
  /** Uniform in [0,1) with 32 random bits. */
  next(): number { return this.nextU32() / 4294967296; }
  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = this.next();
    if (u < 1e-12) u = 1e-12;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  /** Integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) { const j = this.int(i + 1); const t = a[i]; a[i] = a[j]; a[j] = t; }
    return a;
  }
  getState(): number[] { return Array.from(this.s); }
  setState(st: number[]): void {
    if (st.length !== 4) throw new Error(`Rng.setState: expected 4 words, got ${st.length}`);
    for (let i = 0; i < 4; i++) this.s[i] = st[i] >>> 0;
  }
}

function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }
