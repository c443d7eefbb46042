/* icl-distill native kernels: forward and backward of every op side by side.
 * The spec is src/engine/backend/reference.ts (double accumulation); here long sums are kept in
 * double and the elementwise math in float with AVX2/FMA where it is hot. */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ICLD_AVX2 1
#endif

/* Portable build: this file is compiled twice, plainly (baseline x86-64) and by kernels-avx2.c
 * with AVX2+FMA enabled and every exported kernel renamed *_avx2 (ICLD_KVARIANT). Each kernel
 * starts with KDISPATCH, which hands the call to the AVX2 twin when icld_kernels_select chose it.
 * A new exported kernel here needs its rename in kernels-avx2.c (else: duplicate symbol at link). */
#ifdef ICLD_KVARIANT
#define KDISPATCH(fn, args) ((void)0)
#define g_threads icld_get_threads()
#else
static int g_kavx2; /* AVX2 twins selected */
void icld_kernels_c_select(unsigned allowed) {
  g_kavx2 = (allowed & (ICLD_CPU_AVX2 | ICLD_CPU_FMA)) == (ICLD_CPU_AVX2 | ICLD_CPU_FMA);
}
#if defined(__x86_64__) && defined(__GNUC__)
#define KDISPATCH(fn, args) do { extern __typeof__(fn) fn##_avx2; if (g_kavx2) { fn##_avx2 args; return; } } while (0)
#else
#define KDISPATCH(fn, args) ((void)g_kavx2) /* no AVX2 twins off x86-64 */
#endif

/* ------------------------------------------------------------------ threads / info */
static int g_threads = 1; /* set at load time by binding.c (default: one per core) */

void icld_set_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  icld_gemm_set_threads(n);
}
int icld_get_threads(void) { return g_threads; }
/* SIMD of the elementwise kernels in use (the matmul paths: icld_kernel_path). */
const char *icld_simd(void) {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(ICLD_AVX2)
  return "avx2+fma";
#else
  if (g_kavx2) return "avx2+fma";
#if defined(__SSE2__)
  return "sse2";
#else
  return "scalar";
#endif
#endif
}
int icld_has_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}
#endif /* !ICLD_KVARIANT */

/* ------------------------------------------------------------------ hash (rng.ts twin) */
static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
/* Top 24 bits of the hash; uniform = bits / 2^24 exactly as hashUniform in rng.ts. */
static inline uint32_t hash_bits(uint32_t seed, uint32_t i) {
  return fmix32(fmix32(i * 0x9e3779b9u ^ seed) + seed) >> 8;
}
#ifndef ICLD_KVARIANT
float icld_hash_uniform(uint32_t seed, uint32_t i) { return (float)hash_bits(seed, i) * (1.0f / 16777216.0f); }
#endif

/* keep(i) = bits/2^24 >= p  <=>  bits >= ceil(p*2^24): an exact integer test (p*2^24 is exact). */
static inline int64_t drop_threshold(double p) {
  if (p != p) return 16777217; /* NaN: `u >= NaN` is false in the reference, nothing kept */
  if (!(p > 0)) return 0;
  if (p >= 1) return 16777217; /* nothing kept */
  return (int64_t)ceil(p * 16777216.0);
}

#ifdef ICLD_AVX2
static inline __m256i fmix8(__m256i h) {
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85ebca6bu));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xc2b2ae35u));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  return h;
}
/* all-ones lanes where index idx is kept */
static inline __m256 keep8(uint32_t seed, __m256i idx, __m256i thr) {
  __m256i s = _mm256_set1_epi32((int)seed);
  __m256i h = fmix8(_mm256_xor_si256(_mm256_mullo_epi32(idx, _mm256_set1_epi32((int)0x9e3779b9u)), s));
  h = _mm256_srli_epi32(fmix8(_mm256_add_epi32(h, s)), 8);
  return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpgt_epi32(thr, h), _mm256_set1_epi32(-1)));
}

/* exp with max relative error ~1.5e-7: n = round(x/ln2), r = x - n ln2, degree-7 Taylor on
 * |r| <= ln2/2 (truncation 5e-9), 2^n applied in two halves so n = 128 does not overflow early. */
static inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283935546875f), lo = _mm256_set1_ps(-87.33654475f);
  __m256 nanm = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  res = _mm256_andnot_ps(under, res);
  res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), over);
  return _mm256_blendv_ps(res, x, nanm);
}

/* sigmoid without overflow or cancellation: e = exp(-|x|); x>=0 ? 1/(1+e) : e/(1+e) */
static inline __m256 sigmoid8(__m256 x) {
  __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), ax));
  __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_blendv_ps(inv, _mm256_mul_ps(e, inv), neg);
}

/* erfc(z) for z >= 0 with the same Chebyshev fit as the reference (fractional error < 1.2e-7). */
static inline __m256 erfc_pos8(__m256 z) {
  __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, _mm256_set1_ps(1.0f)));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  p = _mm256_fnmadd_ps(z, z, p);
  return _mm256_mul_ps(t, exp8(p));
}
/* Phi(x) = 0.5*erfc(-x/sqrt2), accurate in relative terms in the lower tail */
static inline __m256 phi8(__m256 x) {
  __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  __m256 r = erfc_pos8(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), y));
  __m256 pos = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GE_OQ);
  __m256 half = _mm256_set1_ps(0.5f);
  /* y >= 0: 1 - r/2 ; y < 0: r/2 */
  return _mm256_blendv_ps(_mm256_mul_ps(half, r), _mm256_fnmadd_ps(half, r, _mm256_set1_ps(1.0f)), pos);
}

