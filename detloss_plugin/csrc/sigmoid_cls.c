/* Sigmoid (one-vs-all) classification losses, value and gradient (CPU, float32):
 * the focal loss and GHM-C's binary cross-entropy with its gradient-norm regions.
 *
 * The CPU fast path of detloss_plugin/functional/_fused_cls.py. A loss over N anchors
 * x C classes touches N*C elements; the plain torch code runs a dozen element-wise
 * operators over them forward and as many backward, each reading and writing the
 * whole array. Here the forward pass computes the loss in one pass and the backward
 * pass recomputes what it needs and writes the gradient in one more.
 *
 * The formulas are those of detloss_plugin/functional/classification.py and ghm.py
 * (the plain path), with torch's formulation of each operator:
 *   e = exp(-|x|),  sigmoid(|x|) = 1 / (1 + e),  sigmoid(-|x|) = e / (1 + e)
 *   -log sigmoid(x) = max(-x, 0) + log1p(e)                  (torch's log_sigmoid)
 *   BCE(x, t) = (1 - t) x - log sigmoid(x)          (torch's BCE-with-logits)
 * exp and log are the Cephes polynomials below (a few float32 ulp from torch's), so
 * that the loops vectorise; -ffp-contract=off: no fused multiply-add.
 *
 * Built on first use with the system C compiler and loaded through ctypes (no Python
 * or torch headers involved).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "detloss_math.h"


#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DETLOSS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DETLOSS_CLONES
#endif

#define FLT_TINY 1.17549435e-38f /* torch.finfo(float32).tiny: _safe_pow's clamp */


/* exp(x) for x <= 0, Cephes expf's reduction and polynomial (relative error ~1e-7),
 * branch-free; exactly 0 below -87.33 (where float32's exp leaves the normal range);
 * NaN stays NaN */
INLINE float exp_neg_f(float x) {
    /* NaN: reduced as -87.33 (no float-to-int conversion of a NaN), returned as NaN */
    const float xc = x > -87.33f ? x : -87.33f;
    const float fx = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    const float z = r * r;
    const float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                       + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f);
    const float y = (p * z + r) + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23; /* 2^fx, fx in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.33f ? 0.0f : (x != x ? x : y * scale);
}


/* log1p(u) for u in [0, 1]: 2 atanh(s) with s = u / (2 + u) in [0, 1/3], its series to
 * s^13 (truncation error below 2e-8 relative; about 3e-7 relative in all, as accurate
 * for tiny u as for u = 1, and much cheaper than log(1 + u) with a correction) */
INLINE float log1p_unit_f(float u) {
    const float s = u / (2.0f + u);
    const float z = s * s;
    const float p = (((((z * (1.0f / 13.0f) + (1.0f / 11.0f)) * z + (1.0f / 9.0f)) * z
                       + (1.0f / 7.0f)) * z + (1.0f / 5.0f)) * z + (1.0f / 3.0f)) * z;
    const float s2 = s + s;
    return s2 + s2 * p;
}

/* What every loss here needs from one logit: sigmoid(x), sigmoid(-x) and
 * -log sigmoid(x). */
typedef struct { float sig, sig_neg, nls; } logit_terms;

INLINE logit_terms terms(float x) {
    const float ax = x < 0.0f ? -x : x;
    const float e = exp_neg_f(-ax);
    const float d = 1.0f / (1.0f + e);
    const float ed = e * d;
    logit_terms r;
    r.sig = x >= 0.0f ? d : ed;
    r.sig_neg = x >= 0.0f ? ed : d;
    r.nls = max_f(-x, 0.0f) + log1p_unit_f(e);
    return r;
}

/* ---- focal loss ------------------------------------------------------------------ */

/* (1 - p_t)^gamma and its derivative, as classification._safe_pow computes them:
 * gamma 0 -> 1; gamma 1 -> q; otherwise clamp(q, min=tiny)^gamma (the clamp passes the
 * gradient where q >= tiny). torch computes x^2 as x*x and x^0.5 as sqrt(x). */
INLINE void focal_factor(int pow_mode, float gamma, float q, float *f, float *df) {
    const float qc = max_f(q, FLT_TINY);
    const float pass = q >= FLT_TINY ? 1.0f : 0.0f;
    switch (pow_mode) {
    case POW_ZERO: *f = 1.0f; *df = 0.0f; break;
    case POW_ONE: *f = q; *df = 1.0f; break;
    case POW_TWO: *f = qc * qc; *df = pass * (2.0f * qc); break;
    case POW_HALF: {
        const float s = sqrtf(qc);
        *f = s;
        *df = pass * (0.5f / s);
        break;
    }
    default: {
        /* qc <= 1, so gamma * log(qc) <= 0 (the select guards a rounding above 0) */
        const float lg = gamma * log_f(qc);
        const float p = exp_neg_f(lg > 0.0f ? 0.0f : lg);
        *f = p;
        *df = pass * (gamma * (p / qc));
    }
    }
}

