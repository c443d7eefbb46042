{
  # Native backend of icl-distill. OpenBLAS and OpenMP are each detected and dropped when
  # unavailable, so the addon still builds (slower) rather than failing. The build is portable
  # (plain x86-64): SIMD kernels carry target attributes and are picked at run time (native/cpu.c).
  # ICLD_MARCH=native opts into -march=native for a build that only runs on this CPU.
  "variables": {
    "icld_blas%": "<!(node scripts/detect-blas.mjs)",
    "icld_blas_inc%": "<!(node scripts/detect-blas.mjs --include)",
    "icld_march%": "<!(node scripts/detect-cc.mjs march)",
    "icld_omp%": "<!(node scripts/detect-cc.mjs openmp)"
  },
  "targets": [
    {
      "target_name": "icld_native",
      "sources": ["native/binding.c", "native/kernels.c", "native/gemm.c", "native/quant.c", "native/cpu.c", "native/kernels-avx2.c", "native/decoder.c"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-O3", "-fno-math-errno", "-mtune=generic", "-Wall", "-Werror=implicit-function-declaration", "-Wno-unused-function", "-Wno-unknown-pragmas"],
      "cflags!": ["-O2"],
      "conditions": [
        ["icld_march==1", { "cflags": ["-march=native"] }],
        ["icld_omp==1", { "cflags": ["-fopenmp"], "ldflags": ["-fopenmp"] }],
        ["icld_blas==1", {
          "defines": ["ICLD_OPENBLAS"],
          "include_dirs": ["<(icld_blas_inc)"],
          "libraries": ["-lopenblas"]
        }]
      ]
    }
  ]
}
