"""Activation codes: the small integers by which one compiled kernel serves every activation.

No Numba here, so fastnn can name and check activations without importing it. The kernels compile
these values in as constants, and ``cache=True`` keys on the kernel's own file: after changing a
value, clear Numba's cache (the README says how).
"""

LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
SOFTMAX = 4
ELU = 5  # alpha 1
SELU = 6
SOFTPLUS = 7
SOFTSIGN = 8
HARD_SIGMOID = 9  # relu6(x + 3) / 6, Keras 3's
EXPONENTIAL = 10
LEAKY_RELU = 11  # negative slope LEAKY_RELU_SLOPE
RELU6 = 12
LOG_SOFTMAX = 13
GELU = 14  # exact, with erf (Keras's activation default)
GELU_TANH = 15  # the tanh approximation (gelu(x, approximate=True)); no Keras name of its own
SILU = 16
HARD_SILU = 17
MISH = 18

CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softmax": SOFTMAX,
    "elu": ELU,
    "selu": SELU,
    "softplus": SOFTPLUS,
    "softsign": SOFTSIGN,
    "hard_sigmoid": HARD_SIGMOID,
    "exponential": EXPONENTIAL,
    "leaky_relu": LEAKY_RELU,
    "relu6": RELU6,
    "log_softmax": LOG_SOFTMAX,
    "gelu": GELU,
    "silu": SILU,
    "hard_silu": HARD_SILU,
    "mish": MISH,
}
LEAKY_RELU_SLOPE = 0.2  # keras.activations.leaky_relu's default

ELEMENTWISE = (LINEAR, RELU, SIGMOID, TANH)  # the ones the recurrent kernels apply
# The ones the kernels' epilogues apply inside their own loops (``activations._activate_row``,
# inlined into the conv, Winograd and depthwise kernels); the wrappers run any other as a
# vectorized pass of its own after them. Measured on a Winograd conv and a relu: a call to the
# others from the inlined row cost 10-50%, and even the inlined float32 tanh/sigmoid 8-10%.
EPILOGUE = (LINEAR, RELU, SOFTMAX)
# Tuples, so Numba code can test ``code in ROW_WISE`` too.
ROW_WISE = (SOFTMAX, LOG_SOFTMAX)  # act on a whole row (the last axis), not elementwise
# The codes whose gradient ``activation_backward`` computes from the activation's input (the
# pre-activation z) instead of its output y: these functions dip below zero and come back, so y
# does not tell z. A layer keeps z for them (``bias_activation_forward_keep_input``).
FROM_INPUT = (GELU, GELU_TANH, SILU, HARD_SILU, MISH)


def kernel_applied(code: int) -> int:
    """What a conv's kernels apply of the activation ``code`` as they write its output: all of
    it, or none for the codes in FROM_INPUT (their gradient reads z, so the layer keeps z and
    applies the activation after)."""
    return LINEAR if code in FROM_INPUT else code
