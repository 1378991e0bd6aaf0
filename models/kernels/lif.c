/* Fused LIF kernels for the CPU: drive, membrane scan and spike count in one pass.
 *
 * Built at first use by models/native.py with -ffp-contract=off, so every float operation
 * rounds exactly as the eager PyTorch reference does (same operations, same order): the
 * spikes are bit for bit those of models/lif.py:lif_scan.
 *
 * Layouts (float32, contiguous): a drive or spike chunk is [K, T, B, H]; a membrane, count
 * or per-row gradient is [K, B, H]; a per-network constant is [K, H]. Rows (k, b) are
 * independent in time, so threads split the K * B rows.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rows.h"
#include "spikes.h"

typedef struct {
    const float *cur, *scale, *shift, *alpha, *vth, *grad_z, *vpre_in;
    float *v, *z, *count, *vpre, *grad_drive, *grad_alpha, *grad_vth;
    int64_t K, T, B, H;
    float width;
} Args;

/* One time step of one row: v <- alpha * v + (cur * scale + shift); z = v > vth;
 * v <- v - z * vth. Inlined with constant flags, so each use is a branch-free, vectorised loop. */
static inline __attribute__((always_inline)) void step(
        const float *restrict c, const float *restrict sc, const float *restrict sh,
        const float *restrict al, const float *restrict th, float *restrict v, float *restrict z,
        float *restrict count, float *restrict vp, const int64_t H,
        const int has_scale, const int has_z, const int has_count, const int has_vp) {
    for (int64_t h = 0; h < H; h++) {
        const float d = has_scale ? c[h] * sc[h] + sh[h] : c[h];
        float vv = v[h] * al[h] + d;
        if (has_vp) vp[h] = vv;
        const float s = vv > th[h] ? 1.0f : 0.0f;
        vv = vv - s * th[h];
        v[h] = vv;
        if (has_z) z[h] = s;
        if (has_count) count[h] += s;
    }
}

#define STEP(S, Z, C, P) step(c, sc, sh, al, th, v, z, count, vp, H, S, Z, C, P)

static int forward_rows(const void *p, const int64_t row0, const int64_t row1) {
    const Args *a = (const Args *)p;
    const int64_t T = a->T, B = a->B, H = a->H;
    const int has_scale = a->scale != NULL, has_z = a->z != NULL, has_count = a->count != NULL;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / B, b = r % B;
        float *v = a->v + r * H;
        float *count = has_count ? a->count + r * H : NULL;
        const float *al = a->alpha + k * H, *th = a->vth + k * H;
        const float *sc = has_scale ? a->scale + k * H : NULL, *sh = has_scale ? a->shift + k * H : NULL;
        for (int64_t t = 0; t < T; t++) {
            const int64_t off = ((k * T + t) * B + b) * H;
            const float *c = a->cur + off;
            float *z = has_z ? a->z + off : NULL;
            float *vp = a->vpre ? a->vpre + off : NULL;
            if (vp && !has_scale && has_z && !has_count) STEP(0, 1, 0, 1);  /* training: keep membranes */
            else if (vp && has_scale && has_z && !has_count) STEP(1, 1, 0, 1);  /* training, BatchNorm fused */
            else if (has_scale && has_z && has_count) STEP(1, 1, 1, 0);   /* hidden layer */
            else if (has_scale && has_count) STEP(1, 0, 1, 0);            /* last layer: count only */
            else if (has_scale && has_z) STEP(1, 1, 0, 0);                /* forced neurons follow */
            else if (has_z && has_count) STEP(0, 1, 1, 0);
            else if (has_z) STEP(0, 1, 0, 0);
            else if (has_count) STEP(0, 0, 1, 0);
            else STEP(has_scale, has_z, has_count, vp != NULL);  /* any other mix: generic loop */
        }
    }
    return 0;
}

/* Reverse-time gradient of one step of one row (membrane from rest, reset by subtraction,
 * boxcar surrogate dz/dv = [|v - vth| < width]). gu holds dL/du for the post-reset membrane
 * u of step t on entry and of step t - 1 on return. */
