/* icl-distill native kernels: the C twins of src/engine/backend/reference.ts.
 * Pointers are already offset to the first element; strides/sizes are in elements. */
#ifndef ICLD_KERNELS_H
#define ICLD_KERNELS_H
#include <stdint.h>
#include <stddef.h>

/* ---- threading / info ---- */
void icld_set_threads(int n);
int icld_get_threads(void);
const char *icld_gemm_provider(void); /* "openblas" | "builtin" */
const char *icld_simd(void);
int icld_has_openmp(void);

/* ---- GEMM (gemm.c) ---- */
void icld_gemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int64_t lda, int64_t strideA,
               const float *B, int64_t ldb, int64_t strideB,
               float beta, float *C, int64_t ldc, int64_t strideC, int batch);
/* Single-threaded GEMM for use inside our own OpenMP regions (never spawns threads). */
void icld_gemm_serial(int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc);
void icld_gemm_set_threads(int n);
void icld_gemm_parallel_begin(void);
void icld_gemm_parallel_end(void);
/* bf16 GEMM (gemm.c; contract: Backend.gemmBf16): operands rounded to bf16, fp32 products and sums.
 * Always the builtin packed loop: vdpbf16ps where the CPU has AVX-512-BF16, else rounded f32 panels. */
void icld_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                    const float *A, int64_t lda, int64_t strideA,
                    const float *B, int64_t ldb, int64_t strideB,
                    float beta, float *C, int64_t ldc, int64_t strideC, int batch);
/* "avx512_bf16" or "emulated" (ICLD_BF16_EMULATE=1 forces the latter). */
const char *icld_gemm_bf16_path(void);
/* Tests: mode 0 forces the emulated path, 1 the vdpbf16ps one (when the CPU has it), -1 automatic;
 * returns 1 when vdpbf16ps is now in use. */
int icld_gemm_bf16_force(int mode);

/* ---- elementwise / reductions (kernels.c) ---- */
enum { ICLD_ADD = 0, ICLD_SUB = 1, ICLD_MUL = 2, ICLD_DIV = 3 };
enum {
  ICLD_EXP = 0, ICLD_LOG = 1, ICLD_TANH = 2, ICLD_SQRT = 3, ICLD_RELU = 4,
  ICLD_GELU_TANH = 5, ICLD_GELU_ERF = 6, ICLD_POW = 7, ICLD_NEG = 8, ICLD_SCALE = 9,
  ICLD_ADD_SCALAR = 10, ICLD_SIGMOID = 11
};
#define ICLD_MAX_DIMS 8

float icld_hash_uniform(uint32_t seed, uint32_t i);

void icld_copy(int nd, const int64_t *shape, const uint32_t *src, const int64_t *sStr,
               uint32_t *dst, const int64_t *dStr);
void icld_binary(int op, int nd, const int64_t *shape, const float *a, const int64_t *aStr,
                 const float *b, const int64_t *bStr, float *out);
void icld_unary(int op, const float *x, int64_t n, float *out, double param);
void icld_unary_backward(int op, const float *x, const float *y, const float *dy, int64_t n,
                         float *dx, double param);
void icld_reduce_sum(const float *x, int64_t outer, int64_t dim, int64_t inner, float *out);
void icld_reduce_max(const float *x, int64_t outer, int64_t dim, int64_t inner, float *out, int32_t *arg);
void icld_softmax(const float *x, int64_t rows, int64_t cols, float *out, int log);
void icld_softmax_backward(const float *y, const float *dy, int64_t rows, int64_t cols, float *dx, int log);
void icld_cross_entropy(const float *logits, int64_t rows, int64_t V, const int32_t *targets,
                        int32_t ignore, double smoothing, float *loss, float *lse);
void icld_cross_entropy_backward(const float *logits, const float *lse, const int32_t *targets,
                                 int64_t rows, int64_t V, int32_t ignore, double smoothing,
                                 const float *dloss, float *dlogits);
void icld_layer_norm(const float *x, int64_t rows, int64_t C, const float *gamma, const float *beta,
                     double eps, float *y, float *mean, float *rstd);
void icld_layer_norm_backward(const float *x, const float *dy, const float *gamma, const float *mean,
                              const float *rstd, int64_t rows, int64_t C, float *dx, float *dgamma,
                              float *dbeta);
void icld_embedding(const float *w, int64_t D, const int32_t *ids, int64_t n, float *out);
void icld_embedding_backward(const float *dy, const int32_t *ids, int64_t n, int64_t D, float *dw);
void icld_dropout(const float *x, int64_t n, double p, uint32_t seed, float *out);

/* Attention tensors: element (b,h,t,d) at base + b*s[0] + h*s[1] + t*s[2] + d. */
typedef struct { const float *p; int64_t s[3]; } icld_view;
typedef struct { float *p; int64_t s[3]; } icld_mview;
void icld_attention(icld_view q, icld_view k, icld_view v, icld_mview out,
                    int B, int H, int Tq, int Tk, int D, double scale, int causal,
                    const float *keyMask, double dropP, uint32_t seed, float *lse);
void icld_attention_backward(icld_view q, icld_view k, icld_view v, icld_view out, icld_view dout,
                             const float *lse, icld_mview dq, icld_mview dk, icld_mview dv,
                             int B, int H, int Tq, int Tk, int D, double scale, int causal,
                             const float *keyMask, double dropP, uint32_t seed);
