/* The fused inference decoder (contract: src/engine/decoder.ts; reference twin:
 * src/engine/decoder-ref.ts). A whole pre-LN GPT-2-shaped forward for a batch of new tokens in
 * one call, KV caches of every sequence slot held here. All scratch is allocated at create time
 * (tokens are processed in chunks of at most DEC_CAP), so a step allocates nothing.
 * Threads: one OpenMP region per matmul. Decode-sized steps (M <= 4) give each thread one static
 * slice of the weight's output rows (memory-bound: long row segments stream best; measured at
 * load ~3, f32 2-thread decode 53 tok/s static vs 48 in chunks). Larger steps (prefill) cut the
 * rows in 4 chunks per thread taken dynamically, so a thread descheduled on a shared machine
 * delays one chunk, not half the matmul (64-token f32 prefill at load ~4: 215-265 -> 262-372
 * tok/s). ICLD_DECODER_DYN: 0 static always, 2 chunks always, 1 (default) as above. The thread
 * count per step shape is chosen by timing the first steps of each shape bucket at 1 and at the
 * icld thread count (and again every DEC_RECHECK steps); steps of more than 32 tokens always use
 * the icld thread count. f32 weights go through the GEMM kernels
 * (gemm.c: its small-M kernels for decode, OpenBLAS for prefill): measured on the 2-vCPU
 * target, GPT-2 124M decode took 32 ms of CPU per token that way against 51 ms through
 * icld_qmatmul_range's f32 path, and the 64-token prefill 184 ms against 266 ms for forward().
 * Time outside the matmuls (layer norms, embedding, KV copies, attention) was ~3% of a step.
 * M=1 through f32 [K,N] weights: threads split K (contiguous row blocks, partial vectors summed),
 * not N (a strided segment of every row); ICLD_DECODER_KSPLIT=0 turns it off. */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DEC_CAP 128    /* tokens per chunk: bounds the scratch */
#define DEC_MAXT 64    /* most threads a step uses (per-thread score rows) */
#define DEC_TRIALS 8   /* steps per bucket timed before choosing (alternating 1 / max threads) */
#define DEC_RECHECK 2048 /* steps after which a bucket's choice is measured again (the load may have changed) */

typedef icld_decoder_layer dec_layer;

struct icld_decoder {
  int C, H, I, V, P, L, act, maxSeqs, maxT;
  float eps;
  float *scale;
  icld_qweight wte;
  const float *wpe, *lnfw, *lnfb;
  dec_layer *layers;
  float *kc, *vc;                    /* [L][maxSeqs][maxT][C] */
  float *x, *h, *qkv, *att, *f, *sc; /* chunk scratch; sc: per-thread score rows */
  void *xa;                          /* prepared activations */
  int *rows;                         /* output rows of the current chunk */
  int f32_gemm_min;                  /* f32 weights: gemm kernel for M >= this, else qmatmul_range */
  int force_threads;                 /* 0: choose by measurement */
  int dyn;                           /* matmuls split in dynamically taken chunks */
  int ksplit;                        /* M=1 f32 [K,N] weights split by rows of K (ICLD_DECODER_KSPLIT) */
  float *part;                       /* per-thread partial outputs of the K split, DEC_MAXT x max(3C, I) */
  struct { int chosen, trials, since; double t[2]; int cnt[2]; } bucket[ICLD_DEC_BUCKETS];
};

/* The portable build has no -march: the elementwise loops here (layer norm, GELU, attention) are
 * compiled for AVX-512, AVX2+FMA and baseline x86-64, the loader picking one (GCC ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#define DEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DEC_CLONES
#endif

/* exp(x) in plain arithmetic (vectorizes under omp simd, unlike libm's expf): 2^n · p(r) with
 * r = x − n·ln2 split in two constants, p the degree-6 Taylor polynomial (|rel. error| < 2e-7). */
static inline float dec_exp(float x) {
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  union { int32_t i; float f; } sc = {.i = ((int32_t)n + 127) << 23};
  return p * sc.f;
}

static inline float dec_f16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0x1f) bits = sign | 0x7f800000u | (m << 13);
  else if (e == 0) {
    if (!m) bits = sign;
    else { float v = ldexpf((float)m, -24); return sign ? -v : v; }
  } else bits = sign | ((e + 112) << 23) | (m << 13);
  float f; memcpy(&f, &bits, 4); return f;
}

static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

int icld_decoder_bucket(int n) { return n <= 1 ? 0 : n <= 8 ? 1 : n <= 32 ? 2 : 3; }

