/* Run-time CPU feature detection (cpuid + xgetbv: the OS must also save the AVX / AVX-512
 * register state) and the kernel-path cap that ICLD_KERNEL_PATH or setKernelPath sets. The
 * addon is built for plain x86-64; every faster path is chosen here at start-up. */
#include "kernels.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define ICLD_X86 1
#endif

static unsigned g_flags;
static int g_detected;
static unsigned g_cap = ~0u; /* allowed features; ~0 = everything detected */
static const char *g_cap_name = "auto";

#ifdef ICLD_X86
static unsigned long long xgetbv0(void) {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}
#endif

static void detect(void) {
  if (g_detected) return;
  unsigned f = 0;
#ifdef ICLD_X86
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = avx && (xcr0 & 0x6) == 0x6;
    int zmm_ok = ymm_ok && (xcr0 & 0xe6) == 0xe6; /* opmask + both halves of zmm0-31 */
    if (ymm_ok) {
      if ((c >> 12) & 1) f |= ICLD_CPU_FMA;
      if ((c >> 29) & 1) f |= ICLD_CPU_F16C;
    }
    unsigned max = __get_cpuid_max(0, NULL);
    if (max >= 7 && ymm_ok) {
      __cpuid_count(7, 0, a, b, c, d);
      if ((b >> 5) & 1) f |= ICLD_CPU_AVX2;
      if (zmm_ok) {
        if ((b >> 16) & 1) f |= ICLD_CPU_AVX512F;
        if ((b >> 30) & 1) f |= ICLD_CPU_AVX512BW;
        if ((b >> 31) & 1) f |= ICLD_CPU_AVX512VL;
        if ((c >> 11) & 1) f |= ICLD_CPU_AVX512VNNI;
      }
      unsigned a1, b1, c1, d1;
      __cpuid_count(7, 1, a1, b1, c1, d1);
      if ((a1 >> 4) & 1) f |= ICLD_CPU_AVXVNNI;
      if (zmm_ok && ((a1 >> 5) & 1)) f |= ICLD_CPU_AVX512BF16;
    }
  }
#endif
  g_flags = f;
  g_detected = 1;
}

unsigned icld_cpu_flags(void) { detect(); return g_flags; }

static const struct { unsigned bit; const char *name; } FEATS[] = {
  {ICLD_CPU_AVX2, "avx2"}, {ICLD_CPU_FMA, "fma"}, {ICLD_CPU_F16C, "f16c"},
  {ICLD_CPU_AVX512F, "avx512f"}, {ICLD_CPU_AVX512BW, "avx512bw"}, {ICLD_CPU_AVX512VL, "avx512vl"},
  {ICLD_CPU_AVX512VNNI, "avx512_vnni"}, {ICLD_CPU_AVX512BF16, "avx512_bf16"}, {ICLD_CPU_AVXVNNI, "avx_vnni"},
};

const char *icld_cpu_features(void) {
  static char buf[256];
  detect();
  buf[0] = 0;
  for (size_t i = 0; i < sizeof FEATS / sizeof FEATS[0]; i++)
    if (g_flags & FEATS[i].bit) {
      if (buf[0]) strcat(buf, " ");
      strcat(buf, FEATS[i].name);
    }
  return buf;
}

/* Path names and the features each needs (and allows). The AVX2 tier needs FMA and F16C too
 * (every AVX2 CPU has them); the AVX-512 tier needs F+BW+VL. */
#define T_AVX2 (ICLD_CPU_AVX2 | ICLD_CPU_FMA | ICLD_CPU_F16C)
#define T_512 (T_AVX2 | ICLD_CPU_AVX512F | ICLD_CPU_AVX512BW | ICLD_CPU_AVX512VL)
static const struct { const char *name; unsigned need; } PATHS[] = {
  {"scalar", 0},
  {"avx2", T_AVX2},
  {"avx-vnni", T_AVX2 | ICLD_CPU_AVXVNNI},
  {"avx512", T_512},
  {"avx512-vnni", T_512 | ICLD_CPU_AVX512VNNI},
  {"avx512-bf16", T_512 | ICLD_CPU_AVX512VNNI | ICLD_CPU_AVX512BF16},
};

unsigned icld_cpu_allowed(void) { detect(); return g_flags & g_cap; }
const char *icld_kernel_cap(void) { return g_cap_name; }

int icld_set_kernel_cap(const char *path, char *err, size_t errlen) {
  detect();
  if (!path || !*path || !strcmp(path, "auto") || !strcmp(path, "native")) {
    g_cap = ~0u; g_cap_name = "auto";
    icld_kernels_select();
    return 0;
  }
  for (size_t i = 0; i < sizeof PATHS / sizeof PATHS[0]; i++) {
    if (strcmp(path, PATHS[i].name)) continue;
    unsigned miss = PATHS[i].need & ~g_flags;
    if (miss) {
      char names[160] = "";
      for (size_t j = 0; j < sizeof FEATS / sizeof FEATS[0]; j++)
        if (miss & FEATS[j].bit) { if (names[0]) strcat(names, " "); strcat(names, FEATS[j].name); }
      if (err) snprintf(err, errlen, "kernel path '%s' needs CPU features this machine lacks (%s)", path, names);
      return -1;
    }
    g_cap = PATHS[i].need; g_cap_name = PATHS[i].name;
    icld_kernels_select();
    return 0;
  }
  if (err) snprintf(err, errlen, "unknown kernel path '%s' (expected auto, scalar, avx2, avx-vnni, avx512, avx512-vnni or avx512-bf16)", path);
  return -1;
}

/* Start-up choice: ICLD_KERNEL_PATH caps the paths (a path the CPU cannot run is ignored with a
 * warning on stderr rather than crashing the process with an illegal instruction). */
__attribute__((constructor)) static void icld_cpu_init(void) {
  detect();
  const char *env = getenv("ICLD_KERNEL_PATH");
  char err[256];
  if (env && *env && icld_set_kernel_cap(env, err, sizeof err) != 0) {
    fprintf(stderr, "icl-distill: ICLD_KERNEL_PATH: %s; using the best path this CPU runs\n", err);
    icld_set_kernel_cap(NULL, NULL, 0);
  } else if (!env || !*env) icld_kernels_select();
}
