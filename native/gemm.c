/* GEMM: OpenBLAS when built with ICLD_OPENBLAS, else a builtin packed, cache-blocked sgemm
 * with a 6x16 AVX2/FMA register tile (Goto/BLIS loop order: jc -> pc -> ic -> jr -> ir).
 * The addon is built for plain x86-64: the AVX2 micro-kernel and small-M kernels carry target
 * attributes and icld_gemm_select() (called from quant.c's dispatch) picks them at run time. */
#include "kernels.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ICLD_AVX2 1
#define T_AVX2 __attribute__((target("avx2,fma")))
#endif

#ifdef ICLD_OPENBLAS
#include <cblas.h>
/* Declared here because not every cblas.h (e.g. the netlib alternative) declares it. */
extern void openblas_set_num_threads(int);
#endif

static int g_gemm_threads = 1;

/* C = beta*C for an M×N block (beta = 0 writes zeros, ignoring NaN in C). */
static void scale_c(int M, int N, float beta, float *C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int i = 0; i < M; i++) {
    float *c = C + (int64_t)i * ldc;
    if (beta == 0.0f) memset(c, 0, sizeof(float) * (size_t)N);
    else for (int j = 0; j < N; j++) c[j] *= beta;
  }
}

/* ------------------------------------------------------------------ builtin sgemm */
#define MR 6
#define NR 16
#define KC 384
#define MC 96  /* MC*KC*4 = 144 KiB of packed A stays in the 512 KiB L2; a 16xKC B panel (24 KiB) in L1 */
#define NC 2048

typedef struct { float *a, *b; size_t acap, bcap; } pack_bufs;
static _Thread_local pack_bufs tl_bufs;

static float *grow(float **p, size_t *cap, size_t n) {
  if (*cap < n) {
    free(*p);
    /* 64-byte aligned so packed panels can be loaded with aligned vector loads */
    *p = (float *)aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
    *cap = *p ? n : 0;
  }
  return *p;
}

/* Pack op(A)[i0:i0+mc, p0:p0+kc] * alpha into MR-row panels, zero-padded to a multiple of MR. */
static void pack_a(int transA, const float *A, int64_t lda, int i0, int mc, int p0, int kc,
                   float alpha, float *dst) {
  for (int ip = 0; ip < mc; ip += MR) {
    int mr = mc - ip < MR ? mc - ip : MR;
    float *d = dst + (int64_t)ip * kc;
    if (transA) { /* A stored K×M: a column of op(A) panel is contiguous in memory */
      for (int k = 0; k < kc; k++) {
        const float *s = A + (int64_t)(p0 + k) * lda + i0 + ip;
        int r = 0;
        for (; r < mr; r++) d[k * MR + r] = alpha * s[r];
        for (; r < MR; r++) d[k * MR + r] = 0.0f;
      }
    } else {
      for (int r = 0; r < MR; r++) {
        if (r < mr) {
          const float *s = A + (int64_t)(i0 + ip + r) * lda + p0;
          for (int k = 0; k < kc; k++) d[k * MR + r] = alpha * s[k];
        } else {
          for (int k = 0; k < kc; k++) d[k * MR + r] = 0.0f;
        }
      }
    }
  }
}

/* Pack op(B)[p0:p0+kc, j0:j0+nc] into NR-column panels, zero-padded to a multiple of NR. */
static void pack_b(int transB, const float *B, int64_t ldb, int p0, int kc, int j0, int nc, float *dst) {
  for (int jp = 0; jp < nc; jp += NR) {
    int nr = nc - jp < NR ? nc - jp : NR;
    float *d = dst + (int64_t)jp * kc;
    if (!transB) {
      for (int k = 0; k < kc; k++) {
        const float *s = B + (int64_t)(p0 + k) * ldb + j0 + jp;
        if (nr == NR) memcpy(d + k * NR, s, sizeof(float) * NR);
        else {
          int j = 0;
          for (; j < nr; j++) d[k * NR + j] = s[j];
          for (; j < NR; j++) d[k * NR + j] = 0.0f;
        }
      }
    } else { /* B stored N×K: each output column is a contiguous row of B */
      for (int j = 0; j < NR; j++) {
        if (j < nr) {
          const float *s = B + (int64_t)(j0 + jp + j) * ldb + p0;
          for (int k = 0; k < kc; k++) d[k * NR + j] = s[k];
        } else {
          for (int k = 0; k < kc; k++) d[k * NR + j] = 0.0f;
        }
      }
    }
  }
}

