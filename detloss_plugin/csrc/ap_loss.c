/* AP-loss's two passes over every (anchor, class) entry (CPU, float32 / float64):
 * the CPU fast path of detloss_plugin/functional/ranking.py.
 *
 * The maths is that of the plain torch path (ranking.py, _ap_loss_forward): the K
 * sorted breakpoints s_i - delta, s_i + delta of the positives cut the real line into
 * K + 1 intervals; every sum over (positive, entry) pairs is linear in the entry's
 * score inside one interval.
 *   pass 1: each entry's interval m = #{breakpoints < v} (kept in `interval`), and
 *           for the negatives, per interval, their count and the sum of their scores;
 *   pass 2: the update of a negative, alpha[m] * v + beta[m] (0 elsewhere).
 * The torch path does the same with searchsorted / index_add / gathers, a dozen
 * operators over the whole array; here each pass is one loop, in float64 as there.
 * Entries at or below the first breakpoint (most negatives of a trained detector)
 * skip the search. `interval` may share the memory of `grad` (pass 2 reads an
 * entry's interval before writing its update).
 *
 * Built on first use with the system C compiler and loaded through ctypes.
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

#define DETLOSS_AP_PASSES(SUFFIX, T, I)                                                  \
void detloss_ap_intervals_##SUFFIX(const T *x, const int64_t *labels,                    \
                                   const uint8_t *used, int64_t n, int64_t c,            \
                                   const double *bp, int64_t k, I *interval,             \
                                   double *counts, double *sums) {                       \
    for (int64_t r = 0; r < n; ++r) {                                                    \
        const T *row = x + r * c;                                                        \
        I *out = interval + r * c;                                                       \
        if (!used[r]) {                                                                  \
            for (int64_t j = 0; j < c; ++j)                                              \
                out[j] = 0;                                                              \
            continue;                                                                    \
        }                                                                                \
        const int64_t label = labels[r];                                                 \
        for (int64_t j = 0; j < c; ++j) {                                                \
            const double v = (double)row[j];                                             \
            const int64_t m = count_below(bp, k, v);                                     \
            out[j] = (I)m;                                                               \
            if (j != label) {                                                            \
                counts[m] += 1.0;                                                        \
                sums[m] += v;                                                            \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
                                                                                         \
void detloss_ap_update_##SUFFIX(const T *x, const int64_t *labels, const uint8_t *used,  \
                                int64_t n, int64_t c, const I *interval,                 \
                                const double *alpha, const double *beta, T *grad) {      \
    for (int64_t r = 0; r < n; ++r) {                                                    \
        const int64_t label = used[r] ? labels[r] : -1;                                  \
        for (int64_t j = 0; j < c; ++j) {                                                \
            const int64_t e = r * c + j;                                                 \
            const int64_t m = (int64_t)interval[e];                                      \
            const double v = (double)x[e];                                               \
            grad[e] = (used[r] && j != label) ? (T)(alpha[m] * v + beta[m]) : (T)0;      \
        }                                                                                \
    }                                                                                    \
}

DETLOSS_AP_PASSES(f32, float, int32_t)
DETLOSS_AP_PASSES(f64, double, int64_t)
