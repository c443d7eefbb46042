/* The one N-API binding of icl-distill: one function per Backend kernel, same positional
 * arguments as src/engine/backend/types.ts. Every typed-array access is bounds-checked here
 * (cheap, O(rank)) so a caller bug throws a RangeError instead of corrupting memory. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "kernels.h"

#define MAXARGS 40 /* attentionBackward takes 35 */

typedef struct {
  napi_env env;
  napi_value argv[MAXARGS];
  size_t argc;
  int failed; /* set once an exception is pending; later getters return dummies */
} ctx;

static int throw_err(ctx *c, const char *code, const char *msg) {
  if (!c->failed) {
    bool pending = false;
    napi_is_exception_pending(c->env, &pending);
    if (!pending) napi_throw_range_error(c->env, code, msg);
  }
  c->failed = 1;
  return 0;
}

static int get_args(ctx *c, napi_env env, napi_callback_info info, size_t want, const char *name) {
  c->env = env; c->argc = MAXARGS; c->failed = 0;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) return throw_err(c, NULL, "bad call");
  if (c->argc < want) {
    char m[128];
    snprintf(m, sizeof m, "%s: expected %zu arguments, got %zu", name, want, c->argc);
    return throw_err(c, "ERR_ARG_COUNT", m);
  }
  return 1;
}

static double num(ctx *c, size_t i) {
  double d = 0;
  if (c->failed) return 0;
  if (napi_get_value_double(c->env, c->argv[i], &d) != napi_ok) throw_err(c, "ERR_ARG_TYPE", "expected a number");
  return d;
}
static int64_t i64(ctx *c, size_t i) {
  int64_t v = 0;
  if (c->failed) return 0;
  if (napi_get_value_int64(c->env, c->argv[i], &v) != napi_ok) throw_err(c, "ERR_ARG_TYPE", "expected an integer");
  return v;
}
static uint32_t u32(ctx *c, size_t i) {
  uint32_t v = 0; /* ToUint32 semantics, as `seed >>> 0` in rng.ts */
  if (c->failed) return 0;
  if (napi_get_value_uint32(c->env, c->argv[i], &v) != napi_ok) throw_err(c, "ERR_ARG_TYPE", "expected a number");
  return v;
}
static int boolean(ctx *c, size_t i) {
  bool b = false;
  if (c->failed) return 0;
  napi_valuetype t;
  napi_typeof(c->env, c->argv[i], &t);
  if (t == napi_boolean) napi_get_value_bool(c->env, c->argv[i], &b);
  else return num(c, i) != 0;
  return b;
}

typedef struct { void *p; int64_t len; } arr;

/* Argument i as a typed array: a.p its data (already adjusted by the view's byteOffset), a.len its
 * element count, *tt its type. Returns 0 (a empty) for null/undefined when nullable, or on error. */
static int typed_array(ctx *c, size_t i, int nullable, napi_typedarray_type *tt, arr *a) {
  a->p = NULL; a->len = 0;
  if (c->failed) return 0;
  napi_value v = c->argv[i];
  if (nullable) {
    napi_valuetype t;
    napi_typeof(c->env, v, &t);
    if (t == napi_null || t == napi_undefined) return 0;
  }
  size_t len;
  void *data;
  bool is = false;
  napi_is_typedarray(c->env, v, &is);
  if (!is || napi_get_typedarray_info(c->env, v, tt, &len, &data, NULL, NULL) != napi_ok) {
    throw_err(c, "ERR_ARG_TYPE", "expected a typed array");
    return 0;
  }
  a->p = data;
  a->len = (int64_t)len;
  return 1;
}

/* type: 1 = float32, 2 = int32, 3 = either (4-byte elements) */
static arr typed(ctx *c, size_t i, int type, int nullable) {
  arr a;
  napi_typedarray_type tt;
  if (!typed_array(c, i, nullable, &tt, &a)) return a;
  int ok = (type & 1 && tt == napi_float32_array) || (type & 2 && tt == napi_int32_array) ||
           (type == 3 && tt == napi_uint32_array);
  if (!ok) { throw_err(c, "ERR_ARG_TYPE", type == 2 ? "expected an Int32Array" : "expected a Float32Array"); a.p = NULL; a.len = 0; }
  return a;
}

/* Reads a number[] of at most ICLD_MAX_DIMS entries; returns its length or -1. */
static int dims(ctx *c, size_t i, int64_t *out, int maxn) {
  if (c->failed) return -1;
  uint32_t n = 0;
  bool isarr = false;
  napi_is_array(c->env, c->argv[i], &isarr);
  if (!isarr) { throw_err(c, "ERR_ARG_TYPE", "expected an array of numbers"); return -1; }
  napi_get_array_length(c->env, c->argv[i], &n);
  if ((int)n > maxn) { throw_err(c, "ERR_RANK", "too many dimensions (max 8)"); return -1; }
  for (uint32_t k = 0; k < n; k++) {
    napi_value e;
    napi_get_element(c->env, c->argv[i], k, &e);
    if (napi_get_value_int64(c->env, e, &out[k]) != napi_ok) { throw_err(c, "ERR_ARG_TYPE", "expected numbers"); return -1; }
  }
  return (int)n;
}

/* Checks that every index off + Σ i_k*str_k (0 <= i_k < shape_k) is inside [0, len). */
static int check_extent(ctx *c, const char *what, int64_t len, int64_t off, int nd, const int64_t *shape, const int64_t *str) {
  if (c->failed) return 0;
  int64_t lo = off, hi = off;
  for (int k = 0; k < nd; k++) {
    if (shape[k] <= 0) return 1; /* empty: nothing is touched */
    int64_t span = (shape[k] - 1) * str[k];
    if (span < 0) lo += span; else hi += span;
  }
  if (lo < 0 || hi >= len) {
    char m[160];
    snprintf(m, sizeof m, "%s: index range [%lld, %lld] outside array of length %lld", what,
             (long long)lo, (long long)hi, (long long)len);
    return throw_err(c, "ERR_OUT_OF_RANGE", m);
  }
  return 1;
}
static int check_n(ctx *c, const char *what, arr a, int64_t n) {
  if (c->failed) return 0;
  if (n < 0 || n > a.len) {
    char m[128];
    snprintf(m, sizeof m, "%s: needs %lld elements, array has %lld", what, (long long)n, (long long)a.len);
    return throw_err(c, "ERR_OUT_OF_RANGE", m);
  }
  return 1;
}

