"""Per-row losses over 2-D ``(M, C)`` arrays: the loss of each row and its gradient.

The caller reshapes ``(N, ..., C)`` to ``(M, C)``. Every kernel writes ``loss_out`` (M,) with the
per-row loss and ``grad_out`` (M, C) with d(loss_row)/d(pred), *not* divided by M: the caller
scales for its reduction. The math follows Keras 3 (torch backend): probabilities are clipped to
``[eps, 1 - eps]`` and the gradient is zero where the clip is active. Scalars such as ``eps`` are
cast to the array dtype inside the kernel, so float32 stays float32 whatever the caller passes.

The kernels are serial: a loss is a few flops per element next to the layers that feed it, and
thread start-up would cost more than it saves at the usual batch sizes. ``error_model="numpy"``
lets LLVM vectorize the divisions and gives inf/nan (as Keras does) instead of raising.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def categorical_crossentropy(probs, targets, eps, loss_out, grad_out):
    """Keras CCE on row-renormalized, clipped probs; loss_out (M,), the other arrays (M, C)."""
    rows, cols = probs.shape
    lo = probs.dtype.type(eps)
    hi = probs.dtype.type(1) - lo
    for i in range(rows):
        total = probs[i, 0] - probs[i, 0]
        for j in range(cols):
            total += probs[i, j]
        loss = total - total
        dot = total - total
        for j in range(cols):
            p = probs[i, j] / total
            t = targets[i, j]
            q = min(max(p, lo), hi)
            loss -= t * np.log(q)
            g = -t / q if lo <= p <= hi else p - p
            grad_out[i, j] = g
            dot += g * p
        loss_out[i] = loss
        for j in range(cols):
            grad_out[i, j] = (grad_out[i, j] - dot) / total


@njit(cache=True, error_model="numpy")
def sparse_categorical_crossentropy(probs, labels, eps, loss_out, grad_out):
    """CCE with integer labels (M,) in [0, C); probs, grad_out (M, C), loss_out (M,)."""
    rows, cols = probs.shape
    lo = probs.dtype.type(eps)
    one = probs.dtype.type(1)
    hi = one - lo
    for i in range(rows):
        total = probs[i, 0] - probs[i, 0]
        for j in range(cols):
            total += probs[i, j]
        k = labels[i]
        p = probs[i, k] / total
        q = min(max(p, lo), hi)
        loss_out[i] = -np.log(q)
        g = -one / q if lo <= p <= hi else p - p
        dot = g * p
        for j in range(cols):
            grad_out[i, j] = -dot / total
        grad_out[i, k] = (g - dot) / total


@njit(cache=True, error_model="numpy")
def softmax_cross_entropy_logits(logits, targets, loss_out, grad_out):
    """Fused stable log-softmax + CCE; logits, targets, grad_out (M, C), loss_out (M,)."""
    rows, cols = logits.shape
    for i in range(rows):
        peak = logits[i, 0]
        for j in range(1, cols):
            peak = max(peak, logits[i, j])
        total = peak - peak
        tsum = peak - peak
        for j in range(cols):
            total += np.exp(logits[i, j] - peak)
            tsum += targets[i, j]
        log_total = np.log(total)
        loss = peak - peak
        for j in range(cols):
            log_p = logits[i, j] - peak - log_total
            loss -= targets[i, j] * log_p
            grad_out[i, j] = np.exp(log_p) * tsum - targets[i, j]
        loss_out[i] = loss


@njit(cache=True, error_model="numpy")
def sparse_softmax_cross_entropy_logits(logits, labels, loss_out, grad_out):
    """Fused stable log-softmax + CCE with integer labels (M,); logits, grad_out (M, C)."""
    rows, cols = logits.shape
    for i in range(rows):
        peak = logits[i, 0]
        for j in range(1, cols):
            peak = max(peak, logits[i, j])
        total = peak - peak
        for j in range(cols):
            total += np.exp(logits[i, j] - peak)
        log_total = np.log(total)
        k = labels[i]
        loss_out[i] = peak + log_total - logits[i, k]
        for j in range(cols):
            grad_out[i, j] = np.exp(logits[i, j] - peak - log_total)
        grad_out[i, k] -= logits.dtype.type(1)


@njit(cache=True, error_model="numpy")
def binary_crossentropy(probs, targets, eps, loss_out, grad_out):
    """Keras BCE on clipped probabilities, row loss = mean over C; all (M, C) but loss_out (M,)."""
    rows, cols = probs.shape
    lo = probs.dtype.type(eps)
    one = probs.dtype.type(1)
    hi = one - lo
    inv_c = one / probs.dtype.type(cols)
    for i in range(rows):
        loss = lo - lo
        for j in range(cols):
            p = probs[i, j]
            t = targets[i, j]
            q = min(max(p, lo), hi)
            loss -= t * np.log(q) + (one - t) * np.log(one - q)
            if lo <= p <= hi:
                grad_out[i, j] = (q - t) / (q * (one - q)) * inv_c
            else:
                grad_out[i, j] = 0
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def binary_crossentropy_logits(logits, targets, loss_out, grad_out):
    """Stable BCE on logits, row loss = mean over C; loss_out (M,), the other arrays (M, C)."""
    rows, cols = logits.shape
    one = logits.dtype.type(1)
    inv_c = one / logits.dtype.type(cols)
    for i in range(rows):
        loss = one - one
        for j in range(cols):
            x = logits[i, j]
            t = targets[i, j]
            e = np.exp(-abs(x))
            loss += max(x, one - one) - x * t + np.log1p(e)
            sig = one / (one + e) if x >= 0 else e / (one + e)
            grad_out[i, j] = (sig - t) * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def mean_squared_error(pred, target, loss_out, grad_out):
    """Row mean of (pred - target)**2; pred, target, grad_out (M, C); loss_out (M,)."""
    rows, cols = pred.shape
    inv_c = pred.dtype.type(1) / pred.dtype.type(cols)
    for i in range(rows):
        loss = inv_c - inv_c
        for j in range(cols):
            d = pred[i, j] - target[i, j]
            loss += d * d
            grad_out[i, j] = (d + d) * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def mean_absolute_error(pred, target, loss_out, grad_out):
    """Row mean of |pred - target|, grad sign/C (0 at ties); loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    inv_c = pred.dtype.type(1) / pred.dtype.type(cols)
    for i in range(rows):
        loss = inv_c - inv_c
        for j in range(cols):
            d = pred[i, j] - target[i, j]
            loss += abs(d)
            if d > 0:
                grad_out[i, j] = inv_c
            elif d < 0:
                grad_out[i, j] = -inv_c
            else:
                grad_out[i, j] = 0
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def huber(pred, target, delta, loss_out, grad_out):
    """Row mean of Huber(pred - target), quadratic up to ``delta``; loss_out (M,), the rest
    (M, C)."""
    rows, cols = pred.shape
    d = pred.dtype.type(delta)
    half = pred.dtype.type(0.5)
    inv_c = pred.dtype.type(1) / pred.dtype.type(cols)
    for i in range(rows):
        loss = d - d
        for j in range(cols):
            e = pred[i, j] - target[i, j]
            a = abs(e)
            if a <= d:
                loss += half * e * e
                grad_out[i, j] = e * inv_c
            else:
                loss += d * a - half * d * d
                grad_out[i, j] = (d if e > 0 else -d) * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def log_cosh(pred, target, loss_out, grad_out):
    """Row mean of log(cosh(pred - target)), computed stably; loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    one = pred.dtype.type(1)
    two = pred.dtype.type(2)
    log2 = pred.dtype.type(0.6931471805599453)
    inv_c = one / pred.dtype.type(cols)
    for i in range(rows):
        loss = one - one
        for j in range(cols):
            x = pred[i, j] - target[i, j]
            a = abs(x)
            loss += a + np.log1p(np.exp(-two * a)) - log2
            grad_out[i, j] = np.tanh(x) * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def kl_divergence(probs, targets, eps, loss_out, grad_out):
    """Row sum of t * log(t / p), both clipped to [eps, 1]; loss_out (M,), the rest (M, C)."""
    rows, cols = probs.shape
    lo = probs.dtype.type(eps)
    one = probs.dtype.type(1)
    for i in range(rows):
        loss = lo - lo
        for j in range(cols):
            p = probs[i, j]
            t = min(max(targets[i, j], lo), one)
            q = min(max(p, lo), one)
            loss += t * np.log(t / q)
            grad_out[i, j] = -t / q if lo <= p <= one else p - p
        loss_out[i] = loss


@njit(cache=True, error_model="numpy")
def poisson(pred, target, eps, loss_out, grad_out):
    """Row mean of pred - target * log(pred + eps); loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    e = pred.dtype.type(eps)
    one = pred.dtype.type(1)
    inv_c = one / pred.dtype.type(cols)
    for i in range(rows):
        loss = e - e
        for j in range(cols):
            p = pred[i, j] + e
            t = target[i, j]
            loss += pred[i, j] - t * np.log(p)
            grad_out[i, j] = (one - t / p) * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def hinge(pred, target, squared, loss_out, grad_out):
    """Row mean of max(1 - t * p, 0), squared if ``squared``; targets in {-1, 1}; (M, C) arrays
    but loss_out (M,)."""
    rows, cols = pred.shape
    one = pred.dtype.type(1)
    two = pred.dtype.type(2)
    inv_c = one / pred.dtype.type(cols)
    for i in range(rows):
        loss = one - one
        for j in range(cols):
            t = target[i, j]
            margin = one - t * pred[i, j]
            if margin > 0:
                if squared:
                    loss += margin * margin
                    grad_out[i, j] = -two * t * margin * inv_c
                else:
                    loss += margin
                    grad_out[i, j] = -t * inv_c
            else:
                grad_out[i, j] = 0
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def categorical_hinge(pred, target, loss_out, grad_out):
    """max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0) per row; loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    one = pred.dtype.type(1)
    for i in range(rows):
        pos = one - one
        worst = 0
        neg = (one - target[i, 0]) * pred[i, 0]
        for j in range(cols):
            pos += target[i, j] * pred[i, j]
            value = (one - target[i, j]) * pred[i, j]
            if value > neg:
                neg = value
                worst = j
        loss = neg - pos + one
        if loss > 0:
            loss_out[i] = loss
            for j in range(cols):
                grad_out[i, j] = -target[i, j]
            grad_out[i, worst] += one - target[i, worst]
        else:
            loss_out[i] = 0
            for j in range(cols):
                grad_out[i, j] = 0


@njit(cache=True, error_model="numpy")
def mean_absolute_percentage_error(pred, target, eps, loss_out, grad_out):
    """Row mean of 100 * |t - p| / max(|t|, eps); loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    e = pred.dtype.type(eps)
    scale = pred.dtype.type(100) / pred.dtype.type(cols)
    for i in range(rows):
        loss = e - e
        for j in range(cols):
            d = pred[i, j] - target[i, j]
            inv = scale / max(abs(target[i, j]), e)
            loss += abs(d) * inv
            if d > 0:
                grad_out[i, j] = inv
            elif d < 0:
                grad_out[i, j] = -inv
            else:
                grad_out[i, j] = 0
        loss_out[i] = loss


