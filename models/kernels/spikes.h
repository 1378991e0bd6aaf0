/* The event-driven sum of spiking inputs' weights, shared by spikes.c and lif.c.
 *
 * A row's active inputs are compacted to indices (`active`), then the weight rows of those
 * inputs are added up in double, BLOCK outputs at a time with the accumulators in registers
 * (`sum_active`). The weights lie on a grid on which these sums are exact
 * (models/spike_current.py), so the result is the same in any order.
 */
#ifndef ROBUST_SPIKES_H
#define ROBUST_SPIKES_H
#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

enum { LANES = 4, VECS = 8, BLOCK = LANES * VECS };  /* 32 outputs per pass: 8 accumulators in registers */

/* Four floats widened to doubles (exactly): one instruction with AVX; the generic vector
 * conversion compiles to shuffles through the stack. */
static inline v4d widen(const float *p) {
#ifdef __AVX__
    return (v4d)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
    v4f f;
    memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, v4d);
#endif
}

/* One block of BLOCK outputs starting at h0, over the n active inputs in idx. */
static inline void sum_block(const float *restrict w, const int32_t *restrict idx, const int64_t n,
                             const int64_t Hout, const int64_t h0, float *restrict out) {
    v4d acc[VECS];
    for (int v = 0; v < VECS; v++) acc[v] = (v4d){0.0, 0.0, 0.0, 0.0};
    for (int64_t i = 0; i < n; i++) {
        const float *row = w + (int64_t)idx[i] * Hout + h0;
        for (int v = 0; v < VECS; v++) acc[v] += widen(row + v * LANES);
    }
    for (int v = 0; v < VECS; v++)
        for (int l = 0; l < LANES; l++) out[h0 + v * LANES + l] = (float)acc[v][l];
}

#ifdef __AVX2__
/* For each 8-bit mask, the positions of its set bits, packed: 8 spikes are compacted with one
 * compare, one table look-up and one store. Filled when the library loads. */
static int32_t active_table[256][8];

__attribute__((constructor)) static void fill_active_table(void) {
    for (int m = 0; m < 256; m++) {
        int n = 0;
        for (int j = 0; j < 8; j++)
            if (m & (1 << j)) active_table[m][n++] = j;
        for (; n < 8; n++) active_table[m][n] = 0;
    }
}
#endif

/* Indices of the nonzero entries of z [H] into idx (which has room for H + 8); returns how
 * many. Branch-free: a spike pattern is not predictable. */
static inline int64_t active(const float *restrict z, const int64_t H, int32_t *restrict idx) {
    int64_t n = 0, j = 0;
#ifdef __AVX2__
    for (; j + 8 <= H; j += 8) {
        const __m256 v = _mm256_loadu_ps(z + j);
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        const __m256i at = _mm256_loadu_si256((const __m256i *)active_table[m]);
        _mm256_storeu_si256((__m256i *)(idx + n), _mm256_add_epi32(at, _mm256_set1_epi32((int32_t)j)));
        n += __builtin_popcount((unsigned)m);
    }
#endif
    for (; j < H; j++) {
        idx[n] = (int32_t)j;
        n += z[j] != 0.0f;
    }
    return n;
}

/* out[h] = float(sum over the n inputs in idx of w[idx, h]), for w [Hin, Hout]. */
static inline void sum_active(const float *restrict w, const int32_t *restrict idx, const int64_t n,
                              const int64_t Hout, float *restrict out) {
    int64_t h0 = 0;
    for (; h0 + BLOCK <= Hout; h0 += BLOCK) sum_block(w, idx, n, Hout, h0, out);
    for (; h0 < Hout; h0++) {  /* the last few outputs of a width that is not a multiple of BLOCK */
        double s = 0.0;
        for (int64_t q = 0; q < n; q++) s += (double)w[(int64_t)idx[q] * Hout + h0];
        out[h0] = (float)s;
    }
}
#endif