static inline __attribute__((always_inline)) void back_step(
        const float *restrict vp, const float *restrict vprev, const float *restrict gz,
        const float *restrict al, const float *restrict th, float *restrict gu, float *restrict gd,
        float *restrict ga, float *restrict gt, const float width, const int64_t H,
        const int has_prev, const int has_ga, const int has_gt) {
    for (int64_t h = 0; h < H; h++) {
        const float x = vp[h] - th[h];
        const float s = fabsf(x) < width ? 1.0f : 0.0f;
        const float z = x > 0.0f ? 1.0f : 0.0f;
        const float gz_total = gz[h] - th[h] * gu[h];
        const float gv = gu[h] + gz_total * s;
        if (has_gt) gt[h] += -(gz_total * s) - gu[h] * z;
        if (has_ga && has_prev) {
            const float zp = vprev[h] > th[h] ? 1.0f : 0.0f;
            ga[h] += gv * (vprev[h] - zp * th[h]);
        }
        gd[h] = gv;
        gu[h] = al[h] * gv;
    }
}

#define BACK(P, A, G) back_step(vp, vprev, gz, al, th, gu, gd, ga, gt, a->width, H, P, A, G)

static int backward_rows(const void *p, const int64_t row0, const int64_t row1) {
    const Args *a = (const Args *)p;
    const int64_t T = a->T, B = a->B, H = a->H;
    float *gu = calloc((size_t)H, sizeof(float));
    if (!gu) return 1;
    for (int64_t r = row0; r < row1; r++) {
        const int64_t k = r / B, b = r % B;
        const float *al = a->alpha + k * H, *th = a->vth + k * H;
        float *ga = a->grad_alpha ? a->grad_alpha + r * H : NULL;
        float *gt = a->grad_vth ? a->grad_vth + r * H : NULL;
        for (int64_t h = 0; h < H; h++) gu[h] = 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            const int64_t off = ((k * T + t) * B + b) * H;
            const float *vp = a->vpre_in + off, *gz = a->grad_z + off;
            const float *vprev = t > 0 ? a->vpre_in + off - B * H : NULL;
            float *gd = a->grad_drive + off;
            if (vprev && ga && !gt) BACK(1, 1, 0);      /* training: the leak learns, the threshold is fixed */
            else if (vprev && ga && gt) BACK(1, 1, 1);
            else if (!ga && !gt) BACK(0, 0, 0);
            else BACK(vprev != NULL, ga != NULL, gt != NULL);
        }
    }
    free(gu);
    return 0;
}

int lif_forward(const float *cur, const float *scale, const float *shift, const float *alpha,
                const float *vth, float *v, float *z, float *count, float *vpre,
                int64_t K, int64_t T, int64_t B, int64_t H, int threads) {
    Args a = {0};
    a.cur = cur; a.scale = scale; a.shift = shift; a.alpha = alpha; a.vth = vth;
    a.v = v; a.z = z; a.count = count; a.vpre = vpre;
    a.K = K; a.T = T; a.B = B; a.H = H;
    return run_rows(forward_rows, &a, K * B, threads);
}

int lif_backward(const float *grad_z, const float *vpre, const float *alpha, const float *vth,
                 float *grad_drive, float *grad_alpha, float *grad_vth, float width,
                 int64_t K, int64_t T, int64_t B, int64_t H, int threads) {
    Args a = {0};
    a.grad_z = grad_z; a.vpre_in = vpre; a.alpha = alpha; a.vth = vth;
    a.grad_drive = grad_drive; a.grad_alpha = grad_alpha; a.grad_vth = grad_vth; a.width = width;
    a.K = K; a.T = T; a.B = B; a.H = H;
    return run_rows(backward_rows, &a, K * B, threads);
}

/* All layers of a chunk, row by row: layer 0 from its current (the feature matmul, done
 * before), every later layer from the event-driven sum of the spikes of the one below.
 * Nothing between layers is stored: a row's spikes at step t go from one layer's scan
 * straight into the next layer's sum. The per-layer arithmetic is that of forward_rows and
 * spike_current, so the spikes and counts are the bits the layer-by-layer path gives. Dead
 * neurons never fire and saturated ones always do (after the scan, as models/hardware.py
 * forces them); the membrane follows the unforced spikes. */