static napi_value undef(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }
#define F(a) ((float *)(a).p)
#define I(a) ((int32_t *)(a).p)

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int64_t, int64_t,
                        const float *, int64_t, int64_t, float, float *, int64_t, int64_t, int);

/* gemm and gemmBf16 share their arguments and checks:
 * (transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB,
 *  beta, C, cOff, ldc, strideC, batch) */
static napi_value gemm_call(napi_env env, napi_callback_info info, const char *name, gemm_fn fn) {
  ctx c;
  char m[96];
  if (!get_args(&c, env, info, 20, name)) return NULL;
  int tA = boolean(&c, 0), tB = boolean(&c, 1);
  int64_t M = i64(&c, 2), N = i64(&c, 3), K = i64(&c, 4);
  float alpha = (float)num(&c, 5);
  arr A = typed(&c, 6, 1, 0); int64_t aOff = i64(&c, 7), lda = i64(&c, 8), sA = i64(&c, 9);
  arr B = typed(&c, 10, 1, 0); int64_t bOff = i64(&c, 11), ldb = i64(&c, 12), sB = i64(&c, 13);
  float beta = (float)num(&c, 14);
  arr C = typed(&c, 15, 1, 0); int64_t cOff = i64(&c, 16), ldc = i64(&c, 17), sC = i64(&c, 18);
  int64_t batch = i64(&c, 19);
  if (c.failed) return NULL;
  if (M < 0 || N < 0 || K < 0 || batch < 0 || M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff) {
    snprintf(m, sizeof m, "%s: bad sizes", name);
    throw_err(&c, "ERR_OUT_OF_RANGE", m); return NULL;
  }
  if ((K > 0 && lda < (tA ? M : K)) || (K > 0 && ldb < (tB ? K : N)) || ldc < N) {
    snprintf(m, sizeof m, "%s: leading dimension too small", name);
    throw_err(&c, "ERR_OUT_OF_RANGE", m); return NULL;
  }
  if (M == 0 || N == 0 || batch == 0) return undef(env);
  int64_t shA[3] = {batch, tA ? K : M, tA ? M : K}, stA[3] = {sA, lda, 1};
  int64_t shB[3] = {batch, tB ? N : K, tB ? K : N}, stB[3] = {sB, ldb, 1};
  int64_t shC[3] = {batch, M, N}, stC[3] = {sC, ldc, 1};
  char wa[64], wb[64], wc[64];
  snprintf(wa, sizeof wa, "%s A", name); snprintf(wb, sizeof wb, "%s B", name); snprintf(wc, sizeof wc, "%s C", name);
  if (K > 0 && (!check_extent(&c, wa, A.len, aOff, 3, shA, stA) || !check_extent(&c, wb, B.len, bOff, 3, shB, stB))) return NULL;
  if (!check_extent(&c, wc, C.len, cOff, 3, shC, stC)) return NULL;
  fn(tA, tB, (int)M, (int)N, (int)K, alpha, F(A) + aOff, lda, sA, F(B) + bOff, ldb, sB,
     beta, F(C) + cOff, ldc, sC, (int)batch);
  return undef(env);
}

static napi_value js_gemm(napi_env env, napi_callback_info info) { return gemm_call(env, info, "gemm", icld_gemm); }
/* operands rounded to bf16 (Backend.gemmBf16) */
static napi_value js_gemm_bf16(napi_env env, napi_callback_info info) { return gemm_call(env, info, "gemmBf16", icld_gemm_bf16); }

/* gemmBf16Path(mode?): tests only — mode 0 forces the emulated path, 1 vdpbf16ps (if the CPU has
 * it), -1 automatic; returns the path now in use ("avx512_bf16" | "emulated"). */
static napi_value js_gemm_bf16_path(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) {
    napi_valuetype t;
    napi_typeof(env, argv[0], &t);
    if (t == napi_number) {
      int32_t m = 0;
      napi_get_value_int32(env, argv[0], &m);
      icld_gemm_bf16_force(m < 0 ? -1 : m > 0 ? 1 : 0);
    }
  }
  napi_value s;
  napi_create_string_utf8(env, icld_gemm_bf16_path(), NAPI_AUTO_LENGTH, &s);
  return s;
}

/* copy(shape, src, sOff, sStr, dst, dOff, dStr) */
static napi_value js_copy(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 7, "copy")) return NULL;
  int64_t shape[ICLD_MAX_DIMS], ss[ICLD_MAX_DIMS], ds[ICLD_MAX_DIMS];
  int nd = dims(&c, 0, shape, ICLD_MAX_DIMS);
  arr s = typed(&c, 1, 3, 0); int64_t sOff = i64(&c, 2); int ns = dims(&c, 3, ss, ICLD_MAX_DIMS);
  arr d = typed(&c, 4, 3, 0); int64_t dOff = i64(&c, 5); int ndd = dims(&c, 6, ds, ICLD_MAX_DIMS);
  if (c.failed) return NULL;
  if (ns != nd || ndd != nd) { throw_err(&c, "ERR_RANK", "copy: stride arrays must match shape"); return NULL; }
  if (!check_extent(&c, "copy src", s.len, sOff, nd, shape, ss) || !check_extent(&c, "copy dst", d.len, dOff, nd, shape, ds)) return NULL;
  icld_copy(nd, shape, (const uint32_t *)s.p + sOff, ss, (uint32_t *)d.p + dOff, ds);
  return undef(env);
}

/* binary(op, shape, a, aOff, aStr, b, bOff, bStr, out) */
static napi_value js_binary(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 9, "binary")) return NULL;
  int op = (int)i64(&c, 0);
  int64_t shape[ICLD_MAX_DIMS], as[ICLD_MAX_DIMS], bs[ICLD_MAX_DIMS];
  int nd = dims(&c, 1, shape, ICLD_MAX_DIMS);
  arr a = typed(&c, 2, 1, 0); int64_t aOff = i64(&c, 3); int na = dims(&c, 4, as, ICLD_MAX_DIMS);
  arr b = typed(&c, 5, 1, 0); int64_t bOff = i64(&c, 6); int nb = dims(&c, 7, bs, ICLD_MAX_DIMS);
  arr o = typed(&c, 8, 1, 0);
  if (c.failed) return NULL;
  if (na != nd || nb != nd) { throw_err(&c, "ERR_RANK", "binary: stride arrays must match shape"); return NULL; }
  if (op < 0 || op > 3) { throw_err(&c, "ERR_OP", "binary: unknown op"); return NULL; }
  int64_t n = 1;
  for (int k = 0; k < nd; k++) n *= shape[k] > 0 ? shape[k] : 0;
  if (!check_extent(&c, "binary a", a.len, aOff, nd, shape, as) || !check_extent(&c, "binary b", b.len, bOff, nd, shape, bs) ||
      !check_n(&c, "binary out", o, n)) return NULL;
  icld_binary(op, nd, shape, F(a) + aOff, as, F(b) + bOff, bs, F(o));
  return undef(env);
}

