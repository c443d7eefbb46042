/* Inference matmuls over read-only weights in f32 / bf16 / q8_0 / q4_0 (spec: qmatmulRef in
 * src/engine/quant.ts). Each family has a portable scalar kernel and SIMD kernels compiled with
 * target attributes (the addon itself is built for plain x86-64); icld_kernels_select() picks one
 * per family from the CPU features (cpu.c) once at start-up and when the kernel-path cap changes.
 * Decode is memory-bound: kernels stream each weight row once per call and reuse it for all M
 * activation rows (tiles of up to 4 rows), so batched decoding reads the weights once. */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ICLD_X86_SIMD 1
#endif

static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0);
  else if (exp == 0) {
    if (!mant) bits = sign;
    else { int e = -1; do { e++; mant <<= 1; } while (!(mant & 0x400)); mant &= 0x3ff; bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13); }
  } else bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  float f; memcpy(&f, &bits, 4); return f;
}
static inline float bf16_to_f32(uint16_t h) { uint32_t b = (uint32_t)h << 16; float f; memcpy(&f, &b, 4); return f; }
static inline uint16_t f32_to_bf16(float x) {
  uint32_t b; memcpy(&b, &x, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1)) >> 16);
}

size_t icld_qact_bytes(int format, int64_t M, int64_t K) {
  switch (format) {
    case ICLD_F32: return (size_t)(M * K) * 4;
    case ICLD_BF16: return (size_t)(M * K) * 2;
    default: return (size_t)M * (size_t)(K + 4 * (K / ICLD_QK));
  }
}

typedef void (*range_fn)(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                         const float *bias, int accumulate, int64_t n0, int64_t n1);
typedef void (*act8_fn)(int64_t K, const float *x, int8_t *q, float *d);
typedef void (*actbf_fn)(int64_t K, const float *x, uint16_t *o);

static inline void put(float *out, int64_t ldo, int64_t m, int64_t n, float s, const float *bias, int accumulate) {
  if (bias) s += bias[n];
  float *o = out + m * ldo + n;
  *o = accumulate ? *o + s : s;
}

/* ------------------------------------------------------------------ scalar (portable) */
static void act8_scalar(int64_t K, const float *xr, int8_t *q, float *d) {
  for (int64_t b = 0; b < K / ICLD_QK; b++) {
    float amax = 0;
    for (int j = 0; j < ICLD_QK; j++) { float a = fabsf(xr[b * ICLD_QK + j]); if (a > amax) amax = a; }
    float s = amax / 127.0f, id = s != 0.0f ? 1.0f / s : 0.0f;
    d[b] = s;
    for (int j = 0; j < ICLD_QK; j++) {
      float v = xr[b * ICLD_QK + j] * id; /* NaN (an inf in the block) -> 0, as Int8Array stores it */
      q[b * ICLD_QK + j] = v == v ? (int8_t)nearbyintf(v) : 0;
    }
  }
}
static void actbf_scalar(int64_t K, const float *x, uint16_t *o) { for (int64_t k = 0; k < K; k++) o[k] = f32_to_bf16(x[k]); }

static void f32oi_scalar(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                         const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t K = w->K;
  const float *W = (const float *)w->data;
  for (int64_t m = 0; m < M; m++) {
    const float *x = (const float *)xa + m * K;
    for (int64_t n = n0; n < n1; n++) {
      float s = 0;
      for (int64_t k = 0; k < K; k++) s += x[k] * W[n * K + k];
      put(out, ldo, m, n, s, bias, accumulate);
    }
  }
}
static void f32io_scalar(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                         const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t N = w->N, K = w->K;
  const float *W = (const float *)w->data;
  for (int64_t m = 0; m < M; m++) {
    const float *x = (const float *)xa + m * K;
    for (int64_t n = n0; n < n1; n++) {
      float s = 0;
      for (int64_t k = 0; k < K; k++) s += x[k] * W[k * N + n];
      put(out, ldo, m, n, s, bias, accumulate);
    }
  }
}
static void bf16_scalar(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                        const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t K = w->K;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = n0; n < n1; n++) {
      const uint16_t *x = (const uint16_t *)xa + m * K, *W = (const uint16_t *)w->data + n * K;
      float s = 0;
      for (int64_t k = 0; k < K; k++) s += bf16_to_f32(x[k]) * bf16_to_f32(W[k]);
      put(out, ldo, m, n, s, bias, accumulate);
    }
}
static void q_scalar(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                     const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t K = w->K, nb = K / ICLD_QK;
  for (int64_t m = 0; m < M; m++) {
    const int8_t *xq = (const int8_t *)xa + m * (K + 4 * nb);
    const float *xd = (const float *)(xq + K);
    for (int64_t n = n0; n < n1; n++) {
      float s = 0;
      for (int64_t b = 0; b < nb; b++) {
        int32_t isum = 0;
        if (w->format == ICLD_Q8_0) {
          const int8_t *q = (const int8_t *)w->data + n * K + b * ICLD_QK;
          for (int j = 0; j < ICLD_QK; j++) isum += (int32_t)q[j] * xq[b * ICLD_QK + j];
        } else {
          const uint8_t *q = (const uint8_t *)w->data + (n * K + b * ICLD_QK) / 2;
          for (int j = 0; j < 16; j++) {
            isum += ((int32_t)(q[j] & 15) - 8) * xq[b * ICLD_QK + j];
            isum += ((int32_t)(q[j] >> 4) - 8) * xq[b * ICLD_QK + j + 16];
          }
        }
        s += f16_to_f32(w->scales[n * nb + b]) * xd[b] * (float)isum;
      }
      put(out, ldo, m, n, s, bias, accumulate);
    }
  }
}

