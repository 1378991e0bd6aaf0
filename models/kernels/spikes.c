/* Event-driven current of a layer whose input is spikes: add up the weight rows of the
 * inputs that fired, skip the rest.
 *
 * out[k, r, :] = float( sum over j with z[k, r, j] != 0 of w[k, j, :] ), the sum in double.
 * The weights come rounded to a grid on which any such sum is exact in double
 * (models/spike_current.py), so the order of the additions does not matter: this kernel, a
 * dense float64 matmul and a GPU give the same bits. Inputs are spikes (0 or 1).
 *
 * Layouts (contiguous): z [Kz, R, Hin] float32 with Kz = K or 1 (shared input spikes);
 * w [Kw, Hin, Hout] float32 with Kw = K or 1; out [K, R, Hout] float32. Threads split the
 * K * R rows; a thread's rows run through one network's weights before the next's.
 */
#include <stdint.h>
#include <stdlib.h>

#include "rows.h"
#include "spikes.h"

typedef struct {
    const float *z, *w;
    float *out;
    int64_t R, Hin, Hout, z_stride, w_stride;  /* strides per network: 0 where shared */
} Args;

static int current_rows(const void *p, const int64_t row0, const int64_t row1) {
    const Args *a = (const Args *)p;
    const int64_t R = a->R, Hin = a->Hin, Hout = a->Hout;
    int32_t *idx = malloc((size_t)(Hin + 8) * sizeof(int32_t));
    if (!idx) return 1;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / R, i = r % R;
        const int64_t n = active(a->z + k * a->z_stride + i * Hin, Hin, idx);
        sum_active(a->w + k * a->w_stride, idx, n, Hout, a->out + r * Hout);
    }
    free(idx);
    return 0;
}

int spike_current(const float *z, const float *w, float *out, int64_t K, int64_t R, int64_t Hin, int64_t Hout,
                  int z_shared, int w_shared, int threads) {
    Args a = {z, w, out, R, Hin, Hout, z_shared ? 0 : R * Hin, w_shared ? 0 : Hin * Hout};
    return run_rows(current_rows, &a, K * R, threads);
}

/* The weight gradient of the event-driven current: gwt[k, j, :] = sum over rows r where
 * z[k, r, j] != 0 of g[k, r, :], in float64, rows in order. Pieces of the input neurons
 * (JPIECES per network) split the work, each accumulated by one thread, so the result does
 * not depend on the thread count. z [Kz, R, Hin] (Kz = K or 1), g [K, R, Hout], gwt [K, Hin, Hout]. */
enum { JPIECES = 16 };

typedef struct {
    const float *z, *g;
    float *gwt;
    int64_t R, Hin, Hout, z_stride;
} GradArgs;

static int grad_pieces(const void *p, const int64_t piece0, const int64_t piece1) {
    const GradArgs *a = (const GradArgs *)p;
    const int64_t R = a->R, Hin = a->Hin, Hout = a->Hout;
    for (int64_t piece = piece0; piece < piece1; piece++) {
        const int64_t k = piece / JPIECES, q = piece % JPIECES;
        const int64_t j0 = Hin * q / JPIECES, j1 = Hin * (q + 1) / JPIECES;
        if (j1 <= j0) continue;
        double *acc = calloc((size_t)((j1 - j0) * Hout), sizeof(double));
        if (!acc) return 1;
        for (int64_t r = 0; r < R; r++) {
            const float *z = a->z + k * a->z_stride + r * Hin;
            const float *restrict g = a->g + (k * R + r) * Hout;
            for (int64_t j = j0; j < j1; j++) {
                if (z[j] == 0.0f) continue;
                double *restrict row = acc + (j - j0) * Hout;
                for (int64_t h = 0; h < Hout; h++) row[h] += (double)g[h];
            }
        }
        float *out = a->gwt + (k * Hin + j0) * Hout;
        for (int64_t i = 0; i < (j1 - j0) * Hout; i++) out[i] = (float)acc[i];
        free(acc);
    }
    return 0;
}

int spike_weight_grad(const float *z, const float *g, float *gwt, int64_t K, int64_t R, int64_t Hin, int64_t Hout,
                      int z_shared, int threads) {
    GradArgs a = {z, g, gwt, R, Hin, Hout, z_shared ? 0 : R * Hin};
    return run_rows(grad_pieces, &a, K * JPIECES, threads);
}
