/* Adaptive and recurrent LIF scans for the CPU (adLIF, RLIF, RadLIF): forward and backward.
 *
 * The equations and their float operations are those of models/recurrent.py:scan, in the
 * same order and built with -ffp-contract=off, so the spikes are bit for bit the eager ones:
 *
 *     w = (beta * w + a * u) + b * s                      adaptive types
 *     i = cur * scale + shift                             inference: the BatchNorm, fused
 *     i = i + (float) r, r = sum over spiking j of V[:, j] (exact in double)
 *     i = i - w                                           adaptive types
 *     u = alpha * (u - vth * s) + gain * i,  s = (u - vth) > 0, then dead / saturated
 *
 * The recurrent current is event driven: spikes are binary and sparse, so V s is the sum
 * of the columns of the neurons that fired at the last step (spikes.h). The columns come in
 * rounded to a grid on which every partial sum is exact in double (models/spike_current.py),
 * so the sum does not depend on its order and equals the eager (BLAS) product exactly.
 *
 * Layouts (contiguous): currents, spikes and kept states [K, T, B, H] float; per-network
 * constants [K, H] float; the forward's columns [K, H, H] float (rounded), row j = V[:, j]; the
 * backward's V [K, H, H] float, [out, in]; per-row gradients [K, B, H]. Rows (k, b) are
 * independent, so threads split the K * B rows.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rows.h"
#include "spikes.h"

typedef struct {
    const float *cur, *scale, *shift, *alpha, *gain, *vth, *beta, *ca, *cb, *dead, *sat, *v;
    const float *cols;
    const float *grad_z, *z_in, *u_in, *w_in, *i_in;
    float *z, *u_out, *w_out, *i_out, *grad_cur, *g_alpha, *g_beta, *g_a, *g_b;
    int64_t K, T, B, H;
    float width;
} RecArgs;

/* One forward step of one row over its H neurons; the flags are constants at each use. */
static inline __attribute__((always_inline)) void rec_step(
        const RecArgs *a, const int64_t k, const int64_t off, float *restrict u, float *restrict w,
        float *restrict s, float *restrict acc, int32_t *restrict on, int64_t *restrict n_on,
        const int adaptive, const int rec, const int forced, const int keep, const int bn) {
    const int64_t H = a->H;
    const float *restrict c = a->cur + off, *restrict al = a->alpha + k * H, *restrict gn = a->gain + k * H;
    const float *restrict th = a->vth + k * H;
    const float *restrict sc = bn ? a->scale + k * H : NULL, *restrict sh = bn ? a->shift + k * H : NULL;
    if (adaptive) {
        const float *restrict be = a->beta + k * H, *restrict ca = a->ca + k * H, *restrict cb = a->cb + k * H;
        for (int64_t h = 0; h < H; h++) w[h] = (be[h] * w[h] + ca[h] * u[h]) + cb[h] * s[h];
    }
    if (rec) sum_active(a->cols + k * H * H, on, *n_on, H, acc);  /* spikes are 0 or 1 */
    float *restrict z = a->z + off;
    for (int64_t h = 0; h < H; h++) {
        float in = bn ? c[h] * sc[h] + sh[h] : c[h];
        if (rec) in = in + acc[h];
        if (adaptive) in = in - w[h];
        const float uu = al[h] * (u[h] - th[h] * s[h]) + gn[h] * in;
        float sp = (uu - th[h]) > 0.0f ? 1.0f : 0.0f;
        if (forced) {
            if (a->dead) sp = sp * (1.0f - a->dead[k * H + h]);
            if (a->sat) sp = fmaxf(sp, a->sat[k * H + h]);
        }
        if (keep) { a->u_out[off + h] = uu; a->i_out[off + h] = in; if (adaptive) a->w_out[off + h] = w[h]; }
        u[h] = uu;
        s[h] = sp;
        z[h] = sp;
    }
    if (rec) *n_on = active(s, H, on);
}

#define REC(A, R, F, K, N) rec_step(a, k, off, u, w, s, acc, on, &n_on, A, R, F, K, N)

static int rec_forward_rows(const void *p, const int64_t row0, const int64_t row1) {
    const RecArgs *a = (const RecArgs *)p;
    const int64_t T = a->T, B = a->B, H = a->H;
    float *u = calloc((size_t)(3 * H), sizeof(float));
    float *acc = malloc((size_t)H * sizeof(float));
    int32_t *on = malloc((size_t)(H + 8) * sizeof(int32_t));
    if (!u || !acc || !on) { free(u); free(acc); free(on); return 1; }
    float *w = u + H, *s = u + 2 * H;
    const int adaptive = a->beta != NULL, rec = a->cols != NULL, forced = a->dead || a->sat, keep = a->u_out != NULL;
    const int bn = a->scale != NULL;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / B, b = r % B;
        for (int64_t h = 0; h < 3 * H; h++) u[h] = 0.0f;  /* every sequence starts from rest */
        int64_t n_on = 0;
        for (int64_t t = 0; t < T; t++) {
            const int64_t off = ((k * T + t) * B + b) * H;
            if (keep && !bn && adaptive && rec) REC(1, 1, 0, 1, 0);      /* training, radlif */
            else if (keep && !bn && adaptive) REC(1, 0, 0, 1, 0);        /* training, adlif */
            else if (keep && !bn && rec) REC(0, 1, 0, 1, 0);             /* training, rlif */
            else if (!keep && bn && !forced && adaptive && rec) REC(1, 1, 0, 0, 1);  /* inference */
            else if (!keep && bn && !forced && adaptive) REC(1, 0, 0, 0, 1);
            else if (!keep && bn && !forced && rec) REC(0, 1, 0, 0, 1);
            else REC(adaptive, rec, forced, keep, bn);  /* dead or saturated neurons, any other mix: generic */
        }
    }
    free(u); free(acc); free(on);
    return 0;
}

