"""Register-blocked product micro-kernels in explicit 16-lane float32 SIMD, for kernels that run
implicit GEMMs (a direct convolution's windows times its filters) without packing A.

``block_product(lanes, rows)`` makes a Numba intrinsic computing a (rows, lanes) block of
outputs, each ``act(sum of products + bias)`` or added into what they hold, whose accumulators
stay in registers from the first product to the store: per step, ``lanes / 16`` vector loads
of a packed B panel, ``rows`` broadcasts of A and ``rows * lanes / 16`` fused multiply-adds.
It is written as LLVM vectors, not left to Numba's loop vectorizer, which keeps accumulators in
memory and uses 8 lanes on CPUs that prefer 256-bit vectors: the function calling a
micro-kernel is marked to use 512-bit ones (on a CPU without AVX-512, LLVM splits each vector
into narrower ones, still correct).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # float32 lanes of one vector
_ARRAY = types.Array(types.float32, 1, "C")
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VECTOR = ir.VectorType(ir.FloatType(), LANES)
# What a micro-kernel does with its sums (its ``epilogue`` argument): add the bias, then a relu
# or not; or add them to what ``out`` holds (a gradient summed over blocks of the data, a
# product over slices of K), then a relu or not (the last slice of a relu layer's product).
BIAS, BIAS_RELU, ACCUMULATE, ACCUMULATE_RELU = 0, 1, 2, 3


@functools.cache
def block_product(lanes: int, rows: tuple = (1,), strided: bool = False):
    """The intrinsic ``f(r_count, out, out_start, ldo, count, bias, bias_start, epilogue, a,
    a_start, lda, a_step, b, b_start, k, outer)`` on float32 1-D contiguous arrays (the rest
    integers), for r < r_count (one of ``rows``: a kernel of each is built) and l < count
    (count <= lanes, a multiple of 16), with

        sum[r, l] = sum over o < outer, t < k of
            a[a_start + o * a_step + r * lda + t] * b[b_start + (o * k + t) * lanes + l]

    sets out[out_start + r * ldo + l] to bias[bias_start + l] + sum[r, l] (``BIAS``), the same
    through max(., 0) (``BIAS_RELU``), or adds sum[r, l] to it (``ACCUMULATE``, bias unread),
    the result through max(., 0) with ``ACCUMULATE_RELU``.
    For a direct conv: r a pixel of an output row, o a kernel row, t the kw * C inputs of a
    window's row. Lanes past ``count`` are neither read nor written; an r_count not in ``rows``
    writes nothing. No bounds checks: the caller's indices must be in range.

    ``strided`` adds a last argument ``a_stride``, a's step along t (``t * a_stride`` for t):
    a conv's kernel gradient reads a block of a tap's channels pixel after pixel of an NHWC
    image, C apart.
    """
    if lanes % LANES:
        raise ValueError(f"lanes must be a multiple of {LANES}, got {lanes}")

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        wide = _widened(context, builder, sig, values)
        r_count, out, out_start, ldo, count, bias, bias_start, epilogue = wide[:8]
        a, a_start, lda, a_step, b, b_start, k, outer = wide[8:16]
        a_stride = wide[16] if strided else None
        data = {
            name: context.make_array(_ARRAY)(context, builder, value).data
            for name, value in (("out", out), ("bias", bias), ("a", a), ("b", b))
        }
        a_ptr, b_ptr = builder.gep(data["a"], [a_start]), builder.gep(data["b"], [b_start])
        bias_ptr = builder.gep(data["bias"], [bias_start])
        merge = builder.append_basic_block("micro.merge")
        switch = builder.switch(r_count, merge)
        for choice in rows:
            case = builder.append_basic_block(f"micro.rows{choice}")
            switch.add_case(ir.Constant(_I64, choice), case)
            builder.position_at_end(case)
            kernel = _Kernel(builder, choice, lanes)
            sums = kernel.products(a_ptr, lda, a_step, b_ptr, k, outer, a_stride)
            kernel.store_block(sums, bias_ptr, count, epilogue, data["out"], out_start, ldo)
            builder.branch(merge)
        builder.position_at_end(merge)
        return context.get_dummy_value()

    def typed(args):
        if any(array != _ARRAY for array in (args[1], args[5], args[8], args[12])):
            return None
        return types.none(*args), codegen

    if strided:

        @intrinsic
        def strided_product(
            typingctx, r_count, out, out_start, ldo, count, bias, bias_start, epilogue,
            a, a_start, lda, a_step, b, b_start, k, outer, a_stride,
        ):  # fmt: skip
            return typed(
                (r_count, out, out_start, ldo, count, bias, bias_start, epilogue,
                 a, a_start, lda, a_step, b, b_start, k, outer, a_stride)
            )  # fmt: skip

        return strided_product

    @intrinsic
    def product(
        typingctx, r_count, out, out_start, ldo, count, bias, bias_start, epilogue,
        a, a_start, lda, a_step, b, b_start, k, outer,
    ):  # fmt: skip
        return typed(
            (r_count, out, out_start, ldo, count, bias, bias_start, epilogue,
             a, a_start, lda, a_step, b, b_start, k, outer)
        )  # fmt: skip

    return product


@intrinsic
def copy_lanes(typingctx, src, src_start, dst, dst_start, count):
    """dst[dst_start + l] = src[src_start + l] for l < count, 0 for count <= l < 16: one
    vector load (masked) and store, on float32 arrays of any layout (offsets in values from
    their first; the caller keeps them in range). Numba's own loops copy such spans a value
    at a time: they cannot tell dst from src."""
    if not all(isinstance(x, types.Array) and x.dtype == types.float32 for x in (src, dst)):
        return None

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        src_array, src_at, dst_array, dst_at, count = (
            context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
            for v, t in zip(values, sig.args)
        )
        src_ptr = context.make_array(sig.args[0])(context, builder, src_array).data
        dst_ptr = context.make_array(sig.args[2])(context, builder, dst_array).data
        kernel = _Kernel(builder, 1, LANES)
        (mask,) = kernel.masks(count)
        value = kernel.load(src_ptr, 0, mask, src_at)
        target = builder.bitcast(builder.gep(dst_ptr, [dst_at]), _VECTOR.as_pointer())
        builder.store(value, target, align=4)
        return context.get_dummy_value()

    return types.none(src, src_start, dst, dst_start, count), codegen


@intrinsic
def multiply_sum_lanes(
    typingctx, out, out_at, count, a, a_at, a_inner, a_outer, b, b_at, b_inner, b_outer,
    inner, outer,
):  # fmt: skip
    """out[out_at + l] += sum over o < outer, t < inner of a[a_at + o * a_outer + t * a_inner
    + l] * b[b_at + o * b_outer + t * b_inner + l] for l < count (<= 16): the sums of 16 lanes'
    products in one register, added to out once; float32 1-D contiguous arrays, the rest
    integers (offsets in values, kept in range by the caller). A depthwise conv's kernel
    gradient: a tap's block of channels over the output pixels of an image."""
    arrays = (out, a, b)
    if any(array != _ARRAY for array in arrays):
        return None
    args = (out, out_at, count, a, a_at, a_inner, a_outer, b, b_at, b_inner, b_outer, inner, outer)

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        wide = _widened(context, builder, sig, values)
        out, out_at, count, a, a_at, a_inner, a_outer, b, b_at, b_inner, b_outer = wide[:11]
        inner, outer = wide[11:]
        out_ptr, a_ptr, b_ptr = (
            context.make_array(_ARRAY)(context, builder, array).data for array in (out, a, b)
        )
        kernel = _Kernel(builder, 1, LANES)
        (mask,) = kernel.masks(count)
        total = cgutils.alloca_once_value(builder, ir.Constant(_VECTOR, [0.0] * LANES))
        with cgutils.for_range(builder, outer) as row:
            a_row = builder.add(a_at, builder.mul(row.index, a_outer))
            b_row = builder.add(b_at, builder.mul(row.index, b_outer))
            with cgutils.for_range(builder, inner) as step:
                a_value = kernel.load(
                    a_ptr, 0, mask, builder.add(a_row, builder.mul(step.index, a_inner))
                )
                b_value = kernel.load(
                    b_ptr, 0, mask, builder.add(b_row, builder.mul(step.index, b_inner))
                )
                product = builder.call(kernel.fma, [a_value, b_value, builder.load(total)])
                builder.store(product, total)
        target = builder.gep(out_ptr, [out_at])
        kernel.store(
            builder.fadd(builder.load(total), kernel.load(target, 0, mask)), target, 0, mask
        )
        return context.get_dummy_value()

    return types.none(*args), codegen