@njit(cache=True, error_model="numpy")
def mean_squared_logarithmic_error(pred, target, eps, loss_out, grad_out):
    """Row mean of (log(max(p, eps) + 1) - log(max(t, eps) + 1))**2; loss_out (M,), the rest
    (M, C)."""
    rows, cols = pred.shape
    e = pred.dtype.type(eps)
    one = pred.dtype.type(1)
    two = pred.dtype.type(2)
    inv_c = one / pred.dtype.type(cols)
    for i in range(rows):
        loss = e - e
        for j in range(cols):
            p = max(pred[i, j], e) + one
            d = np.log(p) - np.log(max(target[i, j], e) + one)
            loss += d * d
            grad_out[i, j] = two * d / p * inv_c if pred[i, j] > e else e - e
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def cosine_similarity(pred, target, eps, loss_out, grad_out):
    """-cos(pred, target) per row, norms' inverses capped at 1 / eps as Keras's normalize;
    loss_out (M,), the rest (M, C)."""
    rows, cols = pred.shape
    one = pred.dtype.type(1)
    cap = one / pred.dtype.type(eps)
    for i in range(rows):
        pp = one - one
        tt = one - one
        tp = one - one
        for j in range(cols):
            pp += pred[i, j] * pred[i, j]
            tt += target[i, j] * target[i, j]
            tp += target[i, j] * pred[i, j]
        inv_p = one / np.sqrt(pp)
        inv_t = min(one / np.sqrt(tt), cap)
        capped = not inv_p < cap
        inv_p = min(inv_p, cap)
        scale = inv_p * inv_t
        loss_out[i] = -scale * tp
        along = tp * inv_p * inv_p
        for j in range(cols):
            if capped:
                grad_out[i, j] = -scale * target[i, j]
            else:
                grad_out[i, j] = -scale * (target[i, j] - along * pred[i, j])