/* unary(op, x, xOff, n, out, param) */
static napi_value js_unary(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 6, "unary")) return NULL;
  int op = (int)i64(&c, 0);
  arr x = typed(&c, 1, 1, 0); int64_t off = i64(&c, 2), n = i64(&c, 3);
  arr o = typed(&c, 4, 1, 0); double p = num(&c, 5);
  if (c.failed || !check_n(&c, "unary x", x, off + n) || !check_n(&c, "unary out", o, n)) return NULL;
  if (off < 0 || op < 0 || op > 11) { throw_err(&c, "ERR_OP", "unary: bad op or offset"); return NULL; }
  icld_unary(op, F(x) + off, n, F(o), p);
  return undef(env);
}

/* unaryBackward(op, x, y, dy, n, dx, param) */
static napi_value js_unary_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 7, "unaryBackward")) return NULL;
  int op = (int)i64(&c, 0);
  arr x = typed(&c, 1, 1, 0), y = typed(&c, 2, 1, 0), dy = typed(&c, 3, 1, 0);
  int64_t n = i64(&c, 4);
  arr dx = typed(&c, 5, 1, 0); double p = num(&c, 6);
  if (c.failed || !check_n(&c, "x", x, n) || !check_n(&c, "y", y, n) || !check_n(&c, "dy", dy, n) || !check_n(&c, "dx", dx, n)) return NULL;
  if (op < 0 || op > 11) { throw_err(&c, "ERR_OP", "unaryBackward: bad op"); return NULL; }
  icld_unary_backward(op, F(x), F(y), F(dy), n, F(dx), p);
  return undef(env);
}

/* reduceSum(x, outer, dim, inner, out) */
static napi_value js_reduce_sum(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 5, "reduceSum")) return NULL;
  arr x = typed(&c, 0, 1, 0); int64_t o = i64(&c, 1), d = i64(&c, 2), in = i64(&c, 3);
  arr out = typed(&c, 4, 1, 0);
  if (c.failed || !check_n(&c, "reduceSum x", x, o * d * in) || !check_n(&c, "reduceSum out", out, o * in)) return NULL;
  icld_reduce_sum(F(x), o, d, in, F(out));
  return undef(env);
}

/* reduceMax(x, outer, dim, inner, out, arg) */
static napi_value js_reduce_max(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 6, "reduceMax")) return NULL;
  arr x = typed(&c, 0, 1, 0); int64_t o = i64(&c, 1), d = i64(&c, 2), in = i64(&c, 3);
  arr out = typed(&c, 4, 1, 0), arg = typed(&c, 5, 2, 0);
  if (c.failed || !check_n(&c, "reduceMax x", x, o * d * in) || !check_n(&c, "reduceMax out", out, o * in) ||
      !check_n(&c, "reduceMax arg", arg, o * in)) return NULL;
  icld_reduce_max(F(x), o, d, in, F(out), I(arg));
  return undef(env);
}

/* softmax(x, rows, cols, out, log) */
static napi_value js_softmax(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 5, "softmax")) return NULL;
  arr x = typed(&c, 0, 1, 0); int64_t r = i64(&c, 1), n = i64(&c, 2);
  arr o = typed(&c, 3, 1, 0); int lg = boolean(&c, 4);
  if (c.failed || !check_n(&c, "softmax x", x, r * n) || !check_n(&c, "softmax out", o, r * n)) return NULL;
  icld_softmax(F(x), r, n, F(o), lg);
  return undef(env);
}

/* softmaxBackward(y, dy, rows, cols, dx, log) */
static napi_value js_softmax_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 6, "softmaxBackward")) return NULL;
  arr y = typed(&c, 0, 1, 0), dy = typed(&c, 1, 1, 0);
  int64_t r = i64(&c, 2), n = i64(&c, 3);
  arr dx = typed(&c, 4, 1, 0); int lg = boolean(&c, 5);
  if (c.failed || !check_n(&c, "y", y, r * n) || !check_n(&c, "dy", dy, r * n) || !check_n(&c, "dx", dx, r * n)) return NULL;
  icld_softmax_backward(F(y), F(dy), r, n, F(dx), lg);
  return undef(env);
}

/* crossEntropy(logits, rows, V, targets, ignoreIndex, smoothing, loss, lse) */
static napi_value js_cross_entropy(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 8, "crossEntropy")) return NULL;
  arr z = typed(&c, 0, 1, 0); int64_t r = i64(&c, 1), V = i64(&c, 2);
  arr t = typed(&c, 3, 2, 0); int32_t ig = (int32_t)i64(&c, 4); double sm = num(&c, 5);
  arr loss = typed(&c, 6, 1, 0), lse = typed(&c, 7, 1, 0);
  if (c.failed || !check_n(&c, "logits", z, r * V) || !check_n(&c, "targets", t, r) || !check_n(&c, "loss", loss, r) ||
      !check_n(&c, "lse", lse, r)) return NULL;
  for (int64_t k = 0; k < r; k++) {
    int32_t tk = I(t)[k];
    if (tk != ig && (tk < 0 || tk >= V)) { throw_err(&c, "ERR_OUT_OF_RANGE", "crossEntropy: target out of range"); return NULL; }
  }
  icld_cross_entropy(F(z), r, V, I(t), ig, sm, F(loss), F(lse));
  return undef(env);
}

/* crossEntropyBackward(logits, lse, targets, rows, V, ignoreIndex, smoothing, dloss, dlogits) */
static napi_value js_cross_entropy_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 9, "crossEntropyBackward")) return NULL;
  arr z = typed(&c, 0, 1, 0), lse = typed(&c, 1, 1, 0), t = typed(&c, 2, 2, 0);
  int64_t r = i64(&c, 3), V = i64(&c, 4);
  int32_t ig = (int32_t)i64(&c, 5); double sm = num(&c, 6);
  arr dl = typed(&c, 7, 1, 0), dz = typed(&c, 8, 1, 0);
  if (c.failed || !check_n(&c, "logits", z, r * V) || !check_n(&c, "lse", lse, r) || !check_n(&c, "targets", t, r) ||
      !check_n(&c, "dloss", dl, r) || !check_n(&c, "dlogits", dz, r * V)) return NULL;
  for (int64_t k = 0; k < r; k++) {
    int32_t tk = I(t)[k];
    if (tk != ig && (tk < 0 || tk >= V)) { throw_err(&c, "ERR_OUT_OF_RANGE", "crossEntropyBackward: target out of range"); return NULL; }
  }
  icld_cross_entropy_backward(F(z), F(lse), I(t), r, V, ig, sm, F(dl), F(dz));
  return undef(env);
}

