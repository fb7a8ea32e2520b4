// edgeq_cpu_build (edgeq_kernels.h): the compiler's own macros, so the answer is how this
// library was compiled, not what the machine has.
#include "edgeq_kernels.h"

#if defined(__OPTIMIZE__)
#define EDGEQ_OPT "optimised"
#else
#define EDGEQ_OPT "unoptimised"
#endif

#if defined(__AVX512F__)
#define EDGEQ_ISA "avx512f"
#elif defined(__AVX2__)
#define EDGEQ_ISA "avx2"
#elif defined(__AVX__)
#define EDGEQ_ISA "avx"
#elif defined(__SSE4_1__)
#define EDGEQ_ISA "sse4.1"
#elif defined(__SSE2__)
#define EDGEQ_ISA "sse2"
#elif defined(__ARM_NEON)
#define EDGEQ_ISA "neon"
#else
#define EDGEQ_ISA "scalar"
#endif

extern "C" const char* edgeq_cpu_build(void) { return EDGEQ_OPT " " EDGEQ_ISA; }
