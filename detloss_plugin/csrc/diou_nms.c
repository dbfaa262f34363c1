/* Greedy DIoU-NMS over boxes already sorted by descending score (CPU kernel).
 *
 * Box i suppresses a later box j when
 *     IoU(i, j) - (rho^2(i, j) / c^2(i, j))^beta > threshold
 * with rho the distance between the centres and c the diagonal of the smallest box
 * enclosing both. Unions and diagonals are clamped at DETLOSS_NMS_EPS before the
 * division, exactly as the portable torch path in detloss_plugin/functional/nms.py
 * does, so both paths take the same decisions: every pair is evaluated with the same
 * float32 operations in the same order (the build uses -ffp-contract=off, so no fused
 * multiply-add changes a rounding).
 *
 * Speed: the boxes are copied once into separate arrays (x1, y1, x2, y2, area and the
 * doubled centres), and for each kept box the sweep over the later boxes has no
 * branch, so the compiler vectorises it (an AVX2 clone is selected at load time on
 * x86-64 Linux with GCC; elsewhere the portable build). A box that is already
 * suppressed is evaluated again and stays suppressed (flags are or-ed), which is
 * cheaper than a branch per pair.
 *
 * Built on first use by detloss_plugin/functional/_kernels.py with the system C
 * compiler and loaded through ctypes (no Python or torch headers involved).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define DETLOSS_NMS_EPS 1e-12f

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DETLOSS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DETLOSS_CLONES
#endif

/* max/min written as comparisons so that they vectorise; equal to fmaxf/fminf for
 * non-NaN input (and to torch.maximum/minimum in value). */
static inline float max_f(float a, float b) { return a > b ? a : b; }
static inline float min_f(float a, float b) { return a < b ? a : b; }

typedef struct {
    const float *x1, *y1, *x2, *y2, *area, *cx, *cy;
} soa_boxes;

/* beta == 1: branch-free sweep of box i over boxes i+1 .. n-1. */
DETLOSS_CLONES
static void sweep_unit_beta(soa_boxes b, int64_t i, int64_t n, float threshold,
                            float offset, uint8_t *restrict suppressed) {
    const float ix1 = b.x1[i], iy1 = b.y1[i], ix2 = b.x2[i], iy2 = b.y2[i];
    const float iarea = b.area[i], icx = b.cx[i], icy = b.cy[i];
    const float *restrict x1 = b.x1, *restrict y1 = b.y1, *restrict x2 = b.x2;
    const float *restrict y2 = b.y2, *restrict area = b.area;
    const float *restrict cx = b.cx, *restrict cy = b.cy;
    for (int64_t j = i + 1; j < n; ++j) {
        const float w = max_f(min_f(ix2, x2[j]) - max_f(ix1, x1[j]) + offset, 0.0f);
        const float h = max_f(min_f(iy2, y2[j]) - max_f(iy1, y1[j]) + offset, 0.0f);
        const float inter = w * h;
        const float iou = inter / max_f(iarea + area[j] - inter, DETLOSS_NMS_EPS);
        const float cw = max_f(ix2, x2[j]) - min_f(ix1, x1[j]) + offset;
        const float ch = max_f(iy2, y2[j]) - min_f(iy1, y1[j]) + offset;
        const float dx = icx - cx[j], dy = icy - cy[j];
        /* centres are (x1 + x2) / 2: rho^2 = (dx^2 + dy^2) / 4 */
        const float penalty = 0.25f * (dx * dx + dy * dy) / max_f(cw * cw + ch * ch, DETLOSS_NMS_EPS);
        suppressed[j] |= (uint8_t)(iou - penalty > threshold);
    }
}

/* Any beta: the penalty (a powf) is only evaluated where IoU > threshold; elsewhere
 * IoU - penalty^beta <= IoU <= threshold cannot suppress. */
static void sweep_any_beta(soa_boxes b, int64_t i, int64_t n, float threshold, float beta,
                           float offset, uint8_t *suppressed) {
    const float ix1 = b.x1[i], iy1 = b.y1[i], ix2 = b.x2[i], iy2 = b.y2[i];
    const float iarea = b.area[i], icx = b.cx[i], icy = b.cy[i];
    for (int64_t j = i + 1; j < n; ++j) {
        if (suppressed[j]) continue;
        const float w = fmaxf(fminf(ix2, b.x2[j]) - fmaxf(ix1, b.x1[j]) + offset, 0.0f);
        const float h = fmaxf(fminf(iy2, b.y2[j]) - fmaxf(iy1, b.y1[j]) + offset, 0.0f);
        const float inter = w * h;
        const float iou = inter / fmaxf(iarea + b.area[j] - inter, DETLOSS_NMS_EPS);
        if (!(iou > threshold)) continue;
        const float cw = fmaxf(ix2, b.x2[j]) - fminf(ix1, b.x1[j]) + offset;
        const float ch = fmaxf(iy2, b.y2[j]) - fminf(iy1, b.y1[j]) + offset;
        const float dx = icx - b.cx[j], dy = icy - b.cy[j];
        const float penalty = powf(0.25f * (dx * dx + dy * dy) / fmaxf(cw * cw + ch * ch, DETLOSS_NMS_EPS), beta);
        if (iou - penalty > threshold) suppressed[j] = 1;
    }
}

/* boxes: n x 4 float32 (x1, y1, x2, y2), sorted by descending score. suppressed: n
 * zero-initialised bytes. keep: room for n indices. Returns the number kept, or -1 if
 * the working memory (7 n floats) could not be allocated. */
int64_t detloss_diou_nms_f32(const float *boxes, int64_t n, float threshold, float beta,
                             float offset, uint8_t *suppressed, int64_t *keep) {
    float *work = (float *)malloc(sizeof(float) * 7 * (size_t)(n > 0 ? n : 1));
    if (work == NULL) return -1;
    float *x1 = work, *y1 = work + n, *x2 = work + 2 * n, *y2 = work + 3 * n;
    float *area = work + 4 * n, *cx = work + 5 * n, *cy = work + 6 * n;
    for (int64_t j = 0; j < n; ++j) {
        x1[j] = boxes[4 * j];
        y1[j] = boxes[4 * j + 1];
        x2[j] = boxes[4 * j + 2];
        y2[j] = boxes[4 * j + 3];
        area[j] = (x2[j] - x1[j] + offset) * (y2[j] - y1[j] + offset);
        cx[j] = x1[j] + x2[j];
        cy[j] = y1[j] + y2[j];
    }
    const soa_boxes b = {x1, y1, x2, y2, area, cx, cy};
    const int unit_beta = beta == 1.0f;
    int64_t num_keep = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (suppressed[i]) continue;
        keep[num_keep++] = i;
        if (unit_beta)
            sweep_unit_beta(b, i, n, threshold, offset, suppressed);
        else
            sweep_any_beta(b, i, n, threshold, beta, offset, suppressed);
    }
    free(work);
    return num_keep;
}