icld_decoder *icld_decoder_create(const icld_decoder_spec *s) {
  icld_decoder *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->C = s->C; d->H = s->H; d->I = s->I; d->V = s->V; d->P = s->P; d->L = s->L; d->act = s->act;
  d->maxSeqs = s->maxSeqs; d->maxT = s->maxT; d->eps = s->eps;
  d->wte = s->wte; d->wpe = s->wpe; d->lnfw = s->lnfw; d->lnfb = s->lnfb;
  d->scale = malloc(sizeof(float) * (size_t)(s->L ? s->L : 1));
  d->layers = malloc(sizeof(dec_layer) * (size_t)(s->L ? s->L : 1));
  size_t cache = (size_t)s->L * s->maxSeqs * s->maxT * s->C;
  size_t C = s->C, I = s->I, K = C > I ? C : I;
  d->kc = calloc(cache ? cache : 1, 4);
  d->vc = calloc(cache ? cache : 1, 4);
  d->x = calloc(DEC_CAP * C, 4); d->h = calloc(DEC_CAP * C, 4); d->qkv = calloc(DEC_CAP * 3 * C, 4);
  d->att = calloc(DEC_CAP * C, 4); d->f = calloc(DEC_CAP * I, 4);
  d->sc = calloc((size_t)DEC_MAXT * s->maxT, 4);
  d->part = calloc((size_t)DEC_MAXT * (3 * C > I ? 3 * C : I), 4);
  d->xa = aligned_alloc(64, (DEC_CAP * K * 4 + 63) / 64 * 64); /* f32 copy is the largest format */
  d->rows = calloc(DEC_CAP, sizeof(int));
  if (!d->scale || !d->layers || !d->kc || !d->vc || !d->x || !d->h || !d->qkv || !d->att || !d->f || !d->sc || !d->part || !d->xa || !d->rows) {
    icld_decoder_free(d);
    return NULL;
  }
  for (int l = 0; l < s->L; l++) {
    d->layers[l] = s->layers[l];
    d->scale[l] = s->scale[l];
  }
  const char *e = getenv("ICLD_DECODER_THREADS");
  d->force_threads = e ? atoi(e) : 0;
  e = getenv("ICLD_DECODER_F32_GEMM_MIN");
  d->f32_gemm_min = e ? atoi(e) : 1;
  e = getenv("ICLD_DECODER_KSPLIT");
  d->ksplit = e ? atoi(e) : 1;
  e = getenv("ICLD_DECODER_DYN");
  d->dyn = e ? atoi(e) : 1;
  return d;
}

void icld_decoder_free(icld_decoder *d) {
  if (!d) return;
  free(d->scale); free(d->layers); free(d->kc); free(d->vc);
  free(d->x); free(d->h); free(d->qkv); free(d->att); free(d->f); free(d->sc); free(d->part); free(d->xa); free(d->rows);
  free(d);
}

void icld_decoder_set_threads(icld_decoder *d, int nt) {
  d->force_threads = nt < 0 ? 0 : nt;
  for (int b = 0; b < ICLD_DEC_BUCKETS; b++) memset(&d->bucket[b], 0, sizeof d->bucket[b]);
}
int icld_decoder_threads(const icld_decoder *d, int bucket) {
  if (bucket < 0 || bucket >= ICLD_DEC_BUCKETS) return 0;
  return d->force_threads > 0 ? d->force_threads : d->bucket[bucket].chosen;
}

DEC_CLONES static void layer_norm_rows(const float *x, int n, int C, const float *g, const float *b, float eps, float *y) {
  for (int r = 0; r < n; r++) {
    const float *xr = x + (int64_t)r * C;
    float *yr = y + (int64_t)r * C;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += xr[c];
    float mu = s / C, v = 0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) { float t = xr[c] - mu; v += t * t; }
    float rs = 1.0f / sqrtf(v / C + eps);
#pragma omp simd
    for (int c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * g[c] + b[c];
  }
}

/* The activation over o[0..n): relu, gelu (erf), gelu (tanh) as x·σ(2u) (no cancellation for x ≪ 0). */
DEC_CLONES static void act_range(int act, float *o, int64_t n) {
  if (act == 2) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = o[i] > 0 ? o[i] : 0;
  } else if (act == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = 0.5f * o[i] * (1.0f + erff(o[i] * 0.70710678118654752f));
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      float x = o[i], u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      o[i] = x / (1.0f + dec_exp(-2.0f * u));
    }
  }
}

/* Output columns [n0, n1) of x·Wᵀ (+bias) for M rows; `xa`: x prepared by icld_qact (q/bf16, and
 * f32 below the gemm threshold). */
