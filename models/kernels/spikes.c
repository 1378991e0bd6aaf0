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
