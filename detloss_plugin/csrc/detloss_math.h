/* Helpers shared by detloss's C kernels (included, not compiled on its own). */
#ifndef DETLOSS_MATH_H
#define DETLOSS_MATH_H

#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* How a focal power x^gamma is computed, as torch computes pow: x^0.5 as sqrt(x), x^1
 * as x, x^2 as x * x, x^0 as 1, anything else generically. The Python side passes
 * these codes (detloss_plugin/functional/_kernels.py, POW_MODES). */
enum { POW_GENERIC = 0, POW_ZERO = 1, POW_HALF = 2, POW_ONE = 3, POW_TWO = 4 };

/* max(a, b) as torch.clamp(a, min=b) computes it: a NaN in a stays NaN (a clamp or a
 * max must never turn a NaN into a plausible number) */
INLINE float max_f(float a, float b) { return a < b ? b : a; }

/* natural log of a positive normal float, Cephes logf's polynomial, branch-free; NaN
 * stays NaN (the exponent bits of a NaN would otherwise read as a number) */
INLINE float log_f(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)((int32_t)((bits >> 23) & 0xffu) - 126);
    bits = (bits & 0x807fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    const int low = m < 0.70710678118654752f;
    const float e_low = e - 1.0f, m_low = (m + m) - 1.0f, m_high = m - 1.0f;
    e = low ? e_low : e;
    m = low ? m_low : m_high;
    const float z = m * m;
    float y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m
                    - 1.2420140846e-1f) * m + 1.4249322787e-1f) * m - 1.6668057665e-1f) * m
                 + 2.0000714765e-1f) * m - 2.4999993993e-1f) * m + 3.3333331174e-1f) * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    const float r = (m + y) + 0.693359375f * e;
    return x != x ? x : r;
}

#endif /* DETLOSS_MATH_H */