/* Sum of n floats in double (4 lanes x 2 accumulators). */
static inline double sum_d(const float *x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  a0 = _mm256_add_pd(a0, a1);
  double t[4];
  _mm256_storeu_pd(t, a0);
  double s = (t[0] + t[1]) + (t[2] + t[3]);
  for (; i < n; i++) s += x[i];
  return s;
}
static inline __m256d acc8_d(__m256d a, __m256 v) {
  return _mm256_add_pd(a, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                        _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}
static inline double hsum_d(__m256d a) {
  double t[4];
  _mm256_storeu_pd(t, a);
  return (t[0] + t[1]) + (t[2] + t[3]);
}
static inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
/* Load/store the first r (<8) lanes through a padded buffer (tails use the same math). */
static inline __m256 load_tail(const float *x, int64_t r, float pad) {
  float t[8];
  for (int k = 0; k < 8; k++) t[k] = k < r ? x[k] : pad;
  return _mm256_loadu_ps(t);
}
static inline void store_tail(float *y, __m256 v, int64_t r) {
  float t[8];
  _mm256_storeu_ps(t, v);
  for (int k = 0; k < r; k++) y[k] = t[k];
}
#else
static inline double sum_d(const float *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}
#endif

/* scalar twins (portable builds and odd paths) */
static const double SQRT_2_OVER_PI = 0.7978845608028654, GELU_C = 0.044715;
static double erf_nr(double x) {
  double z = fabs(x), t = 1 / (1 + 0.5 * z);
  double r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
             t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
             t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}
static double unary_f(int op, double x, double p) {
  switch (op) {
    case ICLD_EXP: return exp(x);
    case ICLD_LOG: return log(x);
    case ICLD_TANH: return tanh(x);
    case ICLD_SQRT: return sqrt(x);
    case ICLD_RELU: return x > 0 ? x : 0;
    case ICLD_GELU_TANH: return 0.5 * x * (1 + tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
    case ICLD_GELU_ERF: return 0.5 * x * (1 + erf_nr(x * 0.70710678118654752));
    case ICLD_POW: return pow(x, p);
    case ICLD_NEG: return -x;
    case ICLD_SCALE: return x * p;
    case ICLD_ADD_SCALAR: return x + p;
    case ICLD_SIGMOID: return 1 / (1 + exp(-x));
  }
  return NAN;
}
static double unary_df(int op, double x, double y, double p) {
  switch (op) {
    case ICLD_EXP: return y;
    case ICLD_LOG: return 1 / x;
    case ICLD_TANH: return 1 - y * y;
    case ICLD_SQRT: return 0.5 / y;
    case ICLD_RELU: return x > 0 ? 1 : 0;
    case ICLD_GELU_TANH: {
      double u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x), th = tanh(u);
      double du = SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du;
    }
    case ICLD_GELU_ERF: {
      double cdf = 0.5 * (1 + erf_nr(x * 0.70710678118654752));
      return cdf + x * exp(-0.5 * x * x) * 0.39894228040143268;
    }
    case ICLD_POW: return p * pow(x, p - 1);
    case ICLD_NEG: return -1;
    case ICLD_SCALE: return p;
    case ICLD_ADD_SCALAR: return 1;
    case ICLD_SIGMOID: return y * (1 - y);
  }
  return NAN;
}

/* ------------------------------------------------------------------ copy */
/* Drop size-1 dims and merge dims that are contiguous in every operand, so most views
 * become one or two long runs. Returns the new rank (>= 1). */
static int coalesce(int nd, const int64_t *shape, int nops, const int64_t *const *str,
                    int64_t *oshape, int64_t ostr[][ICLD_MAX_DIMS]) {
  int m = 0;
  for (int d = 0; d < nd; d++) {
    if (shape[d] == 1) continue;
    if (m > 0) {
      int ok = 1;
      for (int o = 0; o < nops; o++) if (ostr[o][m - 1] != str[o][d] * shape[d]) { ok = 0; break; }
      if (ok) {
        oshape[m - 1] *= shape[d];
        for (int o = 0; o < nops; o++) ostr[o][m - 1] = str[o][d];
        continue;
      }
    }
    oshape[m] = shape[d];
    for (int o = 0; o < nops; o++) ostr[o][m] = str[o][d];
    m++;
  }
  if (m == 0) { oshape[0] = 1; for (int o = 0; o < nops; o++) ostr[o][0] = 0; m = 1; }
  return m;
}

void icld_copy(int nd, const int64_t *shape, const uint32_t *src, const int64_t *sStr,
               uint32_t *dst, const int64_t *dStr) {
  KDISPATCH(icld_copy, (nd, shape, src, sStr, dst, dStr));
  for (int d = 0; d < nd; d++) if (shape[d] <= 0) return;
  int64_t sh[ICLD_MAX_DIMS], st[2][ICLD_MAX_DIMS];
  const int64_t *strs[2] = {sStr, dStr};
  int m = coalesce(nd, shape, 2, strs, sh, st);
  int64_t inner = sh[m - 1], si = st[0][m - 1], di = st[1][m - 1];
  int64_t outer = 1;
  for (int d = 0; d < m - 1; d++) outer *= sh[d];
  int64_t idx[ICLD_MAX_DIMS] = {0};
  int64_t so = 0, dof = 0;
  for (int64_t o = 0; o < outer; o++) {
    const uint32_t *s = src + so;
    uint32_t *t = dst + dof;
    if (si == 1 && di == 1) memcpy(t, s, sizeof(uint32_t) * (size_t)inner);
    else for (int64_t i = 0; i < inner; i++) t[i * di] = s[i * si];
    for (int d = m - 2; d >= 0; d--) {
      so += st[0][d]; dof += st[1][d];
      if (++idx[d] < sh[d]) break;
      so -= st[0][d] * sh[d]; dof -= st[1][d] * sh[d];
      idx[d] = 0;
    }
  }
}

/* ------------------------------------------------------------------ binary */
/* float +,-,*,/ are correctly rounded, so results equal the reference's double-then-round. */
#define BIN_INNER(OPER)                                                              \
  do {                                                                               \
    if (sa == 1 && sb == 1) for (int64_t i = 0; i < inner; i++) o[i] = pa[i] OPER pb[i]; \
    else if (sa == 1 && sb == 0) { float bv = *pb; for (int64_t i = 0; i < inner; i++) o[i] = pa[i] OPER bv; } \
    else if (sa == 0 && sb == 1) { float av = *pa; for (int64_t i = 0; i < inner; i++) o[i] = av OPER pb[i]; } \
    else for (int64_t i = 0; i < inner; i++) o[i] = pa[i * sa] OPER pb[i * sb];      \
  } while (0)

void icld_binary(int op, int nd, const int64_t *shape, const float *a, const int64_t *aStr,
                 const float *b, const int64_t *bStr, float *out) {
  KDISPATCH(icld_binary, (op, nd, shape, a, aStr, b, bStr, out));
  for (int d = 0; d < nd; d++) if (shape[d] <= 0) return;
  int64_t ostr_in[ICLD_MAX_DIMS];
  int64_t acc = 1;
  for (int d = nd - 1; d >= 0; d--) { ostr_in[d] = acc; acc *= shape[d]; }
  int64_t sh[ICLD_MAX_DIMS], st[3][ICLD_MAX_DIMS];
  const int64_t *strs[3] = {aStr, bStr, ostr_in};
  int m = coalesce(nd, shape, 3, strs, sh, st);
  int64_t inner = sh[m - 1], sa = st[0][m - 1], sb = st[1][m - 1];
  int64_t outer = 1;
  for (int d = 0; d < m - 1; d++) outer *= sh[d];
  int64_t idx[ICLD_MAX_DIMS] = {0};
  int64_t ao = 0, bo = 0;
  for (int64_t r = 0; r < outer; r++) {
    const float *pa = a + ao, *pb = b + bo;
    float *o = out + r * inner;
    switch (op) {
      case ICLD_ADD: BIN_INNER(+); break;
      case ICLD_SUB: BIN_INNER(-); break;
      case ICLD_MUL: BIN_INNER(*); break;
      case ICLD_DIV: BIN_INNER(/); break;
      default: return;
    }
    for (int d = m - 2; d >= 0; d--) {
      ao += st[0][d]; bo += st[1][d];
      if (++idx[d] < sh[d]) break;
      ao -= st[0][d] * sh[d]; bo -= st[1][d] * sh[d];
      idx[d] = 0;
    }
  }
}

/* ------------------------------------------------------------------ unary */
#ifdef ICLD_AVX2
static inline __m256 unary8(int op, __m256 x, __m256 p) {
  switch (op) {
    case ICLD_EXP: return exp8(x);
    case ICLD_RELU: return _mm256_and_ps(x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
    case ICLD_GELU_TANH: { /* 0.5x(1+tanh u) = x*sigmoid(2u): no cancellation for x << 0 */
      __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
      __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
      return _mm256_mul_ps(x, sigmoid8(u));
    }
    case ICLD_GELU_ERF: return _mm256_mul_ps(x, phi8(x));
    case ICLD_NEG: return _mm256_sub_ps(_mm256_setzero_ps(), x);
    case ICLD_SCALE: return _mm256_mul_ps(x, p);
    case ICLD_ADD_SCALAR: return _mm256_add_ps(x, p);
    case ICLD_SIGMOID: return sigmoid8(x);
    case ICLD_SQRT: return _mm256_sqrt_ps(x);
  }
  return x;
}
static inline __m256 unary_bwd8(int op, __m256 x, __m256 y, __m256 dy, __m256 p) {
  switch (op) {
    case ICLD_EXP: return _mm256_mul_ps(dy, y);
    case ICLD_TANH: return _mm256_mul_ps(dy, _mm256_fnmadd_ps(y, y, _mm256_set1_ps(1.0f)));
    case ICLD_SQRT: return _mm256_div_ps(_mm256_mul_ps(dy, _mm256_set1_ps(0.5f)), y);
    case ICLD_RELU: return _mm256_and_ps(dy, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
    case ICLD_GELU_TANH: { /* s = sigmoid(2u) = (1+tanh u)/2, 1 - tanh^2 = 4 s (1-s) */
      __m256 xx = _mm256_mul_ps(x, x);
      __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.7978845608028654f),
                               _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), _mm256_mul_ps(xx, x), x));
      /* s and 1-s both from e = exp(-|u|) so neither suffers cancellation */
      __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u)));
      __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
      __m256 ei = _mm256_mul_ps(e, inv);
      __m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
      __m256 s = _mm256_blendv_ps(inv, ei, neg), s1 = _mm256_blendv_ps(ei, inv, neg);
      __m256 du = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), xx, _mm256_set1_ps(1.0f)));
      __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), x), _mm256_mul_ps(s, s1)), du);
      return _mm256_mul_ps(dy, _mm256_add_ps(s, t));
    }
    case ICLD_GELU_ERF: {
      __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.39894228040143268f),
                                 exp8(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
      return _mm256_mul_ps(dy, _mm256_fmadd_ps(x, pdf, phi8(x)));
    }
    case ICLD_NEG: return _mm256_sub_ps(_mm256_setzero_ps(), dy);
    case ICLD_SCALE: return _mm256_mul_ps(dy, p);
    case ICLD_ADD_SCALAR: return dy;
    case ICLD_SIGMOID: return _mm256_mul_ps(dy, _mm256_mul_ps(y, _mm256_sub_ps(_mm256_set1_ps(1.0f), y)));
  }
  return dy;
}
static int unary_vec_ok(int op) { return op != ICLD_LOG && op != ICLD_TANH && op != ICLD_POW; }
static int unary_bwd_vec_ok(int op) { return op != ICLD_LOG && op != ICLD_POW; }
#endif