/* One element: loss, or d loss / d x. */
INLINE float focal_element(int want_grad, int pow_mode, float gamma, float x, float t,
                           float alpha_t) {
    const logit_terms s = terms(x);
    const float one_m_t = 1.0f - t;
    const float ce = one_m_t * x + s.nls;
    const float q = t * s.sig_neg + one_m_t * s.sig;
    float f, df;
    focal_factor(pow_mode, gamma, q, &f, &df);
    if (!want_grad)
        return alpha_t * (ce * f);
    /* d ce/dx = sigmoid(x) - t; d q/dx = (1 - 2t) sigmoid(x) sigmoid(-x) */
    const float dq = (one_m_t - t) * (s.sig * s.sig_neg);
    return alpha_t * ((s.sig - t) * f + ce * (df * dq));
}

#define FOCAL_LOOP(WANT_GRAD, POW, HAS_ALPHA, GRAD_COLS)                               \
    for (int64_t r = 0; r < rows; ++r) {                                                \
        const float *xr = x + r * cols, *tr = t + r * cols;                             \
        float *out_r = out + r * cols;                                                  \
        const float *gr = grad + r * grad_row_stride;                                   \
        for (int64_t c = 0; c < cols; ++c) {                                            \
            const float tc = tr[c];                                                     \
            const float at = HAS_ALPHA ? alpha[c] * tc + (1.0f - alpha[c]) * (1.0f - tc) \
                                       : 1.0f;                                          \
            const float v = focal_element(WANT_GRAD, POW, gamma, xr[c], tc, at);        \
            out_r[c] = WANT_GRAD ? gr[c * GRAD_COLS] * v : v;                           \
        }                                                                               \
    }

#define FOCAL_POW(WANT_GRAD, HAS_ALPHA, GRAD_COLS)                                      \
    switch (pow_mode) {                                                                 \
    case POW_ZERO: FOCAL_LOOP(WANT_GRAD, POW_ZERO, HAS_ALPHA, GRAD_COLS); break;        \
    case POW_HALF: FOCAL_LOOP(WANT_GRAD, POW_HALF, HAS_ALPHA, GRAD_COLS); break;        \
    case POW_ONE: FOCAL_LOOP(WANT_GRAD, POW_ONE, HAS_ALPHA, GRAD_COLS); break;          \
    case POW_TWO: FOCAL_LOOP(WANT_GRAD, POW_TWO, HAS_ALPHA, GRAD_COLS); break;          \
    default: FOCAL_LOOP(WANT_GRAD, POW_GENERIC, HAS_ALPHA, GRAD_COLS);                  \
    }

/* Sigmoid focal loss of rows x cols logits x and targets t (contiguous float32) into
 * out. alpha: NULL (no weighting) or cols values, alpha[c] the weight of column c's
 * positives (1 - alpha[c] for its negatives). */
DETLOSS_CLONES
void detloss_sigmoid_focal_loss_f32(int pow_mode, float gamma, const float *alpha,
                                    const float *x, const float *t, int64_t rows,
                                    int64_t cols, float *out) {
    const float *grad = x; /* unused by the loss loops */
    const int64_t grad_row_stride = 0;
    if (alpha) {
        FOCAL_POW(0, 1, 0)
    } else {
        FOCAL_POW(0, 0, 0)
    }
}

/* Gradient of sum(grad * loss) w.r.t. x into out. grad: contiguous rows x cols
 * (grad_row_stride = cols, grad_cols = 1) or one value broadcast to every element
 * (grad_row_stride = 0, grad_cols = 0). */
DETLOSS_CLONES
void detloss_sigmoid_focal_grad_f32(int pow_mode, float gamma, const float *alpha,
                                    const float *x, const float *t, int64_t rows,
                                    int64_t cols, const float *grad,
                                    int64_t grad_row_stride, int grad_cols, float *out) {
    if (alpha && grad_cols) {
        FOCAL_POW(1, 1, 1)
    } else if (alpha) {
        FOCAL_POW(1, 1, 0)
    } else if (grad_cols) {
        FOCAL_POW(1, 0, 1)
    } else {
        FOCAL_POW(1, 0, 0)
    }
}

/* ---- GHM-C ----------------------------------------------------------------------- */

#define GHM_BLOCK 512

/* The forward pass's first half, over rows x cols elements (x, t contiguous):
 * - bce[i] = BCE(x[i], t[i]) (unweighted: the weights need every element's region);
 * - the gradient-norm region of g = |sigmoid(x) - t|, b = #{k in 1..bins-1 : g >=
 *   edges[k]} (edges ascending, edges[0] = 0 <= g < edges[bins]: the b with edges[b] <=
 *   g < edges[b + 1], as bucketize finds it; NaN: the last region, as bucketize puts
 *   it), into region[i] (255 where not valid);
 * - counts[b] += valid elements in region b, counts[bins] += valid elements.
 * valid[r * valid_row_stride + c * valid_col_stride] != 0 marks a valid element;
 * valid_col_stride is 0 (one flag per row) or 1. bins <= 254. */