_DOUBLES = ir.VectorType(ir.DoubleType(), LANES)
_F64_ARRAY = types.Array(types.float64, 1, "C")


def _batchnorm_lane_values(builder, kernel, values, row):
    """(dz, d) of ``row`` for a BatchNormalization backward's 16 lanes: d = x - mean, and dz
    the output gradient where the forward's activation passed it (relu: 0 < z < top for
    z = d * scale + beta, computed as the forward computes it), the lanes past count zero."""
    grad_ptr, x_ptr, at, ld, mask, mean, scale, beta, top, relu = values
    offset = builder.add(at, builder.mul(row, ld))
    grad = kernel.load(grad_ptr, 0, mask, offset)
    d = builder.fsub(kernel.load(x_ptr, 0, mask, offset), mean)
    z = builder.fadd(builder.fmul(d, scale), beta)
    zeros = ir.Constant(_VECTOR, [0.0] * LANES)
    passed = builder.and_(
        builder.fcmp_ordered(">", z, zeros), builder.fcmp_ordered("<", z, kernel.broadcast(top))
    )
    flat = builder.icmp_signed("==", relu, _int(0))
    keep = builder.or_(passed, kernel.broadcast(flat, ir.VectorType(ir.IntType(1), LANES)))
    return builder.select(keep, grad, zeros), d