@njit(cache=True, error_model="numpy")
def binary_focal_crossentropy(
    pred, targets, from_logits, balanced, alpha, gamma, eps, loss_out, grad_out
):
    """Keras's binary focal crossentropy, row mean over C: (1 - p_t)**gamma * BCE on probabilities
    clipped to [eps, 1 - eps] (sigmoid first if ``from_logits``), times alpha / (1 - alpha) if
    ``balanced``; loss_out (M,), the other arrays (M, C)."""
    rows, cols = pred.shape
    lo = pred.dtype.type(eps)
    one = pred.dtype.type(1)
    two = pred.dtype.type(2)
    hi = one - lo
    a = pred.dtype.type(alpha)
    g = pred.dtype.type(gamma)
    inv_c = one / pred.dtype.type(cols)
    for i in range(rows):
        loss = lo - lo
        for j in range(cols):
            x = pred[i, j]
            t = targets[i, j]
            if from_logits:
                e = np.exp(-abs(x))
                s = one / (one + e) if x >= 0 else e / (one + e)
            else:
                s = x
            q = min(max(s, lo), hi)
            bce = -(t * np.log(q) + (one - t) * np.log(one - q))
            d_bce = (q - t) / (q * (one - q)) if lo <= s <= hi else lo - lo
            base = one - (t * s + (one - t) * (one - s))
            focal = base**g
            d_focal = g * base ** (g - one) * (one - two * t) if g != 0 else lo - lo
            weight = t * a + (one - t) * (one - a) if balanced else one
            loss += weight * focal * bce
            d = weight * (d_focal * bce + focal * d_bce)
            if from_logits:
                d *= s * (one - s)
            grad_out[i, j] = d * inv_c
        loss_out[i] = loss * inv_c