/* mode 0: C = acc; 1: C += acc; 2: C = beta*C + acc. */
static inline void store_tile(const float *acc, float *C, int64_t ldc, int mr, int nr, int mode, float beta) {
  for (int r = 0; r < mr; r++) {
    float *c = C + (int64_t)r * ldc;
    const float *s = acc + r * NR;
    if (mode == 0) for (int j = 0; j < nr; j++) c[j] = s[j];
    else if (mode == 1) for (int j = 0; j < nr; j++) c[j] += s[j];
    else for (int j = 0; j < nr; j++) c[j] = beta * c[j] + s[j];
  }
}

static void ukernel_scalar(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr,
                           int mode, float beta) {
  float tmp[MR * NR];
  memset(tmp, 0, sizeof tmp);
  for (int k = 0; k < kc; k++)
    for (int r = 0; r < MR; r++)
      for (int j = 0; j < NR; j++) tmp[r * NR + j] += a[k * MR + r] * b[k * NR + j];
  store_tile(tmp, C, ldc, mr, nr, mode, beta);
}

#ifdef ICLD_AVX2
T_AVX2 static void ukernel_avx2(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr,
                                int mode, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av;
    av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR; b += NR;
  }
  if (mr == MR && nr == NR) { /* full tile: update C straight from registers */
    __m256 acc[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    __m256 vb = _mm256_set1_ps(beta);
    for (int r = 0; r < MR; r++) {
      float *c = C + (int64_t)r * ldc;
      __m256 x0 = acc[2 * r], x1 = acc[2 * r + 1];
      if (mode == 1) { x0 = _mm256_add_ps(x0, _mm256_loadu_ps(c)); x1 = _mm256_add_ps(x1, _mm256_loadu_ps(c + 8)); }
      else if (mode == 2) { x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x0); x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), x1); }
      _mm256_storeu_ps(c, x0); _mm256_storeu_ps(c + 8, x1);
    }
    return;
  }
  float tmp[MR * NR] __attribute__((aligned(32)));
  _mm256_store_ps(tmp + 0, c00); _mm256_store_ps(tmp + 8, c01);
  _mm256_store_ps(tmp + 16, c10); _mm256_store_ps(tmp + 24, c11);
  _mm256_store_ps(tmp + 32, c20); _mm256_store_ps(tmp + 40, c21);
  _mm256_store_ps(tmp + 48, c30); _mm256_store_ps(tmp + 56, c31);
  _mm256_store_ps(tmp + 64, c40); _mm256_store_ps(tmp + 72, c41);
  _mm256_store_ps(tmp + 80, c50); _mm256_store_ps(tmp + 88, c51);
  store_tile(tmp, C, ldc, mr, nr, mode, beta);
}
#endif

typedef void (*ukernel_fn)(int kc, const float *a, const float *b, float *C, int64_t ldc, int mr, int nr,
                           int mode, float beta);
static ukernel_fn g_ukernel = ukernel_scalar;

/* Small-M path (decode: M = 1..4 rows). Packing would cost as much as the math here, so:
 * B not transposed -> row axpys over B (streams B once); B transposed -> contiguous dot products
 * of the op(A) row with each row of B (also streams B once). Both are memory-bound, as they must be. */
#define SMALL_M 4
static inline __attribute__((always_inline)) float dot_f_scalar(const float *a, const float *b, int n) {
  float r = 0.0f;
  for (int k = 0; k < n; k++) r += a[k] * b[k];
  return r;
}
#ifdef ICLD_AVX2
T_AVX2 static inline __attribute__((always_inline)) float dot_f_avx2(const float *a, const float *b, int n) {
  int k = 0;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  for (; k + 32 <= n; k += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
  }
  for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float r = _mm_cvtss_f32(h);
  for (; k < n; k++) r += a[k] * b[k];
  return r;
}
#endif

static _Thread_local float *tl_row;
static _Thread_local size_t tl_row_cap;

/* Columns [j0, j1) of the small-M product. Inlined into one wrapper per ISA (below) so the
 * row-axpy loop is auto-vectorised for that ISA and `dot` becomes a direct inlined call. */