/* layerNorm(x, rows, C, gamma, beta, eps, y, mean, rstd) */
static napi_value js_layer_norm(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 9, "layerNorm")) return NULL;
  arr x = typed(&c, 0, 1, 0); int64_t r = i64(&c, 1), C = i64(&c, 2);
  arr g = typed(&c, 3, 1, 0), b = typed(&c, 4, 1, 0); double eps = num(&c, 5);
  arr y = typed(&c, 6, 1, 0), mean = typed(&c, 7, 1, 0), rstd = typed(&c, 8, 1, 0);
  if (c.failed || !check_n(&c, "x", x, r * C) || !check_n(&c, "gamma", g, C) || !check_n(&c, "beta", b, C) ||
      !check_n(&c, "y", y, r * C) || !check_n(&c, "mean", mean, r) || !check_n(&c, "rstd", rstd, r)) return NULL;
  icld_layer_norm(F(x), r, C, F(g), F(b), eps, F(y), F(mean), F(rstd));
  return undef(env);
}

/* layerNormBackward(x, dy, gamma, mean, rstd, rows, C, dx, dgamma, dbeta) */
static napi_value js_layer_norm_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 10, "layerNormBackward")) return NULL;
  arr x = typed(&c, 0, 1, 0), dy = typed(&c, 1, 1, 0), g = typed(&c, 2, 1, 0), mean = typed(&c, 3, 1, 0), rstd = typed(&c, 4, 1, 0);
  int64_t r = i64(&c, 5), C = i64(&c, 6);
  arr dx = typed(&c, 7, 1, 0), dg = typed(&c, 8, 1, 0), db = typed(&c, 9, 1, 0);
  if (c.failed || !check_n(&c, "x", x, r * C) || !check_n(&c, "dy", dy, r * C) || !check_n(&c, "gamma", g, C) ||
      !check_n(&c, "mean", mean, r) || !check_n(&c, "rstd", rstd, r) || !check_n(&c, "dx", dx, r * C) ||
      !check_n(&c, "dgamma", dg, C) || !check_n(&c, "dbeta", db, C)) return NULL;
  icld_layer_norm_backward(F(x), F(dy), F(g), F(mean), F(rstd), r, C, F(dx), F(dg), F(db));
  return undef(env);
}

/* embedding(weight, D, ids, n, out) */
static napi_value js_embedding(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 5, "embedding")) return NULL;
  arr w = typed(&c, 0, 1, 0); int64_t D = i64(&c, 1);
  arr ids = typed(&c, 2, 2, 0); int64_t n = i64(&c, 3);
  arr o = typed(&c, 4, 1, 0);
  if (c.failed || !check_n(&c, "ids", ids, n) || !check_n(&c, "out", o, n * D)) return NULL;
  int64_t rows = D > 0 ? w.len / D : 0;
  for (int64_t i = 0; i < n; i++)
    if (I(ids)[i] < 0 || I(ids)[i] >= rows) { throw_err(&c, "ERR_OUT_OF_RANGE", "embedding: id out of range"); return NULL; }
  icld_embedding(F(w), D, I(ids), n, F(o));
  return undef(env);
}

/* embeddingBackward(dy, ids, n, D, dweight) */
static napi_value js_embedding_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 5, "embeddingBackward")) return NULL;
  arr dy = typed(&c, 0, 1, 0), ids = typed(&c, 1, 2, 0);
  int64_t n = i64(&c, 2), D = i64(&c, 3);
  arr dw = typed(&c, 4, 1, 0);
  if (c.failed || !check_n(&c, "ids", ids, n) || !check_n(&c, "dy", dy, n * D)) return NULL;
  int64_t rows = D > 0 ? dw.len / D : 0;
  for (int64_t i = 0; i < n; i++)
    if (I(ids)[i] < 0 || I(ids)[i] >= rows) { throw_err(&c, "ERR_OUT_OF_RANGE", "embeddingBackward: id out of range"); return NULL; }
  icld_embedding_backward(F(dy), I(ids), n, D, F(dw));
  return undef(env);
}

/* dropout(x, n, p, seed, out) */
static napi_value js_dropout(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 5, "dropout")) return NULL;
  arr x = typed(&c, 0, 1, 0); int64_t n = i64(&c, 1); double p = num(&c, 2); uint32_t seed = u32(&c, 3);
  arr o = typed(&c, 4, 1, 0);
  if (c.failed || !check_n(&c, "x", x, n) || !check_n(&c, "out", o, n)) return NULL;
  icld_dropout(F(x), n, p, seed, F(o));
  return undef(env);
}

/* Reads (array, off, strides[3]) at argv[i..i+2] into a view and checks its B×H×T×D extent. */
static int view_at(ctx *c, size_t i, const char *what, int64_t B, int64_t H, int64_t T, int64_t D, float **p, int64_t s[3]) {
  arr a = typed(c, i, 1, 0);
  int64_t off = i64(c, i + 1);
  int n = dims(c, i + 2, s, 3);
  if (c->failed) return 0;
  if (n != 3) return throw_err(c, "ERR_RANK", "attention: strides must be [sB, sH, sT]");
  int64_t shape[4] = {B, H, T, D}, str[4] = {s[0], s[1], s[2], 1};
  if (!check_extent(c, what, a.len, off, 4, shape, str)) return 0;
  *p = F(a) + off;
  return 1;
}