#ifdef ICLD_X86_SIMD
/* ------------------------------------------------------------------ AVX2 + FMA + F16C */
#define T_AVX2 "avx2,fma,f16c"
#define T_512 "avx2,fma,f16c,avx512f,avx512bw,avx512vl"

__attribute__((target("avx"), always_inline)) static inline float hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* q8_0 activations: per 32-block amax, d = amax/127, q = round-half-even(x·(1/d)) — the SIMD
 * conversion rounds to nearest even, as quantizeActQ8 does. */
__attribute__((target(T_AVX2))) static void act8_avx2(int64_t K, const float *xr, int8_t *q, float *d) {
  const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < K / ICLD_QK; b++) {
    const float *p = xr + b * ICLD_QK;
    __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8), v2 = _mm256_loadu_ps(p + 16), v3 = _mm256_loadu_ps(p + 24);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absm), _mm256_and_ps(v1, absm)),
                              _mm256_max_ps(_mm256_and_ps(v2, absm), _mm256_and_ps(v3, absm)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    float s = amax / 127.0f, id = s != 0.0f ? 1.0f / s : 0.0f;
    d[b] = s;
    __m256 vi = _mm256_set1_ps(id);
#define ACT8_Q(v) _mm256_cvtps_epi32(_mm256_and_ps(_mm256_mul_ps(v, vi), _mm256_cmp_ps(_mm256_mul_ps(v, vi), _mm256_mul_ps(v, vi), _CMP_ORD_Q)))
    __m256i i0 = ACT8_Q(v0), i1 = ACT8_Q(v1), i2 = ACT8_Q(v2), i3 = ACT8_Q(v3); /* NaN lanes -> 0 */
#undef ACT8_Q
    __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)(q + b * ICLD_QK), _mm256_permutevar8x32_epi32(p8, perm));
  }
}

/* f32 -> bf16 bits, nearest-even; NaN -> 0x7fc0 (as f32ToBf16). */
__attribute__((target(T_AVX2))) static void actbf_avx2(int64_t K, const float *x, uint16_t *o) {
  int64_t k = 0;
  const __m256i one = _mm256_set1_epi32(1), r = _mm256_set1_epi32(0x7fff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i absm = _mm256_set1_epi32(0x7fffffff), qnan = _mm256_set1_epi32(0x7fc0);
  for (; k + 16 <= K; k += 16) {
    __m256i h[2];
    for (int t = 0; t < 2; t++) {
      __m256i b = _mm256_castps_si256(_mm256_loadu_ps(x + k + 8 * t));
      __m256i rb = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, r), _mm256_and_si256(_mm256_srli_epi32(b, 16), one)), 16);
      __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, absm), inf);
      h[t] = _mm256_blendv_epi8(rb, qnan, nan);
    }
    __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xd8);
    _mm256_storeu_si256((__m256i *)(o + k), pk);
  }
  for (; k < K; k++) o[k] = f32_to_bf16(x[k]);
}

/* f32 [N,K]: MT×NT dot products per tile; K tail in scalar. */
__attribute__((target(T_AVX2), always_inline)) static inline void f32oi_tile_avx2(
    const int MT, const int NT, const float *W, const float *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  __m256 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[4];
    for (int j = 0; j < NT; j++) wv[j] = _mm256_loadu_ps(W + (n + j) * K + k);
    for (int i = 0; i < MT; i++) {
      __m256 xv = _mm256_loadu_ps(x + (m0 + i) * K + k);
      for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) {
      float s = hsum256(acc[i][j]);
      for (int64_t kk = k; kk < K; kk++) s += x[(m0 + i) * K + kk] * W[(n + j) * K + kk];
      put(out, ldo, m0 + i, n + j, s, bias, accumulate);
    }
}

/* Dot-product families share this driver: M=1 takes one column (row of W) at a time, a single
 * sequential stream (measured ~1.6x the bandwidth of 4 interleaved rows on the target),
 * M>1 takes 2 columns × up to 4 rows, in blocks of ICLD_QMB rows so the activations being
 * reused stay in L2 while the weights stream once per block. TILE(MT, NT) expands to the tile call. */
#define ICLD_QMB 32
#define DOT_DRIVER(TILE)                                                         \
  int64_t n = n0;                                                                \
  if (M == 1) {                                                                  \
    for (; n < n1; n++) { const int64_t m0 = 0; TILE(1, 1); }                    \
  } else for (int64_t mb = 0; mb < M; mb += ICLD_QMB) {                         \
    const int64_t mE = M - mb < ICLD_QMB ? M : mb + ICLD_QMB;                    \
    for (n = n0; n + 2 <= n1; n += 2)                                            \
      for (int64_t m0 = mb; m0 < mE; m0 += 4) {                                  \
        switch (mE - m0 < 4 ? mE - m0 : 4) {                                     \
          case 1: TILE(1, 2); break; case 2: TILE(2, 2); break;                  \
          case 3: TILE(3, 2); break; default: TILE(4, 2); break;                 \
        }                                                                        \
      }                                                                          \
    for (; n < n1; n++)                                                          \
      for (int64_t m0 = mb; m0 < mE; m0 += 4) {                                  \
        switch (mE - m0 < 4 ? mE - m0 : 4) {                                     \
          case 1: TILE(1, 1); break; case 2: TILE(2, 1); break;                  \
          case 3: TILE(3, 1); break; default: TILE(4, 1); break;                 \
        }                                                                        \
      }                                                                          \
  }

__attribute__((target(T_AVX2))) static void f32oi_avx2(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const float *W = (const float *)w->data, *x = (const float *)xa;
  const int64_t K = w->K;
#define T(MT, NT) f32oi_tile_avx2(MT, NT, W, x, K, m0, n, out, ldo, bias, accumulate)
  DOT_DRIVER(T)
#undef T
}

