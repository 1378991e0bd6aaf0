/* Training's BatchNorm around the LIF scan: the column sums it needs and the input gradient.
 *
 * Layouts (float32, contiguous): x, y, dx [K, N, H] (N = time steps x batch, the rows a
 * BatchNorm pools over); per-network constants [K, H]. Sums are float64 over fixed pieces
 * of rows (P per network, whatever the thread count), so the result never depends on how
 * many threads ran: piece (k, p) of the [K, P, H] outputs covers rows [N p / P, N (p + 1) / P).
 */
#include <stdint.h>
#include <stdlib.h>

#include "rows.h"

typedef struct {
    const float *x, *y, *sc, *c1, *c2, *mean;
    double *s1, *s2;
    float *dx;
    int64_t K, N, H, P;
} BnArgs;

/* y NULL: s1 = sum x, s2 = sum x^2 (the batch statistics); else s1 = sum y x, s2 = sum y. */
static int sums_rows(const void *p, const int64_t piece0, const int64_t piece1) {
    const BnArgs *a = (const BnArgs *)p;
    const int64_t N = a->N, H = a->H, P = a->P;
    for (int64_t piece = piece0; piece < piece1; piece++) {
        const int64_t k = piece / P, q = piece % P;
        double *restrict s1 = a->s1 + piece * H, *restrict s2 = a->s2 + piece * H;
        for (int64_t h = 0; h < H; h++) s1[h] = s2[h] = 0.0;
        for (int64_t n = N * q / P; n < N * (q + 1) / P; n++) {
            const float *restrict x = a->x + (k * N + n) * H;
            if (a->y) {
                const float *restrict y = a->y + (k * N + n) * H;
                for (int64_t h = 0; h < H; h++) {
                    s1[h] += (double)y[h] * (double)x[h];
                    s2[h] += (double)y[h];
                }
            } else {
                for (int64_t h = 0; h < H; h++) {
                    s1[h] += (double)x[h];
                    s2[h] += (double)x[h] * (double)x[h];
                }
            }
        }
    }
    return 0;
}

int bn_sums(const float *x, const float *y, double *s1, double *s2, int64_t K, int64_t N, int64_t H, int64_t P,
            int threads) {
    BnArgs a = {0};
    a.x = x; a.y = y; a.s1 = s1; a.s2 = s2; a.K = K; a.N = N; a.H = H; a.P = P;
    return run_rows(sums_rows, &a, K * P, threads);
}

/* dx = y * sc + (c2 * (x - mean) + c1), row by row: the drive's gradient through the affine
 * map plus the batch statistics' own gradient (c1 from the mean, c2 from the variance). */
static int grad_rows(const void *p, const int64_t row0, const int64_t row1) {
    const BnArgs *a = (const BnArgs *)p;
    const int64_t N = a->N, H = a->H;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / N;
        const float *restrict y = a->y + r * H, *restrict x = a->x + r * H;
        const float *restrict sc = a->sc + k * H, *restrict c1 = a->c1 + k * H, *restrict c2 = a->c2 + k * H;
        const float *restrict m = a->mean + k * H;
        float *restrict dx = a->dx + r * H;
        for (int64_t h = 0; h < H; h++) dx[h] = y[h] * sc[h] + (c2[h] * (x[h] - m[h]) + c1[h]);
    }
    return 0;
}

int bn_input_grad(const float *y, const float *x, const float *sc, const float *mean, const float *c1,
                  const float *c2, float *dx, int64_t K, int64_t N, int64_t H, int threads) {
    BnArgs a = {0};
    a.y = y; a.x = x; a.sc = sc; a.mean = mean; a.c1 = c1; a.c2 = c2; a.dx = dx; a.K = K; a.N = N; a.H = H;
    return run_rows(grad_rows, &a, K * N, threads);
}
