/* IoU-family box losses, value and gradient, one box pair at a time (CPU, float32).
 *
 * The CPU fast path of detloss_plugin/functional/_fused_iou.py: the forward pass calls
 * this kernel for the loss only, the backward pass calls it again for the gradient
 * (recomputing the few intermediates it needs costs less than storing them), so a
 * forward+backward allocates nothing but the loss and the gradient.
 *
 * The formulas, eps placements and clamps are those of detloss_plugin/functional/
 * iou_losses.py (the plain path); the partial derivatives and the edge-ownership
 * signs are derived in the docstring of _fused_iou.py and follow autograd's
 * conventions at the kinks: a tie of min/max splits the gradient in two halves,
 * clamp(min=m) passes it when the input equals m. The build uses -ffp-contract=off
 * (no fused multiply-add), so every operation rounds as torch's do; atan and log are
 * computed by the polynomial approximations below (a few float32 ulp from torch's), so
 * that the loop vectorises.
 *
 * Built on first use by _fused_iou.py with the system C compiler and loaded through
 * ctypes (no Python or torch headers involved).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "detloss_math.h"

enum { IOU_LINEAR = 0, IOU_LOG = 1, GIOU = 2, DIOU = 3, CIOU = 4, EIOU = 5, FOCAL_EIOU = 6 };
enum { ALPHA_GATE = 1, AUTHORS_GRADIENT = 2, DETACH_WEIGHT = 4 };

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DETLOSS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DETLOSS_CLONES
#endif

INLINE float min_f(float a, float b) { return a < b ? a : b; }
/* sign(a - b) without the subtraction's rounding: -1, 0 or 1 */
INLINE float cmp_f(float a, float b) { return (float)(a > b) - (float)(a < b); }