void icld_unary(int op, const float *x, int64_t n, float *out, double param) {
  KDISPATCH(icld_unary, (op, x, n, out, param));
#ifdef ICLD_AVX2
  if (unary_vec_ok(op)) {
    __m256 p = _mm256_set1_ps((float)param);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, unary8(op, _mm256_loadu_ps(x + i), p));
    if (i < n) store_tail(out + i, unary8(op, load_tail(x + i, n - i, 0.0f), p), n - i);
    return;
  }
#endif
  /* log/tanh/pow (and portable builds): libm in double, as the reference */
  for (int64_t i = 0; i < n; i++) out[i] = (float)unary_f(op, x[i], param);
}

void icld_unary_backward(int op, const float *x, const float *y, const float *dy, int64_t n,
                         float *dx, double param) {
  KDISPATCH(icld_unary_backward, (op, x, y, dy, n, dx, param));
#ifdef ICLD_AVX2
  if (unary_bwd_vec_ok(op)) {
    __m256 p = _mm256_set1_ps((float)param);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dx + i, unary_bwd8(op, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), _mm256_loadu_ps(dy + i), p));
    if (i < n) {
      int64_t r = n - i;
      store_tail(dx + i, unary_bwd8(op, load_tail(x + i, r, 1.0f), load_tail(y + i, r, 1.0f), load_tail(dy + i, r, 0.0f), p), r);
    }
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) dx[i] = (float)((double)dy[i] * unary_df(op, x[i], y[i], param));
}

