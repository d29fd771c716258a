"""Rows of ConvLSTM1D and ConvLSTM2D (fastnn/layers/conv_lstm.py) for
tests/layers/test_every_layer.py: one per code path (padding, strides, dilation, return modes,
go_backwards, channels_first, initial states, activations, no bias, dropout, Bidirectional)."""

from dataclasses import replace

from layer_harness import row

from fastnn import layers as L

FIRST = {"data_format": "channels_first"}


def bidirectional(dtype):
    """Bidirectional over a ConvLSTM2D returning sequences (Keras's wrapper takes any RNN)."""
    inner = L.ConvLSTM2D(2, 3, padding="same", return_sequences=True, dtype=dtype)
    return L.Bidirectional(inner, merge_mode="sum", dtype=dtype)


def with_initial_state(layer, x, training):
    """Keras takes the initial states by keyword, not in the inputs list."""
    return layer(x[0], initial_state=x[1:], training=training)


ROWS = {
    # ---- ConvLSTM2D
    "conv_lstm2d-valid": row(L.ConvLSTM2D, (3, 4, 4, 2), 2, 3),
    "conv_lstm2d-same-sequences": row(
        L.ConvLSTM2D, (3, 4, 3, 2), 2, 3, padding="same", return_sequences=True
    ),
    "conv_lstm2d-strides_2-state-backwards": row(
        L.ConvLSTM2D, (2, 5, 4, 1), 2, (3, 2), strides=2, return_state=True, go_backwards=True
    ),
    "conv_lstm2d-channels_first-dilated-sequences-state": row(
        L.ConvLSTM2D,
        (3, 2, 5, 5),
        2,
        2,
        dilation_rate=2,
        return_sequences=True,
        return_state=True,
        **FIRST,
    ),
    "conv_lstm2d-initial_state": replace(
        row(L.ConvLSTM2D, [(2, 4, 4, 2), (4, 4, 2), (4, 4, 2)], 2, 3, padding="same"),
        keras_call=with_initial_state,
    ),
    "conv_lstm2d-relu-hard_sigmoid-no_bias": row(
        L.ConvLSTM2D,
        (2, 3, 3, 2),
        2,
        2,
        activation="relu",
        recurrent_activation="hard_sigmoid",
        use_bias=False,
    ),
    "conv_lstm2d-no_forget_bias": row(L.ConvLSTM2D, (2, 3, 3, 1), 2, 2, unit_forget_bias=False),
    "conv_lstm2d-dropout-recurrent_dropout": replace(
        row(
            L.ConvLSTM2D,
            (3, 4, 4, 2),
            2,
            3,
            padding="same",
            return_sequences=True,
            dropout=0.3,
            recurrent_dropout=0.4,
            seed=3,
        ),
        random=True,
    ),
    "conv_lstm2d-bidirectional-sum": row(bidirectional, (2, 3, 3, 2)),
    # ---- ConvLSTM1D
    "conv_lstm1d-same": row(L.ConvLSTM1D, (3, 5, 2), 3, 3, padding="same"),
    "conv_lstm1d-channels_first-sequences-backwards": row(
        L.ConvLSTM1D, (3, 2, 6), 2, 2, strides=2, return_sequences=True, go_backwards=True, **FIRST
    ),
    "conv_lstm1d-dropout": replace(
        row(L.ConvLSTM1D, (3, 5, 2), 2, 3, return_state=True, dropout=0.5, seed=1),
        random=True,
    ),
}
