/* aelab's fused CPU kernels (see ckernels.py, which compiles and loads this file).
 *
 * Each function makes one pass over memory where eager PyTorch makes 6 to 12 (one kernel per
 * elementwise operation, each reading and writing the whole (models x batch x 784) output), and
 * one foreign call where PyTorch makes as many dispatches. Plain C99, no PyTorch headers: it
 * compiles in well under a second with any C compiler.
 *
 * Rounding contract (the engine's tests check it):
 *  - keras_adam, hidden_bwd and the gradients of out_logits and out_clipped_bce perform exactly
 *    the IEEE float operations, in the same order, as PyTorch's kernels on the autograd path
 *    (compiled with -ffp-contract=off, so no fused multiply-adds): with or without this library,
 *    training gives the same bits.
 *  - exp/log below are Cephes-style polynomials, accurate to ~2 ulp. They are used for loss values
 *    only (reported, never differentiated); the logits path's gradient takes PyTorch's sigmoid as
 *    an input ((sigmoid - y) / count, autograd's operations), so it too is PyTorch's to the bit.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* e^x, branch-free so loops over it vectorise. */
static inline float exp_f(float x) {
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365447505531f ? -87.3365447505531f : x;
    float fx = x * 1.44269504088896341f;
    /* round to nearest (|fx| < 2^22): adding and removing 1.5 * 2^23 drops the fraction */
    float n = (fx + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t e = (int32_t)n + 127;
    return p * bits_to_float((uint32_t)e << 23);
}

/* log(x) for finite x > 0 that is not denormal (callers guarantee x >= 1e-7). */
static inline float log_f(float x) {
    uint32_t u = float_to_bits(x);
    float e = (float)((int32_t)((u >> 23) & 0xff) - 126);
    float m = bits_to_float((u & 0x807fffffu) | 0x3f000000u); /* in [0.5, 1) */
    int small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y = y + -2.12194440e-4f * e;
    y = y - 0.5f * z;
    return (m + y) + 0.693359375f * e;
}

/* Sum LANES partial float sums in double. */
static inline double lanes_sum(const float *acc) {
    double s = 0.0;
    for (int i = 0; i < LANES; i++) s += acc[i];
    return s;
}

/* Binary cross-entropy with logits for M models (sigmoid output + BCE, Keras' from-logits path).
 *
 * z: (M, n) logits; y: targets, (M, n) or shared (y_stride = 0); per model m:
 *   loss[m] = mean(softplus(z) - z*y)     (softplus(z) = max(z, 0) + log(1 + e^-|z|))
 *   dz[m]   = (sigmoid(z) - y) * scale    when dz is not NULL
 */
static inline float exp_neg_abs(float zz) { return exp_f(-__builtin_fabsf(zz)); }

#define GROUP 32 /* values in [1/2, 2] multiplied per log: within 2^-32..2^32, far from under/overflow */

/* Sum over i of softplus(z_i) - z_i*y_i = max(z, 0) - z*y + log(1 + e^-|z|), and optionally the
 * gradient (sig_i - y_i) / count from PyTorch's sigmoid sig.
 * log(1 + e^-|z|) = -log sigmoid(|z|): with sig given, sigmoid(|z|) = 1/2 + |sig - 1/2| (in
 * [1/2, 1], so no exp at all); without, 1 + e^-|z| (in (1, 2]) from exp_f. The logs are taken of
 * products of GROUP such values, one log per GROUP elements instead of one each: the products'
 * rounding (GROUP half-ulps, ~2e-6 relative) is ~2e-6 absolute per log, far below what a float32
 * sum of 50,000 terms carries anyway. */
static inline __attribute__((always_inline)) double logits_sum(
    const float *restrict zm, const float *restrict ym, const float *restrict sm, int64_t n, float count,
    float *restrict dm, const int grad /* a literal at each call: the branch on it is compiled away */) {
    float acc[LANES] = {0};
    float ope[GROUP * LANES]; /* 1 + e^-|z| of one chunk */
    double tail = 0.0;
    int64_t i = 0;
    for (; i + GROUP * LANES <= n; i += GROUP * LANES) {
        for (int64_t c = 0; c < GROUP * LANES; c += LANES)
            for (int k = 0; k < LANES; k++) {
                float zz = zm[i + c + k], yy = ym[i + c + k];
                float relu = zz > 0.0f ? zz : 0.0f;
                acc[k] += relu - zz * yy;
                if (grad) {
                    float sg = sm[i + c + k];
                    ope[c + k] = 0.5f + __builtin_fabsf(sg - 0.5f);
                    dm[i + c + k] = (sg - yy) / count;
                } else {
                    ope[c + k] = 1.0f + exp_neg_abs(zz);
                }
            }
        float prod[LANES];
        for (int k = 0; k < LANES; k++) prod[k] = ope[k];
        for (int c = LANES; c < GROUP * LANES; c += LANES)
            for (int k = 0; k < LANES; k++) prod[k] *= ope[c + k];
        for (int k = 0; k < LANES; k++) acc[k] += grad ? -log_f(prod[k]) : log_f(prod[k]);
    }
    for (; i < n; i++) {
        float zz = zm[i], yy = ym[i];
        float relu = zz > 0.0f ? zz : 0.0f;
        if (grad) {
            tail += relu - zz * yy - log_f(0.5f + __builtin_fabsf(sm[i] - 0.5f));
            dm[i] = (sm[i] - yy) / count;
        } else {
            tail += relu - zz * yy + log_f(1.0f + exp_neg_abs(zz));
        }
    }
    return lanes_sum(acc) + tail;
}

void out_logits(const float *restrict z, const float *restrict y, const float *restrict sig, int64_t M,
                int64_t n, int64_t y_stride, float count, float *restrict dz, float *restrict loss) {
    for (int64_t m = 0; m < M; m++) {
        const float *zm = z + m * n, *ym = y + m * y_stride;
        double s = dz ? logits_sum(zm, ym, sig + m * n, n, count, dz + m * n, 1)
                      : logits_sum(zm, ym, 0, n, count, 0, 0);
        loss[m] = (float)(s / (double)n);
    }
}

/* Keras' clipped binary cross-entropy of an output a that is not a sigmoid, for M models.
 *
 *   p = clip(a, lo, hi);  loss[m] = -mean(y*log(p) + (1-y)*log(1-p))
 *   dz = [(p - y) / max((1-p)*p, 1e-12)] / count * (a == p)       (zero where clipped)
 * and, when relu_out, the relu's backward too: dz = a <= 0 ? 0 : dz. The gradient is PyTorch's
 * binary_cross_entropy_backward, the division by the element count, clamp's backward and
 * threshold_backward -- the kernels the autograd path runs, operation for operation. A NaN in a
 * makes the loss NaN (the loop's check stops the run) and propagates to dz as PyTorch's does.
 */
static inline float clip(float aa, float lo, float hi) {
    float p = aa < lo ? lo : aa;
    return p > hi ? hi : p;
}

static inline float clipped_term(float aa, float yy, float lo, float hi) {
    float p = aa < lo ? lo : aa;
    p = p > hi ? hi : p;
    float pc = (p == p) ? p : 0.5f; /* log only of values in [lo, hi]; NaN carried by (p - p) */
    float lp = log_f(pc), lq = log_f(1.0f - pc);
    return yy * (lp - lq) + lq + (p - p);
}

static inline float clipped_grad(float aa, float yy, float lo, float hi, float count, int relu_out) {
    float p = aa < lo ? lo : aa;
    p = p > hi ? hi : p;
    float den = (1.0f - p) * p;
    den = den < 1e-12f ? 1e-12f : den;
    float g = ((p - yy) / den) / count;
    g = g * (aa == p ? 1.0f : 0.0f);
    if (relu_out) g = aa <= 0.0f ? 0.0f : g;
    return g;
}

void out_clipped_bce(const float *restrict a, const float *restrict y, int64_t M, int64_t n, int64_t y_stride,
                     float lo, float hi, float count, int relu_out, float *restrict dz,
                     float *restrict loss) {
    for (int64_t m = 0; m < M; m++) {
        const float *am = a + m * n, *ym = y + m * y_stride;
        float *dm = dz ? dz + m * n : 0;
        /* sum of log(1-p) + y*log(p/(1-p)): the first through products of 4 values of 1-p (in
         * [eps, 1], so at least eps^4 = 1e-28, above float's smallest normal), one log per 4
         * elements; the second only in blocks where some y is not 0 (most of an MNIST image). */
        float acc[LANES] = {0}, nan[LANES] = {0};
        double tail = 0.0;
        int64_t i = 0;
        for (; i + 4 * LANES <= n; i += 4 * LANES) {
            const float *ab = am + i, *yb = ym + i;
            float ope[4 * LANES], ynz[LANES] = {0};
            for (int q = 0; q < 4 * LANES; q += LANES)
                for (int k = 0; k < LANES; k++) {
                    float p = clip(ab[q + k], lo, hi);
                    ope[q + k] = 1.0f - p;
                    nan[k] += p - p; /* a NaN in a makes the sum NaN */
                    ynz[k] += __builtin_fabsf(yb[q + k]);
                }
            for (int k = 0; k < LANES; k++)
                acc[k] += log_f((ope[k] * ope[LANES + k]) * (ope[2 * LANES + k] * ope[3 * LANES + k]));
            float any = 0.0f;
            for (int k = 0; k < LANES; k++) any += ynz[k];
            if (any != 0.0f)
                for (int q = 0; q < 4 * LANES; q += LANES)
                    for (int k = 0; k < LANES; k++) {
                        float p = clip(ab[q + k], lo, hi);
                        float pc = (p == p) ? p : 0.5f;
                        acc[k] += yb[q + k] * log_f(pc / (1.0f - pc));
                    }
        }
        for (int64_t j = i; j < n; j++) tail += clipped_term(am[j], ym[j], lo, hi);
        tail += lanes_sum(nan);
        if (dm)
            for (int64_t j = 0; j < n; j++) dm[j] = clipped_grad(am[j], ym[j], lo, hi, count, relu_out);
        loss[m] = (float)(-(lanes_sum(acc) + tail) / (double)n);
    }
}

/* Keras' Adam on flat float buffers, as keras.optimizers.Adam writes it:
 *   m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2);  p -= (m * alpha) / (sqrt(v) + eps)
 * with alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) computed by the caller. */
void keras_adam(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                float alpha, float one_m_b1, float one_m_b2, float eps) {
    for (int64_t i = 0; i < n; i++) {
        float gg = g[i];
        float mm = m[i] + (gg - m[i]) * one_m_b1;
        float vv = v[i] + (gg * gg - v[i]) * one_m_b2;
        m[i] = mm;
        v[i] = vv;
        p[i] = p[i] - (mm * alpha) / (__builtin_sqrtf(vv) + eps);
    }
}

/* dst[r] = src[idx[r]] for rows of d floats (an epoch's shuffled copy of a data set). */
void gather_rows(const float *restrict src, const int64_t *restrict idx, int64_t rows, int64_t d,
                 float *restrict dst) {
    for (int64_t r = 0; r < rows; r++) memcpy(dst + r * d, src + idx[r] * d, (size_t)d * sizeof(float));
}

/* A hidden layer's backward for M models, each with its activation (acts[m]: 0 linear, 1 relu,
 * 2 sigmoid), with the L1 activity penalty of the code layer when coef is not NULL:
 *   g  = da + sign(h) * coef[m]                      (coef[m] = lambda_m / B, as a float)
 *   dz = act'(g): relu  h <= 0 ? 0 : g               (PyTorch's threshold_backward)
 *                 sigmoid (g * (1 - h)) * h          (sigmoid_backward)
 * h is the activation's output. dz may be da (in place). With coef, also
 *   pen[m] = lambda_m * sum(abs(h)) / B, also added to loss[m] (reported, not differentiated). */
static inline __attribute__((always_inline)) void hidden_loop(
    const float *dm, const float *restrict hm, int64_t n, float c, float *om,
    const int act, const int with_pen /* literals at each call: one specialised loop each */) {
    for (int64_t i = 0; i < n; i++) {
        float hh = hm[i], g = dm[i];
        if (with_pen) g = g + (hh > 0.0f ? 1.0f : (hh < 0.0f ? -1.0f : 0.0f)) * c;
        float r;
        if (act == 1) r = hh <= 0.0f ? 0.0f : g;
        else if (act == 2) r = (g * (1.0f - hh)) * hh;
        else r = g;
        om[i] = r;
    }
}

#define HIDDEN_CASES(P)                                          \
    switch (acts[m]) {                                           \
    case 1: hidden_loop(dm, hm, n, c, om, 1, P); break;          \
    case 2: hidden_loop(dm, hm, n, c, om, 2, P); break;          \
    default: hidden_loop(dm, hm, n, c, om, 0, P);                \
    }

void hidden_bwd(const float *da, const float *restrict h, int64_t M, int64_t n, const int32_t *restrict acts,
                const float *restrict coef, const float *restrict lam, float B, float *dz,
                float *restrict pen, float *restrict loss) {
    for (int64_t m = 0; m < M; m++) {
        const float *dm = da + m * n, *hm = h + m * n;
        float *om = dz + m * n;
        const float c = coef ? coef[m] : 0.0f;
        if (coef) {
            float acc[LANES] = {0};
            double tail = 0.0;
            int64_t i = 0;
            for (; i + LANES <= n; i += LANES)
                for (int k = 0; k < LANES; k++) acc[k] += __builtin_fabsf(hm[i + k]);
            for (; i < n; i++) tail += __builtin_fabsf(hm[i]);
            float p = (float)(lanes_sum(acc) + tail) * lam[m] / B;
            pen[m] = p;
            loss[m] += p;
            HIDDEN_CASES(1)
        } else {
            HIDDEN_CASES(0)
        }
    }
}

/* A convolution with ONE output channel, stride 1, zero padding P on every side, K x K kernel, on a
 * channels-last (NHWC) input: the last layer of an image autoencoder (C feature maps -> 1 image).
 * oneDNN runs this shape at ~6 GFLOP/s (its kernels vectorise over output channels, of which there
 * is one); here every loop runs over the C contiguous input channels of a pixel instead.
 *   x: (N, H, W, C)   wt: (K, K, C), the kernel repacked (wt[kh][kw][c] = weight[0][c][kh][kw])
 *   y: (N, OH, OW) with OH = H + 2P - K + 1, OW = W + 2P - K + 1
 * Images n0 <= n < n1 only, so callers may split a batch between threads; every result below is
 * computed in an order that does not depend on the split (the same bits on any thread count).
 * Their rounding differs from oneDNN's (another summation order): these kernels are outside the
 * bit-for-bit contract above, which concerns the dense engine; they are tested to rounding.
 * C must be a multiple of 16 (V lanes): the caller checks. */
typedef float v16 __attribute__((vector_size(64)));
#define V 16

static inline v16 vload(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 vsplat(float f) { v16 v = {f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; return v; }
static inline float vsum(v16 v) { /* a fixed tree: 16 -> 8 -> 4 -> 2 -> 1 */
    float t[8];
    for (int k = 0; k < 8; k++) t[k] = v[k] + v[k + 8];
    for (int k = 0; k < 4; k++) t[k] = t[k] + t[k + 4];
    return (t[0] + t[2]) + (t[1] + t[3]);
}

void conv1_fwd(const float *restrict x, const float *restrict wt, float bias, int64_t H, int64_t W,
               int64_t C, int64_t K, int64_t P, int64_t n0, int64_t n1, float *restrict y) {
    const int64_t OH = H + 2 * P - K + 1, OW = W + 2 * P - K + 1;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t kh0 = P - oh > 0 ? P - oh : 0, kh1 = H + P - oh < K ? H + P - oh : K;
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t kw0 = P - ow > 0 ? P - ow : 0, kw1 = W + P - ow < K ? W + P - ow : K;
                const int64_t len = (kw1 - kw0) * C; /* the taps of one kernel row: contiguous in x */
                v16 acc = vsplat(0.0f);
                for (int64_t kh = kh0; kh < kh1; kh++) {
                    const float *xp = x + ((n * H + oh + kh - P) * W + ow + kw0 - P) * C;
                    const float *wp = wt + (kh * K + kw0) * C;
                    for (int64_t j = 0; j < len; j += V) acc += vload(xp + j) * vload(wp + j);
                }
                y[(n * OH + oh) * OW + ow] = vsum(acc) + bias;
            }
        }
}

/* conv1_fwd's gradient with respect to its input: gx (N, H, W, C) from g (N, OH, OW). */
void conv1_bwd_input(const float *restrict g, const float *restrict wt, int64_t H, int64_t W, int64_t C,
                     int64_t K, int64_t P, int64_t n0, int64_t n1, float *restrict gx) {
    const int64_t OH = H + 2 * P - K + 1, OW = W + 2 * P - K + 1;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t ih = 0; ih < H; ih++)
            for (int64_t iw = 0; iw < W; iw++) {
                float *dst = gx + ((n * H + ih) * W + iw) * C;
                for (int64_t c = 0; c < C; c += V) {
                    v16 acc = vsplat(0.0f);
                    for (int64_t kh = 0; kh < K; kh++) {
                        const int64_t oh = ih - kh + P;
                        if (oh < 0 || oh >= OH) continue;
                        for (int64_t kw = 0; kw < K; kw++) {
                            const int64_t ow = iw - kw + P;
                            if (ow < 0 || ow >= OW) continue;
                            acc += vsplat(g[(n * OH + oh) * OW + ow]) * vload(wt + (kh * K + kw) * C + c);
                        }
                    }
                    vstore(dst + c, acc);
                }
            }
}

