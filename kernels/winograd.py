"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), NHWC.

Each 2x2 block of output pixels (a tile) comes from a 4x4 window of the input. With the input
transform V = Bt d B of every window, the kernel transform U = G g Gt and the output transform
Y = At M A, the convolution is 16 independent GEMMs M[k] (tiles, F) = V[k] (tiles, C) @ U[k]
(C, F), k = 4 * row + column of the 4x4: 16 multiplications per tile and channel pair instead
of im2col's 36 (2.25x fewer). The backward runs the transforms' adjoints: dM = A dY At,
dU[k] = V[k].T @ dM[k] (then dkernel = Gt dU G) and dV[k] = dM[k] @ U[k].T (then
dx += B dV Bt over each window).

A tile's 2x2 output pixels are the window of a 2x2 stride-2 max pool, so a conv read by such a
pool is pooled in the output transform (and its backward unpools in the gradient's transform):
the conv's output never reaches memory.

The transforms' coefficients are 0, +-1 and +-1/2, so the float32 error is that of a GEMM.
Per chunk of tiles the transforms run here and the GEMMs in numpy (one stacked ``np.matmul``),
on blocks of images on up to ``threads`` threads (``gemm.row_blocks``).
Layouts: V (tiles, 16, C) and M (tiles, 16, F), one tile's values contiguous.
"""

import numpy as np
from numba import njit

from .activations import _activate_row
from .codes import LINEAR, RELU
from .gemm import row_blocks
from .pooling import first_max4

# A 3x3 stride-1 kernel with at least this many input channels runs here: fewer make the GEMMs
# too thin for the transforms to pay off (a first layer on grey or RGB images runs direct).
MIN_CHANNELS = 8
# Tiles per chunk: V and M of a chunk (~1 MB at 32 in and 64 out channels) stay in cache.
CHUNK_BYTES = 1 << 20

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def applies(kernel_shape, strides) -> bool:
    """Whether a conv with this kernel (kh,kw,C,F) and strides runs by Winograd here."""
    kh, kw, c, _ = kernel_shape
    return (kh, kw) == (3, 3) and tuple(strides) == (1, 1) and c >= MIN_CHANNELS


def kernel_transform(kernel):
    """U (16,C,F) = G g Gt for each (C,F) pair of kernel (3,3,C,F)."""
    g = _G.astype(kernel.dtype)
    rows = np.tensordot(g, kernel, axes=(1, 0))  # (4, 3, C, F)
    u = np.tensordot(g, rows, axes=(1, 1))  # (4 columns, 4 rows, C, F)
    return np.ascontiguousarray(u.transpose(1, 0, 2, 3)).reshape(16, *kernel.shape[2:])


def kernel_transform_adjoint(du, dkernel):
    """dkernel (3,3,C,F) += Gt dU G for du (16,C,F): the kernel gradient from U's."""
    g = _G.astype(du.dtype)
    du = du.reshape(4, 4, *du.shape[1:])
    rows = np.tensordot(g, du, axes=(0, 0))  # (3, 4, C, F)
    dkernel += np.tensordot(g, rows, axes=(0, 1)).transpose(1, 0, 2, 3)


def _chunk_tiles(c, f, itemsize):
    return max(16, CHUNK_BYTES // (16 * (c + f) * itemsize))


def forward(x, u, bias, pad_top, pad_left, code, out, threads=1, pooled=False, codes=None):
    """out (N,oh,ow,F) = act(x (N,H,W,C) conv kernel (3,3,C,F) + bias (F,) or (0,)), stride 1,
    given u = ``kernel_transform(kernel)`` (16,C,F); with ``pooled``, out (N,oh//2,ow//2,F) is
    its 2x2 stride-2 'valid' max pool instead, and codes (same shape, uint8; None or empty for
    none) where each maximum was."""
    x = np.ascontiguousarray(x)
    n, _, _, c = x.shape
    f = u.shape[2]
    tiles_h, tiles_w = (out.shape[1], out.shape[2]) if pooled else _tile_grid(out.shape)
    per_image = tiles_h * tiles_w
    step = _chunk_tiles(c, f, x.itemsize)
    if codes is None:
        codes = np.empty((0, 0, 0, 0), np.uint8)
    grid = (tiles_h, tiles_w)

    def run(first, last):
        v = np.empty((min(step, (last - first) * per_image), 16, c), x.dtype)
        m = np.empty((len(v), 16, f), x.dtype)
        for t0 in range(first * per_image, last * per_image, step):
            t1 = min(last * per_image, t0 + step)
            vc, mc = v[: t1 - t0], m[: t1 - t0]
            input_transform(x, pad_top, pad_left, *grid, t0, t1, vc)
            np.matmul(vc.transpose(1, 0, 2), u, out=mc.transpose(1, 0, 2))
            if pooled:
                output_transform_max_pool(mc, bias, code, *grid, t0, t1, out, codes)
            else:
                output_transform(mc, bias, code, *grid, t0, t1, out)

    row_blocks(run, n, threads, 1)
    return out


def backward(grad, codes, x, kernel, pad_top, pad_left, out_h, out_w, dkernel, dx, threads=1):
    """dx (N,H,W,C), if not None, = the input's gradient, and dkernel (3,3,C,F), if not None,
    += the kernel's, of ``forward``'s conv from grad = dL/dz: (N,oh,ow,F), or with ``codes``
    (not None) the gradient at its 2x2 max pool's maxima (N,oh//2,ow//2,F) where codes says."""
    x = np.ascontiguousarray(x)
    grad = np.ascontiguousarray(grad)
    n, _, _, c = x.shape
    f = kernel.shape[3]
    u_t = np.ascontiguousarray(kernel_transform(kernel).transpose(0, 2, 1))  # (16, F, C)
    if codes is None:
        codes = np.empty((0, 0, 0, 0), np.uint8)
        grid = _tile_grid((n, out_h, out_w))
    else:
        grid = (grad.shape[1], grad.shape[2])
    per_image = grid[0] * grid[1]
    step = _chunk_tiles(c, f, x.itemsize)
    parts = []

    def run(first, last):
        v = np.empty((min(step, (last - first) * per_image), 16, c), x.dtype)
        dm = np.empty((len(v), 16, f), x.dtype)
        du = None if dkernel is None else np.zeros((16, c, f), x.dtype)
        if dx is not None:
            dx[first:last] = 0
        for t0 in range(first * per_image, last * per_image, step):
            t1 = min(last * per_image, t0 + step)
            vc, dmc = v[: t1 - t0], dm[: t1 - t0]
            grad_transform(grad, codes, *grid, t0, t1, dmc)
            if du is not None:
                input_transform(x, pad_top, pad_left, *grid, t0, t1, vc)
                du += np.matmul(vc.transpose(1, 2, 0), dmc.transpose(1, 0, 2))
            if dx is not None:
                np.matmul(dmc.transpose(1, 0, 2), u_t, out=vc.transpose(1, 0, 2))
                input_transform_adjoint(vc, pad_top, pad_left, *grid, t0, t1, dx)
        if du is not None:
            parts.append(du)

    row_blocks(run, n, threads, 1)
    if parts:
        kernel_transform_adjoint(sum(parts), dkernel)
    return dx


def _tile_grid(out_shape):
    """(tiles_h, tiles_w): 2x2 tiles covering an output (N, oh, ow, ...), the last ones cut."""
    return -(-out_shape[1] // 2), -(-out_shape[2] // 2)


# ---- the transforms, per chunk of tiles t0..t1 of N * tiles_h * tiles_w -------------------------
# They work on flat arrays at unsigned offsets, inlined: per tile they run ~40 loops of one row
# of channels each, where making a view (reference counting) or checking a signed index for
# wraparound costs as much as the loop (views measured 2.5x slower). Each loop stores into one
# array: a loop storing into two fails LLVM's overlap checks and runs scalar.


@njit(cache=True, nogil=True, error_model="numpy")
def input_transform(x, pad_top, pad_left, tiles_h, tiles_w, t0, t1, v):
    """v (t1-t0,16,C) = Bt d B of each tile's 4x4 window d of x (N,H,W,C), 0 outside x."""
    _, h, w, c = x.shape
    xs, vs = x.reshape(-1), v.reshape(-1)
    window = np.empty(16 * c, dtype=x.dtype)  # a window that crosses x's border
    rows = np.empty(16 * c, dtype=x.dtype)  # Bt d, 4 rows of 4 pixels
    for t in range(t0, t1):
        n, r0, c0 = _tile_origin(t, tiles_h, tiles_w, pad_top, pad_left)
        if r0 >= 0 and r0 + 4 <= h and c0 >= 0 and c0 + 4 <= w:
            _bt(xs, _runs(((n * h + r0) * w + c0) * c, w * c), rows, _runs(0, 4 * c), _u(4 * c))
        else:
            _window(xs, n, r0, c0, h, w, c, 4, window)
            _bt(window, _runs(0, 4 * c), rows, _runs(0, 4 * c), _u(4 * c))
        for p in range(4):
            out = ((t - t0) * 4 + p) * 4 * c
            _bt(rows, _runs(p * 4 * c, c), vs, _runs(out, c), _u(c))


@njit(cache=True, nogil=True, error_model="numpy")
def output_transform(m, bias, code, tiles_h, tiles_w, t0, t1, out):
    """out (N,oh,ow,F) = act(At M A + bias) of each tile's m (t1-t0,16,F), pixels inside out."""
    _, out_h, out_w, f = out.shape
    ms, outs = m.reshape(-1), out.reshape(-1)
    y = np.empty(4 * f, dtype=m.dtype)  # the tile's 4 pixels
    rows = np.empty(8 * f, dtype=m.dtype)  # At M
    for t in range(t0, t1):
        n, r0, c0 = _tile_origin(t, tiles_h, tiles_w, 0, 0)
        _tile_output(ms, (t - t0) * 16 * f, bias, code, f, rows, y)
        for k in range(4):
            r, col = r0 + k // 2, c0 + k % 2
            if r < out_h and col < out_w:
                at, src = _u(((n * out_h + r) * out_w + col) * f), _u(k * f)
                for j in range(_u(f)):
                    outs[at + j] = y[src + j]


@njit(cache=True, nogil=True, error_model="numpy")
def output_transform_max_pool(m, bias, code, tiles_h, tiles_w, t0, t1, pooled, codes):
    """pooled (N,tiles_h,tiles_w,F) = the max of each tile's act(At M A + bias), codes (same
    shape, uint8, unless empty) where it was (``pooling.max_2x2_row_codes``'s codes)."""
    f = pooled.shape[3]
    ms, pooled_s, codes_s = m.reshape(-1), pooled.reshape(-1), codes.reshape(-1)
    y = np.empty(4 * f, dtype=m.dtype)
    rows = np.empty(8 * f, dtype=m.dtype)
    for t in range(t0, t1):
        _tile_output(ms, (t - t0) * 16 * f, bias, code, f, rows, y)
        at = _u(t * f)  # the tiles are the pooled pixels
        p0, p1, p2, p3 = _runs(0, f)
        for j in range(_u(f)):
            top, bottom = max(y[p0 + j], y[p1 + j]), max(y[p2 + j], y[p3 + j])
            pooled_s[at + j] = max(top, bottom)
        if codes.shape[0] == 0:
            continue
        for j in range(_u(f)):  # the first maximum on ties, as the pooling kernels
            codes_s[at + j] = first_max4(y[p0 + j], y[p1 + j], y[p2 + j], y[p3 + j])[1]


@njit(cache=True, nogil=True, error_model="numpy")
def grad_transform(grad, codes, tiles_h, tiles_w, t0, t1, dm):
    """dm (t1-t0,16,F) = A dY At of each tile's output gradient dY (2x2): from grad (N,oh,ow,F)
    (0 outside it) if codes is empty, else unpooled from grad (N,tiles_h,tiles_w,F), the
    gradient of the tiles' 2x2 max pool, at the maxima codes marks."""
    _, grad_h, grad_w, f = grad.shape
    gs, cs, dms = grad.reshape(-1), codes.reshape(-1), dm.reshape(-1)
    zero = grad.dtype.type(0)
    dy = np.empty(4 * f, dtype=grad.dtype)  # the tile's 2 rows of 2 pixels
    rows = np.empty(8 * f, dtype=grad.dtype)  # A dY, 4 rows of 2 pixels
    for t in range(t0, t1):
        if codes.shape[0] > 0:  # a tile is a pooled pixel
            at = _u(t * f)
            for k in range(4):
                dst, here = _u(k * f), np.uint8(k)
                for j in range(_u(f)):
                    dy[dst + j] = gs[at + j] if cs[at + j] == here else zero
        else:
            n, r0, c0 = _tile_origin(t, tiles_h, tiles_w, 0, 0)
            _window(gs, n, r0, c0, grad_h, grad_w, f, 2, dy)
        _a(dy, _runs(0, 2 * f), rows, _runs(0, 2 * f), _u(2 * f))
        for p in range(4):
            _a(rows, _runs(p * 2 * f, f), dms, _runs(((t - t0) * 4 + p) * 4 * f, f), _u(f))


@njit(cache=True, nogil=True, error_model="numpy")
def input_transform_adjoint(dv, pad_top, pad_left, tiles_h, tiles_w, t0, t1, dx):
    """dx (N,H,W,C) += B dV Bt of each tile's dv (t1-t0,16,C) over its 4x4 window, inside dx."""
    _, h, w, c = dx.shape
    dvs, dxs = dv.reshape(-1), dx.reshape(-1)
    rows = np.empty(16 * c, dtype=dx.dtype)  # B dV
    window = np.empty(16 * c, dtype=dx.dtype)
    for t in range(t0, t1):
        n, r0, c0 = _tile_origin(t, tiles_h, tiles_w, pad_top, pad_left)
        _b(dvs, _runs((t - t0) * 16 * c, 4 * c), rows, _runs(0, 4 * c), _u(4 * c))
        for p in range(4):
            _b(rows, _runs(p * 4 * c, c), window, _runs(p * 4 * c, c), _u(c))
        lo, hi = max(0, -c0), min(4, w - c0)
        for p in range(4):
            r = r0 + p
            if 0 <= r < h and lo < hi:
                at, src = _u(((n * h + r) * w + c0 + lo) * c), _u((p * 4 + lo) * c)
                for k in range(_u((hi - lo) * c)):
                    dxs[at + k] += window[src + k]


@njit(cache=True, inline="always")
def _u(i):
    """i as an unsigned offset: indexing with one skips the wraparound check of a signed one,
    which keeps a loop from vectorizing. (An int literal times an unsigned is signed again.)"""
    return np.uint64(i)


@njit(cache=True, inline="always")
def _runs(start, step):
    """The unsigned offsets of four runs: start, start + step, ... start + 3 step."""
    return _u(start), _u(start + step), _u(start + 2 * step), _u(start + 3 * step)


@njit(cache=True, inline="always")
def _tile_origin(t, tiles_h, tiles_w, pad_top, pad_left):
    """(image, first row, first column) of tile t's window (output pixel with no padding)."""
    per_image = tiles_h * tiles_w
    return t // per_image, 2 * ((t // tiles_w) % tiles_h) - pad_top, 2 * (t % tiles_w) - pad_left


@njit(cache=True, inline="always")
def _window(xs, n, r0, c0, h, w, c, size, window):
    """window (size*size*C,) = the size x size pixels of image n of xs (N*H*W*C,) from (r0, c0),
    row by row, 0 outside."""
    zero = window.dtype.type(0)
    for k in range(size * size):
        r, col = r0 + k // size, c0 + k % size
        dst = _u(k * c)
        if 0 <= r < h and 0 <= col < w:
            at = _u(((n * h + r) * w + col) * c)
            for j in range(_u(c)):
                window[dst + j] = xs[at + j]
        else:
            for j in range(_u(c)):
                window[dst + j] = zero


@njit(cache=True, inline="always")
def _tile_output(ms, start, bias, code, f, rows, y):
    """y (4F,) = act(At M A + bias), the tile's 4 output pixels row by row, from
    ms[start:start+16F]; rows (8F,) is scratch."""
    _at(ms, _runs(start, 4 * f), rows, _u(0), _u(4 * f), _u(4 * f))
    for p in range(2):
        _at(rows, _runs(p * 4 * f, f), y, _u(2 * p * f), _u((2 * p + 1) * f), _u(f))
    zero = y.dtype.type(0)
    has_bias = bias.shape[0] > 0
    for k in range(4):
        o = _u(k * f)
        if code == RELU and has_bias:
            for j in range(_u(f)):
                z = y[o + j] + bias[j]
                y[o + j] = zero if z < zero else z
        elif has_bias:
            for j in range(_u(f)):
                y[o + j] += bias[j]
        if code != LINEAR and not (code == RELU and has_bias):
            _activate_row(y[o : o + _u(f)], code)


@njit(cache=True, inline="always")
def _bt(src, s, dst, d, size):
    """dst's runs at offsets d = Bt (src's runs at s): s0 - s2, s1 + s2, s2 - s1, s1 - s3."""
    s0, s1, s2, s3 = s
    d0, d1, d2, d3 = d
    for k in range(size):
        dst[d0 + k] = src[s0 + k] - src[s2 + k]
    for k in range(size):
        dst[d1 + k] = src[s1 + k] + src[s2 + k]
    for k in range(size):
        dst[d2 + k] = src[s2 + k] - src[s1 + k]
    for k in range(size):
        dst[d3 + k] = src[s1 + k] - src[s3 + k]


@njit(cache=True, inline="always")
def _b(src, s, dst, d, size):
    """dst's runs at offsets d = B (src's runs at s), Bt's adjoint: s0, s1 - s2 + s3,
    s1 + s2 - s0, -s3."""
    s0, s1, s2, s3 = s
    d0, d1, d2, d3 = d
    for k in range(size):
        dst[d0 + k] = src[s0 + k]
    for k in range(size):
        dst[d1 + k] = src[s1 + k] - src[s2 + k] + src[s3 + k]
    for k in range(size):
        dst[d2 + k] = src[s1 + k] + src[s2 + k] - src[s0 + k]
    for k in range(size):
        dst[d3 + k] = -src[s3 + k]


@njit(cache=True, inline="always")
def _at(src, s, dst, d0, d1, size):
    """dst's runs at d0, d1 = At (src's runs at offsets s): s0 + s1 + s2, s1 - s2 - s3."""
    s0, s1, s2, s3 = s
    for k in range(size):
        dst[d0 + k] = src[s0 + k] + src[s1 + k] + src[s2 + k]
    for k in range(size):
        dst[d1 + k] = src[s1 + k] - src[s2 + k] - src[s3 + k]


@njit(cache=True, inline="always")
def _a(src, s, dst, d, size):
    """dst's runs at offsets d = A (src's runs at s[0], s[1]), At's adjoint: s0, s0 + s1,
    s0 - s1, -s1."""
    s0, s1 = s[0], s[1]
    d0, d1, d2, d3 = d
    for k in range(size):
        dst[d0 + k] = src[s0 + k]
    for k in range(size):
        dst[d1 + k] = src[s0 + k] + src[s1 + k]
    for k in range(size):
        dst[d2 + k] = src[s0 + k] - src[s1 + k]
    for k in range(size):
        dst[d3 + k] = -src[s1 + k]
