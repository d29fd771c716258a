"""Vocabulary layers: StringLookup, IntegerLookup and TextVectorization, with Keras 3's
arguments, defaults, vocabulary order and outputs, in numpy (no TensorFlow).

They map tokens to indices from a vocabulary given or learned by ``adapt`` (most frequent
first, ties broken by the higher token, as Keras sorts them), with the mask token at index 0 in
``"int"`` mode and ``num_oov_indices`` indices for tokens outside it. Called on arrays, lists or
strings they return numpy arrays: int64 indices (and counts), float32 TF-IDF weights, or the
tokens themselves with ``invert=True``. IntegerLookup also runs inside a model, on integer
tensors. A ``callable`` standardize or split receives numpy arrays of str, as Keras gives them
on backends other than TensorFlow.
"""

from __future__ import annotations

import collections
import math
import re

import numpy as np

from fastnn import backend
from fastnn.layers.base import Layer
from fastnn.layers.preprocessing import _batches, encode_ids
from fastnn.nodes import is_symbolic
from fastnn.ops.tensor import unwrap

OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
_STRIP_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")  # TensorFlow's string split: ASCII whitespace
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _output_mode(mode: str, layer: str) -> str:
    mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(mode, mode)
    if mode not in OUTPUT_MODES:
        raise ValueError(
            f"Invalid value for argument output_mode. Expected one of {list(OUTPUT_MODES)}. "
            f"Received: output_mode={mode} (in {layer})"
        )
    return mode