static void mm_range(const icld_decoder *d, const icld_qweight *w, int M, const float *x, int ldx, const void *xa,
                     float *out, int ldo, const float *bias, int acc, int64_t n0, int64_t n1) {
  if (n1 <= n0) return;
  if (w->format == ICLD_F32 && M >= d->f32_gemm_min) {
    const float *W = (const float *)w->data;
    if (w->in_out) icld_gemm_serial(0, 0, M, (int)(n1 - n0), (int)w->K, 1.0f, x, ldx, W + n0, w->N, acc ? 1.0f : 0.0f, out + n0, ldo);
    else icld_gemm_serial(0, 1, M, (int)(n1 - n0), (int)w->K, 1.0f, x, ldx, W + n0 * w->K, w->K, acc ? 1.0f : 0.0f, out + n0, ldo);
    if (bias)
      for (int m = 0; m < M; m++) {
        float *o = out + (int64_t)m * ldo;
        for (int64_t n = n0; n < n1; n++) o[n] += bias[n];
      }
    return;
  }
  icld_qmatmul_range(w, M, xa, out, ldo, bias, acc, n0, n1);
}

/* One threaded matmul; act >= 0 applies that activation to the outputs (fc + bias + GELU fused). */
static void mm(icld_decoder *d, const icld_qweight *w, int M, const float *x, int ldx, float *out, int ldo,
               const float *bias, int acc, int act, int nt) {
  const void *xa = NULL;
  if (!(w->format == ICLD_F32 && M >= d->f32_gemm_min)) { icld_qact(w->format, M, w->K, x, ldx, d->xa); xa = d->xa; }
  const int64_t N = w->N;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
#ifdef _OPENMP
    int t = omp_get_thread_num(), T = omp_get_num_threads();
#else
    int t = 0, T = 1;
#endif
    if (T > 1 && M == 1 && d->ksplit && w->format == ICLD_F32 && w->in_out && w->N <= (3 * d->C > d->I ? 3 * d->C : d->I)) {
      /* decode through a [K,N] weight: each thread streams a contiguous block of K rows into its
       * own partial vector, then each sums a column slice of the partials */
      const float *W = (const float *)w->data;
      const int64_t K = w->K;
      int64_t k0 = K * t / T, k1 = K * (t + 1) / T;
      float *pt = d->part + (int64_t)t * N;
      if (k1 > k0) icld_gemm_serial(0, 0, 1, (int)N, (int)(k1 - k0), 1.0f, x + k0, ldx, W + k0 * N, N, 0.0f, pt, N);
      else memset(pt, 0, (size_t)N * 4);
#ifdef _OPENMP
#pragma omp barrier
#endif
      int64_t blocks = (N + 15) / 16;
      int64_t n0 = blocks * t / T * 16, n1 = blocks * (t + 1) / T * 16;
      if (n1 > N) n1 = N;
      for (int64_t n = n0; n < n1; n++) {
        float v = acc ? out[n] : 0.0f;
        for (int u = 0; u < T; u++) v += d->part[(int64_t)u * N + n];
        out[n] = bias ? v + bias[n] : v;
      }
      if (act >= 0 && n1 > n0) act_range(act, out + n0, n1 - n0);
    } else if (T > 1 && (d->dyn > 1 || (d->dyn == 1 && M > 4))) {
      /* 4 chunks per thread, taken in turn: on a shared machine a descheduled thread delays the
       * matmul by one chunk, not by its whole half */
      int64_t per = (N + 4 * T - 1) / (4 * T), n0, n1;
      per = (per + 15) / 16 * 16;
      int chunks = (int)((N + per - 1) / per);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
      for (int c = 0; c < chunks; c++) {
        n0 = per * c; n1 = n0 + per < N ? n0 + per : N;
        mm_range(d, w, M, x, ldx, xa, out, ldo, bias, acc, n0, n1);
        if (act >= 0)
          for (int m = 0; m < M; m++) act_range(act, out + (int64_t)m * ldo + n0, n1 - n0);
      }
    } else {
    /* slices in multiples of 16 outputs (whole cache lines of f32 in_out rows) */
    int64_t blocks = (N + 15) / 16;
    int64_t n0 = blocks * t / T * 16, n1 = blocks * (t + 1) / T * 16;
    if (n1 > N) n1 = N;
    if (n0 < n1) {
      mm_range(d, w, M, x, ldx, xa, out, ldo, bias, acc, n0, n1);
      if (act >= 0)
        for (int m = 0; m < M; m++) act_range(act, out + (int64_t)m * ldo + n0, n1 - n0);
    }
    }
  }
}

