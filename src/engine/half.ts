// Half-precision bit conversions (IEEE binary16 and bfloat16 <-> float32), exact and shared by the
// safetensors reader/writer and the quantized weight formats.

let F16_TABLE: Uint32Array | null = null;

/** float32 bit pattern of a half-precision bit pattern (exact, as PyTorch widens: NaNs come back quiet). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) {
    // inf, or NaN with its payload kept and the quiet bit set (as PyTorch's F16C widening does)
    return (sign | (mant ? 0x7fc00000 : 0x7f800000) | (mant << 13)) >>> 0;
  }
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // subnormal: normalise
    let e = -1;
    do { e++; mant <<= 1; } while ((mant & 0x400) === 0);
    mant &= 0x3ff;
    return (sign | ((127 - 15 - e) << 23) | (mant << 13)) >>> 0;
  }
  return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
}

export function f16Table(): Uint32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToF32Bits(h);
  }
  return F16_TABLE;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** half bit pattern → number */
export function f16ToNumber(h: number): number { u32Scratch[0] = f16BitsToF32Bits(h); return f32Scratch[0]; }
/** bf16 bit pattern → number */
export function bf16ToNumber(h: number): number { u32Scratch[0] = (h & 0xffff) << 16; return f32Scratch[0]; }

/** float32 bits → half bits, round to nearest even; NaN → 0x7E00 (sign kept) as c10 does. */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // < 2^-25 (or == 2^-25 → ties to even 0): ±0
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let hm = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (hm & 1))) hm++;
    return sign | hm; // a carry into bit 10 yields the smallest normal, correctly
  }
  let hm = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (hm & 1))) hm++;
  return sign | ((e << 10) + hm); // carry may roll into the exponent (→ inf at the top), correctly
}

/**
 * float32 bits → bfloat16 bits, round to nearest even; NaN → 0x7FC0 as c10's scalar BFloat16 does
 * (torch 1.13's AVX-512 tensor path writes 0xFFFF instead; both read back as NaN).
 */
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  const bias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits >>> 0) + bias) >>> 16 & 0xffff;
}