/* ------------------------------------------------------------------ reductions */
void icld_reduce_sum(const float *x, int64_t outer, int64_t dim, int64_t inner, float *out) {
  KDISPATCH(icld_reduce_sum, (x, outer, dim, inner, out));
  if (inner == 1) {
    for (int64_t o = 0; o < outer; o++) out[o] = (float)sum_d(x + o * dim, dim);
    return;
  }
  enum { CH = 512 };
  double acc[CH];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i0 = 0; i0 < inner; i0 += CH) {
      int64_t w = inner - i0 < CH ? inner - i0 : CH;
      for (int64_t i = 0; i < w; i++) acc[i] = 0;
      for (int64_t d = 0; d < dim; d++) {
        const float *r = x + (o * dim + d) * inner + i0;
        for (int64_t i = 0; i < w; i++) acc[i] += r[i];
      }
      for (int64_t i = 0; i < w; i++) out[o * inner + i0 + i] = (float)acc[i];
    }
}

void icld_reduce_max(const float *x, int64_t outer, int64_t dim, int64_t inner, float *out, int32_t *arg) {
  KDISPATCH(icld_reduce_max, (x, outer, dim, inner, out, arg));
  for (int64_t o = 0; o < outer; o++) {
    float *ob = out + o * inner;
    int32_t *ab = arg + o * inner;
    if (dim <= 0) { for (int64_t i = 0; i < inner; i++) { ob[i] = -INFINITY; ab[i] = 0; } continue; }
    const float *r0 = x + o * dim * inner;
    for (int64_t i = 0; i < inner; i++) { ob[i] = r0[i]; ab[i] = 0; }
    for (int64_t d = 1; d < dim; d++) {
      const float *r = r0 + d * inner;
      for (int64_t i = 0; i < inner; i++) if (r[i] > ob[i]) { ob[i] = r[i]; ab[i] = (int32_t)d; }
    }
  }
}

/* ------------------------------------------------------------------ softmax */
static float row_max(const float *x, int64_t n) {
  float m = -INFINITY;
  int64_t j = 0;
#ifdef ICLD_AVX2
  if (n >= 8) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + j));
    m = hmax8(vm);
  }
#endif
  for (; j < n; j++) if (x[j] > m) m = x[j];
  return m;
}

/* e[j] = exp(x[j] - shift); returns Σ e in double. x and e may alias. */
static double exp_shift_sum(const float *x, int64_t n, float shift, float *e) {
  int64_t j = 0;
#ifdef ICLD_AVX2
  __m256 vs = _mm256_set1_ps(shift);
  __m256d acc = _mm256_setzero_pd();
  for (; j + 8 <= n; j += 8) {
    __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vs));
    _mm256_storeu_ps(e + j, v);
    acc = acc8_d(acc, v);
  }
  double s = hsum_d(acc);
  if (j < n) {
    __m256 v = exp8(_mm256_sub_ps(load_tail(x + j, n - j, -INFINITY), vs));
    store_tail(e + j, v, n - j);
    for (int64_t k = j; k < n; k++) s += e[k];
  }
  return s;
#else
  double s = 0;
  for (; j < n; j++) { e[j] = (float)exp((double)x[j] - shift); s += e[j]; }
  return s;
#endif
}

/* Σ exp(x - shift) and Σ x in double, without writing anything. */
static void exp_sum_and_sum(const float *x, int64_t n, float shift, double *se, double *sx) {
  int64_t j = 0;
  double s = 0, z = 0;
#ifdef ICLD_AVX2
  __m256 vs = _mm256_set1_ps(shift);
  __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
  for (; j + 8 <= n; j += 8) {
    __m256 v = _mm256_loadu_ps(x + j);
    a = acc8_d(a, exp8(_mm256_sub_ps(v, vs)));
    b = acc8_d(b, v);
  }
  s = hsum_d(a); z = hsum_d(b);
#endif
  for (; j < n; j++) { s += exp((double)x[j] - shift); z += x[j]; }
  *se = s; *sx = z;
}

void icld_softmax(const float *x, int64_t rows, int64_t cols, float *out, int log_) {
  KDISPATCH(icld_softmax, (x, rows, cols, out, log_));
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *o = out + r * cols;
    float mx = row_max(xr, cols);
    if (log_) {
      /* nothing is written before the last pass, so out may alias x */
      double s, sx;
      exp_sum_and_sum(xr, cols, mx, &s, &sx);
      float ls = (float)log(s);
      for (int64_t j = 0; j < cols; j++) o[j] = (xr[j] - mx) - ls;
    } else {
      double s = exp_shift_sum(xr, cols, mx, o);
      float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < cols; j++) o[j] *= inv;
    }
  }
}