def _batchnorm_lane_arguments(context, builder, sig, values, keys):
    """An intrinsic's arguments by name (``keys``, in order; integers widened, ``top`` as
    float32) and what the BatchNormalization intrinsics share: (arguments, kernel, mask, the
    pointers and per-lane vectors ``_batchnorm_lane_values`` takes, loaded at column c0)."""
    names = dict(zip(keys, _widened(context, builder, sig, values)))
    top = keys.index("top")
    names["top"] = context.cast(builder, values[top], sig.args[top], types.float32)
    kernel = _Kernel(builder, 1, LANES)
    (mask,) = kernel.masks(names["count"])
    data = {
        key: context.make_array(_ARRAY)(context, builder, names[key]).data
        for key in ("grad", "x", "mean", "scale", "beta")
    }
    c0 = names["c0"]
    lane_values = [kernel.load(data[key], 0, mask, c0) for key in ("mean", "scale", "beta")]
    shared = (data["grad"], data["x"], names["at"], names["ld"], mask, *lane_values)
    return names, kernel, mask, (*shared, names["top"], names["relu"])


@intrinsic
def batchnorm_grad_sums(
    typingctx, grad, x, at, rows, ld, count, c0, mean, scale, beta, top, relu, acc_b, acc_g
):  # fmt: skip
    """acc_b[c0 + l] += sum over r < rows of dz, acc_g[c0 + l] += sum of dz * d (float64), for
    the lanes l < count (<= 16) at grad/x[at + r * ld + l]: a BatchNormalization backward's two
    column sums over a chunk of rows, in registers (``_batchnorm_lane_values``: d, dz; mean,
    scale, beta read at column c0; ``relu`` nonzero when the forward applied relu, or relu6
    with ``top`` 6). grad, x, mean, scale, beta float32 1-D contiguous; acc_b, acc_g float64."""
    arrays = (grad, x, mean, scale, beta)
    if any(array != _ARRAY for array in arrays) or any(a != _F64_ARRAY for a in (acc_b, acc_g)):
        return None
    args = (grad, x, at, rows, ld, count, c0, mean, scale, beta, top, relu, acc_b, acc_g)
    names = ("grad", "x", "at", "rows", "ld", "count", "c0", "mean", "scale", "beta")

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        keys = (*names, "top", "relu", "acc_b", "acc_g")
        named, kernel, mask, shared = _batchnorm_lane_arguments(context, builder, sig, values, keys)
        zeros = ir.Constant(_DOUBLES, [0.0] * LANES)
        total = cgutils.alloca_once_value(builder, zeros)
        weighted = cgutils.alloca_once_value(builder, zeros)
        with cgutils.for_range(builder, named["rows"]) as loop:
            dz, d = _batchnorm_lane_values(builder, kernel, shared, loop.index)
            dz64, d64 = builder.fpext(dz, _DOUBLES), builder.fpext(d, _DOUBLES)
            builder.store(builder.fadd(builder.load(total), dz64), total)
            builder.store(builder.fadd(builder.load(weighted), builder.fmul(dz64, d64)), weighted)
        module = builder.module
        ptr_type = _DOUBLES.as_pointer()
        mask_type = ir.VectorType(ir.IntType(1), LANES)
        load = _function(
            module, "llvm.masked.load.v16f64.p0", _DOUBLES, [ptr_type, _I32, mask_type, _DOUBLES]
        )
        store = _function(
            module, "llvm.masked.store.v16f64.p0", ir.VoidType(),
            [_DOUBLES, ptr_type, _I32, mask_type],
        )  # fmt: skip
        for key, source in (("acc_b", total), ("acc_g", weighted)):
            base = context.make_array(_F64_ARRAY)(context, builder, named[key]).data
            target = builder.bitcast(builder.gep(base, [named["c0"]]), ptr_type)
            held = builder.call(load, [target, ir.Constant(_I32, 8), mask, zeros])
            summed = builder.fadd(held, builder.load(source))
            builder.call(store, [summed, target, ir.Constant(_I32, 8), mask])
        return context.get_dummy_value()

    return types.none(*args), codegen