/* attention(q,qOff,qs, k,kOff,ks, v,vOff,vs, out,oOff,os, B,H,Tq,Tk,D, scale, causal, keyMask, dropP, seed, lse) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 23, "attention")) return NULL;
  int64_t B = i64(&c, 12), H = i64(&c, 13), Tq = i64(&c, 14), Tk = i64(&c, 15), D = i64(&c, 16);
  double scale = num(&c, 17); int causal = boolean(&c, 18);
  arr km = typed(&c, 19, 1, 1); double dp = num(&c, 20); uint32_t seed = u32(&c, 21);
  arr lse = typed(&c, 22, 1, 0);
  if (c.failed) return NULL;
  if (B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 || B * H > 0x7fffffff || Tq > 0x7fffffff || Tk > 0x7fffffff) {
    throw_err(&c, "ERR_OUT_OF_RANGE", "attention: bad sizes"); return NULL;
  }
  icld_view q, k, v; icld_mview o;
  float *pq, *pk, *pv;
  if (!view_at(&c, 0, "attention q", B, H, Tq, D, &pq, q.s) || !view_at(&c, 3, "attention k", B, H, Tk, D, &pk, k.s) ||
      !view_at(&c, 6, "attention v", B, H, Tk, D, &pv, v.s) || !view_at(&c, 9, "attention out", B, H, Tq, D, &o.p, o.s)) return NULL;
  if (!check_n(&c, "lse", lse, B * H * Tq) || (km.p && !check_n(&c, "keyMask", km, B * Tk))) return NULL;
  q.p = pq; k.p = pk; v.p = pv;
  if (B * H == 0 || Tq == 0) return undef(env);
  icld_attention(q, k, v, o, (int)B, (int)H, (int)Tq, (int)Tk, (int)D, scale, causal, F(km), dp, seed, F(lse));
  return undef(env);
}

/* attentionBackward(q,qOff,qs, k,kOff,ks, v,vOff,vs, out,oOff,os, dout,doOff,dos, lse,
 *   dq,dqOff,dqs, dk,dkOff,dks, dv,dvOff,dvs, B,H,Tq,Tk,D, scale, causal, keyMask, dropP, seed) */
static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 35, "attentionBackward")) return NULL;
  int64_t B = i64(&c, 25), H = i64(&c, 26), Tq = i64(&c, 27), Tk = i64(&c, 28), D = i64(&c, 29);
  double scale = num(&c, 30); int causal = boolean(&c, 31);
  arr km = typed(&c, 32, 1, 1); double dp = num(&c, 33); uint32_t seed = u32(&c, 34);
  arr lse = typed(&c, 15, 1, 0);
  if (c.failed) return NULL;
  if (B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 || B * H > 0x7fffffff || Tq > 0x7fffffff || Tk > 0x7fffffff) {
    throw_err(&c, "ERR_OUT_OF_RANGE", "attentionBackward: bad sizes"); return NULL;
  }
  icld_view q, k, v, o, dout; icld_mview dq, dk, dv;
  float *pq, *pk, *pv, *po, *pdo;
  if (!view_at(&c, 0, "q", B, H, Tq, D, &pq, q.s) || !view_at(&c, 3, "k", B, H, Tk, D, &pk, k.s) ||
      !view_at(&c, 6, "v", B, H, Tk, D, &pv, v.s) || !view_at(&c, 9, "out", B, H, Tq, D, &po, o.s) ||
      !view_at(&c, 12, "dout", B, H, Tq, D, &pdo, dout.s) || !view_at(&c, 16, "dq", B, H, Tq, D, &dq.p, dq.s) ||
      !view_at(&c, 19, "dk", B, H, Tk, D, &dk.p, dk.s) || !view_at(&c, 22, "dv", B, H, Tk, D, &dv.p, dv.s)) return NULL;
  if (!check_n(&c, "lse", lse, B * H * Tq) || (km.p && !check_n(&c, "keyMask", km, B * Tk))) return NULL;
  q.p = pq; k.p = pk; v.p = pv; o.p = po; dout.p = pdo;
  if (B * H == 0) return undef(env);
  icld_attention_backward(q, k, v, o, dout, F(lse), dq, dk, dv, (int)B, (int)H, (int)Tq, (int)Tk, (int)D,
                          scale, causal, F(km), dp, seed);
  return undef(env);
}

/* adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2) */
static napi_value js_adamw(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 12, "adamw")) return NULL;
  arr p = typed(&c, 0, 1, 0), g = typed(&c, 1, 1, 0), m = typed(&c, 2, 1, 0), v = typed(&c, 3, 1, 0);
  int64_t n = i64(&c, 4);
  double lr = num(&c, 5), b1 = num(&c, 6), b2 = num(&c, 7), eps = num(&c, 8), wd = num(&c, 9), bc1 = num(&c, 10), bc2 = num(&c, 11);
  if (c.failed || !check_n(&c, "p", p, n) || !check_n(&c, "g", g, n) || !check_n(&c, "m", m, n) || !check_n(&c, "v", v, n)) return NULL;
  icld_adamw(F(p), F(g), F(m), F(v), n, lr, b1, b2, eps, wd, bc1, bc2);
  return undef(env);
}

/* Any typed array as raw bytes (weights in packed formats); len = byte length. */
static arr raw_bytes(ctx *c, size_t i, int nullable) {
  arr a;
  napi_typedarray_type tt;
  if (!typed_array(c, i, nullable, &tt, &a)) return a;
  size_t el = (tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array) ? 1
            : (tt == napi_int16_array || tt == napi_uint16_array) ? 2
            : (tt == napi_float64_array || tt == napi_bigint64_array || tt == napi_biguint64_array) ? 8 : 4;
  a.len *= (int64_t)el;
  return a;
}