DETLOSS_CLONES
void detloss_ghmc_regions_f32(const float *restrict x, const float *restrict t,
                              const uint8_t *restrict valid,
                              int64_t valid_row_stride, int64_t valid_col_stride,
                              int64_t rows, int64_t cols, const float *edges, int bins,
                              uint8_t *restrict region, int64_t *restrict counts,
                              float *restrict bce) {
    float g[GHM_BLOCK];
    int32_t b[GHM_BLOCK];
    int64_t at_least[256]; /* at_least[k]: valid elements with g >= edges[k] */
    memset(at_least, 0, sizeof at_least);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c0 = 0; c0 < cols; c0 += GHM_BLOCK) {
            const int64_t len = cols - c0 < GHM_BLOCK ? cols - c0 : GHM_BLOCK;
            const int64_t base = r * cols + c0;
            const uint8_t *vr = valid + r * valid_row_stride + c0 * valid_col_stride;
            const float *xb = x + base, *tb = t + base;
            float *bce_b = bce + base;
            for (int64_t c = 0; c < len; ++c) {
                const logit_terms s = terms(xb[c]);
                bce_b[c] = (1.0f - tb[c]) * xb[c] + s.nls;
                const float d = s.sig - tb[c];
                /* a NaN gradient norm (NaN logit or target) is above every edge: the
                 * last region, where torch.bucketize puts NaN in the plain code */
                g[c] = d != d ? INFINITY : (d < 0.0f ? -d : d);
                b[c] = 0;
            }
            /* an invalid element gets g = -1: in no region */
            int32_t nvalid = 0;
            if (valid_col_stride == 0) {
                if (vr[0] != 0) {
                    nvalid = (int32_t)len;
                } else {
                    for (int64_t c = 0; c < len; ++c)
                        g[c] = -1.0f;
                }
            } else {
                for (int64_t c = 0; c < len; ++c) {
                    const int32_t v = vr[c] != 0;
                    g[c] = v ? g[c] : -1.0f;
                    nvalid += v;
                }
            }
            at_least[0] += nvalid;
            for (int k = 1; k < bins; ++k) {
                const float edge = edges[k];
                int32_t above = 0;
                for (int64_t c = 0; c < len; ++c) {
                    const int32_t ge = g[c] >= edge;
                    b[c] += ge;
                    above += ge;
                }
                at_least[k] += above;
            }
            uint8_t *region_b = region + base;
            for (int64_t c = 0; c < len; ++c)
                region_b[c] = g[c] >= 0.0f ? (uint8_t)b[c] : (uint8_t)255;
        }
    }
    for (int k = 0; k < bins; ++k)
        counts[k] += at_least[k] - (k + 1 < bins ? at_least[k + 1] : 0);
    counts[bins] += at_least[0];
}

/* loss[i] *= weight[region[i]] (in place), weight: 256 values (0 at 255). */
DETLOSS_CLONES
void detloss_ghmc_weigh_f32(const uint8_t *region, const float *weight, int64_t n,
                            float *loss) {
    for (int64_t i = 0; i < n; ++i)
        loss[i] = loss[i] * weight[region[i]];
}

/* out[i] = grad[i * grad_stride] * weight[region[i]] * (sigmoid(x[i]) - t[i]),
 * grad_stride 1 (contiguous) or 0 (one value broadcast). The table look-up (a gather)
 * is a separate loop over each block, so that the arithmetic loop vectorises. */
DETLOSS_CLONES
void detloss_ghmc_grad_f32(const float *x, const float *t, const uint8_t *region,
                           const float *weight, int64_t n, const float *grad,
                           int grad_stride, float *out) {
    float w[GHM_BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += GHM_BLOCK) {
        const int64_t len = n - i0 < GHM_BLOCK ? n - i0 : GHM_BLOCK;
        for (int64_t i = 0; i < len; ++i)
            w[i] = weight[region[i0 + i]];
        if (grad_stride) {
            for (int64_t i = 0; i < len; ++i) {
                const logit_terms s = terms(x[i0 + i]);
                out[i0 + i] = (grad[i0 + i] * w[i]) * (s.sig - t[i0 + i]);
            }
        } else {
            const float g = grad[0];
            for (int64_t i = 0; i < len; ++i) {
                const logit_terms s = terms(x[i0 + i]);
                out[i0 + i] = (g * w[i]) * (s.sig - t[i0 + i]);
            }
        }
    }
}