/* Reverse-time gradient of one row (boxcar surrogate ds/du = [|u - vth| < width]).
 * On entry to step t, gu, gw, gs hold dL/du[t], dL/dw[t], dL/ds[t] from the later steps;
 * on return, those of step t - 1. The input current's gradient is also the recurrent
 * current's (both enter as gain * i), so V's gradient is formed outside from it. */
static int rec_backward_rows(const void *p, const int64_t row0, const int64_t row1) {
    const RecArgs *a = (const RecArgs *)p;
    const int64_t T = a->T, B = a->B, H = a->H;
    float *gu = calloc((size_t)(3 * H), sizeof(float));
    if (!gu) return 1;
    float *gw = gu + H, *gs = gu + 2 * H;
    const int adaptive = a->beta != NULL;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / B;
        const float *al = a->alpha + k * H, *gn = a->gain + k * H, *th = a->vth + k * H;
        const float *be = adaptive ? a->beta + k * H : NULL, *ca = adaptive ? a->ca + k * H : NULL;
        const float *cb = adaptive ? a->cb + k * H : NULL;
        float *g_al = a->g_alpha + r * H;
        float *g_be = adaptive ? a->g_beta + r * H : NULL, *g_a = adaptive ? a->g_a + r * H : NULL;
        float *g_b = adaptive ? a->g_b + r * H : NULL;
        for (int64_t h = 0; h < 3 * H; h++) gu[h] = 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            const int64_t off = ((k * T + t) * B + (r % B)) * H, prev = off - B * H;
            float *gc = a->grad_cur + off;
            for (int64_t h = 0; h < H; h++) {
                const float x = a->u_in[off + h] - th[h];
                const float sg = fabsf(x) < a->width ? 1.0f : 0.0f;
                const float d = gu[h] + (a->grad_z[off + h] + gs[h]) * sg;
                const float di = gn[h] * d;
                const float up = t > 0 ? a->u_in[prev + h] : 0.0f, sp = t > 0 ? a->z_in[prev + h] : 0.0f;
                gc[h] = di;
                g_al[h] += d * (up - th[h] * sp) - d * a->i_in[off + h];
                float nu = al[h] * d, ns = -(al[h] * th[h]) * d;
                if (adaptive) {
                    const float dw = gw[h] - di, wp = t > 0 ? a->w_in[prev + h] : 0.0f;
                    g_be[h] += dw * wp;
                    g_a[h] += dw * up;
                    g_b[h] += dw * sp;
                    nu += ca[h] * dw;
                    ns += cb[h] * dw;
                    gw[h] = be[h] * dw;
                }
                gu[h] = nu;
                gs[h] = ns;
            }
            if (a->v && t > 0) {  /* dL/ds[t-1] += V^T di */
                const float *v = a->v + k * H * H;
                for (int64_t i = 0; i < H; i++) {
                    const float di = gc[i];
                    if (di == 0.0f) continue;
                    const float *restrict row = v + i * H;
                    for (int64_t j = 0; j < H; j++) gs[j] += row[j] * di;
                }
            }
        }
    }
    free(gu);
    return 0;
}

int rec_forward(const float *cur, const float *scale, const float *shift, const float *alpha, const float *gain,
                const float *vth, const float *cols,
                const float *beta, const float *ca, const float *cb, const float *dead, const float *sat,
                float *z, float *u_out, float *w_out, float *i_out,
                int64_t K, int64_t T, int64_t B, int64_t H, int threads) {
    RecArgs a = {0};
    a.cur = cur; a.scale = scale; a.shift = shift; a.alpha = alpha; a.gain = gain; a.vth = vth; a.cols = cols;
    a.beta = beta; a.ca = ca; a.cb = cb; a.dead = dead; a.sat = sat;
    a.z = z; a.u_out = u_out; a.w_out = w_out; a.i_out = i_out;
    a.K = K; a.T = T; a.B = B; a.H = H;
    return run_rows(rec_forward_rows, &a, K * B, threads);
}

int rec_backward(const float *grad_z, const float *z, const float *u, const float *w, const float *i,
                 const float *alpha, const float *gain, const float *vth, const float *v,
                 const float *beta, const float *ca, const float *cb,
                 float *grad_cur, float *g_alpha, float *g_beta, float *g_a, float *g_b, float width,
                 int64_t K, int64_t T, int64_t B, int64_t H, int threads) {
    RecArgs a = {0};
    a.grad_z = grad_z; a.z_in = z; a.u_in = u; a.w_in = w; a.i_in = i;
    a.alpha = alpha; a.gain = gain; a.vth = vth; a.v = v; a.beta = beta; a.ca = ca; a.cb = cb;
    a.grad_cur = grad_cur; a.g_alpha = g_alpha; a.g_beta = g_beta; a.g_a = g_a; a.g_b = g_b; a.width = width;
    a.K = K; a.T = T; a.B = B; a.H = H;
    return run_rows(rec_backward_rows, &a, K * B, threads);
}