typedef float (*dot_fn)(const float *, const float *, int);
static inline __attribute__((always_inline)) void small_m_cols_impl(
    dot_fn dot, int transA, int transB, int M, int j0, int j1, int K, float alpha,
    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  int w = j1 - j0;
  if (w <= 0) return;
  if (!transB) { /* p outer: each row of B is read once for all M rows of C */
    scale_c(M, w, beta, C + j0, ldc);
    for (int p = 0; p < K; p++) {
      const float *b = B + (int64_t)p * ldb + j0;
      for (int i = 0; i < M; i++) {
        float av = alpha * (transA ? A[(int64_t)p * lda + i] : A[(int64_t)i * lda + p]);
        float *c = C + (int64_t)i * ldc + j0;
        for (int j = 0; j < w; j++) c[j] += av * b[j];
      }
    }
    return;
  }
  /* B^T: op(A) rows made contiguous, then j outer so each row of B is read once */
  const float *rows[SMALL_M];
  float *buf = NULL;
  if (transA) {
    buf = grow(&tl_row, &tl_row_cap, (size_t)M * K);
    if (!buf) return;
    for (int p = 0; p < K; p++)
      for (int i = 0; i < M; i++) buf[(int64_t)i * K + p] = A[(int64_t)p * lda + i];
  }
  for (int i = 0; i < M; i++) rows[i] = transA ? buf + (int64_t)i * K : A + (int64_t)i * lda;
  for (int j = j0; j < j1; j++) {
    const float *b = B + (int64_t)j * ldb;
    for (int i = 0; i < M; i++) {
      float *c = C + (int64_t)i * ldc + j;
      float d = alpha * dot(rows[i], b, K);
      *c = beta == 0.0f ? d : d + beta * *c;
    }
  }
}

/* [K,N] B (GPT-2 Conv1D weights), small M: R rows of B per pass over the columns, so C is loaded
 * and stored once per R rows (not once per row) and B is read as R sequential streams the
 * hardware prefetchers follow. Measured on the target, GPT-2 124M's layer weights at M=1:
 * 26.5 ms of CPU per pass with the row-at-a-time axpy, ~16 ms this way (~21 GB/s). */
#define IO_R 8
static inline __attribute__((always_inline)) void small_io_generic(
    int transA, int M, int j0, int j1, int K, float alpha, const float *A, int64_t lda,
    const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  int w = j1 - j0;
  if (w <= 0) return;
  scale_c(M, w, beta, C + j0, ldc);
  int p = 0;
  for (; p + IO_R <= K; p += IO_R) {
    const float *b = B + (int64_t)p * ldb + j0;
    for (int i = 0; i < M; i++) {
      float a[IO_R];
      for (int q = 0; q < IO_R; q++) a[q] = alpha * (transA ? A[(int64_t)(p + q) * lda + i] : A[(int64_t)i * lda + p + q]);
      float *restrict c = C + (int64_t)i * ldc + j0;
      for (int j = 0; j < w; j++)
        c[j] += a[0] * b[j] + a[1] * b[ldb + j] + a[2] * b[2 * ldb + j] + a[3] * b[3 * ldb + j] +
                a[4] * b[4 * ldb + j] + a[5] * b[5 * ldb + j] + a[6] * b[6 * ldb + j] + a[7] * b[7 * ldb + j];
    }
  }
  for (; p < K; p++) {
    const float *b = B + (int64_t)p * ldb + j0;
    for (int i = 0; i < M; i++) {
      float av = alpha * (transA ? A[(int64_t)p * lda + i] : A[(int64_t)i * lda + p]);
      float *restrict c = C + (int64_t)i * ldc + j0;
      for (int j = 0; j < w; j++) c[j] += av * b[j];
    }
  }
}

#ifdef ICLD_AVX2
#define T_512 __attribute__((target("avx2,fma,avx512f")))
/* AVX-512: 16 rows of B per pass (held in registers, shared by the M output rows) for M <= 2,
 * 8 for M = 3, 4 (16 measured best of 8 / 16 / 32 at M=1); ragged column edge through a mask. */