/* One query head over rows 0..last of its slot: scores, softmax, weighted sum of values.
 * p: scratch for last+1 scores. */
DEC_CLONES static void attend(const float *q, const float *kb, const float *vb, int C, int D, int last, float scale, float *p, float *o) {
  float mx = -INFINITY;
  for (int j = 0; j <= last; j++) {
    const float *kr = kb + (int64_t)j * C;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int e = 0; e < D; e++) s += q[e] * kr[e];
    s *= scale;
    p[j] = s;
    mx = s > mx ? s : mx;
  }
  float z = 0;
#pragma omp simd reduction(+ : z)
  for (int j = 0; j <= last; j++) { float v = dec_exp(p[j] - mx); p[j] = v; z += v; }
  for (int e = 0; e < D; e++) o[e] = 0;
  for (int j = 0; j <= last; j++) {
    const float *vr = vb + (int64_t)j * C;
    const float pj = p[j];
#pragma omp simd
    for (int e = 0; e < D; e++) o[e] += pj * vr[e];
  }
  const float iz = 1.0f / z;
#pragma omp simd
  for (int e = 0; e < D; e++) o[e] *= iz;
}

/* Causal attention of every (token, head) pair of the chunk, threads over the pairs. */
static void attention(icld_decoder *d, int n, const int32_t *pos, const int32_t *seq, float scale, const float *K, const float *Vc, int nt) {
  const int C = d->C, H = d->H, D = C / H, T = d->maxT, pairs = n * H;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1 && pairs > 1)
#endif
  for (int ph = 0; ph < pairs; ph++) {
    int i = ph / H, hd = ph % H;
#ifdef _OPENMP
    float *p = d->sc + (int64_t)omp_get_thread_num() * T;
#else
    float *p = d->sc;
#endif
    attend(d->qkv + (int64_t)i * 3 * C + hd * D, K + (int64_t)seq[i] * T * C + hd * D, Vc + (int64_t)seq[i] * T * C + hd * D,
           C, D, pos[i], scale, p, d->att + (int64_t)i * C + hd * D);
  }
}

static void embed_row(const icld_decoder *d, int id, int pos, float *out) {
  const int C = d->C;
  const icld_qweight *w = &d->wte;
  const float *pe = d->wpe + (int64_t)pos * C;
  switch (w->format) {
    case ICLD_F32: {
      const float *W = (const float *)w->data;
      if (w->in_out) for (int c = 0; c < C; c++) out[c] = W[(int64_t)c * w->N + id] + pe[c];
      else for (int c = 0; c < C; c++) out[c] = W[(int64_t)id * C + c] + pe[c];
      break;
    }
    case ICLD_BF16: {
      const uint16_t *W = (const uint16_t *)w->data + (int64_t)id * C;
      for (int c = 0; c < C; c++) { uint32_t b = (uint32_t)W[c] << 16; float f; memcpy(&f, &b, 4); out[c] = f + pe[c]; }
      break;
    }
    case ICLD_Q8_0: {
      const int8_t *W = (const int8_t *)w->data + (int64_t)id * C;
      const uint16_t *s = w->scales + (int64_t)id * (C / ICLD_QK);
      for (int c = 0; c < C; c++) out[c] = (float)W[c] * dec_f16(s[c / ICLD_QK]) + pe[c];
      break;
    }
    default: {
      const uint8_t *W = (const uint8_t *)w->data + (int64_t)id * C / 2;
      const uint16_t *s = w->scales + (int64_t)id * (C / ICLD_QK);
      for (int c = 0; c < C; c++) {
        int j = c % ICLD_QK, byte = W[(c - j) / 2 + (j % 16)];
        out[c] = (float)((j < 16 ? byte & 15 : byte >> 4) - 8) * dec_f16(s[c / ICLD_QK]) + pe[c];
      }
    }
  }
}

