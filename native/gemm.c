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
static int g_blas_cur = -1;
/* OpenBLAS's thread count, set only when it changes (the decoder switches it every prefill step) */
static void set_blas(int n) { if (n != g_blas_cur) { openblas_set_num_threads(n); g_blas_cur = n; } }
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
  if (g_gemm_threads > 1) set_blas(1);
#endif
}
void icld_gemm_parallel_end(void) {
#ifdef ICLD_OPENBLAS
  set_blas(g_gemm_threads);
#endif
}

void icld_gemm_set_threads(int n) {
  g_gemm_threads = n < 1 ? 1 : n;
#ifdef ICLD_OPENBLAS
  set_blas(g_gemm_threads);
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

/* ------------------------------------------------------------------ bf16 GEMM (mixed-precision training)
 * Contract (Backend.gemmBf16): every element of op(A) and op(B) rounded to bf16 (nearest even, NaN
 * kept as NaN), products and sums in fp32. Always the builtin packed loop (whatever the fp32
 * provider): the packers do the rounding. With AVX-512-BF16 the panels hold bf16 pairs along K for
 * vdpbf16ps (a 12x32 tile, 24 zmm accumulators); elsewhere they hold the rounded values as f32 for
 * the fp32 micro-kernel (same numbers, no speedup). vdpbf16ps treats denormal inputs as zero; bf16
 * operands below 1.2e-38 are the only place the two paths can differ beyond summation order. */
#define MRB 12
#define NRB 32
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define ICLD_HAVE_BF16_KERNEL 1 /* the compiler knows avx512bf16 (intrinsics, target attribute, cpu check) */
#endif

static inline uint16_t bf16_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN stays NaN (canonical, as half.ts) */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf16_round(float x) {
  uint32_t u = (uint32_t)bf16_bits(x) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* -1: not decided yet; 0: emulated (rounded f32 panels); 1: vdpbf16ps. */
static int g_bf16_path = -1;
static int bf16_cpu(void) {
#ifdef ICLD_HAVE_BF16_KERNEL
  /* own check until native/cpu.c's feature API is merged; gcc's also checks the OS saves zmm state */
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}
static int bf16_path(void) {
  if (g_bf16_path < 0) {
    const char *e = getenv("ICLD_BF16_EMULATE");
    g_bf16_path = (e && *e && strcmp(e, "0") != 0) ? 0 : bf16_cpu();
  }
  return g_bf16_path;
}
int icld_gemm_bf16_force(int mode) {
  if (mode < 0) { g_bf16_path = -1; return bf16_path(); }
  g_bf16_path = mode > 0 ? bf16_cpu() : 0;
  return g_bf16_path;
}
const char *icld_gemm_bf16_path(void) { return bf16_path() ? "avx512_bf16" : "emulated"; }

/* Emulated path: op(A) rows (rounded, times alpha) and op(B) columns (rounded) in the fp32 panel
 * layouts of pack_a / pack_b. */
static void pack_a_round(int transA, const float *A, int64_t lda, int i0, int mc, int p0, int kc,
                         float alpha, float *dst) {
  for (int ip = 0; ip < mc; ip += MR) {
    int mr = mc - ip < MR ? mc - ip : MR;
    float *d = dst + (int64_t)ip * kc;
    for (int k = 0; k < kc; k++)
      for (int r = 0; r < MR; r++) {
        int64_t i = i0 + ip + r, kk = p0 + k;
        d[k * MR + r] = r < mr ? alpha * bf16_round(transA ? A[kk * lda + i] : A[i * lda + kk]) : 0.0f;
      }
  }
}
static void pack_b_round(int transB, const float *B, int64_t ldb, int p0, int kc, int j0, int nc, float *dst) {
  for (int jp = 0; jp < nc; jp += NR) {
    int nr = nc - jp < NR ? nc - jp : NR;
    float *d = dst + (int64_t)jp * kc;
    for (int k = 0; k < kc; k++)
      for (int j = 0; j < NR; j++) {
        int64_t kk = p0 + k, jj = j0 + jp + j;
        d[k * NR + j] = j < nr ? bf16_round(transB ? B[jj * ldb + kk] : B[kk * ldb + jj]) : 0.0f;
      }
  }
}

/* vdpbf16ps path. A panel (MRB rows): per K pair p, MRB u32 = (bf16 a[r][2p] | bf16 a[r][2p+1] << 16).
 * B panel (NRB columns): per K pair p, NRB u32 = (bf16 b[2p][j] | bf16 b[2p+1][j] << 16).
 * An odd kc is padded with a zero element. */
static void pack_a_bf16(int transA, const float *A, int64_t lda, int i0, int mc, int p0, int kc, uint32_t *dst) {
  int kp = (kc + 1) / 2;
  for (int ip = 0; ip < mc; ip += MRB) {
    int mr = mc - ip < MRB ? mc - ip : MRB;
    uint32_t *d = dst + (int64_t)ip * kp;
    if (transA) { /* A stored K×M: rows of op(A) are columns of A, so walk K outside */
      for (int p = 0; p < kp; p++) {
        const float *s0 = A + (int64_t)(p0 + 2 * p) * lda + i0 + ip;
        const float *s1 = 2 * p + 1 < kc ? s0 + lda : NULL;
        for (int r = 0; r < MRB; r++)
          d[p * MRB + r] = r < mr ? (uint32_t)bf16_bits(s0[r]) | (s1 ? (uint32_t)bf16_bits(s1[r]) << 16 : 0u) : 0u;
      }
    } else {
      for (int r = 0; r < MRB; r++) {
        if (r >= mr) { for (int p = 0; p < kp; p++) d[p * MRB + r] = 0; continue; }
        const float *s = A + (int64_t)(i0 + ip + r) * lda + p0;
        int p = 0;
        for (; 2 * p + 1 < kc; p++) d[p * MRB + r] = (uint32_t)bf16_bits(s[2 * p]) | (uint32_t)bf16_bits(s[2 * p + 1]) << 16;
        if (p < kp) d[p * MRB + r] = bf16_bits(s[2 * p]);
      }
    }
  }
}
static void pack_b_bf16_panel(int transB, const float *B, int64_t ldb, int p0, int kc, int j0, int nr, uint32_t *d) {
  int kp = (kc + 1) / 2;
  if (!transB) {
    for (int p = 0; p < kp; p++) {
      const float *s0 = B + (int64_t)(p0 + 2 * p) * ldb + j0;
      const float *s1 = 2 * p + 1 < kc ? s0 + ldb : NULL;
      uint32_t *o = d + (int64_t)p * NRB;
      int j = 0;
      for (; j < nr; j++) o[j] = (uint32_t)bf16_bits(s0[j]) | (s1 ? (uint32_t)bf16_bits(s1[j]) << 16 : 0u);
      for (; j < NRB; j++) o[j] = 0;
    }
  } else { /* B stored N×K: column j of op(B) is a contiguous row of B */
    for (int j = 0; j < NRB; j++) {
      if (j >= nr) { for (int p = 0; p < kp; p++) d[(int64_t)p * NRB + j] = 0; continue; }
      const float *s = B + (int64_t)(j0 + j) * ldb + p0;
      int p = 0;
      for (; 2 * p + 1 < kc; p++) d[(int64_t)p * NRB + j] = (uint32_t)bf16_bits(s[2 * p]) | (uint32_t)bf16_bits(s[2 * p + 1]) << 16;
      if (p < kp) d[(int64_t)p * NRB + j] = bf16_bits(s[2 * p]);
    }
  }
}

#ifdef ICLD_HAVE_BF16_KERNEL
#include <immintrin.h>
/* C[mr×nr] (mode 0: =, 1: +=, 2: beta*C +) alpha * Σ_p a_pair·b_pair over kp K pairs. */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
static void ukernel_bf16(int kp, const uint32_t *a, const uint32_t *b, float *C, int64_t ldc, int mr, int nr,
                         float alpha, int mode, float beta) {
  __m512 c[MRB][2];
#pragma GCC unroll 12
  for (int r = 0; r < MRB; r++) { c[r][0] = _mm512_setzero_ps(); c[r][1] = _mm512_setzero_ps(); }
  for (int p = 0; p < kp; p++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b), b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
#pragma GCC unroll 12
    for (int r = 0; r < MRB; r++) {
      __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r]);
      c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
      c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
    }
    a += MRB; b += NRB;
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1u);
  __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