void icld_adamw(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1,
                double b2, double eps, double wd, double bc1, double bc2);

/* ---- inference weights (quant.c; spec: src/engine/quant.ts) ---- */
enum { ICLD_F32 = 0, ICLD_BF16 = 1, ICLD_Q8_0 = 2, ICLD_Q4_0 = 3 };
#define ICLD_QK 32
typedef struct {
  int format;             /* ICLD_F32 … ICLD_Q4_0 */
  int in_out;             /* f32 only: stored [K, N] (GPT-2 Conv1D); otherwise [N, K] */
  int64_t N, K;
  const void *data;       /* float | bf16 bits | int8 | packed nibbles (see quant.ts) */
  const uint16_t *scales; /* q formats: f16 bits, [N, K/32] */
} icld_qweight;
/* Bytes icld_qact writes for M rows of K activations prepared for `format`. */
size_t icld_qact_bytes(int format, int64_t M, int64_t K);
/* Prepare activations (M rows of K at stride ldx) for a matmul with `format` weights: a copy for
 * f32, bf16 bits for bf16, q8_0 blocks (per row: K int8, then K/32 f32 scales) for q formats. */
void icld_qact(int format, int64_t M, int64_t K, const float *x, int64_t ldx, void *xa);
/* out[m*ldo + n] (= or += when accumulate) x~[m]·W[n] + bias[n] for m < M, n0 <= n < n1.
 * Single-threaded: for callers that run their own threads (the decoder). */
void icld_qmatmul_range(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                        const float *bias, int accumulate, int64_t n0, int64_t n1);
/* The whole matmul, threaded over N with the icld thread count (scratch reused, no allocation in steady state). */
void icld_qmatmul(const icld_qweight *w, int64_t M, const float *x, int64_t ldx, float *out, int64_t ldo,
                  const float *bias, int accumulate);
/* The kernel path in use for a family ("gemm", "gemm_bf16", "f32", "bf16", "q8_0", "q4_0"). */
const char *icld_kernel_path(const char *family);
/* CPU features detected at run time, space separated ("avx2 fma f16c avx512f …"). */
const char *icld_cpu_features(void);

/* ---- run-time dispatch (cpu.c) ---- */
enum {
  ICLD_CPU_AVX2 = 1, ICLD_CPU_FMA = 2, ICLD_CPU_F16C = 4, ICLD_CPU_AVX512F = 8, ICLD_CPU_AVX512BW = 16,
  ICLD_CPU_AVX512VL = 32, ICLD_CPU_AVX512VNNI = 64, ICLD_CPU_AVX512BF16 = 128, ICLD_CPU_AVXVNNI = 256
};
unsigned icld_cpu_flags(void);   /* ICLD_CPU_* bits the CPU and OS support */
unsigned icld_cpu_allowed(void); /* those bits within the current kernel-path cap */
/* Cap the kernel paths: "auto" (or NULL) = best the CPU runs, else scalar | avx2 | avx-vnni | avx512 |
 * avx512-vnni | avx512-bf16. Returns 0, or -1 with a one-line reason in err (CPU lacks it / unknown). */
int icld_set_kernel_cap(const char *path, char *err, size_t errlen);
const char *icld_kernel_cap(void);
/* Re-pick every dispatched kernel from icld_cpu_allowed() (quant.c; calls icld_gemm_select). */
void icld_kernels_select(void);
void icld_gemm_select(unsigned allowed);
void icld_kernels_c_select(unsigned allowed); /* kernels.c: its AVX2 twins (kernels-avx2.c) or not */
const char *icld_gemm_path(void); /* "openblas" | builtin micro-kernel ISA ("avx2" | "scalar") */
/* ---- fused inference decoder (decoder.c; contract: src/engine/decoder.ts) ---- */
typedef struct {
  icld_qweight qkv, proj, fc, fcp;
  const float *ln1w, *ln1b, *ln2w, *ln2b, *qkvb, *projb, *fcb, *fcpb;
} icld_decoder_layer;
typedef struct {
  int C, H, I, V, P, L;
  int act;                 /* 0 gelu (tanh), 1 gelu (erf), 2 relu */
  int maxSeqs, maxT;
  float eps;
  const float *scale;      /* [L] attention score scales */
  icld_qweight wte;        /* [V, C] token embedding, also the LM head */
  const float *wpe, *lnfw, *lnfb;
  const icld_decoder_layer *layers;
} icld_decoder_spec;
typedef struct icld_decoder icld_decoder;
#define ICLD_DEC_BUCKETS 4 /* step shapes timed separately: 1, 2-8, 9-32, >32 tokens */
/* Copies the spec (weights are referenced, not copied); allocates KV caches and all scratch. NULL when out of memory. */
icld_decoder *icld_decoder_create(const icld_decoder_spec *s);
void icld_decoder_free(icld_decoder *d);
/* Arguments already validated by the caller (binding.c). */
void icld_decoder_step(icld_decoder *d, int n, const int32_t *ids, const int32_t *pos, const int32_t *seq,
                       const int32_t *outRows, int nOut, float *logits);
/* nt > 0: always nt threads; 0: choose per bucket by timing (the default; ICLD_DECODER_THREADS overrides). */
void icld_decoder_set_threads(icld_decoder *d, int nt);
/* The thread count a bucket's steps run with: the fixed one, else the measured choice (0 while measuring). */
int icld_decoder_threads(const icld_decoder *d, int bucket);
int icld_decoder_bucket(int n);
#endif