class _IndexLookup(Layer):
    """What StringLookup and IntegerLookup share: the vocabulary, ``adapt``, the lookup and
    the encodings."""

    casts_inputs = False

    def __init__(
        self,
        max_tokens,
        num_oov_indices,
        mask_token,
        oov_token,
        vocabulary=None,
        idf_weights=None,
        invert=False,
        output_mode="int",
        sparse=False,
        pad_to_max_tokens=False,
        vocabulary_size=None,
        oov_method="floormod",
        salt=None,
        **kwargs,
    ):
        del vocabulary_size  # Keras's config: the size the vocabulary had
        super().__init__(**kwargs)
        if oov_method != "floormod" or salt is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: OOV tokens hash by `token % num_oov_indices` alone "
                f"(oov_method='floormod', no salt); got oov_method={oov_method!r}, salt={salt!r}"
            )
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(
                f"If set, `max_tokens` must be greater than 1. Received: max_tokens={max_tokens}"
            )
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(
                f"If pad_to_max_tokens is True, must set `max_tokens`. Received: "
                f"max_tokens={max_tokens}"
            )
        if num_oov_indices < 0:
            raise ValueError(
                "`num_oov_indices` must be greater than or equal to 0. Received: "
                f"num_oov_indices={num_oov_indices}"
            )
        output_mode = _output_mode(output_mode, type(self).__name__)
        if invert and output_mode != "int":
            raise ValueError(
                "`output_mode` must be `'int'` when `invert` is true. Received: "
                f"output_mode={output_mode}"
            )
        if sparse:
            raise ValueError("`sparse=True` can only be used with the TensorFlow backend.")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(
                "`idf_weights` should only be set if `output_mode` is `'tf_idf'`. Received: "
                f"idf_weights={idf_weights} and output_mode={output_mode}"
            )
        if output_mode == "tf_idf" and vocabulary is not None and idf_weights is None:
            raise ValueError(
                "When specifying the `vocabulary` argument, in TF-IDF output mode, the "
                "`idf_weights` argument must also be provided."
            )
        self.max_tokens, self.num_oov_indices = max_tokens, int(num_oov_indices)
        self.mask_token, self.oov_token = mask_token, oov_token
        self.invert, self.output_mode = bool(invert), output_mode
        self.sparse, self.pad_to_max_tokens = False, bool(pad_to_max_tokens)
        self.input_vocabulary = None if isinstance(vocabulary, str) else vocabulary
        self.input_idf_weights = idf_weights
        self._tokens: list = []  # the vocabulary without its mask and OOV tokens
        self._index: dict = {}
        self._idf = None
        self._given = vocabulary is not None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)

    # ---- the vocabulary ---------------------------------------------------------------------
    def _oov_start(self) -> int:
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start(self) -> int:
        return self._oov_start() + self.num_oov_indices

    def vocabulary_size(self) -> int:
        """The vocabulary's size, mask and OOV indices included."""
        return self._token_start() + len(self._tokens)

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary in index order (with the mask and OOV tokens, unless not
        ``include_special_tokens``)."""
        special = [self.mask_token] * self._oov_start() + [self.oov_token] * self.num_oov_indices
        return (special if include_special_tokens else []) + list(self._tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Replace the vocabulary (a sequence, or a text file of one token per line) and, in
        ``"tf_idf"`` mode, its inverse document frequencies."""
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise ValueError("`idf_weights` must be set if output_mode is 'tf_idf'.")
        if self.output_mode != "tf_idf" and idf_weights is not None:
            raise ValueError(
                "`idf_weights` should only be set if output_mode is `'tf_idf'`. Received: "
                f"output_mode={self.output_mode} and idf_weights={idf_weights}"
            )
        if isinstance(vocabulary, str):
            vocabulary = self._read_vocabulary(vocabulary)
        tokens = [self._token(t) for t in np.asarray(vocabulary).reshape(-1).tolist()]
        if not tokens:
            raise ValueError(f"Cannot set an empty vocabulary. Received: vocabulary={vocabulary}")
        special = [self.mask_token] * self._oov_start() + [self.oov_token] * self.num_oov_indices
        has_special = tokens[: len(special)] == special
        if has_special:
            tokens = tokens[len(special) :]
        repeated = [t for t, n in collections.Counter(tokens).items() if n > 1]
        if repeated:
            raise ValueError(
                "The passed vocabulary has at least one repeated term. Please uniquify your "
                f"dataset. The repeated terms are: {repeated}"
            )
        for name, token in (("mask_token", self.mask_token), ("oov_token", self.oov_token)):
            if token is not None and token in tokens and (name == "mask_token" or self.invert):
                raise ValueError(
                    f"Found reserved {name} {token!r} at unexpected location in `vocabulary`. "
                    "Either remove all mask and OOV tokens, or include them only at the start "
                    f"of the vocabulary in precisely this order: {special}."
                )
        size = len(special) + len(tokens)
        if self.max_tokens is not None and size > self.max_tokens:
            raise ValueError(
                "Attempted to set a vocabulary larger than the maximum vocab size. Received "
                f"vocabulary size is {size}; `max_tokens` is {self.max_tokens}."
            )
        self._set_tokens(tokens)
        if idf_weights is not None:
            weights = np.asarray(idf_weights, np.float64).reshape(-1)
            if len(weights) != len(tokens) + (len(special) if has_special else 0):
                raise ValueError(
                    f"`idf_weights` must be the same length as vocabulary. len(idf_weights) is "
                    f"{len(weights)}; len(vocabulary) is {len(np.asarray(vocabulary))}"
                )
            front = 0 if has_special else len(special)
            self._idf = self._padded_idf(weights, front, np.mean(weights))

    def _read_vocabulary(self, path: str) -> list:
        if self.output_mode == "tf_idf":
            raise ValueError(
                "output_mode `'tf_idf'` does not support loading a vocabulary from file."
            )
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise ValueError(f"Vocabulary file {path} does not exist.") from None
        while lines and lines[-1] == "":
            lines.pop()
        return lines

    def _set_tokens(self, tokens: list) -> None:
        self._tokens = tokens
        start = self._token_start()
        self._index = {token: start + i for i, token in enumerate(tokens)}

    def _padded_idf(self, weights: np.ndarray, front: int, front_value: float) -> np.ndarray:
        """The IDF weights with ``front`` special indices of ``front_value`` before, and zeros
        after up to ``max_tokens`` with ``pad_to_max_tokens``."""
        back = self.max_tokens - front - len(weights) if self.pad_to_max_tokens else 0
        padded = np.pad(weights, (front, max(back, 0)), constant_values=(front_value, 0))
        return padded.astype(backend.floatx())

    def adapt(self, data, steps=None, batch_size=None) -> None:
        """Learn the vocabulary (and, in ``"tf_idf"`` mode, the document frequencies) from
        ``data``: an array or list (each row, or each token of a flat list, one document), or
        an iterable of such batches."""
        self._learn(doc for batch in self._adapt_batches(data, steps) for doc in batch)

    def _learn(self, documents) -> None:
        """The vocabulary from ``documents``, an iterable of token lists."""
        if self._given:
            raise ValueError(
                f"Cannot adapt layer '{self.name}' after setting a static vocabulary via "
                "`vocabulary` argument or `set_vocabulary()` method."
            )
        counts, frequency, total = collections.Counter(), collections.Counter(), 0
        for document in documents:
            counts.update(document)
            frequency.update(set(document))
            total += 1
        for special in (self.mask_token, self.oov_token):
            counts.pop(special, None)
        # most frequent first, ties by the higher token (Keras's np.lexsort order, reversed)
        ranked = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens:
            ranked = ranked[: max(self.max_tokens - self._token_start(), 0)]
        self._set_tokens(ranked)
        if self.output_mode == "tf_idf":
            documents_with = np.array([frequency[t] for t in ranked], np.float64)
            weights = np.log(1 + total / (1 + documents_with)).astype(backend.floatx())
            self._idf = self._padded_idf(weights, self._token_start(), np.mean(weights))

    def _adapt_batches(self, data, steps):
        """Each batch of ``data`` as a list of documents, each a list of tokens."""
        if isinstance(data, (list, tuple, np.ndarray, str)) or np.isscalar(data):
            batches = [data]
        else:
            batches = _batches(data)
        for step, batch in enumerate(batches):
            if steps is not None and step >= steps:
                break
            yield self._documents(batch)

    def _documents(self, batch) -> list:
        try:
            array = np.asarray(unwrap(batch))
        except ValueError:  # rows of different lengths: each row a document
            return [[self._token(t) for t in np.ravel(row).tolist()] for row in batch]
        if array.ndim == 0:
            array = array.reshape(1, 1)
        elif array.ndim == 1:
            array = array.reshape(-1, 1)  # a flat list: each token its own document
        rows = array.reshape(array.shape[0], -1)
        return [[self._token(t) for t in row] for row in rows.tolist()]

    # ---- the lookup ---------------------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        if is_symbolic(inputs) or args or kwargs:
            return super().__call__(inputs, *args, **kwargs)
        return self._lookup(inputs)

    def forward(self, inputs, training):
        return self._lookup(inputs), None

    def backward(self, ctx, grad_outputs):
        return None  # indices have no gradient

    def _lookup(self, inputs) -> np.ndarray:
        values = self._values(inputs)
        if self.invert:
            return self._inverted(values)
        self._check_vocabulary()
        ids = self._indices(values)
        if self.output_mode == "int":
            return ids
        return self._encoded(ids)

    def _indices(self, values: np.ndarray) -> np.ndarray:
        """int64 indices of ``values`` (mask tokens -1 outside int mode: encoded nowhere)."""
        flat = values.reshape(-1).tolist()
        ids = np.fromiter((self._index.get(v, -1) for v in flat), np.int64, len(flat))
        missing = ids < 0
        if self.mask_token is not None:
            masked = np.fromiter((v == self.mask_token for v in flat), bool, len(flat))
            missing &= ~masked
            ids[masked] = 0 if self.output_mode == "int" else -1
        if missing.any():
            ids[missing] = self._oov_indices([v for v, m in zip(flat, missing) if m])
        return ids.reshape(values.shape)

    def _oov_indices(self, tokens: list) -> np.ndarray:
        if self.num_oov_indices == 0:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': When `num_oov_indices=0` all inputs "
                f"should be in vocabulary, found OOV values {tokens[:10]}, consider setting "
                "`num_oov_indices=1`."
            )
        start = self._oov_start()
        if self.num_oov_indices == 1:
            return np.full(len(tokens), start, np.int64)
        return start + self._oov_buckets(tokens)

    def _encoded(self, ids: np.ndarray) -> np.ndarray:
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        encoded = encode_ids(ids.reshape(1) if ids.ndim == 0 else ids, mode, depth, np.int64)
        if self.output_mode != "tf_idf":
            return encoded
        return (encoded * self._idf[:depth]).astype(backend.floatx())

    def _inverted(self, values: np.ndarray) -> np.ndarray:
        vocabulary = self.get_vocabulary()
        ids = np.asarray(values, np.int64)
        tokens = [
            vocabulary[i] if self._token_start() <= i < len(vocabulary) else self._at_special(i)
            for i in ids.reshape(-1).tolist()
        ]
        return np.array(tokens, dtype=self._token_type).reshape(ids.shape)

    def _at_special(self, index: int):
        if index == 0 and self.mask_token is not None:
            return self.mask_token
        return self.oov_token

    def _check_vocabulary(self) -> None:
        if self.output_mode == "tf_idf" and self._idf is None:
            raise ValueError("When `output_mode` is `'tf_idf'`, `idf_weights` must be provided.")
        if self.output_mode != "int" and not self.pad_to_max_tokens and not self._tokens:
            raise RuntimeError(
                f"When using `output_mode={self.output_mode}` and `pad_to_max_tokens=False`, "
                "you must set the layer's vocabulary before calling it. Either pass a "
                "`vocabulary` argument to the layer, or call `adapt` with some sample data."
            )

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.output_mode == "int":
            return input_shape
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        if self.output_mode == "one_hot":
            if len(input_shape) > 1 and input_shape[-1] == 1:
                return (*input_shape[:-1], depth)
            return (*input_shape, depth)
        return (*input_shape[:-1], depth)

    @property
    def output_dtype(self):
        if self.invert:  # the tokens: ints, or strings (object, as no width is known)
            return np.dtype(object if self._token_type is str else self._token_type)
        return np.dtype(backend.floatx() if self.output_mode == "tf_idf" else np.int64)

    def get_config(self):
        vocabulary = self.input_vocabulary
        if vocabulary is None and self._tokens:  # adapted: the vocabulary learned (Keras
            vocabulary = self.get_vocabulary()  # keeps it beside the config, as an asset)
        idf = self.input_idf_weights
        if idf is None and self._idf is not None and vocabulary is not None:
            idf = self._idf[: len(vocabulary)]
        return {
            **super().get_config(),
            "invert": self.invert,
            "max_tokens": self.max_tokens,
            "num_oov_indices": self.num_oov_indices,
            "oov_token": self.oov_token,
            "mask_token": self.mask_token,
            "output_mode": self.output_mode,
            "sparse": False,
            "pad_to_max_tokens": self.pad_to_max_tokens,
            "vocabulary": _listed(vocabulary),
            "idf_weights": _listed(idf),
            "vocabulary_size": self.vocabulary_size(),
            "oov_method": "floormod",
            "salt": None,
        }