@njit(cache=True, error_model="numpy")
def categorical_focal_crossentropy(
    pred, targets, from_logits, alpha, gamma, eps, loss_out, grad_out
):
    """Keras's categorical focal crossentropy per row: sum_j alpha_j (1 - o_j)**gamma
    (-t_j log o_j), o the row-renormalized probabilities (softmax first if ``from_logits``)
    clipped to [eps, 1 - eps]; alpha (C,), loss_out (M,), the other arrays (M, C)."""
    rows, cols = pred.shape
    lo = pred.dtype.type(eps)
    one = pred.dtype.type(1)
    hi = one - lo
    g = pred.dtype.type(gamma)
    probs = np.empty(cols, pred.dtype)
    for i in range(rows):
        if from_logits:
            peak = pred[i, 0]
            for j in range(1, cols):
                peak = max(peak, pred[i, j])
            denom = one - one
            for j in range(cols):
                probs[j] = np.exp(pred[i, j] - peak)
                denom += probs[j]
            for j in range(cols):
                probs[j] /= denom
        else:
            for j in range(cols):
                probs[j] = pred[i, j]
        total = one - one
        for j in range(cols):
            total += probs[j]
        loss = one - one
        dot = one - one
        for j in range(cols):
            o = probs[j] / total
            c = min(max(o, lo), hi)
            t = targets[i, j]
            log_c = np.log(c)
            focal = (one - c) ** g
            loss -= alpha[j] * focal * t * log_c
            d = lo - lo
            if lo <= o <= hi:
                d_focal = g * (one - c) ** (g - one) if g != 0 else lo - lo
                d = alpha[j] * t * (d_focal * log_c - focal / c)
            grad_out[i, j] = d
            dot += d * o
        loss_out[i] = loss
        for j in range(cols):
            grad_out[i, j] = (grad_out[i, j] - dot) / total
        if from_logits:
            dot = one - one
            for j in range(cols):
                dot += grad_out[i, j] * probs[j]
            for j in range(cols):
                grad_out[i, j] = probs[j] * (grad_out[i, j] - dot)