/* f32 [K,N] (GPT-2 Conv1D): a tile of 32 columns × MT rows streams rows of W with x broadcast.
 * Rows of W are N floats apart, a stride the hardware prefetcher follows poorly: the kernels
 * prefetch ICLD_IO_PF rows ahead (8 measured best of 4 / 8 / 16 here). */
#define ICLD_IO_PF 8
__attribute__((target(T_AVX2), always_inline)) static inline void f32io_tile_avx2(
    const int MT, const float *W, int64_t N, int64_t K, const float *x, int64_t m0, int64_t c, int64_t wdt,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i mk[4];
  for (int v = 0; v < 4; v++) mk[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(wdt - 8 * v)), iota);
  __m256 acc[2][4];
  for (int i = 0; i < MT; i++) for (int v = 0; v < 4; v++) acc[i][v] = _mm256_setzero_ps();
  if (wdt == 32) {
    for (int64_t k = 0; k < K; k++) {
      const float *wr = W + k * N + c;
      __m256 wv[4];
      _mm_prefetch((const char *)(wr + ICLD_IO_PF * N), _MM_HINT_T0);
      _mm_prefetch((const char *)(wr + ICLD_IO_PF * N + 16), _MM_HINT_T0);
      for (int v = 0; v < 4; v++) wv[v] = _mm256_loadu_ps(wr + 8 * v);
      for (int i = 0; i < MT; i++) {
        __m256 xb = _mm256_broadcast_ss(x + (m0 + i) * K + k);
        for (int v = 0; v < 4; v++) acc[i][v] = _mm256_fmadd_ps(xb, wv[v], acc[i][v]);
      }
    }
  } else {
    for (int64_t k = 0; k < K; k++) {
      const float *wr = W + k * N + c;
      __m256 wv[4];
      for (int v = 0; v < 4; v++) wv[v] = _mm256_maskload_ps(wr + 8 * v, mk[v]);
      for (int i = 0; i < MT; i++) {
        __m256 xb = _mm256_broadcast_ss(x + (m0 + i) * K + k);
        for (int v = 0; v < 4; v++) acc[i][v] = _mm256_fmadd_ps(xb, wv[v], acc[i][v]);
      }
    }
  }
  for (int i = 0; i < MT; i++)
    for (int v = 0; v < 4; v++) {
      float *o = out + (m0 + i) * ldo + c + 8 * v;
      __m256 s = acc[i][v];
      if (bias) s = _mm256_add_ps(s, _mm256_maskload_ps(bias + c + 8 * v, mk[v]));
      if (accumulate) s = _mm256_add_ps(_mm256_maskload_ps(o, mk[v]), s);
      _mm256_maskstore_ps(o, mk[v], s);
    }
}
__attribute__((target(T_AVX2))) static void f32io_avx2(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const float *W = (const float *)w->data, *x = (const float *)xa;
  for (int64_t c = n0; c < n1; c += 32) {
    int64_t wdt = n1 - c < 32 ? n1 - c : 32;
    int64_t m0 = 0;
    for (; m0 + 2 <= M; m0 += 2) f32io_tile_avx2(2, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate);
    if (m0 < M) f32io_tile_avx2(1, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate);
  }
}

/* bf16: the two halves of each 32-bit pair widen by shift (even element) and mask (odd): a dot
 * product does not care which lane holds which pair. */
__attribute__((target(T_AVX2), always_inline)) static inline void bf16_tile_avx2(
    const int MT, const int NT, const uint16_t *W, const uint16_t *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
  __m256 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 we[4], wo[4];
    for (int j = 0; j < NT; j++) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(W + (n + j) * K + k));
      we[j] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      wo[j] = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
    }
    for (int i = 0; i < MT; i++) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(x + (m0 + i) * K + k));
      __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
      for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(xo, wo[j], _mm256_fmadd_ps(xe, we[j], acc[i][j]));
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) {
      float s = hsum256(acc[i][j]);
      for (int64_t kk = k; kk < K; kk++) s += bf16_to_f32(x[(m0 + i) * K + kk]) * bf16_to_f32(W[(n + j) * K + kk]);
      put(out, ldo, m0 + i, n + j, s, bias, accumulate);
    }
}
__attribute__((target(T_AVX2))) static void bf16_avx2(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const uint16_t *W = (const uint16_t *)w->data, *x = (const uint16_t *)xa;
  const int64_t K = w->K;
#define T(MT, NT) bf16_tile_avx2(MT, NT, W, x, K, m0, n, out, ldo, bias, accumulate)
  DOT_DRIVER(T)
#undef T
}

/* q8_0 / q4_0, one instance per int8 dot-product instruction */
__attribute__((target(T_AVX2), always_inline)) static inline __m256i dot_avx2(__m256i aw, __m256i sx) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
}
#define QSFX avx2
#define QTGT T_AVX2
#define QDOT(a, s) dot_avx2(a, s)
#include "quant-q.inc"
#undef QSFX
#undef QTGT
#undef QDOT

#define QSFX avxvnni
#define QTGT T_AVX2 ",avxvnni"
#define QDOT(a, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, s)
#include "quant-q.inc"
#undef QSFX
#undef QTGT
#undef QDOT


/* ------------------------------------------------------------------ AVX-512 VNNI, q8_0 / q4_0
 * Four 32-blocks per step. vpdpbusd multiplies unsigned by signed bytes, so the weights enter as
 * unsigned codes u = q + o (q8_0: q xor 0x80, o = 128; q4_0: the raw nibble, o = 8) and the
 * offset comes off in float: Σ_b dw·dx·Σ u·x  −  Σ_b dw·(o·dx·Σx). The activation side of that
 * (o·dx·Σx per block, dx per lane, the regrouped lane order) is prepared once per call per thread.
 * Columns go one weight row at a time for M <= 4: the weights then stream linearly, which the
 * hardware prefetcher follows at DRAM speed (4 interleaved rows ran at about half of it on this
 * EPYC: q8_0 M = 1 10 vs 17-21 GB/s). */