def _listed(value):
    return np.asarray(value).tolist() if isinstance(value, (np.ndarray, tuple)) else value


class StringLookup(_IndexLookup):
    """Maps strings to integer indices from a vocabulary.

    Args:
        max_tokens: the vocabulary's largest size, mask and OOV tokens included (None: any).
        num_oov_indices: indices for tokens outside the vocabulary (1; 0 makes one an error).
        mask_token: a token mapped to 0 in ``"int"`` mode and dropped in the others (None).
        oov_token: what ``invert=True`` gives for OOV indices (``"[UNK]"``).
        vocabulary: a list, array or text file (one token per line); or learn it by ``adapt``.
        idf_weights: the IDF weights, with a vocabulary, in ``"tf_idf"`` mode.
        invert: map indices back to strings.
        output_mode: ``"int"``, ``"one_hot"``, ``"multi_hot"``, ``"count"`` or ``"tf_idf"``.
        pad_to_max_tokens: encodings ``max_tokens`` wide whatever the vocabulary's size.
        encoding: how bytes inputs decode (``"utf-8"``).

    Example: ``StringLookup(vocabulary=["a", "b"])([["a", "z"]])`` is ``[[1, 0]]``.
    """

    def __init__(
        self,
        max_tokens=None,
        num_oov_indices=1,
        mask_token=None,
        oov_token="[UNK]",
        vocabulary=None,
        idf_weights=None,
        invert=False,
        output_mode="int",
        pad_to_max_tokens=False,
        sparse=False,
        encoding="utf-8",
        **kwargs,
    ):
        self.encoding = encoding
        if num_oov_indices > 1:
            raise NotImplementedError(
                "StringLookup with num_oov_indices > 1 hashes tokens into OOV indices with "
                "TensorFlow's FarmHash, which fastnn does not implement; use num_oov_indices=1"
            )
        super().__init__(
            max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights,
            invert, output_mode, sparse, pad_to_max_tokens, **kwargs,
        )  # fmt: skip

    _token_type = str  # of ``invert``'s outputs

    def _token(self, value):
        return value.decode(self.encoding) if isinstance(value, bytes) else str(value)

    def _values(self, inputs) -> np.ndarray:
        array = np.asarray(unwrap(inputs))
        if self.invert:
            return array
        if array.dtype.kind == "S" or array.dtype.kind == "O":
            array = np.vectorize(self._token, otypes=[object])(array) if array.size else array
        return array.astype(object)

    def get_config(self):
        return {**super().get_config(), "encoding": self.encoding}


