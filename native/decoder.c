/* The fused inference decoder (contract: src/engine/decoder.ts; reference twin:
 * src/engine/decoder-ref.ts). A whole pre-LN GPT-2-shaped forward for a batch of new tokens in
 * one call, KV caches of every sequence slot held here. All scratch is allocated at create time
 * (tokens are processed in chunks of at most DEC_CAP), so a step allocates nothing.
 * Threads: one OpenMP region per matmul, each thread streaming its own slice of the weight's
 * output rows (decode is memory-bound); the thread count per step shape is chosen by timing the
 * first steps of each shape bucket at 1 and at the icld thread count. */
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
  struct { int chosen, trials; double t[2]; int cnt[2]; } bucket[ICLD_DEC_BUCKETS];
};

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
  d->xa = aligned_alloc(64, (DEC_CAP * K * 4 + 63) / 64 * 64); /* f32 copy is the largest format */
  d->rows = calloc(DEC_CAP, sizeof(int));
  if (!d->scale || !d->layers || !d->kc || !d->vc || !d->x || !d->h || !d->qkv || !d->att || !d->f || !d->sc || !d->xa || !d->rows) {
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
  return d;
}

void icld_decoder_free(icld_decoder *d) {
  if (!d) return;
  free(d->scale); free(d->layers); free(d->kc); free(d->vc);
  free(d->x); free(d->h); free(d->qkv); free(d->att); free(d->f); free(d->sc); free(d->xa); free(d->rows);
  free(d);
}

void icld_decoder_set_threads(icld_decoder *d, int nt) {
  d->force_threads = nt < 0 ? 0 : nt;
  for (int b = 0; b < ICLD_DEC_BUCKETS; b++) memset(&d->bucket[b], 0, sizeof d->bucket[b]);
}
int icld_decoder_threads(const icld_decoder *d, int bucket) {
  return bucket >= 0 && bucket < ICLD_DEC_BUCKETS ? d->bucket[bucket].chosen : 0;
}

static void layer_norm_rows(const float *x, int n, int C, const float *g, const float *b, float eps, float *y) {
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

static inline float act_fn(int act, float x) {
  switch (act) {
    case 2: return x > 0 ? x : 0;                                      /* relu */
    case 1: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); /* gelu (erf) */
    default: {                                                          /* gelu (tanh): x·σ(2u), no cancellation */
      float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return x / (1.0f + expf(-2.0f * u));
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
    /* slices in multiples of 16 outputs (whole cache lines of f32 in_out rows) */
    int64_t blocks = (N + 15) / 16;
    int64_t n0 = blocks * t / T * 16, n1 = blocks * (t + 1) / T * 16;
    if (n1 > N) n1 = N;
    if (n0 < n1) {
      mm_range(d, w, M, x, ldx, xa, out, ldo, bias, acc, n0, n1);
      if (act >= 0)
        for (int m = 0; m < M; m++) {
          float *o = out + (int64_t)m * ldo;
          for (int64_t n = n0; n < n1; n++) o[n] = act_fn(act, o[n]);
        }
    }
  }
}

/* Causal attention of each token's queries over rows 0..pos of its slot, every (token, head) pair
 * in one pass: scores, softmax, weighted sum of values. */
static void attention(icld_decoder *d, int n, const int32_t *pos, const int32_t *seq, float scale, const float *K, const float *Vc, int nt) {
  const int C = d->C, H = d->H, D = C / H, T = d->maxT, pairs = n * H;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && pairs > 1)
#endif
  for (int ph = 0; ph < pairs; ph++) {
    int i = ph / H, hd = ph % H;
#ifdef _OPENMP
    float *p = d->sc + (int64_t)omp_get_thread_num() * T;
#else
    float *p = d->sc;
#endif
    const float *q = d->qkv + (int64_t)i * 3 * C + hd * D;
    const float *kb = K + (int64_t)seq[i] * T * C + hd * D, *vb = Vc + (int64_t)seq[i] * T * C + hd * D;
    const int last = pos[i];
    float mx = -INFINITY;
    for (int j = 0; j <= last; j++) {
      const float *kr = kb + (int64_t)j * C;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int e = 0; e < D; e++) s += q[e] * kr[e];
      s *= scale;
      p[j] = s;
      if (s > mx) mx = s;
    }
    float z = 0;
    for (int j = 0; j <= last; j++) { p[j] = expf(p[j] - mx); z += p[j]; }
    float *o = d->att + (int64_t)i * C + hd * D;
    for (int e = 0; e < D; e++) o[e] = 0;
    for (int j = 0; j <= last; j++) {
      const float *vr = vb + (int64_t)j * C;
      const float pj = p[j];
#pragma omp simd
      for (int e = 0; e < D; e++) o[e] += pj * vr[e];
    }
    const float iz = 1.0f / z;
    for (int e = 0; e < D; e++) o[e] *= iz;
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
  else if (d->bucket[b].chosen > 0 && d->bucket[b].chosen <= maxnt) nt = d->bucket[b].chosen;
  else { trial = d->bucket[b].trials & 1; nt = trial ? maxnt : 1; }
  double t0 = trial >= 0 ? now_s() : 0;
  icld_gemm_parallel_begin();
  for (int c0 = 0; c0 < n; c0 += DEC_CAP) {
    int m = n - c0 < DEC_CAP ? n - c0 : DEC_CAP;
    run_chunk(d, c0, m, ids, pos, seq, outRows, nOut, logits, nt);
  }
  icld_gemm_parallel_end();
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