@intrinsic
def batchnorm_grad_x(
    typingctx, grad, x, at, rows, ld, count, c0, mean, scale, beta, top, relu,
    k_dy, k_x, k_0, out,
):  # fmt: skip
    """out[at + r * ld + l] = k_dy[l] * dz - k_x[l] * d + k_0[l] for r < rows and lanes
    l < count (<= 16), d and dz as ``batchnorm_grad_sums`` has them and the coefficients read
    at column c0: a BatchNormalization's input gradient over a block of rows; float32 1-D
    contiguous arrays."""
    arrays = (grad, x, mean, scale, beta, k_dy, k_x, k_0, out)
    if any(array != _ARRAY for array in arrays):
        return None
    args = (grad, x, at, rows, ld, count, c0, mean, scale, beta, top, relu, k_dy, k_x, k_0, out)
    names = ("grad", "x", "at", "rows", "ld", "count", "c0", "mean", "scale", "beta")

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        keys = (*names, "top", "relu", "k_dy", "k_x", "k_0", "out")
        named, kernel, mask, shared = _batchnorm_lane_arguments(context, builder, sig, values, keys)
        k_dy, k_x, k_0, out_ptr = (
            context.make_array(_ARRAY)(context, builder, named[key]).data
            for key in ("k_dy", "k_x", "k_0", "out")
        )
        c0 = named["c0"]
        k_dy, k_x, k_0 = (kernel.load(ptr, 0, mask, c0) for ptr in (k_dy, k_x, k_0))
        with cgutils.for_range(builder, named["rows"]) as loop:
            dz, d = _batchnorm_lane_values(builder, kernel, shared, loop.index)
            value = builder.fsub(builder.fmul(k_dy, dz), builder.fmul(k_x, d))
            offset = builder.add(named["at"], builder.mul(loop.index, named["ld"]))
            kernel.store(builder.fadd(value, k_0), builder.gep(out_ptr, [offset]), 0, mask)
        return context.get_dummy_value()

    return types.none(*args), codegen