T_512 static inline __attribute__((always_inline)) void small_io_512_m(
    const int M, int transA, int j0, int j1, int K, float alpha, const float *A, int64_t lda,
    const float *B, int64_t ldb, float *C, int64_t ldc) {
  const int R = M <= 2 ? 16 : 8;
  int p = 0;
  for (; p + R <= K; p += R) {
    float a[4][16];
    for (int i = 0; i < M; i++)
      for (int q = 0; q < R; q++) a[i][q] = alpha * (transA ? A[(int64_t)(p + q) * lda + i] : A[(int64_t)i * lda + p + q]);
    const float *b = B + (int64_t)p * ldb;
    for (int j = j0; j < j1; j += 16) {
      __mmask16 mk = j1 - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (j1 - j)) - 1);
      __m512 wv[16];
      for (int q = 0; q < R; q++) wv[q] = _mm512_maskz_loadu_ps(mk, b + q * ldb + j);
      for (int i = 0; i < M; i++) {
        float *c = C + (int64_t)i * ldc + j;
        __m512 s = _mm512_maskz_loadu_ps(mk, c), t = _mm512_mul_ps(_mm512_set1_ps(a[i][1]), wv[1]);
        s = _mm512_fmadd_ps(_mm512_set1_ps(a[i][0]), wv[0], s);
        for (int q = 2; q < R; q += 2) {
          s = _mm512_fmadd_ps(_mm512_set1_ps(a[i][q]), wv[q], s);
          t = _mm512_fmadd_ps(_mm512_set1_ps(a[i][q + 1]), wv[q + 1], t);
        }
        _mm512_mask_storeu_ps(c, mk, _mm512_add_ps(s, t));
      }
    }
  }
  for (; p < K; p++) {
    const float *b = B + (int64_t)p * ldb;
    for (int i = 0; i < M; i++) {
      __m512 av = _mm512_set1_ps(alpha * (transA ? A[(int64_t)p * lda + i] : A[(int64_t)i * lda + p]));
      float *c = C + (int64_t)i * ldc;
      for (int j = j0; j < j1; j += 16) {
        __mmask16 mk = j1 - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (j1 - j)) - 1);
        _mm512_mask_storeu_ps(c + j, mk, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mk, b + j), _mm512_maskz_loadu_ps(mk, c + j)));
      }
    }
  }
}
T_512 static void small_m_cols_512(int transA, int transB, int M, int j0, int j1, int K, float alpha,
                                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (transB) { small_m_cols_impl(dot_f_avx2, transA, transB, M, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
  if (j1 <= j0) return;
  scale_c(M, j1 - j0, beta, C + j0, ldc);
  switch (M) {
    case 1: small_io_512_m(1, transA, j0, j1, K, alpha, A, lda, B, ldb, C, ldc); break;
    case 2: small_io_512_m(2, transA, j0, j1, K, alpha, A, lda, B, ldb, C, ldc); break;
    case 3: small_io_512_m(3, transA, j0, j1, K, alpha, A, lda, B, ldb, C, ldc); break;
    default: small_io_512_m(4, transA, j0, j1, K, alpha, A, lda, B, ldb, C, ldc); break;
  }
}
#endif

typedef void (*small_fn)(int transA, int transB, int M, int j0, int j1, int K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
static void small_m_cols_scalar(int transA, int transB, int M, int j0, int j1, int K, float alpha,
                                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (!transB) { small_io_generic(transA, M, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
  small_m_cols_impl(dot_f_scalar, transA, transB, M, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#ifdef ICLD_AVX2
T_AVX2 static void small_m_cols_avx2(int transA, int transB, int M, int j0, int j1, int K, float alpha,
                                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (!transB) { small_io_generic(transA, M, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
  small_m_cols_impl(dot_f_avx2, transA, transB, M, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif
static small_fn g_small = small_m_cols_scalar;

/* Memory-bound, so with several threads each streams its own slice of B's columns. */
static void gemm_small_m(int transA, int transB, int M, int N, int K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc, int nthreads) {
  int nt = nthreads;
#ifdef _OPENMP
  if (omp_in_parallel() || (double)N * K < 4e6) nt = 1; /* >= 16 MB of B: region cost negligible */
#else
  nt = 1;
#endif
  if (nt <= 1) { g_small(transA, transB, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    /* slices aligned to 16 columns so threads never share a cache line of C */
    int per = ((N + T - 1) / T + 15) / 16 * 16;
    int j0 = t * per, j1 = j0 + per < N ? j0 + per : N;
    g_small(transA, transB, M, j0 < N ? j0 : N, j1, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
#endif
}

static void gemm_builtin(int transA, int transB, int M, int N, int K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb,
                         float beta, float *C, int64_t ldc, int nthreads) {
  pack_bufs *tb = &tl_bufs;
  int ncmax = N < NC ? N : NC;
  int kcmax = K < KC ? K : KC;
  float *pb = grow(&tb->b, &tb->bcap, (size_t)((ncmax + NR - 1) / NR * NR) * kcmax);
  if (!pb) return;
  for (int jc = 0; jc < N; jc += NC) {
    int nc = N - jc < NC ? N - jc : NC;
    for (int pc = 0; pc < K; pc += KC) {
      int kc = K - pc < KC ? K - pc : KC;
      int mode = pc > 0 ? 1 : (beta == 0.0f ? 0 : (beta == 1.0f ? 1 : 2));
      pack_b(transB, B, ldb, pc, kc, jc, nc, pb);
      int nblk = (M + MC - 1) / MC;
      int nt = nthreads;
      (void)nt;
#ifdef _OPENMP
      if (nt > nblk) nt = nblk;
      if (omp_in_parallel()) nt = 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
      for (int blk = 0; blk < nblk; blk++) {
        int ic = blk * MC;
        int mc = M - ic < MC ? M - ic : MC;
        pack_bufs *mb = &tl_bufs;
        float *pa = grow(&mb->a, &mb->acap, (size_t)MC * KC);
        if (!pa) continue;
        pack_a(transA, A, lda, ic, mc, pc, kc, alpha, pa);
        for (int jr = 0; jr < nc; jr += NR) {
          int nr = nc - jr < NR ? nc - jr : NR;
          const float *bp = pb + (int64_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = mc - ir < MR ? mc - ir : MR;
            g_ukernel(kc, pa + (int64_t)ir * kc, bp, C + (int64_t)(ic + ir) * ldc + jc + jr, ldc, mr, nr, mode, beta);
          }
        }
      }
    }
  }
}

/* ------------------------------------------------------------------ dispatch */
static void gemm_one(int transA, int transB, int M, int N, int K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc, int nthreads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
  /* decode-sized products: OpenBLAS sgemm packs B even for one row (measured 3x slower here) */
  if (M <= SMALL_M) { gemm_small_m(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nthreads); return; }
#ifdef ICLD_OPENBLAS
  (void)nthreads;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
  gemm_builtin(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nthreads);
#endif
}

void icld_gemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int64_t lda, int64_t strideA,
               const float *B, int64_t ldb, int64_t strideB,
               float beta, float *C, int64_t ldc, int64_t strideC, int batch) {
  int nt = g_gemm_threads;
  /* Many small products (per-head attention matmuls): one thread per item beats splitting each. */
  if (nt > 1 && batch >= nt && (double)M * N * K < 4e6) {
    icld_gemm_parallel_begin();
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int b = 0; b < batch; b++)
      gemm_one(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta,
               C + b * strideC, ldc, 1);
    icld_gemm_parallel_end();
    return;
  }
  for (int b = 0; b < batch; b++)
    gemm_one(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta,
             C + b * strideC, ldc, nt);
}

void icld_gemm_serial(int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
  gemm_one(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
}

/* Our own OpenMP regions call icld_gemm_serial from several threads at once: OpenBLAS must then
 * run single-threaded or threads would multiply (OpenMP x OpenBLAS). */
void icld_gemm_parallel_begin(void) {
#ifdef ICLD_OPENBLAS
  if (g_gemm_threads > 1) openblas_set_num_threads(1);
#endif
}
void icld_gemm_parallel_end(void) {
#ifdef ICLD_OPENBLAS
  if (g_gemm_threads > 1) openblas_set_num_threads(g_gemm_threads);
#endif
}

void icld_gemm_set_threads(int n) {
  g_gemm_threads = n < 1 ? 1 : n;
#ifdef ICLD_OPENBLAS
  openblas_set_num_threads(g_gemm_threads);
#endif
}

static const char *g_gemm_path = "scalar";
void icld_gemm_select(unsigned allowed) {
  g_ukernel = ukernel_scalar; g_small = small_m_cols_scalar; g_gemm_path = "scalar";
#ifdef ICLD_AVX2
  if ((allowed & (ICLD_CPU_AVX2 | ICLD_CPU_FMA)) == (ICLD_CPU_AVX2 | ICLD_CPU_FMA)) {
    g_ukernel = ukernel_avx2; g_small = small_m_cols_avx2; g_gemm_path = "avx2";
    if (allowed & ICLD_CPU_AVX512F) g_small = small_m_cols_512;
  }
#endif
}
/* "openblas" (its own dispatch; small-M products still use ours) or the builtin kernel's ISA. */
const char *icld_gemm_path(void) {
#ifdef ICLD_OPENBLAS
  return "openblas";
#else
  return g_gemm_path;
#endif
}

const char *icld_gemm_provider(void) {
#ifdef ICLD_OPENBLAS
  return "openblas";
#else
  return "builtin";
#endif
}
