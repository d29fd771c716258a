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
