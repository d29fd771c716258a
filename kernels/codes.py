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

CODES = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX}
ELEMENTWISE = (LINEAR, RELU, SIGMOID, TANH)  # SOFTMAX acts on a whole row