#define T_VNNI T_512 ",avx512vnni"
#ifndef ICLD_VNNI_QPF /* rows ahead for the software prefetch of the 2-column tiles (0: none) */
#define ICLD_VNNI_QPF 4
#endif
#ifndef ICLD_VNNI_NTM /* largest M that goes one column at a time */
#define ICLD_VNNI_NTM 4
#endif
typedef struct { float *corr, *dxb; int8_t *x4; float *dx4; } vnni_row;
static _Thread_local struct { void *p; size_t cap; } tl_vnni;

/* Per row, all zero-padded to a multiple of 16 blocks: corr (o·dx·Σx per block), dxb (dx per
 * block), x4 (per 4 blocks, 128 bytes: elements 0..15 of each block, then 16..31 — q4_0's low /
 * high nibble partners) and dx4 (16 floats per 4 blocks: each int32 lane's dx). NULL when out of memory. */
__attribute__((target(T_VNNI))) static vnni_row *vnni_prep(int q4, int64_t M, int64_t K, const void *xa) {
  const int64_t nb = K / ICLD_QK, nchunk = (nb + 15) / 16;
  const size_t row = (size_t)nchunk * (128 + 512 + 256);
  const size_t need = (size_t)M * (row + sizeof(vnni_row)) + 64;
  if (tl_vnni.cap < need) {
    free(tl_vnni.p);
    tl_vnni.p = aligned_alloc(64, (need + 63) / 64 * 64);
    tl_vnni.cap = tl_vnni.p ? need : 0;
    if (!tl_vnni.p) return NULL;
  }
  uint8_t *base = (uint8_t *)tl_vnni.p;
  vnni_row *rows = (vnni_row *)(base + (size_t)M * row);
  const float off = q4 ? 8.0f : 128.0f;
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t m = 0; m < M; m++) {
    vnni_row *r = &rows[m];
    r->corr = (float *)(base + (size_t)m * row);
    r->dxb = r->corr + nchunk * 16;
    r->x4 = (int8_t *)(r->dxb + nchunk * 16);
    r->dx4 = (float *)(r->x4 + nchunk * 512);
    const int8_t *xq = (const int8_t *)xa + m * (K + 4 * nb);
    const float *xd = (const float *)(xq + K);
    memset(r->corr, 0, (size_t)nchunk * (128 + 512 + 256));
    memcpy(r->dxb, xd, (size_t)nb * 4);
    for (int64_t b = 0; b < nb; b++) {
      const __m256i v = _mm256_loadu_si256((const __m256i *)(xq + b * ICLD_QK));
      const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, v);
      const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
      const __m128i h2 = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
      r->corr[b] = off * xd[b] * (float)_mm_cvtsi128_si32(_mm_add_epi32(h2, _mm_shuffle_epi32(h2, _MM_SHUFFLE(2, 3, 0, 1))));
      _mm_store_si128((__m128i *)(r->x4 + (b / 4) * 128 + (b % 4) * 16), _mm256_castsi256_si128(v));
      _mm_store_si128((__m128i *)(r->x4 + (b / 4) * 128 + 64 + (b % 4) * 16), _mm256_extracti128_si256(v, 1));
      _mm_store_ps(r->dx4 + (b / 4) * 16 + (b % 4) * 4, _mm_set1_ps(xd[b]));
    }
  }
  return rows;
}

/* M = 1: one weight row at a time, 4 blocks per step (q4_0: one 64-byte load; q8_0: two,
 * regrouped as in vnni_qtile); low and high halves go through two vpdpbusd into the same int32
 * lanes (4 lanes per block), so one convert and one FMA per 4 blocks; two accumulators to halve
 * the FMA latency chain. */
__attribute__((target(T_VNNI), always_inline)) static inline void vnni_m1(const int q4, const icld_qweight *w,
    const vnni_row *r, float *out, int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t K = w->K, nb = K / ICLD_QK;
  const uint8_t *w4 = (const uint8_t *)w->data;
  const __m512i low = _mm512_set1_epi8(15), flip = _mm512_set1_epi8((char)0x80);
  const __m512i ilo = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), ihi = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
  const __m512i qidx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t n = n0; n < n1; n++) {
    const uint8_t *wr = w4 + n * (q4 ? K / 2 : K);
    const uint16_t *sr = w->scales + n * nb;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
      const int64_t nbc = nb - b0 < 16 ? nb - b0 : 16;
      const __m512 sw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << nbc) - 1), sr + b0));
      const __m512 comb = _mm512_mul_ps(sw, _mm512_load_ps(r->dxb + b0));
      a1 = _mm512_fnmadd_ps(sw, _mm512_load_ps(r->corr + b0), a1);
      const int8_t *xc = r->x4 + b0 * 32;