class IntegerLookup(_IndexLookup):
    """Maps integers to contiguous indices from a vocabulary; StringLookup's arguments, with
    ``oov_token=-1`` and tokens that are ints. More than one OOV index hashes a token by
    ``token % num_oov_indices`` (Keras's ``"floormod"``). Runs inside a model too.

    Example: ``IntegerLookup(vocabulary=[12, 36])([[12, 7]])`` is ``[[1, 0]]``.
    """

    def __init__(
        self,
        max_tokens=None,
        num_oov_indices=1,
        mask_token=None,
        oov_token=-1,
        output_mode="int",
        sparse=False,
        vocabulary=None,
        vocabulary_dtype="int64",
        idf_weights=None,
        invert=False,
        pad_to_max_tokens=False,
        **kwargs,
    ):
        self.vocabulary_dtype = str(vocabulary_dtype)
        super().__init__(
            max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights,
            invert, output_mode, sparse, pad_to_max_tokens, **kwargs,
        )  # fmt: skip

    _token_type = np.int64

    @staticmethod
    def _token(value) -> int:
        number = float(value)
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"IntegerLookup: tokens must be integers; got {value!r}")
        return int(number)

    def _values(self, inputs) -> np.ndarray:
        array = np.asarray(unwrap(inputs))
        if array.dtype.kind not in "biuf":
            raise TypeError(f"IntegerLookup '{self.name}': expected integers, got {array.dtype}")
        return array.astype(np.int64)

    def _oov_buckets(self, tokens: list) -> np.ndarray:
        return np.asarray(tokens, np.int64) % self.num_oov_indices

    def get_config(self):
        return {**super().get_config(), "vocabulary_dtype": self.vocabulary_dtype}