/* qmatmul(format, inOut, N, K, data, scales, M, x, xOff, ldx, out, outOff, ldo, bias, accumulate) */
static napi_value js_qmatmul(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 15, "qmatmul")) return NULL;
  int64_t fmt = i64(&c, 0); int inOut = boolean(&c, 1);
  int64_t N = i64(&c, 2), K = i64(&c, 3);
  arr data = raw_bytes(&c, 4, 0), sc = raw_bytes(&c, 5, 1);
  int64_t M = i64(&c, 6);
  arr x = typed(&c, 7, 1, 0); int64_t xOff = i64(&c, 8), ldx = i64(&c, 9);
  arr out = typed(&c, 10, 1, 0); int64_t oOff = i64(&c, 11), ldo = i64(&c, 12);
  arr bias = typed(&c, 13, 1, 1);
  int acc = boolean(&c, 14);
  if (c.failed) return NULL;
  if (fmt < ICLD_F32 || fmt > ICLD_Q4_0 || N < 0 || K < 0 || M < 0) { throw_err(&c, "ERR_ARG", "qmatmul: bad format or size"); return NULL; }
  if (fmt >= ICLD_Q8_0 && K % ICLD_QK) { throw_err(&c, "ERR_ARG", "qmatmul: K must be a multiple of 32 for q formats"); return NULL; }
  int64_t need = fmt == ICLD_F32 ? 4 * N * K : fmt == ICLD_BF16 ? 2 * N * K : fmt == ICLD_Q8_0 ? N * K : N * K / 2;
  if (data.len < need) { throw_err(&c, "ERR_OUT_OF_RANGE", "qmatmul: weight data too short"); return NULL; }
  if (fmt >= ICLD_Q8_0 && (!sc.p || sc.len < 2 * N * (K / ICLD_QK))) { throw_err(&c, "ERR_OUT_OF_RANGE", "qmatmul: scales missing or too short"); return NULL; }
  if (bias.p && !check_n(&c, "bias", bias, N)) return NULL;
  if (M == 0 || N == 0) return undef(env);
  int64_t sx[2] = {ldx, 1}, so[2] = {ldo, 1}, shx[2] = {M, K}, sho[2] = {M, N};
  if (!check_extent(&c, "x", x.len, xOff, 2, shx, sx) || !check_extent(&c, "out", out.len, oOff, 2, sho, so)) return NULL;
  icld_qweight w = {(int)fmt, inOut, N, K, data.p, (const uint16_t *)sc.p};
  icld_qmatmul(&w, M, F(x) + xOff, ldx, F(out) + oOff, ldo, F(bias), acc);
  return undef(env);
}

/* setKernelPath(path | null) -> the previous cap ("auto" | "scalar" | "avx2" | …); throws when
 * the CPU cannot run the path or the name is unknown (the cap is then unchanged). */
static napi_value js_set_kernel_path(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 1, "setKernelPath")) return NULL;
  char path[64] = "";
  napi_valuetype t;
  napi_typeof(env, c.argv[0], &t);
  if (t == napi_string) {
    size_t len = 0;
    napi_get_value_string_utf8(env, c.argv[0], path, sizeof path, &len);
  } else if (t != napi_null && t != napi_undefined) { throw_err(&c, "ERR_ARG_TYPE", "setKernelPath: expected a string or null"); return NULL; }
  const char *prev = icld_kernel_cap();
  char err[256];
  if (icld_set_kernel_cap(path[0] ? path : NULL, err, sizeof err) != 0) {
    napi_throw_error(env, "ERR_KERNEL_PATH", err);
    return NULL;
  }
  napi_value r;
  napi_create_string_utf8(env, prev, NAPI_AUTO_LENGTH, &r);
  return r;
}

static napi_value js_kernel_cap(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, icld_kernel_cap(), NAPI_AUTO_LENGTH, &r);
  return r;
}

/* qactTest(format, M, K, x, xOff, ldx, out): icld_qact's raw bytes into any typed array (tests). */
static napi_value js_qact_test(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 7, "qactTest")) return NULL;
  int64_t fmt = i64(&c, 0), M = i64(&c, 1), K = i64(&c, 2);
  arr x = typed(&c, 3, 1, 0); int64_t xOff = i64(&c, 4), ldx = i64(&c, 5);
  arr out = raw_bytes(&c, 6, 0);
  if (c.failed) return NULL;
  if (fmt < ICLD_F32 || fmt > ICLD_Q4_0 || M < 0 || K < 0 || (fmt >= ICLD_Q8_0 && K % ICLD_QK)) { throw_err(&c, "ERR_ARG", "qactTest: bad format or size"); return NULL; }
  if (M == 0 || K == 0) return undef(env);
  int64_t sx[2] = {ldx, 1}, shx[2] = {M, K};
  if (!check_extent(&c, "x", x.len, xOff, 2, shx, sx)) return NULL;
  if ((size_t)out.len < icld_qact_bytes((int)fmt, M, K)) { throw_err(&c, "ERR_OUT_OF_RANGE", "qactTest: out too short"); return NULL; }
  icld_qact((int)fmt, M, K, F(x) + xOff, ldx, out.p);
  return undef(env);
}

/* cpu() -> {features: string[], paths: {family: path}} */
static napi_value js_cpu(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, feats, paths;
  napi_create_object(env, &o);
  napi_create_array(env, &feats);
  char buf[512];
  snprintf(buf, sizeof buf, "%s", icld_cpu_features());
  uint32_t n = 0;
  for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
    napi_value s; napi_create_string_utf8(env, tok, NAPI_AUTO_LENGTH, &s); napi_set_element(env, feats, n++, s);
  }
  napi_create_object(env, &paths);
  const char *fam[] = {"gemm", "gemm_bf16", "f32", "bf16", "q8_0", "q4_0"};
  for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
    napi_value s; napi_create_string_utf8(env, icld_kernel_path(fam[i]), NAPI_AUTO_LENGTH, &s);
    napi_set_named_property(env, paths, fam[i], s);
  }
  napi_set_named_property(env, o, "features", feats);
  napi_set_named_property(env, o, "paths", paths);
  return o;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 1, "setThreads")) return NULL;
  int64_t n = i64(&c, 0);
  if (c.failed) return NULL;
  icld_set_threads(n < 1 ? 1 : (n > 256 ? 256 : (int)n));
  return undef(env);
}
static napi_value js_get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_int32(env, icld_get_threads(), &r);
  return r;
}
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, g, s, m;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, icld_gemm_provider(), NAPI_AUTO_LENGTH, &g);
  napi_create_string_utf8(env, icld_simd(), NAPI_AUTO_LENGTH, &s);
  napi_get_boolean(env, icld_has_openmp() != 0, &m);
  napi_set_named_property(env, o, "gemm", g);
  napi_set_named_property(env, o, "simd", s);
  napi_set_named_property(env, o, "openmp", m);
  return o;
}

/* ---- fused decoder ---- */
typedef struct { icld_decoder *d; int V, maxSeqs, maxT; } dec_box;

static void dec_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  dec_box *b = data;
  icld_decoder_free(b->d);
  free(b);
}