@functools.cache
def depthwise_pixels(kh: int, kw: int):
    """The intrinsic ``f(pixels, out, out_at, out_step, count, bias, bias_at, relu, a, a_at,
    a_step, a_col, a_row, k, k_at, k_step)`` on float32 1-D contiguous arrays (the rest
    integers): for j < pixels and l < count (<= 16),

        out[out_at + j * out_step + l] = bias[bias_at + l] + sum over p < kh, q < kw of
            a[a_at + j * a_step + p * a_row + q * a_col + l] * k[k_at + (p * kw + q) * k_step + l]

    through max(., 0) where ``relu`` is nonzero. A depthwise conv's block of 16 channels along
    an output row: its kh * kw taps' weights loaded into registers once for the row, each
    pixel's sums kept in a register per kernel row. No bounds checks."""

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        wide = _widened(context, builder, sig, values)
        pixels, out, out_at, out_step, count, bias, bias_at, relu = wide[:8]
        a, a_at, a_step, a_col, a_row, k, k_at, k_step = wide[8:]
        out_ptr, bias_ptr, a_ptr, k_ptr = (
            context.make_array(_ARRAY)(context, builder, array).data for array in (out, bias, a, k)
        )
        kernel = _Kernel(builder, 1, LANES)
        (mask,) = kernel.masks(count)
        taps = [
            kernel.load(k_ptr, 0, mask, builder.add(k_at, builder.mul(_int(t), k_step)))
            for t in range(kh * kw)
        ]
        start = kernel.load(bias_ptr, 0, mask, bias_at)
        rectify = builder.icmp_signed("!=", relu, _int(0))
        with cgutils.for_range(builder, pixels) as pixel:
            j = pixel.index
            base = builder.add(a_at, builder.mul(j, a_step))
            rows = []
            for p in range(kh):
                total = start if p == 0 else ir.Constant(_VECTOR, [0.0] * LANES)
                row = builder.add(base, builder.mul(_int(p), a_row))
                for q in range(kw):
                    at = builder.add(row, builder.mul(_int(q), a_col))
                    value = kernel.load(a_ptr, 0, mask, at)
                    total = builder.call(kernel.fma, [value, taps[p * kw + q], total])
                rows.append(total)
            while len(rows) > 1:  # a tree: kh independent chains of kw fused multiply-adds
                rows = [builder.fadd(x, y) for x, y in zip(rows[::2], rows[1::2])] + (
                    rows[-1:] if len(rows) % 2 else []
                )
            value = builder.select(rectify, kernel.relu(rows[0]), rows[0])
            target = builder.gep(out_ptr, [builder.add(out_at, builder.mul(j, out_step))])
            kernel.store(value, target, 0, mask)
        return context.get_dummy_value()

    @intrinsic
    def pixels_product(
        typingctx, pixels, out, out_at, out_step, count, bias, bias_at, relu, a, a_at, a_step,
        a_col, a_row, k, k_at, k_step,
    ):  # fmt: skip
        args = (
            pixels, out, out_at, out_step, count, bias, bias_at, relu, a, a_at, a_step, a_col,
            a_row, k, k_at, k_step,
        )  # fmt: skip
        if any(array != _ARRAY for array in (out, bias, a, k)):
            return None
        return types.none(*args), codegen

    return pixels_product


@intrinsic
def wide_vectors(typingctx):
    """Marks the kernel that calls it (its LLVM function) to vectorize its loops with 512-bit
    vectors: on CPUs that prefer 256-bit ones LLVM's loop vectorizer uses 8 float32 lanes, 16
    here (exp over a softmax's rows 1.4x faster). For loops of arithmetic; a loop bound by
    memory gains nothing."""

    def codegen(context, builder, sig, values):
        _prefer_512_bit_vectors(builder.function)
        return context.get_dummy_value()

    return types.none(), codegen


