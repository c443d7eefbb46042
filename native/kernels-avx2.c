/* kernels.c again, compiled with AVX2+FMA (its intrinsic paths and AVX2 auto-vectorisation) under
 * *_avx2 names; kernels.c's KDISPATCH calls these when the CPU has AVX2 and FMA (cpu.c). The
 * addon itself stays plain x86-64. Every exported kernel of kernels.c is renamed here. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#define ICLD_KVARIANT 1
#define icld_copy icld_copy_avx2
#define icld_binary icld_binary_avx2
#define icld_unary icld_unary_avx2
#define icld_unary_backward icld_unary_backward_avx2
#define icld_reduce_sum icld_reduce_sum_avx2
#define icld_reduce_max icld_reduce_max_avx2
#define icld_softmax icld_softmax_avx2
#define icld_softmax_backward icld_softmax_backward_avx2
#define icld_cross_entropy icld_cross_entropy_avx2
#define icld_cross_entropy_backward icld_cross_entropy_backward_avx2
#define icld_layer_norm icld_layer_norm_avx2
#define icld_layer_norm_backward icld_layer_norm_backward_avx2
#define icld_embedding icld_embedding_avx2
#define icld_embedding_backward icld_embedding_backward_avx2
#define icld_dropout icld_dropout_avx2
#define icld_attention icld_attention_avx2
#define icld_attention_backward icld_attention_backward_avx2
#define icld_adamw icld_adamw_avx2
#include "kernels.c"
#endif