void icld_softmax_backward(const float *y, const float *dy, int64_t rows, int64_t cols, float *dx, int log_) {
  KDISPATCH(icld_softmax_backward, (y, dy, rows, cols, dx, log_));
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = y + r * cols, *gr = dy + r * cols;
    float *o = dx + r * cols;
    if (log_) {
      float s = (float)sum_d(gr, cols);
      int64_t j = 0;
#ifdef ICLD_AVX2
      __m256 vs = _mm256_set1_ps(s);
      for (; j + 8 <= cols; j += 8)
        _mm256_storeu_ps(o + j, _mm256_fnmadd_ps(exp8(_mm256_loadu_ps(yr + j)), vs, _mm256_loadu_ps(gr + j)));
#endif
      for (; j < cols; j++) o[j] = (float)(gr[j] - exp((double)yr[j]) * s);
    } else {
      double s = 0;
      int64_t j = 0;
#ifdef ICLD_AVX2
      __m256d acc = _mm256_setzero_pd();
      for (; j + 8 <= cols; j += 8) acc = acc8_d(acc, _mm256_mul_ps(_mm256_loadu_ps(gr + j), _mm256_loadu_ps(yr + j)));
      s = hsum_d(acc);
#endif
      for (; j < cols; j++) s += (double)gr[j] * yr[j];
      float fs = (float)s;
      for (j = 0; j < cols; j++) o[j] = yr[j] * (gr[j] - fs);
    }
  }
}

/* ------------------------------------------------------------------ cross-entropy */
void icld_cross_entropy(const float *logits, int64_t rows, int64_t V, const int32_t *targets,
                        int32_t ignore, double smoothing, float *loss, float *lse) {
  KDISPATCH(icld_cross_entropy, (logits, rows, V, targets, ignore, smoothing, loss, lse));
  for (int64_t r = 0; r < rows; r++) {
    const float *z = logits + r * V;
    float mx = row_max(z, V);
    double se, sz;
    exp_sum_and_sum(z, V, mx, &se, &sz);
    double l = mx + log(se);
    lse[r] = (float)l;
    int32_t t = targets[r];
    if (t == ignore) { loss[r] = 0; continue; }
    double nll = l - z[t];
    loss[r] = (float)(smoothing > 0 ? (1 - smoothing) * nll + smoothing * (l - sz / (double)V) : nll);
  }
}

void icld_cross_entropy_backward(const float *logits, const float *lse, const int32_t *targets,
                                 int64_t rows, int64_t V, int32_t ignore, double smoothing,
                                 const float *dloss, float *dlogits) {
  KDISPATCH(icld_cross_entropy_backward, (logits, lse, targets, rows, V, ignore, smoothing, dloss, dlogits));
  for (int64_t r = 0; r < rows; r++) {
    const float *z = logits + r * V;
    float *o = dlogits + r * V;
    int32_t t = targets[r];
    if (t == ignore) { memset(o, 0, sizeof(float) * (size_t)V); continue; }
    float g = dloss[r], l = lse[r], eps = (float)(smoothing / (double)V);
    float zt = z[t]; /* read before the row is written: dlogits may alias logits */
    int64_t j = 0;
#ifdef ICLD_AVX2
    __m256 vl = _mm256_set1_ps(l), vg = _mm256_set1_ps(g), ve = _mm256_set1_ps(eps);
    for (; j + 8 <= V; j += 8)
      _mm256_storeu_ps(o + j, _mm256_mul_ps(vg, _mm256_sub_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(z + j), vl)), ve)));
#endif
    for (; j < V; j++) o[j] = (float)((double)g * (exp((double)z[j] - l) - eps));
    o[t] = (float)((double)g * (exp((double)zt - l) - ((1 - smoothing) + smoothing / (double)V)));
  }
}

/* ------------------------------------------------------------------ layer norm */
void icld_layer_norm(const float *x, int64_t rows, int64_t C, const float *gamma, const float *beta,
                     double eps, float *y, float *mean, float *rstd) {
  KDISPATCH(icld_layer_norm, (x, rows, C, gamma, beta, eps, y, mean, rstd));
  /* Rows are independent and the kernel is memory-bound: split rows across threads when big. */
#ifdef _OPENMP
  int nt = rows * C >= (1 << 16) && rows > 1 ? g_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * C;
    float *yr = y + r * C;
    double mu = sum_d(xr, C) / (double)C;
    double v = 0;
    float muf = (float)mu;
    int64_t c = 0;
#ifdef ICLD_AVX2
    /* two-pass variance in double: (x - mu) in double avoids cancellation for large means */
    __m256d vmu = _mm256_set1_pd(mu), a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (; c + 8 <= C; c += 8) {
      __m256 xv = _mm256_loadu_ps(xr + c);
      __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), vmu);
      __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), vmu);
      a0 = _mm256_fmadd_pd(d0, d0, a0); a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    v = hsum_d(_mm256_add_pd(a0, a1));
#endif
    for (; c < C; c++) { double d = xr[c] - mu; v += d * d; }
    double rs = 1 / sqrt(v / (double)C + eps);
    mean[r] = muf; rstd[r] = (float)rs;
    float rsf = (float)rs;
    for (c = 0; c < C; c++) yr[c] = (xr[c] - muf) * rsf * gamma[c] + beta[c];
  }
}