/* Tokens [t0, t0+n) of the step (n <= DEC_CAP). */
static void run_chunk(icld_decoder *d, int t0, int n, const int32_t *ids, const int32_t *pos, const int32_t *seq,
                      const int32_t *outRows, int nOut, float *logits, int nt) {
  const int C = d->C, I = d->I, T = d->maxT;
  const int64_t lstride = (int64_t)d->maxSeqs * T * C;
  for (int i = 0; i < n; i++) embed_row(d, ids[t0 + i], pos[t0 + i], d->x + (int64_t)i * C);
  for (int l = 0; l < d->L; l++) {
    const dec_layer *L = &d->layers[l];
    float *K = d->kc + l * lstride, *Vc = d->vc + l * lstride;
    layer_norm_rows(d->x, n, C, L->ln1w, L->ln1b, d->eps, d->h);
    mm(d, &L->qkv, n, d->h, C, d->qkv, 3 * C, L->qkvb, 0, -1, nt);
    for (int i = 0; i < n; i++) {
      int64_t row = ((int64_t)seq[t0 + i] * T + pos[t0 + i]) * C;
      memcpy(K + row, d->qkv + (int64_t)i * 3 * C + C, (size_t)C * 4);
      memcpy(Vc + row, d->qkv + (int64_t)i * 3 * C + 2 * C, (size_t)C * 4);
    }
    attention(d, n, pos + t0, seq + t0, d->scale[l], K, Vc, nt);
    mm(d, &L->proj, n, d->att, C, d->x, C, L->projb, 1, -1, nt);
    layer_norm_rows(d->x, n, C, L->ln2w, L->ln2b, d->eps, d->h);
    mm(d, &L->fc, n, d->h, C, d->f, I, L->fcb, 0, d->act, nt);
    mm(d, &L->fcp, n, d->f, I, d->x, C, L->fcpb, 1, -1, nt);
  }
  /* Final layer norm and LM head for the output rows inside this chunk only. */
  for (int r0 = 0; r0 < nOut;) {
    int m = 0, first = -1;
    for (; r0 < nOut && m < DEC_CAP; r0++) {
      int t = outRows[r0] - t0;
      if (t < 0 || t >= n) { if (m) break; continue; }
      if (!m) first = r0;
      /* consecutive output rows only, so they land in consecutive logits rows */
      if (m && r0 != first + m) break;
      d->rows[m] = t;
      layer_norm_rows(d->x + (int64_t)t * C, 1, C, d->lnfw, d->lnfb, d->eps, d->h + (int64_t)m * C);
      m++;
    }
    if (m) mm(d, &d->wte, m, d->h, C, logits + (int64_t)first * d->V, d->V, NULL, 0, -1, nt);
  }
}

void icld_decoder_step(icld_decoder *d, int n, const int32_t *ids, const int32_t *pos, const int32_t *seq,
                       const int32_t *outRows, int nOut, float *logits) {
  if (n <= 0) return;
  int maxnt = icld_get_threads();
  if (maxnt > DEC_MAXT) maxnt = DEC_MAXT;
  if (maxnt < 1) maxnt = 1;
  int b = icld_decoder_bucket(n), nt, trial = -1;
  if (d->force_threads > 0) nt = d->force_threads < maxnt ? d->force_threads : maxnt;
  else if (maxnt == 1) nt = 1;
  /* steps of more than 32 tokens are compute-bound GEMMs that both threads speed up (64-token
   * f32 prefill ~1.6x); timing them at 1 thread cost every short-lived runtime (one generate())
   * its prefill: its first prefill steps were the 1-thread trials */
  else if (b == ICLD_DEC_BUCKETS - 1) nt = maxnt;
  else if (d->bucket[b].chosen > 0 && d->bucket[b].chosen <= maxnt && ++d->bucket[b].since < DEC_RECHECK) nt = d->bucket[b].chosen;
  else {
    if (d->bucket[b].chosen) memset(&d->bucket[b], 0, sizeof d->bucket[b]); /* stale or thread count changed: measure again */
    trial = (d->bucket[b].trials & 1) ^ 1; /* max threads first: the likely winner on the first steps */
    nt = trial ? maxnt : 1;
  }
  double t0 = trial >= 0 ? now_s() : 0;
  /* Steps of more than a few tokens may reach OpenBLAS (f32), which must then stay single-threaded
   * inside our regions; decode-sized steps never call it, so they skip the switch. */
  const int blas = n > 4;
  if (blas) icld_gemm_parallel_begin();
  for (int c0 = 0; c0 < n; c0 += DEC_CAP) {
    int m = n - c0 < DEC_CAP ? n - c0 : DEC_CAP;
    run_chunk(d, c0, m, ids, pos, seq, outRows, nOut, logits, nt);
  }
  if (blas) icld_gemm_parallel_end();
  if (trial >= 0) {
    /* per-token time; the first step of each count is a warm-up and is not recorded */
    int k = d->bucket[b].trials++;
    if (k >= 2) { d->bucket[b].t[trial] += (now_s() - t0) / n; d->bucket[b].cnt[trial]++; }
    if (d->bucket[b].trials >= DEC_TRIALS) {
      double a = d->bucket[b].t[0] / d->bucket[b].cnt[0], m2 = d->bucket[b].t[1] / d->bucket[b].cnt[1];
      d->bucket[b].chosen = a <= m2 ? 1 : maxnt;
    }
  }
}