class _Kernel:
    """IR of one micro-kernel of ``rows`` x ``lanes`` accumulators, built at ``builder``."""

    def __init__(self, builder: ir.IRBuilder, rows: int, lanes: int):
        self.builder, self.rows, self.vectors, self.lanes = builder, rows, lanes // LANES, lanes
        module = builder.module
        ptr = _VECTOR.as_pointer()
        mask = ir.VectorType(ir.IntType(1), LANES)
        self.fma = _function(module, "llvm.fma.v16f32", _VECTOR, [_VECTOR] * 3)
        self.masked_load = _function(
            module, "llvm.masked.load.v16f32.p0", _VECTOR, [ptr, _I32, mask, _VECTOR]
        )
        self.masked_store = _function(
            module, "llvm.masked.store.v16f32.p0", ir.VoidType(), [_VECTOR, ptr, _I32, mask]
        )

    def products(self, a_ptr, lda, a_step, b_ptr, k, outer, a_stride=None):
        """The sums over o < outer, t < k, as ``rows`` lists of ``vectors`` values; a read
        ``a_stride`` apart along t (None: 1)."""
        builder, zero = self.builder, _int(0)
        start = [ir.Constant(_VECTOR, [0.0] * LANES)] * (self.rows * self.vectors)
        row_ptrs = [builder.gep(a_ptr, [builder.mul(lda, _int(r))]) for r in range(self.rows)]
        entry = builder.block
        outer_head = builder.append_basic_block("micro.outer")
        inner = builder.append_basic_block("micro.inner")
        outer_tail = builder.append_basic_block("micro.outer_tail")
        done = builder.append_basic_block("micro.done")
        run = builder.icmp_signed(">", k, zero)
        builder.cbranch(builder.and_(run, builder.icmp_signed(">", outer, zero)), outer_head, done)

        builder.position_at_end(outer_head)
        o = builder.phi(_I64)
        outer_accs = [builder.phi(_VECTOR) for _ in start]
        a_row = builder.mul(o, a_step)
        b_row = builder.mul(builder.mul(o, k), _int(self.lanes))
        builder.branch(inner)

        builder.position_at_end(inner)
        t = builder.phi(_I64)
        accs = [builder.phi(_VECTOR) for _ in start]
        b_at = builder.add(b_row, builder.mul(t, _int(self.lanes)))
        panel = [self.load(b_ptr, v * LANES, None, b_at) for v in range(self.vectors)]
        a_at = builder.add(a_row, t if a_stride is None else builder.mul(t, a_stride))
        updated = []
        for r in range(self.rows):
            scalar = builder.load(builder.gep(row_ptrs[r], [a_at]), align=4)
            broadcast = self.broadcast(scalar)
            for v in range(self.vectors):
                updated.append(builder.call(self.fma, [broadcast, panel[v], accs[len(updated)]]))
        t_next = builder.add(t, _int(1))
        builder.cbranch(builder.icmp_signed("<", t_next, k), inner, outer_tail)
        inner_end = builder.block

        builder.position_at_end(outer_tail)
        o_next = builder.add(o, _int(1))
        builder.cbranch(builder.icmp_signed("<", o_next, outer), outer_head, done)

        o.add_incoming(zero, entry)
        o.add_incoming(o_next, outer_tail)
        t.add_incoming(zero, outer_head)
        t.add_incoming(t_next, inner_end)
        for outer_acc, acc, value, initial in zip(outer_accs, accs, updated, start):
            outer_acc.add_incoming(initial, entry)
            outer_acc.add_incoming(value, outer_tail)
            acc.add_incoming(outer_acc, outer_head)
            acc.add_incoming(value, inner_end)

        builder.position_at_end(done)
        finals = []
        for value, initial in zip(updated, start):
            final = builder.phi(_VECTOR)
            final.add_incoming(initial, entry)
            final.add_incoming(value, outer_tail)
            finals.append(final)
        v = self.vectors
        return [finals[r * v : (r + 1) * v] for r in range(self.rows)]

    def store_block(self, sums, bias_ptr, count, epilogue, out_ptr, out_start, ldo):
        """out rows r = the ``epilogue`` of sums[r], the lanes below ``count`` of each."""
        builder = self.builder
        masks = self.masks(count)
        relu = builder.icmp_signed("==", epilogue, _int(BIAS_RELU))
        accumulate = builder.icmp_signed(">=", epilogue, _int(ACCUMULATE))
        accumulate_relu = builder.icmp_signed("==", epilogue, _int(ACCUMULATE_RELU))
        with builder.if_else(accumulate) as (then, otherwise):
            with then:
                for r, vectors in enumerate(sums):
                    row = builder.gep(out_ptr, [builder.add(out_start, builder.mul(ldo, _int(r)))])
                    for v, total in enumerate(vectors):
                        value = builder.fadd(total, self.load(row, v * LANES, masks[v]))
                        value = builder.select(accumulate_relu, self.relu(value), value)
                        self.store(value, row, v * LANES, masks[v])
            with otherwise:
                biases = [self.load(bias_ptr, v * LANES, masks[v]) for v in range(self.vectors)]
                for r, vectors in enumerate(sums):
                    row = builder.gep(out_ptr, [builder.add(out_start, builder.mul(ldo, _int(r)))])
                    for v, total in enumerate(vectors):
                        value = builder.fadd(total, biases[v])
                        value = builder.select(relu, self.relu(value), value)
                        self.store(value, row, v * LANES, masks[v])

    def masks(self, count):
        """Per vector of the block, which of its lanes are below ``count`` (None: all, known)."""
        builder = self.builder
        masks = []
        for v in range(self.vectors):
            lanes = ir.Constant(ir.VectorType(_I64, LANES), [v * LANES + i for i in range(LANES)])
            limit = self.broadcast(count, ir.VectorType(_I64, LANES))
            masks.append(builder.icmp_signed("<", lanes, limit))
        return masks

    def load(self, base, offset, mask, index=None):
        """The vector at base[index + offset], its lanes outside ``mask`` zero."""
        builder = self.builder
        at = _int(offset) if index is None else builder.add(index, _int(offset))
        ptr = builder.bitcast(builder.gep(base, [at]), _VECTOR.as_pointer())
        if mask is None:
            return builder.load(ptr, align=4)
        zeros = ir.Constant(_VECTOR, [0.0] * LANES)
        return builder.call(self.masked_load, [ptr, ir.Constant(_I32, 4), mask, zeros])

    def store(self, value, base, offset, mask):
        """base[offset + l] = value[l] for the lanes in ``mask``."""
        ptr = self.builder.bitcast(self.builder.gep(base, [_int(offset)]), _VECTOR.as_pointer())
        self.builder.call(self.masked_store, [value, ptr, ir.Constant(_I32, 4), mask])

    def relu(self, value):
        """max(value, 0), NaN kept (as numpy's relu)."""
        zeros = ir.Constant(_VECTOR, [0.0] * LANES)
        return self.builder.select(self.builder.fcmp_ordered("<", value, zeros), zeros, value)

    def broadcast(self, scalar, vector=_VECTOR):
        undef = ir.Constant(vector, ir.Undefined)
        one = self.builder.insert_element(undef, scalar, ir.Constant(_I32, 0))
        lane_zero = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
        return self.builder.shuffle_vector(one, undef, lane_zero)


def _widened(context, builder, sig, values) -> list:
    """An intrinsic's argument values, its integers widened to int64."""
    return [
        context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else v
        for v, t in zip(values, sig.args)
    ]


def _int(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


def _function(module: ir.Module, name: str, result, arguments) -> ir.Function:
    return cgutils.get_or_insert_function(module, ir.FunctionType(result, arguments), name)


def _prefer_512_bit_vectors(function: ir.Function) -> None:
    """Let LLVM keep 16-lane float32 vectors whole in ``function`` (CPUs that prefer 256-bit
    vectors would split them); function attributes outside llvmlite's known set, so added as
    the set's raw strings."""
    for attribute in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
        set.add(function.attributes, attribute)