#pragma GCC unroll 12
  for (int r = 0; r < MRB; r++) {
    if (r >= mr) break;
    float *cr = C + (int64_t)r * ldc;
    __m512 x0 = _mm512_mul_ps(va, c[r][0]), x1 = _mm512_mul_ps(va, c[r][1]);
    if (mode == 1) { x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, cr)); x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, cr + 16)); }
    else if (mode == 2) { x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0); x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1); }
    _mm512_mask_storeu_ps(cr, m0, x0);
    _mm512_mask_storeu_ps(cr + 16, m1, x1);
  }
}
#endif

typedef struct { void *a, *b; size_t acap, bcap; } bf16_bufs;
static _Thread_local bf16_bufs tl_bf16;
static void *grow_bytes(void **p, size_t *cap, size_t n) {
  if (*cap < n) {
    free(*p);
    *p = aligned_alloc(64, (n + 63) / 64 * 64);
    *cap = *p ? n : 0;
  }
  return *p;
}

/* One bf16 product: jc -> pc -> (B panels packed by all threads) -> M blocks shared by the threads. */
static void gemm_bf16_one(int transA, int transB, int M, int N, int K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, float *C, int64_t ldc, int nthreads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
  int native = 0;
#ifdef ICLD_HAVE_BF16_KERNEL
  native = bf16_path();
#endif
  int mr = native ? MRB : MR, nrp = native ? NRB : NR;
  int nt = nthreads;
#ifdef _OPENMP
  if (omp_in_parallel()) nt = 1;
#else
  nt = 1;
#endif
  /* M blocks: at most MC rows, a multiple of the tile height, as many as keep every thread busy */
  int per = (M + nt - 1) / nt;
  int rounds = (per + MC - 1) / MC;
  int mcb = ((per + rounds - 1) / rounds + mr - 1) / mr * mr;
  if (mcb > MC) mcb = MC / mr * mr;
  int nblk = (M + mcb - 1) / mcb;
  if (nt > nblk) nt = nblk;
  int ncmax = N < NC ? N : NC, kcmax = K < KC ? K : KC;
  size_t bbytes = (size_t)((ncmax + nrp - 1) / nrp * nrp) * (size_t)(kcmax + 1) * 4;
  bf16_bufs *tb = &tl_bf16;
  void *pb = grow_bytes(&tb->b, &tb->bcap, bbytes);
  if (!pb) return;
  for (int jc = 0; jc < N; jc += NC) {
    int nc = N - jc < NC ? N - jc : NC;
    int npan = (nc + nrp - 1) / nrp;
    for (int pc = 0; pc < K; pc += KC) {
      int kc = K - pc < KC ? K - pc : KC, kp = (kc + 1) / 2;
      int mode = pc > 0 ? 1 : (beta == 0.0f ? 0 : (beta == 1.0f ? 1 : 2));
      (void)kp;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
      {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int q = 0; q < npan; q++) {
          int j0 = q * nrp, w = nc - j0 < nrp ? nc - j0 : nrp;
          if (native) pack_b_bf16_panel(transB, B, ldb, pc, kc, jc + j0, w, (uint32_t *)pb + (int64_t)q * kp * NRB);
          else pack_b_round(transB, B, ldb, pc, kc, jc + j0, w, (float *)pb + (int64_t)j0 * kc);
        }
        /* (implicit barrier: every B panel packed before any tile uses it) */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int blk = 0; blk < nblk; blk++) {
          int ic = blk * mcb, mc = M - ic < mcb ? M - ic : mcb;
          bf16_bufs *mb = &tl_bf16;
          void *pa = grow_bytes(&mb->a, &mb->acap, (size_t)MC * (KC + 1) * 4);
          if (!pa) continue;
          if (native) {
#ifdef ICLD_HAVE_BF16_KERNEL
            pack_a_bf16(transA, A, lda, ic, mc, pc, kc, (uint32_t *)pa);
            for (int q = 0; q < npan; q++) {
              int jr = q * NRB, nr = nc - jr < NRB ? nc - jr : NRB;
              const uint32_t *bp = (const uint32_t *)pb + (int64_t)q * kp * NRB;
              for (int ir = 0; ir < mc; ir += MRB) {
                int m = mc - ir < MRB ? mc - ir : MRB;
                ukernel_bf16(kp, (const uint32_t *)pa + (int64_t)ir * kp, bp, C + (int64_t)(ic + ir) * ldc + jc + jr, ldc, m, nr, alpha, mode, beta);
              }
            }
#endif
          } else {
            pack_a_round(transA, A, lda, ic, mc, pc, kc, alpha, (float *)pa);
            for (int jr = 0; jr < nc; jr += NR) {
              int nr = nc - jr < NR ? nc - jr : NR;
              const float *bp = (const float *)pb + (int64_t)jr * kc;
              for (int ir = 0; ir < mc; ir += MR) {
                int m = mc - ir < MR ? mc - ir : MR;
                g_ukernel(kc, (const float *)pa + (int64_t)ir * kc, bp, C + (int64_t)(ic + ir) * ldc + jc + jr, ldc, m, nr, mode, beta);
              }
            }
          }
        }
      }
    }
  }
}

