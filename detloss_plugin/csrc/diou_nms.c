/* Greedy DIoU-NMS over boxes already sorted by descending score (CPU kernel).
 *
 * Box i suppresses a later box j when
 *     IoU(i, j) - (rho^2(i, j) / c^2(i, j))^beta > threshold
 * with rho the distance between the centres and c the diagonal of the smallest box
 * enclosing both. Unions and diagonals are clamped at DETLOSS_NMS_EPS before the
 * division, exactly as the portable torch path in detloss_plugin/functional/nms.py
 * does, so both paths take the same decisions.
 *
 * Built on first use by detloss_plugin/functional/_nms_kernel.py with the system C
 * compiler and loaded through ctypes (no Python or torch headers involved).
 */
#include <math.h>
#include <stdint.h>

#define DETLOSS_NMS_EPS 1e-12f

int64_t detloss_diou_nms_f32(const float *boxes, int64_t n, float threshold, float beta,
                             float offset, uint8_t *suppressed, int64_t *keep) {
    int64_t num_keep = 0;
    const int unit_beta = beta == 1.0f;
    for (int64_t i = 0; i < n; ++i) {
        if (suppressed[i]) continue;
        keep[num_keep++] = i;
        const float ix1 = boxes[4 * i], iy1 = boxes[4 * i + 1];
        const float ix2 = boxes[4 * i + 2], iy2 = boxes[4 * i + 3];
        const float iarea = (ix2 - ix1 + offset) * (iy2 - iy1 + offset);
        const float icx = ix1 + ix2, icy = iy1 + iy2;
        for (int64_t j = i + 1; j < n; ++j) {
            if (suppressed[j]) continue;
            const float jx1 = boxes[4 * j], jy1 = boxes[4 * j + 1];
            const float jx2 = boxes[4 * j + 2], jy2 = boxes[4 * j + 3];
            const float w = fmaxf(fminf(ix2, jx2) - fmaxf(ix1, jx1) + offset, 0.0f);
            const float h = fmaxf(fminf(iy2, jy2) - fmaxf(iy1, jy1) + offset, 0.0f);
            const float inter = w * h;
            const float jarea = (jx2 - jx1 + offset) * (jy2 - jy1 + offset);
            const float iou = inter / fmaxf(iarea + jarea - inter, DETLOSS_NMS_EPS);
            const float cw = fmaxf(ix2, jx2) - fminf(ix1, jx1) + offset;
            const float ch = fmaxf(iy2, jy2) - fminf(iy1, jy1) + offset;
            const float dx = icx - (jx1 + jx2), dy = icy - (jy1 + jy2);
            /* centres are (x1 + x2) / 2: rho^2 = (dx^2 + dy^2) / 4 */
            float penalty = 0.25f * (dx * dx + dy * dy) / fmaxf(cw * cw + ch * ch, DETLOSS_NMS_EPS);
            if (!unit_beta) penalty = powf(penalty, beta);
            if (iou - penalty > threshold) suppressed[j] = 1;
        }
    }
    return num_keep;
}