#define Q4M1_STEP(q, ACC, LOADA, LOADB)                                                                 \
      {                                                                                                \
        const __m512i v = LOADA;                                                                       \
        __m512i lo, hi;                                                                                \
        if (q4) { lo = _mm512_and_si512(v, low); hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low); } \
        else {                                                                                         \
          const __m512i v2 = LOADB;                                                                    \
          lo = _mm512_xor_si512(_mm512_permutex2var_epi64(v, ilo, v2), flip);                          \
          hi = _mm512_xor_si512(_mm512_permutex2var_epi64(v, ihi, v2), flip);                          \
        }                                                                                              \
        __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(xc + (q) * 128)); \
        d = _mm512_dpbusd_epi32(d, hi, _mm512_load_si512(xc + (q) * 128 + 64));                        \
        const __m512 s = _mm512_permutexvar_ps(_mm512_add_epi32(qidx, _mm512_set1_epi32(4 * (q))), comb); \
        ACC = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, ACC);                                          \
      }
      if (nbc == 16) {
        const int bs = q4 ? 16 : 32; /* bytes per block */
        Q4M1_STEP(0, a0, _mm512_loadu_si512(wr + b0 * bs), _mm512_loadu_si512(wr + b0 * bs + 64))
        Q4M1_STEP(1, a1, _mm512_loadu_si512(wr + (b0 + 4) * bs), _mm512_loadu_si512(wr + (b0 + 4) * bs + 64))
        Q4M1_STEP(2, a0, _mm512_loadu_si512(wr + (b0 + 8) * bs), _mm512_loadu_si512(wr + (b0 + 8) * bs + 64))
        Q4M1_STEP(3, a1, _mm512_loadu_si512(wr + (b0 + 12) * bs), _mm512_loadu_si512(wr + (b0 + 12) * bs + 64))
      } else {
        for (int q = 0; 4 * q < nbc; q++) {
          const int k = nbc - 4 * q < 4 ? (int)(nbc - 4 * q) : 4;
          const __mmask64 mk = k == 4 ? ~(__mmask64)0 : (((__mmask64)1 << (16 * k)) - 1);
          /* q8_0: masked bytes become code 128 after the flip; their x4 partners are zero */
          const __mmask64 ma = k >= 2 ? ~(__mmask64)0 : (__mmask64)0xffffffffu, mb = k == 4 ? ~(__mmask64)0 : k == 3 ? (__mmask64)0xffffffffu : 0;
          Q4M1_STEP(q, a0, q4 ? _mm512_maskz_loadu_epi8(mk, wr + b0 * 16 + q * 64) : _mm512_maskz_loadu_epi8(ma, wr + (b0 + 4 * q) * 32),
                    _mm512_maskz_loadu_epi8(mb, wr + (b0 + 4 * q) * 32 + 64))
        }
      }
#undef Q4M1_STEP
    }
    put(out, ldo, 0, n, _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)), bias, accumulate);
  }
}

/* MT rows × NT columns, 4 blocks per step on the x4 layout: q4_0 unpacks 64 bytes into low and
 * high nibbles, q8_0 regroups two 64-byte loads into elements 0..15 / 16..31 of 4 blocks (two
 * vpermt2q); both then take 2 vpdpbusd + 1 convert + 1 mul + 1 FMA per 128 MACs. */
