/* Inference matmuls over read-only weights in f32 / bf16 / q8_0 / q4_0 (spec: qmatmulRef in
 * src/engine/quant.ts). Portable scalar versions; SIMD paths with run-time dispatch go beside them. */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
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

void icld_qact(int format, int64_t M, int64_t K, const float *x, int64_t ldx, void *xa) {
  for (int64_t m = 0; m < M; m++) {
    const float *xr = x + m * ldx;
    if (format == ICLD_F32) memcpy((float *)xa + m * K, xr, (size_t)K * 4);
    else if (format == ICLD_BF16) { uint16_t *o = (uint16_t *)xa + m * K; for (int64_t k = 0; k < K; k++) o[k] = f32_to_bf16(xr[k]); }
    else {
      int8_t *q = (int8_t *)xa + m * (K + 4 * (K / ICLD_QK));
      float *d = (float *)(q + K);
      for (int64_t b = 0; b < K / ICLD_QK; b++) {
        float amax = 0;
        for (int j = 0; j < ICLD_QK; j++) { float a = fabsf(xr[b * ICLD_QK + j]); if (a > amax) amax = a; }
        float s = amax / 127.0f, id = s != 0.0f ? 1.0f / s : 0.0f;
        d[b] = s;
        for (int j = 0; j < ICLD_QK; j++) q[b * ICLD_QK + j] = (int8_t)nearbyintf(xr[b * ICLD_QK + j] * id);
      }
    }
  }
}

void icld_qmatmul_range(const icld_qweight *w, int64_t M, const void *xa, float *out, int64_t ldo,
                        const float *bias, int accumulate, int64_t n0, int64_t n1) {
  const int64_t N = w->N, K = w->K, nb = K / ICLD_QK;
  for (int64_t m = 0; m < M; m++) {
    for (int64_t n = n0; n < n1; n++) {
      float s = 0;
      if (w->format == ICLD_F32) {
        const float *x = (const float *)xa + m * K, *W = (const float *)w->data;
        if (w->in_out) for (int64_t k = 0; k < K; k++) s += x[k] * W[k * N + n];
        else for (int64_t k = 0; k < K; k++) s += x[k] * W[n * K + k];
      } else if (w->format == ICLD_BF16) {
        const uint16_t *x = (const uint16_t *)xa + m * K, *W = (const uint16_t *)w->data + n * K;
        for (int64_t k = 0; k < K; k++) s += bf16_to_f32(x[k]) * bf16_to_f32(W[k]);
      } else {
        const int8_t *xq = (const int8_t *)xa + m * (K + 4 * nb);
        const float *xd = (const float *)(xq + K);
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
      }
      if (bias) s += bias[n];
      float *o = out + m * ldo + n;
      *o = accumulate ? *o + s : s;
    }
  }
}

static _Thread_local struct { void *p; size_t cap; } tl_act;

void icld_qmatmul(const icld_qweight *w, int64_t M, const float *x, int64_t ldx, float *out, int64_t ldo,
                  const float *bias, int accumulate) {
  size_t need = icld_qact_bytes(w->format, M, w->K);
  if (tl_act.cap < need) {
    free(tl_act.p);
    tl_act.p = aligned_alloc(64, (need + 63) / 64 * 64);
    tl_act.cap = tl_act.p ? need : 0;
    if (!tl_act.p) return;
  }
  icld_qact(w->format, M, w->K, x, ldx, tl_act.p);
  void *xa = tl_act.p;
  int nt = icld_get_threads();
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && w->N * w->K * M > 65536)
#endif
  for (int t = 0; t < nt; t++) {
    int64_t n0 = w->N * t / nt, n1 = w->N * (t + 1) / nt;
    icld_qmatmul_range(w, M, xa, out, ldo, bias, accumulate, n0, n1);
  }
}

const char *icld_kernel_path(const char *family) { (void)family; return "scalar"; }
const char *icld_cpu_features(void) { return ""; }