void icld_layer_norm_backward(const float *x, const float *dy, const float *gamma, const float *mean,
                              const float *rstd, int64_t rows, int64_t C, float *dx, float *dgamma,
                              float *dbeta) {
  KDISPATCH(icld_layer_norm_backward, (x, dy, gamma, mean, rstd, rows, C, dx, dgamma, dbeta));
  /* dgamma/dbeta sums over rows are kept in double per thread and added in thread order at the
   * end (deterministic for a given thread count). */
  int nt = rows * C >= (1 << 16) && rows > 1 ? g_threads : 1;
  if (nt < 1) nt = 1;
  double *acc = (double *)calloc((size_t)(2 * C * nt), sizeof(double));
  float *xhAll = (float *)malloc(sizeof(float) * (size_t)(C * nt));
  if (!acc || !xhAll) { free(acc); free(xhAll); return; }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
#ifdef _OPENMP
    int tid = omp_get_thread_num();
#else
    int tid = 0;
#endif
    double *dg = acc + (int64_t)tid * 2 * C, *db = dg + C;
    float *xh = xhAll + (int64_t)tid * C;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * C, *gr = dy + r * C;
      float *o = dx + r * C;
      float mu = mean[r], rs = rstd[r];
      double s1 = 0, s2 = 0;
      for (int64_t c = 0; c < C; c++) {
        float h = (xr[c] - mu) * rs, g = gr[c];
        xh[c] = h;
        dg[c] += (double)g * h; db[c] += g;
      }
      int64_t c = 0;
#ifdef ICLD_AVX2
      __m256d a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd();
      for (; c + 8 <= C; c += 8) {
        __m256 gg = _mm256_mul_ps(_mm256_loadu_ps(gr + c), _mm256_loadu_ps(gamma + c));
        a1 = acc8_d(a1, gg);
        a2 = acc8_d(a2, _mm256_mul_ps(gg, _mm256_loadu_ps(xh + c)));
      }
      s1 = hsum_d(a1); s2 = hsum_d(a2);
#endif
      for (; c < C; c++) { double gg = (double)gr[c] * gamma[c]; s1 += gg; s2 += gg * xh[c]; }
      float m1 = (float)(s1 / (double)C), m2 = (float)(s2 / (double)C);
      for (c = 0; c < C; c++) o[c] = rs * (gr[c] * gamma[c] - m1 - xh[c] * m2);
    }
  }
  for (int64_t c = 0; c < C; c++) {
    double g = 0, b = 0;
    for (int t = 0; t < nt; t++) { g += acc[(int64_t)t * 2 * C + c]; b += acc[(int64_t)t * 2 * C + C + c]; }
    dgamma[c] = (float)(dgamma[c] + g); dbeta[c] = (float)(dbeta[c] + b);
  }
  free(acc);
  free(xhAll);
}

/* ------------------------------------------------------------------ embedding */
void icld_embedding(const float *w, int64_t D, const int32_t *ids, int64_t n, float *out) {
  KDISPATCH(icld_embedding, (w, D, ids, n, out));
  for (int64_t i = 0; i < n; i++) memcpy(out + i * D, w + (int64_t)ids[i] * D, sizeof(float) * (size_t)D);
}
void icld_embedding_backward(const float *dy, const int32_t *ids, int64_t n, int64_t D, float *dw) {
  KDISPATCH(icld_embedding_backward, (dy, ids, n, D, dw));
  /* sequential in i: duplicates accumulate in the reference's order (bit-identical) */
  for (int64_t i = 0; i < n; i++) {
    float *t = dw + (int64_t)ids[i] * D;
    const float *s = dy + i * D;
    for (int64_t c = 0; c < D; c++) t[c] += s[c];
  }
}

/* ------------------------------------------------------------------ dropout */
void icld_dropout(const float *x, int64_t n, double p, uint32_t seed, float *out) {
  KDISPATCH(icld_dropout, (x, n, p, seed, out));
  int64_t thr = drop_threshold(p);
  double s = 1 / (1 - p);
  int64_t i = 0;
#ifdef ICLD_AVX2
  if (thr <= 16777216) {
    /* x*s rounded once to float, as the reference: do the product in double */
    __m256d vs = _mm256_set1_pd(s);
    __m256i vthr = _mm256_set1_epi32((int)thr);
    __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; i + 8 <= n; i += 8) {
      __m256 keep = keep8(seed, _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)i), step), vthr);
      __m256 xv = _mm256_loadu_ps(x + i);
      __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), vs));
      __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), vs));
      __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
      _mm256_storeu_ps(out + i, _mm256_and_ps(y, keep));
    }
  }
#endif
  for (; i < n; i++) out[i] = hash_bits(seed, (uint32_t)i) >= thr ? (float)(x[i] * s) : 0.0f;
}

/* ------------------------------------------------------------------ attention */
typedef struct { float *p; size_t cap; } fbuf;
static _Thread_local fbuf tl_att[2];
static float *tl_buf(int which, size_t n) {
  fbuf *b = &tl_att[which];
  if (b->cap < n) {
    free(b->p);
    b->p = (float *)aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
    b->cap = b->p ? n : 0;
  }
  return b->p;
}
/* A length-1 time axis may carry any stride; BLAS wants ld >= D. */
static inline int64_t ld_of(int64_t s, int T, int D) { return (T == 1 && s < D) ? D : s; }

/* Number of allowed keys at the start of row i (causal limit); keys past it are masked. */
static inline int causal_len(int causal, int i, int Tq, int Tk) {
  if (!causal) return Tk;
  int64_t lim = (int64_t)i + Tk - Tq + 1;
  return lim < 0 ? 0 : (lim > Tk ? Tk : (int)lim);
}

/* Turn row S (scaled scores) into P = exp(S - lse) over allowed keys, 0 elsewhere.
 * If lse is NULL computes lse (forward) and returns it; rows with nothing allowed give -inf. */