/* Element i of the JS array `a`, as c->argv[MAXARGS-1] so the typed-array getters can read it. */
static int dec_elem(ctx *c, napi_value a, uint32_t i) {
  if (c->failed) return 0;
  if (napi_get_element(c->env, a, i, &c->argv[MAXARGS - 1]) != napi_ok) return throw_err(c, "ERR_ARG_TYPE", "decoderCreate: bad tensor list");
  return 1;
}
static const float *dec_vec(ctx *c, napi_value a, uint32_t *i, int64_t n, const char *what) {
  if (!dec_elem(c, a, (*i)++)) return NULL;
  arr v = typed(c, MAXARGS - 1, 1, 0);
  if (c->failed) return NULL;
  if (v.len != n) {
    char m[160];
    snprintf(m, sizeof m, "decoderCreate: %s has %lld values, expected %lld", what, (long long)v.len, (long long)n);
    throw_err(c, "ERR_OUT_OF_RANGE", m);
    return NULL;
  }
  return F(v);
}
/* A weight as 6 list entries: format, inOut, N, K, data, scales|null. */
static int dec_weight(ctx *c, napi_value a, uint32_t *i, int64_t N, int64_t K, const char *what, icld_qweight *w) {
  napi_value e;
  int64_t f[4];
  for (int k = 0; k < 4; k++) {
    if (!dec_elem(c, a, (*i)++)) return 0;
    e = c->argv[MAXARGS - 1];
    if (k == 1) { bool b = false; napi_get_value_bool(c->env, e, &b); f[k] = b; }
    else if (napi_get_value_int64(c->env, e, &f[k]) != napi_ok) return throw_err(c, "ERR_ARG_TYPE", "decoderCreate: weight sizes must be numbers");
  }
  if (!dec_elem(c, a, (*i)++)) return 0;
  arr data = raw_bytes(c, MAXARGS - 1, 0);
  if (!dec_elem(c, a, (*i)++)) return 0;
  arr sc = raw_bytes(c, MAXARGS - 1, 1);
  if (c->failed) return 0;
  char m[200];
  int64_t fmt = f[0];
  if (fmt < ICLD_F32 || fmt > ICLD_Q4_0 || f[2] != N || f[3] != K || (fmt >= ICLD_Q8_0 && K % ICLD_QK)) {
    snprintf(m, sizeof m, "decoderCreate: %s is format %lld %lldx%lld, expected %lldx%lld", what, (long long)fmt, (long long)f[2], (long long)f[3], (long long)N, (long long)K);
    return throw_err(c, "ERR_ARG", m);
  }
  int64_t need = fmt == ICLD_F32 ? 4 * N * K : fmt == ICLD_BF16 ? 2 * N * K : fmt == ICLD_Q8_0 ? N * K : N * K / 2;
  if (data.len < need || (fmt >= ICLD_Q8_0 && (!sc.p || sc.len < 2 * N * (K / ICLD_QK)))) {
    snprintf(m, sizeof m, "decoderCreate: %s data or scales too short", what);
    return throw_err(c, "ERR_OUT_OF_RANGE", m);
  }
  w->format = (int)fmt; w->in_out = fmt == ICLD_F32 && f[1]; w->N = N; w->K = K; w->data = data.p; w->scales = (const uint16_t *)sc.p;
  return 1;
}

/* decoderCreate(dims Int32Array [C, H, I, V, P, L, act, maxSeqs, maxT], eps, scales Float32Array [L], tensors[])
 * tensors: wte (weight), wpe, lnfW, lnfB, then per layer ln1W, ln1B, qkv (weight), qkvB, proj (weight),
 * projB, ln2W, ln2B, fc (weight), fcB, fcProj (weight), fcProjB. Returns an external; the caller keeps
 * the weight arrays alive as long as it. */
static napi_value js_decoder_create(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 4, "decoderCreate")) return NULL;
  arr dm = typed(&c, 0, 2, 0);
  double eps = num(&c, 1);
  arr sc = typed(&c, 2, 1, 0);
  if (c.failed || !check_n(&c, "dims", dm, 9)) return NULL;
  int32_t *D = I(dm);
  icld_decoder_spec s;
  memset(&s, 0, sizeof s);
  s.C = D[0]; s.H = D[1]; s.I = D[2]; s.V = D[3]; s.P = D[4]; s.L = D[5]; s.act = D[6]; s.maxSeqs = D[7]; s.maxT = D[8];
  s.eps = (float)eps;
  if (s.C < 1 || s.H < 1 || s.C % s.H || s.I < 1 || s.V < 1 || s.P < 1 || s.L < 0 || s.act < 0 || s.act > 2 || s.maxSeqs < 1 ||
      s.maxT < 1 || s.maxT > s.P) { throw_err(&c, "ERR_ARG", "decoderCreate: bad sizes"); return NULL; }
  if (!check_n(&c, "scales", sc, s.L)) return NULL;
  s.scale = F(sc);
  napi_value list = c.argv[3];
  bool isarr = false;
  napi_is_array(env, list, &isarr);
  if (!isarr) { throw_err(&c, "ERR_ARG_TYPE", "decoderCreate: tensors must be an array"); return NULL; }
  icld_decoder_layer *layers = calloc((size_t)(s.L ? s.L : 1), sizeof *layers);
  if (!layers) { throw_err(&c, "ERR_MEMORY", "decoderCreate: out of memory"); return NULL; }
  uint32_t i = 0;
  const int64_t C = s.C, In = s.I;
  dec_weight(&c, list, &i, s.V, C, "wte", &s.wte);
  s.wpe = dec_vec(&c, list, &i, (int64_t)s.P * C, "wpe");
  s.lnfw = dec_vec(&c, list, &i, C, "lnfWeight");
  s.lnfb = dec_vec(&c, list, &i, C, "lnfBias");
  for (int l = 0; l < s.L && !c.failed; l++) {
    icld_decoder_layer *y = &layers[l];
    y->ln1w = dec_vec(&c, list, &i, C, "ln1Weight"); y->ln1b = dec_vec(&c, list, &i, C, "ln1Bias");
    dec_weight(&c, list, &i, 3 * C, C, "qkv", &y->qkv); y->qkvb = dec_vec(&c, list, &i, 3 * C, "qkvBias");
    dec_weight(&c, list, &i, C, C, "proj", &y->proj); y->projb = dec_vec(&c, list, &i, C, "projBias");
    y->ln2w = dec_vec(&c, list, &i, C, "ln2Weight"); y->ln2b = dec_vec(&c, list, &i, C, "ln2Bias");
    dec_weight(&c, list, &i, In, C, "fc", &y->fc); y->fcb = dec_vec(&c, list, &i, In, "fcBias");
    dec_weight(&c, list, &i, C, In, "fcProj", &y->fcp); y->fcpb = dec_vec(&c, list, &i, C, "fcProjBias");
  }
  if (c.failed) { free(layers); return NULL; }
  s.layers = layers;
  dec_box *b = malloc(sizeof *b);
  icld_decoder *d = b ? icld_decoder_create(&s) : NULL;
  free(layers);
  if (!d) { free(b); throw_err(&c, "ERR_MEMORY", "decoderCreate: out of memory for the KV cache and scratch"); return NULL; }
  b->d = d; b->V = s.V; b->maxSeqs = s.maxSeqs; b->maxT = s.maxT;
  napi_value ext;
  if (napi_create_external(env, b, dec_finalize, NULL, &ext) != napi_ok) { icld_decoder_free(d); free(b); return NULL; }
  return ext;
}