typedef struct {
    const float *cur0;
    int64_t L, K, T, B;
    const int64_t *width;
    const float *const *w;  /* [L]: layer l's exact columns [K or 1, width[l-1], width[l]]; w[0] unused */
    const int *w_shared;
    const float *const *scale, *const *shift, *const *alpha, *const *vth, *const *dead, *const *sat;
    float *const *v, *const *count;  /* [K, B, width[l]] each */
} Chain;

/* One step of one row of one layer: scan, force, count, and the indices of the spikes. */
static inline __attribute__((always_inline)) int64_t chain_step(
        const float *restrict c, const float *restrict sc, const float *restrict sh, const float *restrict al,
        const float *restrict th, const float *restrict dd, const float *restrict st, float *restrict v,
        float *restrict count, float *restrict z, int32_t *restrict idx, const int64_t H, const int forced,
        const int feeds) {
    for (int64_t h = 0; h < H; h++) {
        float vv = v[h] * al[h] + (c[h] * sc[h] + sh[h]);
        float s = vv > th[h] ? 1.0f : 0.0f;
        v[h] = vv - s * th[h];
        if (forced) {
            if (dd) s = s * (1.0f - dd[h]);
            if (st) s = fmaxf(s, st[h]);
        }
        if (feeds) z[h] = s;
        count[h] += s;
    }
    return feeds ? active(z, H, idx) : 0;  /* the last layer's spikes are only counted */
}

static int chain_rows(const void *p, const int64_t row0, const int64_t row1) {
    const Chain *a = (const Chain *)p;
    const int64_t L = a->L, T = a->T, B = a->B;
    int64_t hmax = 1;
    for (int64_t l = 0; l < L; l++) hmax = a->width[l] > hmax ? a->width[l] : hmax;
    float *cur = malloc((size_t)hmax * sizeof(float)), *z = malloc((size_t)hmax * sizeof(float));
    int32_t *idx = malloc((size_t)(hmax + 8) * sizeof(int32_t));
    int failed = !cur || !z || !idx;
    for (int64_t r = row0; r < row1 && !failed; r++) {
        const int64_t k = r / B, b = r % B;
        for (int64_t t = 0; t < T; t++) {
            int64_t n = 0;
            for (int64_t l = 0; l < L; l++) {
                const int64_t H = a->width[l], kh = k * H;
                const float *c = a->cur0 + ((k * T + t) * B + b) * H;
                if (l > 0) {
                    const int64_t Hin = a->width[l - 1];
                    sum_active(a->w[l] + (a->w_shared[l] ? 0 : k * Hin * H), idx, n, H, cur);
                    c = cur;
                }
                const float *dd = a->dead[l] ? a->dead[l] + kh : NULL, *st = a->sat[l] ? a->sat[l] + kh : NULL;
                const float *sc = a->scale[l] + kh, *sh = a->shift[l] + kh, *al = a->alpha[l] + kh;
                const float *th = a->vth[l] + kh;
                float *v = a->v[l] + r * H, *count = a->count[l] + r * H;
                if (dd || st) n = chain_step(c, sc, sh, al, th, dd, st, v, count, z, idx, H, 1, 1);
                else if (l + 1 < L) n = chain_step(c, sc, sh, al, th, NULL, NULL, v, count, z, idx, H, 0, 1);
                else chain_step(c, sc, sh, al, th, NULL, NULL, v, count, z, idx, H, 0, 0);
            }
        }
    }
    free(cur);
    free(z);
    free(idx);
    return failed;
}

int lif_chain_forward(const float *cur0, int64_t L, const int64_t *width, const float *const *w, const int *w_shared,
                      const float *const *scale, const float *const *shift, const float *const *alpha,
                      const float *const *vth, const float *const *dead, const float *const *sat,
                      float *const *v, float *const *count, int64_t K, int64_t T, int64_t B, int threads) {
    Chain a = {cur0, L, K, T, B, width, w, w_shared, scale, shift, alpha, vth, dead, sat, v, count};
    return run_rows(chain_rows, &a, K * B, threads);
}