static float softmax_row_masked(float *s, int n_allowed, int Tk, const float *km, int fwd, float lse_in) {
  if (km) for (int j = 0; j < n_allowed; j++) if (km[j] == 0.0f) s[j] = -INFINITY;
  for (int j = n_allowed; j < Tk; j++) s[j] = 0.0f;
  float l;
  if (fwd) {
    float mx = row_max(s, n_allowed);
    if (mx == -INFINITY) { for (int j = 0; j < n_allowed; j++) s[j] = 0.0f; return -INFINITY; }
    double sum = exp_shift_sum(s, n_allowed, mx, s);
    l = (float)(mx + log(sum));
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n_allowed; j++) s[j] *= inv;
    return l;
  }
  l = lse_in;
  if (l == -INFINITY) { for (int j = 0; j < n_allowed; j++) s[j] = 0.0f; return l; }
  exp_shift_sum(s, n_allowed, l, s); /* exp(-inf - l) = 0 for masked keys */
  return l;
}

/* x[j] *= keep(j) / (1-p) for j < n with dropout indices base + j. */
static void drop_row(float *x, int n, uint64_t base, uint32_t seed, int64_t thr, float sc) {
  int j = 0;
#ifdef ICLD_AVX2
  __m256i vthr = _mm256_set1_epi32((int)(thr > 16777216 ? 16777217 : thr));
  __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 vsc = _mm256_set1_ps(sc);
  for (; j + 8 <= n; j += 8) {
    __m256 keep = keep8(seed, _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)(base + j)), step), vthr);
    _mm256_storeu_ps(x + j, _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), vsc), keep));
  }
#endif
  for (; j < n; j++) x[j] = hash_bits(seed, (uint32_t)(base + j)) >= thr ? x[j] * sc : 0.0f;
}

/* Causal attention is processed in blocks of query rows: a block only needs the keys up to its
 * last row's causal limit, so the two GEMMs skip the masked upper triangle (~40% less work at
 * T=128..256). Non-causal attention uses one block (largest GEMMs). */
enum { ATT_RB = 64 };
static inline int att_block(int causal, int Tq) { return causal && Tq > ATT_RB ? ATT_RB : (Tq > 0 ? Tq : 1); }
/* keys needed by rows < i1 */
static inline int keys_upto(int causal, int i1, int Tq, int Tk) { return causal_len(causal, i1 - 1, Tq, Tk); }

void icld_attention(icld_view q, icld_view k, icld_view v, icld_mview out,
                    int B, int H, int Tq, int Tk, int D, double scale, int causal,
                    const float *keyMask, double dropP, uint32_t seed, float *lse) {
  KDISPATCH(icld_attention, (q, k, v, out, B, H, Tq, Tk, D, scale, causal, keyMask, dropP, seed, lse));
  int BH = B * H;
  int64_t thr = drop_threshold(dropP);
  float dsc = (float)(1 / (1 - dropP));
  int nt = g_threads < BH ? g_threads : BH;
  if (nt < 1) nt = 1;
  int RB = att_block(causal, Tq);
  if (nt > 1) icld_gemm_parallel_begin();
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
  for (int bh = 0; bh < BH; bh++) {
    int b = bh / H, h = bh % H;
    const float *qp = q.p + b * q.s[0] + h * q.s[1];
    const float *kp = k.p + b * k.s[0] + h * k.s[1];
    const float *vp = v.p + b * v.s[0] + h * v.s[1];
    float *op = out.p + b * out.s[0] + h * out.s[1];
    int64_t ldq = ld_of(q.s[2], Tq, D), ldk = ld_of(k.s[2], Tk, D), ldv = ld_of(v.s[2], Tk, D);
    int64_t ldo = ld_of(out.s[2], Tq, D);
    float *S = tl_buf(0, (size_t)RB * (Tk > 0 ? Tk : 1));
    if (!S) continue;
    const float *km = keyMask ? keyMask + (int64_t)b * Tk : NULL;
    for (int i0 = 0; i0 < Tq; i0 += RB) {
      int rows = Tq - i0 < RB ? Tq - i0 : RB;
      int nk = keys_upto(causal, i0 + rows, Tq, Tk);
      /* S = scale * Q_blk K[:nk]^T (nk = 0: nothing allowed, rows come out 0 / -inf) */
      icld_gemm_serial(0, 1, rows, nk, D, (float)scale, qp + i0 * ldq, ldq, kp, ldk, 0.0f, S, nk);
      for (int r = 0; r < rows; r++) {
        int i = i0 + r;
        float *s = S + (int64_t)r * nk;
        int64_t row = (int64_t)bh * Tq + i;
        lse[row] = softmax_row_masked(s, causal_len(causal, i, Tq, Tk), nk, km, 1, 0.0f);
        if (thr > 0 && lse[row] != -INFINITY) drop_row(s, nk, (uint64_t)row * (uint64_t)Tk, seed, thr, dsc);
      }
      icld_gemm_serial(0, 0, rows, D, nk, 1.0f, S, nk, vp, ldv, 0.0f, op + i0 * ldo, ldo);
    }
  }
  if (nt > 1) icld_gemm_parallel_end();
}