__attribute__((target(T_VNNI), always_inline)) static inline void vnni_qtile(
    const int q4, const int MT, const int NT, const icld_qweight *w, const vnni_row *rows, int64_t m0,
    int64_t n, float *out, int64_t ldo, const float *bias, int accumulate) {
  const int64_t K = w->K, nb = K / ICLD_QK;
  const int8_t *w8 = (const int8_t *)w->data;
  const uint8_t *w4 = (const uint8_t *)w->data;
  const __m512i flip = _mm512_set1_epi8((char)0x80), low = _mm512_set1_epi8(15);
  const __m512i qidx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i ilo = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), ihi = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
  __m512 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int64_t nbc = nb - b0 < 16 ? nb - b0 : 16;
    const __mmask16 smk = (__mmask16)((1u << nbc) - 1);
    __m512 sw[4];
    for (int j = 0; j < NT; j++) sw[j] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(smk, w->scales + (n + j) * nb + b0));
    for (int i = 0; i < MT; i++) {
      const __m512 cv = _mm512_load_ps(rows[m0 + i].corr + b0);
      for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fnmadd_ps(sw[j], cv, acc[i][j]);
    }
    for (int64_t q = 0; 4 * q < nbc; q++) {
      const int k = nbc - 4 * q < 4 ? (int)(nbc - 4 * q) : 4; /* blocks in this step */
      __m512i wl[4], wh[4];
      __m512 s[4];
      for (int j = 0; j < NT; j++) {
        if (ICLD_VNNI_QPF) { /* rows further on, same position: DRAM latency is longer than a tile */
          const char *f = q4 ? (const char *)w4 + (n + j + ICLD_VNNI_QPF) * (K / 2) + (b0 + 4 * q) * 16
                             : (const char *)w8 + (n + j + ICLD_VNNI_QPF) * K + (b0 + 4 * q) * 32;
          _mm_prefetch(f, _MM_HINT_T0);
          if (!q4) _mm_prefetch(f + 64, _MM_HINT_T0);
        }
        if (q4) {
          const uint8_t *p = w4 + (n + j) * (K / 2) + (b0 + 4 * q) * 16;
          const __m512i v = k == 4 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((((__mmask64)1 << (16 * k)) - 1), p);
          wl[j] = _mm512_and_si512(v, low);
          wh[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        } else {
          const int8_t *p = w8 + (n + j) * K + (b0 + 4 * q) * 32;
          __m512i a, b;
          if (k == 4) { a = _mm512_loadu_si512(p); b = _mm512_loadu_si512(p + 64); }
          else { /* masked bytes become code 128 after the flip; their x4 partners are zero */
            a = _mm512_maskz_loadu_epi8(k >= 2 ? ~(__mmask64)0 : (__mmask64)0xffffffffu, p);
            b = _mm512_maskz_loadu_epi8(k == 3 ? (__mmask64)0xffffffffu : 0, p + 64);
          }
          wl[j] = _mm512_xor_si512(_mm512_permutex2var_epi64(a, ilo, b), flip);
          wh[j] = _mm512_xor_si512(_mm512_permutex2var_epi64(a, ihi, b), flip);
        }
        s[j] = _mm512_permutexvar_ps(_mm512_add_epi32(qidx, _mm512_set1_epi32((int)(4 * q))), sw[j]);
      }
      for (int i = 0; i < MT; i++) {
        const vnni_row *rr = &rows[m0 + i];
        const int64_t o4 = b0 / 4 + q;
        const __m512i xl = _mm512_load_si512(rr->x4 + o4 * 128), xh = _mm512_load_si512(rr->x4 + o4 * 128 + 64);
        const __m512 dq = _mm512_load_ps(rr->dx4 + o4 * 16);
        for (int j = 0; j < NT; j++) {
          __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wl[j], xl);
          d = _mm512_dpbusd_epi32(d, wh[j], xh);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(s[j], dq), acc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) put(out, ldo, m0 + i, n + j, _mm512_reduce_add_ps(acc[i][j]), bias, accumulate);
}

__attribute__((target(T_VNNI))) static void vnni_q8_m1(const icld_qweight *w, const vnni_row *r, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) { vnni_m1(0, w, r, out, ldo, bias, accumulate, n0, n1); }
__attribute__((target(T_VNNI))) static void vnni_q4_m1(const icld_qweight *w, const vnni_row *r, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) { vnni_m1(1, w, r, out, ldo, bias, accumulate, n0, n1); }

#define VNNI_QTILES(Q, NT)                                                                            \
  for (; m0 < mE; m0 += 4) {                                                                          \
    switch (mE - m0 < 4 ? mE - m0 : 4) {                                                              \
      case 1: vnni_qtile(Q, 1, NT, w, rows, m0, n, out, ldo, bias, accumulate); break;                \
      case 2: vnni_qtile(Q, 2, NT, w, rows, m0, n, out, ldo, bias, accumulate); break;                \
      case 3: vnni_qtile(Q, 3, NT, w, rows, m0, n, out, ldo, bias, accumulate); break;                \
      default: vnni_qtile(Q, 4, NT, w, rows, m0, n, out, ldo, bias, accumulate); break;               \
    }                                                                                                 \
  }
/* M <= 4 (ICLD_VNNI_NTM) goes one column at a time, which streams the weights linearly; more rows
 * take 2 columns × 4 rows (8-row single-column tiles measured no faster). */
#define VNNI_RANGE(NAME, Q)                                                                          \
  __attribute__((target(T_VNNI))) static void NAME(const icld_qweight *w, int64_t M, const void *xa, float *out, \
      int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {                       \
    const vnni_row *rows = vnni_prep(Q, M, w->K, xa);                                                 \
    if (!rows) { q_scalar(w, M, xa, out, ldo, bias, accumulate, n0, n1); return; }                    \
    if (M == 1) { (Q ? vnni_q4_m1 : vnni_q8_m1)(w, rows, out, ldo, bias, accumulate, n0, n1); return; } \
    for (int64_t mb = 0; mb < M; mb += ICLD_QMB) {                                                    \
      const int64_t mE = M - mb < ICLD_QMB ? M : mb + ICLD_QMB;                                       \
      int64_t n = n0;                                                                                 \
      if (M > ICLD_VNNI_NTM)                                                                  \
        for (; n + 2 <= n1; n += 2) { int64_t m0 = mb; VNNI_QTILES(Q, 2) }                               \
      for (; n < n1; n++) {                                                                           \
        int64_t m0 = mb;                                                                              \
        VNNI_QTILES(Q, 1)                                                                          \
      }                                                                                               \
    }                                                                                                 \
  }
VNNI_RANGE(q8_range_avx512vnni, 0)
VNNI_RANGE(q4_range_avx512vnni, 1)

/* ------------------------------------------------------------------ AVX-512 (F+BW+VL) */
__attribute__((target(T_512), always_inline)) static inline void f32oi_tile_512(
    const int MT, const int NT, const float *W, const float *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  __m512 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 mk = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
    __m512 wv[4];
    for (int j = 0; j < NT; j++) {
      _mm_prefetch((const char *)(W + (n + j + NT) * K + k), _MM_HINT_T0);
      wv[j] = _mm512_maskz_loadu_ps(mk, W + (n + j) * K + k);
    }
    for (int i = 0; i < MT; i++) {
      __m512 xv = _mm512_maskz_loadu_ps(mk, x + (m0 + i) * K + k);
      for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) put(out, ldo, m0 + i, n + j, _mm512_reduce_add_ps(acc[i][j]), bias, accumulate);
}
__attribute__((target(T_512))) static void f32oi_512(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const float *W = (const float *)w->data, *x = (const float *)xa;
  const int64_t K = w->K;
#define T(MT, NT) f32oi_tile_512(MT, NT, W, x, K, m0, n, out, ldo, bias, accumulate)
  DOT_DRIVER(T)
#undef T
}

/* [K,N]: 64 columns (4 zmm) × MT ≤ 4 rows per tile; ragged edges through masks. */
__attribute__((target(T_512), always_inline)) static inline void f32io_tile_512(
    const int MT, const float *W, int64_t N, int64_t K, const float *x, int64_t m0, int64_t c, int64_t wdt,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  __mmask16 mk[4];
  for (int v = 0; v < 4; v++) {
    int64_t r = wdt - 16 * v;
    mk[v] = r >= 16 ? (__mmask16)0xffff : r <= 0 ? 0 : (__mmask16)((1u << r) - 1);
  }
  __m512 acc[4][4];
  for (int i = 0; i < MT; i++) for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    const float *wr = W + k * N + c;
    __m512 wv[4];
    for (int v = 0; v < 4; v++) _mm_prefetch((const char *)(wr + ICLD_IO_PF * N + 16 * v), _MM_HINT_T0);
    for (int v = 0; v < 4; v++) wv[v] = _mm512_maskz_loadu_ps(mk[v], wr + 16 * v);
    for (int i = 0; i < MT; i++) {
      __m512 xb = _mm512_set1_ps(x[(m0 + i) * K + k]);
      for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(xb, wv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MT; i++)
    for (int v = 0; v < 4; v++) {
      float *o = out + (m0 + i) * ldo + c + 16 * v;
      __m512 s = acc[i][v];
      if (bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk[v], bias + c + 16 * v));
      if (accumulate) s = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], o), s);
      _mm512_mask_storeu_ps(o, mk[v], s);
    }
}
__attribute__((target(T_512))) static void f32io_512(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const float *W = (const float *)w->data, *x = (const float *)xa;
  for (int64_t c = n0; c < n1; c += 64) {
    int64_t wdt = n1 - c < 64 ? n1 - c : 64;
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
      switch (M - m0 < 4 ? M - m0 : 4) {
        case 1: f32io_tile_512(1, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate); break;
        case 2: f32io_tile_512(2, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate); break;
        case 3: f32io_tile_512(3, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate); break;
        default: f32io_tile_512(4, W, w->N, w->K, x, m0, c, wdt, out, ldo, bias, accumulate); break;
      }
    }
  }
}