/* Threads split C by columns (NRB-aligned slices): each runs the whole serial loop on its slice,
 * packing A itself (A packing is ~1/(N/nt) of the work), so the only synchronisation is the end of
 * one parallel region. Measured on the busy 2-vCPU target, the M-block split with its per-panel
 * barriers made a 2-thread bf16 training step slower than the 1-thread one. */
static void gemm_bf16_cols(int transA, int transB, int M, int N, int K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb,
                           float beta, float *C, int64_t ldc, int nthreads) {
  int nt = nthreads;
#ifdef _OPENMP
  if (omp_in_parallel()) nt = 1;
#else
  nt = 1;
#endif
  int panels = (N + NRB - 1) / NRB;
  if (nt > panels) nt = panels;
  if (nt <= 1 || (double)M * N * K < 1e6) { gemm_bf16_one(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1); return; }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int per = (panels + T - 1) / T;
    int j0 = t * per * NRB, j1 = (t + 1) * per * NRB;
    if (j1 > N) j1 = N;
    if (j0 < j1)
      gemm_bf16_one(transA, transB, M, j1 - j0, K, alpha, A, lda, transB ? B + (int64_t)j0 * ldb : B + j0, ldb,
                    beta, C + j0, ldc, 1);
  }
#endif
}

void icld_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                    const float *A, int64_t lda, int64_t strideA,
                    const float *B, int64_t ldb, int64_t strideB,
                    float beta, float *C, int64_t ldc, int64_t strideC, int batch) {
  int nt = g_gemm_threads;
  /* many small products: one thread per item, as icld_gemm */
  if (nt > 1 && batch >= nt && (double)M * N * K < 4e6) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int b = 0; b < batch; b++)
      gemm_bf16_one(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta,
                    C + b * strideC, ldc, 1);
    return;
  }
  for (int b = 0; b < batch; b++)
    gemm_bf16_cols(transA, transB, M, N, K, alpha, A + b * strideA, lda, B + b * strideB, ldb, beta,
                   C + b * strideC, ldc, nt);
}