/* conv1_fwd's gradients with respect to the kernel and the bias, one image at a time: gw_img
 * (n1 - n0, K, K, C) and gb_img (n1 - n0) get each image's own sums (the caller adds the images up
 * in order, so the result does not depend on how the batch was split between threads). */
void conv1_bwd_weight(const float *restrict g, const float *restrict x, int64_t H, int64_t W, int64_t C,
                      int64_t K, int64_t P, int64_t n0, int64_t n1, float *restrict gw_img,
                      float *restrict gb_img) {
    const int64_t OH = H + 2 * P - K + 1, OW = W + 2 * P - K + 1, KKC = K * K * C;
    for (int64_t n = n0; n < n1; n++) {
        float *gw = gw_img + (n - n0) * KKC;
        memset(gw, 0, (size_t)KKC * sizeof(float));
        double gb = 0.0; /* one term per pixel: double costs nothing here and keeps the bias exact */
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t kh0 = P - oh > 0 ? P - oh : 0, kh1 = H + P - oh < K ? H + P - oh : K;
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t kw0 = P - ow > 0 ? P - ow : 0, kw1 = W + P - ow < K ? W + P - ow : K;
                const int64_t len = (kw1 - kw0) * C;
                const float gv = g[(n * OH + oh) * OW + ow];
                const v16 gs = vsplat(gv);
                gb += gv;
                for (int64_t kh = kh0; kh < kh1; kh++) {
                    const float *xp = x + ((n * H + oh + kh - P) * W + ow + kw0 - P) * C;
                    float *wp = gw + (kh * K + kw0) * C;
                    for (int64_t j = 0; j < len; j += V) vstore(wp + j, vload(wp + j) + gs * vload(xp + j));
                }
            }
        }
        gb_img[n - n0] = (float)gb;
    }
}

/* dst[d] = sum over n of src[n][d] for src (N, D), the rows added one after the other. */
void sum_rows(const float *restrict src, int64_t N, int64_t D, float *restrict dst) {
    for (int64_t d = 0; d < D; d++) dst[d] = src[d];
    for (int64_t n = 1; n < N; n++)
        for (int64_t d = 0; d < D; d++) dst[d] += src[n * D + d];
}