/* bf16 on AVX-512F: widen by shift/mask as in the AVX2 kernel, 32 elements per step. With
 * AVX512_BF16, vdpbf16ps does the pair products and the accumulation in one instruction. */
__attribute__((target(T_512), always_inline)) static inline void bf16_tile_512(
    const int MT, const int NT, const uint16_t *W, const uint16_t *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
  __m512 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __mmask32 mk = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
    __m512 we[4], wo[4];
    for (int j = 0; j < NT; j++) {
      _mm_prefetch((const char *)(W + (n + j + NT) * K + k), _MM_HINT_T0);
      __m512i v = _mm512_maskz_loadu_epi16(mk, W + (n + j) * K + k);
      we[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      wo[j] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
    }
    for (int i = 0; i < MT; i++) {
      __m512i v = _mm512_maskz_loadu_epi16(mk, x + (m0 + i) * K + k);
      __m512 xe = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), xo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
      for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fmadd_ps(xo, wo[j], _mm512_fmadd_ps(xe, we[j], acc[i][j]));
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) put(out, ldo, m0 + i, n + j, _mm512_reduce_add_ps(acc[i][j]), bias, accumulate);
}
__attribute__((target(T_512))) static void bf16_512(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const uint16_t *W = (const uint16_t *)w->data, *x = (const uint16_t *)xa;
  const int64_t K = w->K;
#define T(MT, NT) bf16_tile_512(MT, NT, W, x, K, m0, n, out, ldo, bias, accumulate)
  DOT_DRIVER(T)
#undef T
}

#define T_BF16 T_512 ",avx512bf16"
__attribute__((target(T_BF16), always_inline)) static inline void bf16_tile_dp(
    const int MT, const int NT, const uint16_t *W, const uint16_t *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  __m512 acc[4][4];
  for (int i = 0; i < MT; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __mmask32 mk = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
    __m512i wv[4];
    for (int j = 0; j < NT; j++) {
      _mm_prefetch((const char *)(W + (n + j + NT) * K + k), _MM_HINT_T0);
      wv[j] = _mm512_maskz_loadu_epi16(mk, W + (n + j) * K + k);
    }
    for (int i = 0; i < MT; i++) {
      __m512i xv = _mm512_maskz_loadu_epi16(mk, x + (m0 + i) * K + k);
      for (int j = 0; j < NT; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
    }
  }
  for (int i = 0; i < MT; i++)
    for (int j = 0; j < NT; j++) put(out, ldo, m0 + i, n + j, _mm512_reduce_add_ps(acc[i][j]), bias, accumulate);
}
/* Decode-sized M: one row of W at a time, a single sequential stream for the hardware prefetcher.
 * Measured on the target (GPT-2 124M at M=1): ~19 GB/s this way, 10-13 GB/s with 2-8 rows
 * interleaved per tile (more streams, software prefetch of the next tile). */
__attribute__((target(T_BF16), always_inline)) static inline void bf16_row_dp(
    const int MT, const uint16_t *W, const uint16_t *x, int64_t K, int64_t m0, int64_t n,
    float *out, int64_t ldo, const float *bias, int accumulate) {
  __m512 acc[4];
  for (int i = 0; i < MT; i++) acc[i] = _mm512_setzero_ps();
  const uint16_t *wr = W + n * K;
  for (int64_t k = 0; k < K; k += 32) {
    __mmask32 mk = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
    __m512i wv = _mm512_maskz_loadu_epi16(mk, wr + k);
    for (int i = 0; i < MT; i++)
      acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_maskz_loadu_epi16(mk, x + (m0 + i) * K + k), (__m512bh)wv);
  }
  for (int i = 0; i < MT; i++) put(out, ldo, m0 + i, n, _mm512_reduce_add_ps(acc[i]), bias, accumulate);
}
__attribute__((target(T_BF16))) static void bf16_dp(const icld_qweight *w, int64_t M, const void *xa, float *out,
    int64_t ldo, const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const uint16_t *W = (const uint16_t *)w->data, *x = (const uint16_t *)xa;
  const int64_t K = w->K;
  if (M <= 4) {
    for (int64_t n = n0; n < n1; n++)
      switch (M) {
        case 1: bf16_row_dp(1, W, x, K, 0, n, out, ldo, bias, accumulate); break;
        case 2: bf16_row_dp(2, W, x, K, 0, n, out, ldo, bias, accumulate); break;
        case 3: bf16_row_dp(3, W, x, K, 0, n, out, ldo, bias, accumulate); break;
        default: bf16_row_dp(4, W, x, K, 0, n, out, ldo, bias, accumulate); break;
      }
    return;
  }
#define T(MT, NT) bf16_tile_dp(MT, NT, W, x, K, m0, n, out, ldo, bias, accumulate)
  DOT_DRIVER(T)
#undef T
}
#endif /* ICLD_X86_SIMD */