class TextVectorization(Layer):
    """Turns strings into token indices or bag-of-words encodings: standardize, split, n-grams,
    then a StringLookup whose mask token is ``""`` (index 0, the padding).

    Args:
        max_tokens: the vocabulary's largest size, the padding and OOV tokens included.
        standardize: ``"lower_and_strip_punctuation"`` (the default: ASCII letters lowered and
            ``!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'`` removed, as TensorFlow's ops do),
            ``"lower"``, ``"strip_punctuation"``, None, or a callable taking and returning a
            numpy array of str.
        split: ``"whitespace"`` (runs of ASCII whitespace), ``"character"``, None or a callable
            taking a numpy array of str and giving a list of token lists.
        ngrams: None, an int n (1- to n-grams) or a tuple of the widths, joined by spaces.
        output_mode: ``"int"`` (the default), ``"multi_hot"``, ``"count"`` or ``"tf_idf"``.
        output_sequence_length: in ``"int"`` mode, pad with 0 or cut to this length (None:
            the batch's longest).
        pad_to_max_tokens, vocabulary, idf_weights, encoding: as StringLookup's.

    Example::

        vectorize = TextVectorization(max_tokens=20000, output_sequence_length=200)
        vectorize.adapt(texts)
        ids = vectorize(texts)  # (len(texts), 200) int64
    """

    casts_inputs = False

    def __init__(
        self,
        max_tokens=None,
        standardize="lower_and_strip_punctuation",
        split="whitespace",
        ngrams=None,
        output_mode="int",
        output_sequence_length=None,
        pad_to_max_tokens=False,
        vocabulary=None,
        idf_weights=None,
        sparse=False,
        ragged=False,
        encoding="utf-8",
        vocabulary_size=None,
        **kwargs,
    ):
        del vocabulary_size  # Keras's config: the size the vocabulary had
        super().__init__(**kwargs)
        standards = (None, "lower_and_strip_punctuation", "lower", "strip_punctuation")
        if not (standardize in standards or callable(standardize)):
            raise ValueError(
                f"Invalid value for argument standardize. Expected one of {list(standards)} or "
                f"a callable. Received: standardize={standardize}"
            )
        if not (split in (None, "whitespace", "character") or callable(split)):
            raise ValueError(
                "Invalid value for argument split. Expected one of [None, 'whitespace', "
                f"'character'] or a callable. Received: split={split}"
            )
        if isinstance(ngrams, list):
            ngrams = tuple(ngrams)
        if not (
            ngrams is None
            or isinstance(ngrams, int)
            or isinstance(ngrams, tuple)
            and all(isinstance(n, int) for n in ngrams)
        ):
            raise ValueError(
                "`ngrams` must be None, an integer, or a tuple of integers. Received: "
                f"ngrams={ngrams}"
            )
        output_mode = _output_mode(output_mode, "TextVectorization")
        if output_mode == "one_hot":
            raise ValueError(
                "Invalid value for argument output_mode. Expected one of ['int', 'multi_hot', "
                "'count', 'tf_idf']. Received: output_mode=one_hot"
            )
        if output_sequence_length is not None and not isinstance(output_sequence_length, int):
            raise ValueError(
                "`output_sequence_length` must be either None or an integer. Received: "
                f"output_sequence_length={output_sequence_length}"
            )
        if output_mode != "int" and output_sequence_length is not None:
            raise ValueError(
                "`output_sequence_length` must not be set if `output_mode` is not 'int'. "
                f"Received output_sequence_length={output_sequence_length}."
            )
        if ragged:
            raise ValueError("`ragged=True` can only be used with the TensorFlow backend.")
        self.standardize, self.split, self.ngrams_arg = standardize, split, ngrams
        self._ngrams = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else ngrams
        self.output_mode, self.output_sequence_length = output_mode, output_sequence_length
        self.encoding = encoding
        self._lookup_layer = StringLookup(
            max_tokens=max_tokens,
            vocabulary=vocabulary,
            idf_weights=idf_weights,
            pad_to_max_tokens=pad_to_max_tokens,
            mask_token="",
            output_mode=output_mode,
            encoding=encoding,
            name=f"{self.name}_lookup",
        )

    # ---- the vocabulary ---------------------------------------------------------------------
    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Learn the vocabulary from ``data``: strings (an array or list of documents), or an
        iterable of batches of them."""
        batches = [data] if isinstance(data, (list, tuple, np.ndarray, str)) else _batches(data)
        self._lookup_layer._learn(
            document
            for step, batch in enumerate(batches)
            if steps is None or step < steps
            for document in self._tokenized(batch)
        )

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary in index order (with ``""`` and ``"[UNK]"`` unless not
        ``include_special_tokens``)."""
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self._lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Replace the vocabulary (and IDF weights in ``"tf_idf"`` mode)."""
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights)

    # ---- the call -----------------------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        if is_symbolic(inputs):
            raise NotImplementedError(
                f"TextVectorization '{self.name}' works on strings outside the model (fastnn's "
                "models run on numbers): vectorize the data first, e.g. "
                "model.fit(vectorize(texts), labels)"
            )
        if args or kwargs:
            raise TypeError(f"TextVectorization '{self.name}' takes the strings alone")
        documents = self._tokenized(inputs)
        lookup = self._lookup_layer
        if self.output_mode != "int":
            return np.stack([lookup._encoded(lookup._indices(_tokens(d))) for d in documents])
        length = self.output_sequence_length
        if length is None:
            length = max((len(d) for d in documents), default=0)
        ids = np.zeros((len(documents), length), np.int64)
        for row, document in enumerate(documents):
            found = lookup._indices(_tokens(document[:length]))
            ids[row, : len(found)] = found
        return ids

    def _tokenized(self, inputs) -> list:
        """Each string of ``inputs`` (a batch, or one string) as its list of tokens."""
        texts = self._texts(inputs)
        texts = self._standardized(texts)
        if self.split is None:
            documents = [[t] for t in texts.tolist()]
        elif self.split == "whitespace":
            documents = [[w for w in _WHITESPACE.split(t) if w] for t in texts.tolist()]
        elif self.split == "character":
            documents = [list(t) for t in texts.tolist()]
        else:
            documents = [list(map(str, d)) for d in self.split(texts)]
        if self._ngrams is not None:
            documents = [_ngrams(d, self._ngrams) for d in documents]
        return documents

    def _texts(self, inputs) -> np.ndarray:
        """The strings as a 1-D numpy array of str."""
        array = np.asarray(unwrap(inputs))
        if array.ndim > 1:
            if array.shape[-1] != 1:
                raise ValueError(
                    "When using `TextVectorization` to tokenize strings, the input rank must "
                    "be 1 or the last shape dimension must be 1. Received: "
                    f"inputs.shape={array.shape} with rank={array.ndim}"
                )
            array = array.reshape(array.shape[:-1])
        if array.ndim > 1:
            raise ValueError(
                f"TextVectorization '{self.name}': expected a batch of strings (batch,) or "
                f"(batch, 1); got shape {np.asarray(unwrap(inputs)).shape}"
            )
        array = array.reshape(-1)
        if array.dtype.kind in "SO":
            array = np.array([self._lookup_layer._token(t) for t in array.tolist()], dtype=str)
        elif array.dtype.kind != "U":
            raise TypeError(f"TextVectorization '{self.name}': expected strings, got {array.dtype}")
        return array

    def _standardized(self, texts: np.ndarray) -> np.ndarray:
        if callable(self.standardize):
            return np.asarray(self.standardize(texts), dtype=str).reshape(-1)
        standardize = self.standardize or ""
        out = texts.tolist()
        if standardize.startswith("lower"):
            out = [t.translate(_ASCII_LOWER) for t in out]
        if standardize.endswith("strip_punctuation"):
            out = [_STRIP_PUNCTUATION.sub("", t) for t in out]
        return np.array(out, dtype=str) if out else texts

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return (input_shape[0], self.output_sequence_length)
        lookup = self._lookup_layer
        depth = lookup.max_tokens if lookup.pad_to_max_tokens else lookup.vocabulary_size()
        return (input_shape[0], depth)

    def get_config(self):
        lookup = self._lookup_layer.get_config()
        return {
            **super().get_config(),
            "max_tokens": lookup["max_tokens"],
            "standardize": self.standardize,
            "split": self.split,
            "ngrams": self.ngrams_arg,
            "output_mode": self.output_mode,
            "output_sequence_length": self.output_sequence_length,
            "pad_to_max_tokens": lookup["pad_to_max_tokens"],
            "sparse": False,
            "ragged": False,
            "vocabulary": lookup["vocabulary"],
            "idf_weights": lookup["idf_weights"],
            "encoding": self.encoding,
            "vocabulary_size": self.vocabulary_size(),
        }


def _tokens(document: list) -> np.ndarray:
    array = np.empty(len(document), object)
    array[:] = document
    return array


def _ngrams(tokens: list, widths: tuple) -> list:
    """The n-grams of ``tokens`` for each width, joined by spaces, widths in order."""
    return [" ".join(tokens[i : i + n]) for n in widths for i in range(len(tokens) - n + 1)]