/* arctan, Cephes atanf's reduction and polynomial (relative error ~2e-7), branch-free */
INLINE float atan_f(float x) {
    const float ax = x < 0.0f ? -x : x;
    const int big = ax > 2.414213562373095f, mid = ax > 0.4142135623730950f;
    const float ax_m1 = ax - 1.0f, ax_p1 = ax + 1.0f; /* computed always: selects only */
    const float num = big ? -1.0f : (mid ? ax_m1 : ax);
    const float den = big ? ax : (mid ? ax_p1 : 1.0f);
    const float base = big ? 1.5707963267948966f : (mid ? 0.7853981633974483f : 0.0f);
    const float r = num / den, z = r * r;
    const float poly = ((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z
                       - 3.33329491539e-1f;
    const float y = base + (poly * z * r + r);
    return x < 0.0f ? -y : y;
}


/* Loop-invariant 0/1 factors of the focal weight, set once per call. Blending with
 * them is exact (adding products with 0 changes nothing for finite values) and keeps
 * the loop free of branches, which the vectoriser needs. */
typedef struct {
    float zero, half, one, two; /* which exact form of IoU^gamma */
    float through;              /* 1: the weight has a gradient (not detached, gamma != 0) */
} focal_factors;

INLINE focal_factors make_focal_factors(int flags, int pow_mode) {
    focal_factors k = {(float)(pow_mode == POW_ZERO), (float)(pow_mode == POW_HALF),
                       (float)(pow_mode == POW_ONE), (float)(pow_mode == POW_TWO),
                       (float)(!(flags & DETACH_WEIGHT) && pow_mode != POW_ZERO)};
    return k;
}

/* x^gamma for 0 <= x <= 1; powf only in the instantiation for other exponents */
INLINE float pow_weight(float x, float gamma, focal_factors k, const int generic) {
    if (generic) return powf(x, gamma);
    return ((sqrtf(x) * k.half + x * k.one) + (x * x) * k.two) + k.zero;
}

/* One box pair. Writes the loss (want_loss) or, with the upstream gradient g, the
 * gradients w.r.t. pred (want_gp) and target (want_gt). `kind`, `generic_pow` and the
 * want_* are constants in each instantiation; `flags` and `pow_mode` are run-time
 * values whose alternatives are all computed and selected, so that the loops have no
 * branch and vectorise (and the library stays small and quick to compile). */
INLINE void box_pair(const int kind, const int generic_pow, const int want_loss,
                     const int want_gp, const int want_gt, const int flags,
                     const focal_factors fk, const float eps, const float gamma,
                     const float *restrict p, const float *restrict t, float *restrict loss,
                     const float g, float *restrict gp, float *restrict gt) {
    const float px1 = p[0], py1 = p[1], px2 = p[2], py2 = p[3];
    const float tx1 = t[0], ty1 = t[1], tx2 = t[2], ty2 = t[3];
    const float pw = px2 - px1, ph = py2 - py1, tw = tx2 - tx1, th = ty2 - ty1;
    const float iw_raw = min_f(px2, tx2) - max_f(px1, tx1);
    const float ih_raw = min_f(py2, ty2) - max_f(py1, ty1);
    const float iw = max_f(iw_raw, 0.0f), ih = max_f(ih_raw, 0.0f);
    const float inter = iw * ih;
    const float union_ = (pw * ph + tw * th) - inter;
    const float union_eps = union_ + eps;
    const float iou = inter / union_eps;
    const int enclosing = kind >= GIOU, centers = kind >= DIOU;
    float ew = 0.0f, eh = 0.0f, dx = 0.0f, dy = 0.0f, diag = 1.0f, dist = 0.0f;
    if (enclosing) {
        ew = max_f(px2, tx2) - min_f(px1, tx1);
        eh = max_f(py2, ty2) - min_f(py1, ty1);
    }
    if (centers) {
        dx = (px1 + px2) - (tx1 + tx2);
        dy = (py1 + py2) - (ty1 + ty2);
        diag = (ew * ew + eh * eh) + eps;
        dist = ((dx * dx + dy * dy) * 0.25f) / diag;
    }

    /* ---- value, and the partials the gradient needs ---- */
    float value = 0.0f;
    float g_iou = -1.0f;                  /* dL/dIoU */
    float g_union = 0.0f;                 /* direct dL/dU (GIoU) */
    float g_ew = 0.0f, g_eh = 0.0f;       /* dL/d(enclosing w, h) beyond rho^2/c^2 */
    float g_pw = 0.0f, g_ph = 0.0f, g_tw = 0.0f, g_th = 0.0f; /* beyond the areas */
    float scale = 1.0f;                   /* focal weight on every partial */
    if (kind == IOU_LINEAR) {
        value = 1.0f - iou;
    } else if (kind == IOU_LOG) {
        const float iou_c = max_f(iou, eps);
        value = -log_f(iou_c);
        const float g_log = -1.0f / iou_c;
        g_iou = iou >= eps ? g_log : 0.0f;
    } else if (kind == GIOU) {
        const float enclose = ew * eh, enclose_eps = enclose + eps;
        value = (1.0f - iou) + (enclose - union_) / enclose_eps;
        /* dL/dE = (U + eps) / (E + eps)^2, dL/dU = -1 / (E + eps), E = e_w e_h */
        const float g_e = union_eps / (enclose_eps * enclose_eps);
        g_union = -1.0f / enclose_eps;
        g_ew = g_e * eh;
        g_eh = g_e * ew;
    } else if (kind == DIOU) {
        value = (1.0f - iou) + dist;
    } else if (kind == CIOU) {
        const float ph_eps = ph + eps, th_eps = th + eps;
        const float ratio_p = pw / ph_eps, ratio_t = tw / th_eps;
        const float delta = atan_f(ratio_t) - atan_f(ratio_p);
        const float v = 0.405284734569351f * (delta * delta); /* 4/pi^2 delta^2 */
        const float alpha_raw = v / (((1.0f - iou) + v) + eps); /* no gradient */
        const float alpha = ((flags & ALPHA_GATE) != 0) & !(iou > 0.5f) ? 0.0f : alpha_raw;
        value = ((1.0f - iou) + dist) + alpha * v;
        /* dL/d atan(w/h') = -2 (4/pi^2) alpha delta = -dL/d atan(w_gt/h_gt') */
        const float c = alpha * delta * -0.810569469138702f;
        /* true: d atan(w/h') = (dw - r dh)/(h'(1 + r^2)); the authors': h' dw - w dh */
        const float true_pw = c / ((ratio_p * ratio_p + 1.0f) * ph_eps);
        const float true_ph = -(true_pw * ratio_p);
        const float authors_pw = c * ph_eps, authors_ph = -(c * pw);
        const int authors = (flags & AUTHORS_GRADIENT) != 0;
        g_pw = authors ? authors_pw : true_pw;
        g_ph = authors ? authors_ph : true_ph;
        g_tw = -c / ((ratio_t * ratio_t + 1.0f) * th_eps);
        g_th = -(g_tw * ratio_t);
    } else { /* EIOU, FOCAL_EIOU */
        const float cw_eps = ew * ew + eps, ch_eps = eh * eh + eps;
        const float dw = pw - tw, dh = ph - th;
        const float qw = dw * dw / cw_eps, qh = dh * dh / ch_eps;
        value = (((1.0f - iou) + dist) + qw) + qh;
        g_pw = 2.0f * dw / cw_eps;
        g_ph = 2.0f * dh / ch_eps;
        g_tw = -g_pw;
        g_th = -g_ph;
        g_ew = -2.0f * qw * ew / cw_eps;
        g_eh = -2.0f * qh * eh / ch_eps;
        if (kind == FOCAL_EIOU) {
            const float iou_c = max_f(iou, eps);
            const float weight = pow_weight(iou_c, gamma, fk, generic_pow);
            /* d(IoU_c^gamma)/dIoU = gamma IoU_c^gamma / IoU_c [IoU >= eps]; none when
             * the weight is detached or gamma = 0 */
            const float g_focal = value * gamma / iou_c - 1.0f;
            const float g_through = iou >= eps ? g_focal : -1.0f;
            g_iou = g_through * fk.through - (1.0f - fk.through);
            value = value * weight;
            scale = weight;
        }
    }
    if (want_loss) {
        *loss = value;
        return;
    }

    /* ---- gradient ---- */
    const float s = g * scale;
    float g_dx = 0.0f, g_dy = 0.0f;
    if (centers) {
        /* rho^2/c^2: dL/d dx = dx / (2 c^2), dL/d e_w = -2 (rho^2/c^2) e_w / c^2 */
        g_dx = dx * 0.5f / diag;
        g_dy = dy * 0.5f / diag;
        const float d = -2.0f * dist / diag;
        g_ew += d * ew;
        g_eh += d * eh;
    }
    /* IoU = I/(U + eps), U = A_p + A_t - I */
    const float g_area = -g_iou * iou / union_eps + g_union;
    const float g_inter = g_iou * (1.0f + iou) / union_eps - g_union;
    const float gi_w_any = g_inter * ih, gi_h_any = g_inter * iw;
    const float gi_w = iw_raw >= 0.0f ? gi_w_any : 0.0f; /* clamp(min=0) passes at 0 */
    const float gi_h = ih_raw >= 0.0f ? gi_h_any : 0.0f;
    const float ax = 0.5f * (gi_w + g_ew), bx = 0.5f * (gi_w - g_ew);
    const float ay = 0.5f * (gi_h + g_eh), by = 0.5f * (gi_h - g_eh);
    const float s1x = cmp_f(px1, tx1), s2x = cmp_f(tx2, px2);
    const float s1y = cmp_f(py1, ty1), s2y = cmp_f(ty2, py2);
    if (want_gp) {
        const float sx = (g_area * ph + g_pw) + ax, sy = (g_area * pw + g_ph) + ay;
        gp[0] = s * ((g_dx - sx) - bx * s1x);
        gp[1] = s * ((g_dy - sy) - by * s1y);
        gp[2] = s * ((g_dx + sx) + bx * s2x);
        gp[3] = s * ((g_dy + sy) + by * s2y);
    }
    if (want_gt) {
        const float sx = (g_area * th + g_tw) + ax, sy = (g_area * tw + g_th) + ay;
        gt[0] = s * ((-g_dx - sx) + bx * s1x);
        gt[1] = s * ((-g_dy - sy) + by * s1y);
        gt[2] = s * ((sx - g_dx) - bx * s2x);
        gt[3] = s * ((sy - g_dy) - by * s2y);
    }
}

/* One loop per (kind, outputs) so that the constant branches above are resolved at
 * compile time and the loop body is straight-line code. */
#define LOSS_LOOP(KIND, GENERIC)                                                      \
    for (int64_t i = 0; i < n; ++i)                                                   \
        box_pair(KIND, GENERIC, 1, 0, 0, flags, fk, eps, gamma, pred + 4 * i,           \
                 target + 4 * i, loss + i, 0.0f, 0, 0)
#define GRAD_LOOP(KIND, GENERIC)                                                      \
    for (int64_t i = 0; i < n; ++i)                                                   \
        box_pair(KIND, GENERIC, 0, 1, WANT_GT, flags, fk, eps, gamma, pred + 4 * i,     \
                 target + 4 * i, 0, grad[i * grad_stride], gp + 4 * i,                  \
                 WANT_GT ? gt + 4 * i : 0)
#define DISPATCH(LOOP)                                                                \
    switch (kind) {                                                                   \
    case IOU_LINEAR: LOOP(IOU_LINEAR, 0); break;                                      \
    case IOU_LOG: LOOP(IOU_LOG, 0); break;                                            \
    case GIOU: LOOP(GIOU, 0); break;                                                  \
    case DIOU: LOOP(DIOU, 0); break;                                                  \
    case CIOU: LOOP(CIOU, 0); break;                                                  \
    case EIOU: LOOP(EIOU, 0); break;                                                  \
    default:                                                                          \
        if (pow_mode == POW_GENERIC) LOOP(FOCAL_EIOU, 1);                             \
        else LOOP(FOCAL_EIOU, 0);                                                     \
    }

/* Loss of n box pairs (pred, target: n x 4 contiguous float32) into loss[n]. */
DETLOSS_CLONES
void detloss_iou_family_loss_f32(int kind, int flags, int pow_mode, float eps, float gamma,
                                 const float *pred, const float *target, int64_t n,
                                 float *loss) {
    const focal_factors fk = make_focal_factors(flags, pow_mode);
    DISPATCH(LOSS_LOOP)
}

/* Gradient of sum_i grad[i * grad_stride] * L_i w.r.t. pred into gp (n x 4) and, when
 * gt is not NULL, w.r.t. target into gt (n x 4). */
DETLOSS_CLONES
void detloss_iou_family_grad_f32(int kind, int flags, int pow_mode, float eps, float gamma,
                                 const float *pred, const float *target, int64_t n,
                                 const float *grad, int64_t grad_stride, float *gp,
                                 float *gt) {
    const focal_factors fk = make_focal_factors(flags, pow_mode);
    if (gt != 0) {
#define WANT_GT 1
        DISPATCH(GRAD_LOOP)
#undef WANT_GT
    } else {
#define WANT_GT 0
        DISPATCH(GRAD_LOOP)
#undef WANT_GT
    }
}