/* ------------------------------------------------------------------ dispatch */
static struct {
  range_fn f32oi, f32io, bf16, q8, q4;
  act8_fn act8;
  actbf_fn actbf;
  const char *p_f32, *p_bf16, *p_q;
  int ready;
} D = {f32oi_scalar, f32io_scalar, bf16_scalar, q_scalar, q_scalar, act8_scalar, actbf_scalar,
       "scalar", "scalar", "scalar", 0};

void icld_kernels_select(void) {
  unsigned a = icld_cpu_allowed();
  D.f32oi = f32oi_scalar; D.f32io = f32io_scalar; D.bf16 = bf16_scalar; D.q8 = D.q4 = q_scalar;
  D.act8 = act8_scalar; D.actbf = actbf_scalar;
  D.p_f32 = D.p_bf16 = D.p_q = "scalar";
#ifdef ICLD_X86_SIMD
  const unsigned avx2 = ICLD_CPU_AVX2 | ICLD_CPU_FMA | ICLD_CPU_F16C;
  const unsigned a512 = avx2 | ICLD_CPU_AVX512F | ICLD_CPU_AVX512BW | ICLD_CPU_AVX512VL;
  if ((a & avx2) == avx2) {
    D.f32oi = f32oi_avx2; D.f32io = f32io_avx2; D.bf16 = bf16_avx2; D.q8 = q8_range_avx2; D.q4 = q4_range_avx2;
    D.act8 = act8_avx2; D.actbf = actbf_avx2;
    D.p_f32 = D.p_bf16 = D.p_q = "avx2";
    if (a & ICLD_CPU_AVXVNNI) { D.q8 = q8_range_avxvnni; D.q4 = q4_range_avxvnni; D.p_q = "avx-vnni"; }
  }
  if ((a & a512) == a512) {
    D.f32oi = f32oi_512; D.f32io = f32io_512; D.bf16 = bf16_512;
    D.p_f32 = D.p_bf16 = "avx512";
    if (a & ICLD_CPU_AVX512VNNI) { D.q8 = q8_range_avx512vnni; D.q4 = q4_range_avx512vnni; D.p_q = "avx512-vnni"; }
    if (a & ICLD_CPU_AVX512BF16) { D.bf16 = bf16_dp; D.p_bf16 = "avx512-bf16"; }
  }
#endif
  D.ready = 1;
  icld_gemm_select(a);
  icld_kernels_c_select(a);
}

static inline void ensure_selected(void) { if (!D.ready) icld_kernels_select(); }

void icld_qact(int format, int64_t M, int64_t K, const float *x, int64_t ldx, void *xa) {
  ensure_selected();
  for (int64_t m = 0; m < M; m++) {
    const float *xr = x + m * ldx;
    if (format == ICLD_F32) memcpy((float *)xa + m * K, xr, (size_t)K * 4);
    else if (format == ICLD_BF16) D.actbf(K, xr, (uint16_t *)xa + m * K);
    else {
      int8_t *q = (int8_t *)xa + m * (K + 4 * (K / ICLD_QK));
      D.act8(K, xr, q, (float *)(q + K));
    }
  }
}

static inline range_fn pick(const icld_qweight *w) {
  switch (w->format) {
    case ICLD_F32: return w->in_out ? D.f32io : D.f32oi;
    case ICLD_BF16: return D.bf16;
    case ICLD_Q8_0: return D.q8;
    default: return D.q4;
  }
}

void icld_qmatmul_range(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                        const float *bias, int accumulate, int64_t n0, int64_t n1) {
  ensure_selected();
  if (M <= 0 || n1 <= n0) return;
  pick(w)(w, M, xa, out, ldo, bias, accumulate, n0, n1);
}

static _Thread_local struct { void *p; size_t cap; } tl_act;

void icld_qmatmul(const icld_qweight *w, int64_t M, const float *x, int64_t ldx, float *out, int64_t ldo,
                  const float *bias, int accumulate) {
  ensure_selected();
  if (M <= 0 || w->N <= 0) return;
  size_t need = icld_qact_bytes(w->format, M, w->K);
  if (tl_act.cap < need) { /* grows once; reused by every later call on this thread */
    free(tl_act.p);
    tl_act.p = aligned_alloc(64, (need + 63) / 64 * 64 + 64);
    tl_act.cap = tl_act.p ? need : 0;
    if (!tl_act.p) return;
  }
  icld_qact(w->format, M, w->K, x, ldx, tl_act.p);
  const void *xa = tl_act.p;
  range_fn f = pick(w);
  int nt = icld_get_threads();
  /* column chunks aligned to the kernels' tiles (64 for [K,N] f32, 16 otherwise) so no two
   * threads share a cache line of out or a tile */
  const int64_t align = (w->format == ICLD_F32 && w->in_out) ? 64 : 16;
  int64_t per = ((w->N + nt - 1) / nt + align - 1) / align * align;
  if (per < align) per = align;
  int chunks = (int)((w->N + per - 1) / per);
  if (nt > chunks) nt = chunks;
#ifdef _OPENMP
  if (omp_in_parallel()) nt = 1;
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1 && (double)w->N * w->K * M > 65536)
#endif
  for (int t = 0; t < chunks; t++) {
    int64_t n0 = per * t, n1 = n0 + per < w->N ? n0 + per : w->N;
    f(w, M, xa, out, ldo, bias, accumulate, n0, n1);
  }
}

const char *icld_kernel_path(const char *family) {
  ensure_selected();
  if (!family) return "scalar";
  if (!strcmp(family, "f32")) return D.p_f32;
  if (!strcmp(family, "bf16")) return D.p_bf16;
  if (!strcmp(family, "q8_0") || !strcmp(family, "q4_0")) return D.p_q;
  if (!strcmp(family, "gemm")) return icld_gemm_path();
  if (!strcmp(family, "gemm_bf16")) return icld_gemm_bf16_path();
  return "scalar";
}
