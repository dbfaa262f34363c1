/* The two passes of the ranking losses over every (anchor, class) entry (CPU, float32 /
 * float64): the CPU kernel of detloss_plugin/functional/ranking_core.py.
 *
 * The maths is that of the torch path (ranking_core.Breakpoints): the K sorted
 * breakpoints s_i - delta, s_i + delta of the positives cut the real line into K + 1
 * intervals; interval m holds the values v with bp[m-1] < v <= bp[m].
 *   pass 1: each entry's interval m = #{breakpoints < v} (kept in `interval`), and for
 *           the negatives, per interval, their count and the sum of their offsets
 *           v - bp[m-1] above the interval's lower breakpoint (0 in interval 0);
 *   pass 2: the update of a negative, f_low[m] + slope[m] * (v - bp[m-1]) (0
 *           elsewhere; slope 0 contributes nothing, even for an infinite offset).
 * The torch path does the same with searchsorted / index_add / gathers; here each pass
 * is one loop, in float64 as there. `interval` may share the memory of `grad` (pass 2
 * reads an entry's interval before writing its update). A NaN score lands in interval
 * 0; the caller makes the result NaN whenever a score is NaN.
 *
 * Built on first use with the system C compiler and loaded through ctypes; the
 * caller converts every array to the types below (contiguous) before the call.
 */
#include <stdint.h>

/* #{a[0..k) < v} for sorted a (a branch-free lower bound) */
static inline int64_t count_below(const double *a, int64_t k, double v) {
    if (k == 0 || !(a[0] < v))
        return 0;
    const double *base = a;
    int64_t len = k;
    while (len > 1) {
        const int64_t half = len >> 1;
        base = (base[half] < v) ? base + half : base;
        len -= half;
    }
    return (int64_t)(base - a) + (*base < v);
}

#define DETLOSS_RANK_PASSES(SUFFIX, T, I)                                                \
void detloss_rank_intervals_##SUFFIX(const T *x, const uint8_t *neg, int64_t total,      \
                                     const double *bp, int64_t k, I *interval,           \
                                     double *counts, double *offsets) {                  \
    for (int64_t e = 0; e < total; ++e) {                                                \
        const double v = (double)x[e];                                                   \
        const int64_t m = count_below(bp, k, v);                                         \
        interval[e] = (I)m;                                                              \
        if (neg[e]) {                                                                    \
            counts[m] += 1.0;                                                            \
            offsets[m] += m > 0 ? v - bp[m - 1] : 0.0;                                   \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
                                                                                         \
void detloss_rank_update_##SUFFIX(const T *x, const uint8_t *neg, int64_t total,         \
                                  const I *interval, const double *bp,                   \
                                  const double *f_low, const double *slope, T *grad) {   \
    for (int64_t e = 0; e < total; ++e) {                                                \
        const int64_t m = (int64_t)interval[e];                                          \
        double g = 0.0;                                                                  \
        if (neg[e]) {                                                                    \
            g = f_low[m];                                                                \
            if (slope[m] != 0.0)                                                         \
                g += slope[m] * ((double)x[e] - bp[m - 1]);                              \
        }                                                                                \
        grad[e] = (T)g;                                                                  \
    }                                                                                    \
}

DETLOSS_RANK_PASSES(f32, float, int32_t)
DETLOSS_RANK_PASSES(f64, double, int64_t)
