"""The CPU's arithmetic limit, measured in the same run as the rows it is compared with.

A library GEMM (`suite.gemm_peaks`) flatters every "% of peak" figure: it is itself below what the
cores can do. This measures the hardware instead, with register-resident kernels compiled here for this
CPU (`cc -O2 -march=native`): independent chains of fused multiply-adds (fp32) and of 8-bit dot
products (x86 VNNI `vpdpbusd`, AVX2's `vpmaddubsw`/`vpmaddwd` pair where there is no VNNI, or ARM
`sdot`), with no memory traffic, on the rows' thread count (OpenMP). Each kernel's figure is the fastest of
several repeats. Where no C compiler is installed the figures are None and the suite says so.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

KERNELS = r"""
#include <stdint.h>
#include <string.h>
#include <omp.h>

/* The CPU's native vector width: one register per accumulator, so none spills. */
#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
typedef float f32v __attribute__((vector_size(VBYTES)));
#define FLANES (VBYTES / 4)

/* Where the results go, so the compiler cannot drop the work that makes them. */
float peak_sink_f32;
int64_t peak_sink_i8;

/* 12 independent chains cover the FMA latency (4 cycles) on two ports and fit 16 registers. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NCHAINS 12

/* fp32: per thread, iterations x NCHAINS fused multiply-adds over whole vectors. Returns FLOPs done. */
double fma_f32(long iterations, int threads) {
    double total = 0;
    #pragma omp parallel num_threads(threads) reduction(+:total)
    {
        f32v a, b;
        for (int l = 0; l < FLANES; l++) { a[l] = 1e-7f * l; b[l] = 0.999999f; }
#define DECLARE(k) f32v acc##k = a + (float)k;
        CHAINS(DECLARE)
        for (long i = 0; i < iterations; i++) {
#define STEP(k) acc##k = acc##k * b + a;
            CHAINS(STEP)
        }
        f32v sum = a;
#define ADD(k) sum += acc##k;
        CHAINS(ADD)
        float sink = 0;
        for (int l = 0; l < FLANES; l++) sink += sum[l];
        #pragma omp atomic
        peak_sink_f32 += sink;
        total += (double)iterations * NCHAINS * FLANES * 2;
    }
    return total;
}

#if defined(__AVX512VNNI__) || defined(__AVXVNNI__) || defined(__AVX2__) || defined(__ARM_FEATURE_DOTPROD)
#if defined(__AVX512VNNI__)
#include <immintrin.h>
typedef __m512i acc_t;
#define LANES 64
#define START(k) _mm512_set1_epi32(k)
#define DOT(acc, a, b) _mm512_dpbusd_epi32(acc, a, b)
#define SET8(x) _mm512_set1_epi8(x)
#elif defined(__AVXVNNI__)
#include <immintrin.h>
typedef __m256i acc_t;
#define LANES 32
#define START(k) _mm256_set1_epi32(k)
#define DOT(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#define SET8(x) _mm256_set1_epi8(x)
#elif defined(__AVX2__)
/* No 8-bit dot instruction: what int8 GEMMs use on AVX2, u8 x s8 pairs to int16 (vpmaddubsw), then to int32. */
#include <immintrin.h>
typedef __m256i acc_t;
#define LANES 32
#define START(k) _mm256_set1_epi32(k)
/* The accumulator feeds the product (its bytes as the u8 side), so no two chains share work the compiler
   could compute once: the arithmetic is the int8 GEMM's, the values are meaningless. */
#define DOT(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(acc, b), _mm256_set1_epi16(1)))
#define SET8(x) _mm256_set1_epi8(x)
#else
#include <arm_neon.h>
typedef int32x4_t acc_t;
#define LANES 16
#define START(k) vdupq_n_s32(k)
#define DOT(acc, a, b) vdotq_s32(acc, a, b)
#define SET8(x) vdupq_n_s8(x)
#endif
#if defined(__aarch64__)
#define OPAQUE(v) __asm__ volatile("" : "+w"(v))
#else
#define OPAQUE(v) __asm__ volatile("" : "+x"(v))
#endif
/* int8: per thread, iterations x NCHAINS dot-product instructions, each LANES multiply-adds of 8-bit pairs
   (2 ops each). Returns ops done. */
double dot_i8(long iterations, int threads) {
    double total = 0;
    #pragma omp parallel num_threads(threads) reduction(+:total)
    {
        __typeof__(SET8(1)) a = SET8(1), b = SET8(2);
/* Each chain starts from its own value: chains that start equal compute equal results, and the compiler
   kept one of them (a 12x overstated rate on an AVX-512 VNNI EPYC). */
#define DECLARE_I(k) acc_t iacc##k = START(k);
        CHAINS(DECLARE_I)
        for (long i = 0; i < iterations; i++) {
            /* The inputs are loop-invariant: without this (free) barrier the products would be hoisted. */
            OPAQUE(a);
            OPAQUE(b);
#define STEP_I(k) iacc##k = DOT(iacc##k, a, b);
            CHAINS(STEP_I)
        }
        int32_t lanes[LANES / 4];
        int64_t sink = 0;
#define ADD_I(k) memcpy(lanes, &iacc##k, sizeof lanes); for (int l = 0; l < LANES / 4; l++) sink += lanes[l];
        CHAINS(ADD_I)
        #pragma omp atomic
        peak_sink_i8 += sink;
        total += (double)iterations * NCHAINS * LANES * 2;
    }
    return total;
}
int has_dot_i8(void) { return 1; }
#else
double dot_i8(long iterations, int threads) { (void)iterations; (void)threads; return 0; }
int has_dot_i8(void) { return 0; }
#endif
"""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="clipping-edge-peak-") as folder:
        source, library = Path(folder) / "peak.c", Path(folder) / "peak.so"
        source.write_text(KERNELS)
        build = subprocess.run([compiler, "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", str(source), "-o",
                                str(library)], capture_output=True, text=True)
        if build.returncode != 0:
            return None
        lib = ctypes.CDLL(str(library))  # mapped: the file may go with its folder
    for name in ("fma_f32", "dot_i8"):
        getattr(lib, name).restype = ctypes.c_double
        getattr(lib, name).argtypes = [ctypes.c_long, ctypes.c_int]
    lib.has_dot_i8.restype = ctypes.c_int
    return lib


def _best_rate(kernel, threads: int, seconds: float = 0.05, repeats: int = 5) -> float:
    """Operations per second of the fastest repeat, with the iteration count sized to ~`seconds` a call."""
    iterations = 1000
    while True:
        start = time.perf_counter()
        kernel(iterations, threads)
        if time.perf_counter() - start > seconds / 4 or iterations > 1 << 34:
            break
        iterations *= 4
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        ops = kernel(iterations, threads)
        best = max(best, ops / (time.perf_counter() - start))
    return best


def cpu_flags() -> list[str]:
    """The instruction-set flags that decide these limits (from /proc/cpuinfo)."""
    interesting = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
                   "asimddp", "sve", "i8mm")
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return []
    for line in info.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in interesting if flag in present]
    return []


def hardware_peaks(threads: int | None = None) -> dict | None:
    """{"fp32_gflops", "int8_gops" (None without an 8-bit dot instruction), "threads", "flags"}, or None
    where no C compiler can build the kernels."""
    lib = _library()
    if lib is None:
        return None
    threads = threads or os.cpu_count() or 1
    return {"fp32_gflops": _best_rate(lib.fma_f32, threads) / 1e9,
            "int8_gops": _best_rate(lib.dot_i8, threads) / 1e9 if lib.has_dot_i8() else None,
            "threads": threads, "flags": cpu_flags()}