static dec_box *dec_get(ctx *c, size_t i) {
  void *p = NULL;
  if (c->failed) return NULL;
  napi_valuetype t;
  napi_typeof(c->env, c->argv[i], &t);
  if (t != napi_external || napi_get_value_external(c->env, c->argv[i], &p) != napi_ok) { throw_err(c, "ERR_ARG_TYPE", "expected a decoder handle"); return NULL; }
  dec_box *b = p;
  if (!b->d) { throw_err(c, "ERR_ARG", "the decoder was freed"); return NULL; }
  return b;
}

/* decoderStep(h, n, ids, pos, seq, outRows, nOut, logits) */
static napi_value js_decoder_step(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 8, "decoderStep")) return NULL;
  dec_box *b = dec_get(&c, 0);
  int64_t n = i64(&c, 1);
  arr ids = typed(&c, 2, 2, 0), pos = typed(&c, 3, 2, 0), seq = typed(&c, 4, 2, 0), out = typed(&c, 5, 2, 0);
  int64_t nOut = i64(&c, 6);
  arr lg = typed(&c, 7, 1, 0);
  if (c.failed) return NULL;
  if (n < 0 || nOut < 0) { throw_err(&c, "ERR_ARG", "decoderStep: negative count"); return NULL; }
  if (!check_n(&c, "ids", ids, n) || !check_n(&c, "pos", pos, n) || !check_n(&c, "seq", seq, n) ||
      !check_n(&c, "outRows", out, nOut) || !check_n(&c, "logits", lg, nOut * b->V)) return NULL;
  char m[160];
  for (int64_t k = 0; k < n; k++) {
    int32_t a = I(ids)[k], p = I(pos)[k], s = I(seq)[k];
    if (a < 0 || a >= b->V || p < 0 || p >= b->maxT || s < 0 || s >= b->maxSeqs) {
      snprintf(m, sizeof m, "decoderStep: token %lld (id %d, position %d, slot %d) is out of range", (long long)k, a, p, s);
      throw_err(&c, "ERR_OUT_OF_RANGE", m);
      return NULL;
    }
  }
  for (int64_t r = 0; r < nOut; r++)
    if (I(out)[r] < 0 || I(out)[r] >= n) { throw_err(&c, "ERR_OUT_OF_RANGE", "decoderStep: an output row is not one of the step's tokens"); return NULL; }
  icld_decoder_step(b->d, (int)n, I(ids), I(pos), I(seq), I(out), (int)nOut, F(lg));
  return undef(env);
}

static napi_value js_decoder_free(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 1, "decoderFree")) return NULL;
  void *p = NULL;
  if (napi_get_value_external(env, c.argv[0], &p) != napi_ok || !p) { throw_err(&c, "ERR_ARG_TYPE", "expected a decoder handle"); return NULL; }
  dec_box *b = p;
  icld_decoder_free(b->d);
  b->d = NULL;
  return undef(env);
}

/* decoderThreads(h, nt?) -> chosen thread count per bucket (0 = still measuring); nt (0 = measure) sets it. */
static napi_value js_decoder_threads(napi_env env, napi_callback_info info) {
  ctx c;
  if (!get_args(&c, env, info, 1, "decoderThreads")) return NULL;
  dec_box *b = dec_get(&c, 0);
  if (c.failed) return NULL;
  if (c.argc > 1) {
    napi_valuetype t;
    napi_typeof(env, c.argv[1], &t);
    if (t == napi_number) { int64_t nt = i64(&c, 1); if (c.failed) return NULL; icld_decoder_set_threads(b->d, nt < 0 ? 0 : nt > 256 ? 256 : (int)nt); }
  }
  napi_value r;
  napi_create_array(env, &r);
  for (int k = 0; k < ICLD_DEC_BUCKETS; k++) {
    napi_value v; napi_create_int32(env, icld_decoder_threads(b->d, k), &v); napi_set_element(env, r, k, v);
  }
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  struct { const char *name; napi_callback cb; } fns[] = {
    {"gemm", js_gemm}, {"copy", js_copy}, {"binary", js_binary}, {"unary", js_unary},
    {"unaryBackward", js_unary_backward}, {"reduceSum", js_reduce_sum}, {"reduceMax", js_reduce_max},
    {"softmax", js_softmax}, {"softmaxBackward", js_softmax_backward}, {"crossEntropy", js_cross_entropy},
    {"crossEntropyBackward", js_cross_entropy_backward}, {"layerNorm", js_layer_norm},
    {"layerNormBackward", js_layer_norm_backward}, {"embedding", js_embedding},
    {"embeddingBackward", js_embedding_backward}, {"dropout", js_dropout}, {"attention", js_attention},
    {"attentionBackward", js_attention_backward}, {"adamw", js_adamw}, {"setThreads", js_set_threads},
    {"getThreads", js_get_threads}, {"info", js_info},
    {"qmatmul", js_qmatmul}, {"cpu", js_cpu}, {"setKernelPath", js_set_kernel_path},
    {"qactTest", js_qact_test}, {"kernelCap", js_kernel_cap},
    {"decoderCreate", js_decoder_create}, {"decoderStep", js_decoder_step}, {"decoderFree", js_decoder_free},
    {"decoderThreads", js_decoder_threads},
    {"gemmBf16", js_gemm_bf16}, {"gemmBf16Path", js_gemm_bf16_path},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  /* Default: one thread per online core. Measured on the 2-vCPU target with the machine idle,
   * 2 threads make the GPT-2 training step 1.3-1.5x faster than 1 (bench/RESULTS.md); on a busy
   * machine fewer may be better, so ICLD_THREADS overrides the default at load time. */
  const char *tenv = getenv("ICLD_THREADS");
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int nt = tenv ? atoi(tenv) : (int)(ncpu < 1 ? 1 : ncpu > 16 ? 16 : ncpu);
  icld_set_threads(nt >= 1 && nt <= 256 ? nt : 1);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