void icld_attention_backward(icld_view q, icld_view k, icld_view v, icld_view out, icld_view dout,
                             const float *lse, icld_mview dq, icld_mview dk, icld_mview dv,
                             int B, int H, int Tq, int Tk, int D, double scale, int causal,
                             const float *keyMask, double dropP, uint32_t seed) {
  KDISPATCH(icld_attention_backward, (q, k, v, out, dout, lse, dq, dk, dv, B, H, Tq, Tk, D, scale, causal, keyMask, dropP, seed));
  int BH = B * H;
  int64_t thr = drop_threshold(dropP);
  float dsc = (float)(1 / (1 - dropP));
  int nt = g_threads < BH ? g_threads : BH;
  if (nt < 1) nt = 1;
  int RB = att_block(causal, Tq);
  if (nt > 1) icld_gemm_parallel_begin();
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
#endif
  for (int bh = 0; bh < BH; bh++) {
    int b = bh / H, h = bh % H;
    const float *qp = q.p + b * q.s[0] + h * q.s[1];
    const float *kp = k.p + b * k.s[0] + h * k.s[1];
    const float *vp = v.p + b * v.s[0] + h * v.s[1];
    const float *opp = out.p + b * out.s[0] + h * out.s[1];
    const float *dop = dout.p + b * dout.s[0] + h * dout.s[1];
    float *dqp = dq.p + b * dq.s[0] + h * dq.s[1];
    float *dkp = dk.p + b * dk.s[0] + h * dk.s[1];
    float *dvp = dv.p + b * dv.s[0] + h * dv.s[1];
    int64_t ldq = ld_of(q.s[2], Tq, D), ldk = ld_of(k.s[2], Tk, D), ldv = ld_of(v.s[2], Tk, D);
    int64_t ldo = ld_of(out.s[2], Tq, D), lddo = ld_of(dout.s[2], Tq, D);
    int64_t lddq = ld_of(dq.s[2], Tq, D), lddk = ld_of(dk.s[2], Tk, D), lddv = ld_of(dv.s[2], Tk, D);
    if (Tq == 0 || Tk == 0) {
      for (int i = 0; i < Tq; i++) memset(dqp + i * lddq, 0, sizeof(float) * D);
      for (int j = 0; j < Tk; j++) { memset(dkp + j * lddk, 0, sizeof(float) * D); memset(dvp + j * lddv, 0, sizeof(float) * D); }
      continue;
    }
    float *P = tl_buf(0, (size_t)RB * Tk), *G = tl_buf(1, (size_t)RB * Tk);
    if (!P || !G) continue;
    const float *km = keyMask ? keyMask + (int64_t)b * Tk : NULL;
    /* Blocks from the last (which needs all Tk keys, so beta = 0 initialises dK/dV) to the first
     * (which accumulates into the leading keys only). */
    int nblk = (Tq + RB - 1) / RB;
    for (int blk = nblk - 1; blk >= 0; blk--) {
      int i0 = blk * RB, rows = Tq - i0 < RB ? Tq - i0 : RB;
      int nk = keys_upto(causal, i0 + rows, Tq, Tk);
      float beta = blk == nblk - 1 ? 0.0f : 1.0f;
      if (blk == nblk - 1 && nk < Tk) { /* keys no query may see: zero gradients */
        for (int j = nk; j < Tk; j++) { memset(dkp + j * lddk, 0, sizeof(float) * D); memset(dvp + j * lddv, 0, sizeof(float) * D); }
      }
      const float *qb = qp + i0 * ldq, *dob = dop + i0 * lddo;
      float *dqb = dqp + i0 * lddq;
      if (nk == 0) { for (int r = 0; r < rows; r++) memset(dqb + r * lddq, 0, sizeof(float) * D); continue; }
      /* 1. P = exp(scale*Q_blk K^T - lse) over allowed keys */
      icld_gemm_serial(0, 1, rows, nk, D, (float)scale, qb, ldq, kp, ldk, 0.0f, P, nk);
      for (int r = 0; r < rows; r++)
        softmax_row_masked(P + (int64_t)r * nk, causal_len(causal, i0 + r, Tq, Tk), nk, km, 0, lse[(int64_t)bh * Tq + i0 + r]);
      /* 2. dV[:nk] (+)= P_drop^T dO_blk (P_drop built in G when dropout is on) */
      const float *Pd = P;
      if (thr > 0) {
        memcpy(G, P, sizeof(float) * (size_t)rows * nk);
        for (int r = 0; r < rows; r++)
          drop_row(G + (int64_t)r * nk, nk, ((uint64_t)bh * Tq + i0 + r) * (uint64_t)Tk, seed, thr, dsc);
        Pd = G;
      }
      icld_gemm_serial(1, 0, nk, D, rows, 1.0f, Pd, nk, dob, lddo, beta, dvp, lddv);
      /* 3. G = dO V^T (gradient wrt P_drop); dS = P * (G*keep/(1-p) - delta), delta = dO.O */
      icld_gemm_serial(0, 1, rows, nk, D, 1.0f, dob, lddo, vp, ldv, 0.0f, G, nk);
      for (int r = 0; r < rows; r++) {
        float *g = G + (int64_t)r * nk;
        const float *p = P + (int64_t)r * nk;
        const float *orow = opp + (i0 + r) * ldo, *drow = dob + r * lddo;
        double delta = 0;
        for (int d = 0; d < D; d++) delta += (double)drow[d] * orow[d];
        if (thr > 0) drop_row(g, nk, ((uint64_t)bh * Tq + i0 + r) * (uint64_t)Tk, seed, thr, dsc);
        float df = (float)delta;
        for (int j = 0; j < nk; j++) g[j] = p[j] * (g[j] - df);
      }
      /* 4. dQ_blk = scale * dS K[:nk] ; dK[:nk] (+)= scale * dS^T Q_blk */
      icld_gemm_serial(0, 0, rows, D, nk, (float)scale, G, nk, kp, ldk, 0.0f, dqb, lddq);
      icld_gemm_serial(1, 0, nk, D, rows, (float)scale, G, nk, qb, ldq, beta, dkp, lddk);
    }
  }
  if (nt > 1) icld_gemm_parallel_end();
}

/* ------------------------------------------------------------------ AdamW */
void icld_adamw(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1,
                double b2, double eps, double wd, double bc1, double bc2) {
  KDISPATCH(icld_adamw, (p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2));
  /* double math per element like the reference; the loop vectorises (4 doubles) */
  double c1 = 1 - b1, c2 = 1 - b2, ib1 = 1 / bc1, ib2 = 1 / bc2;
  for (int64_t i = 0; i < n; i++) {
    double gi = g[i];
    float mi = (float)(b1 * m[i] + c1 * gi);
    float vi = (float)(b2 * v[i] + c2 * gi * gi);
    m[i] = mi; v[i] = vi;
    double pi = p[i];
    p[i] = (float)(pi - lr * ((mi * ib1) / (sqrt(vi * ib2) + eps) + wd * pi));
  }
}
