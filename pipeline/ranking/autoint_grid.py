"""A trained DeepCTR AutoInt scored over a users × catalogue grid, fast, from its own weights.

Ranking every movie for every user is 22.4 M (user, movie) rows on ML-1M. DeepCTR's graph scores
~150k rows/s on 2 cores, mostly in tiny 14×14 batched matrix products, so Top-10 for all users takes
~3 minutes. This module computes the same forward pass (embeddings → InteractingLayers → flatten,
optional DNN, linear term, sigmoid) with two changes that do not change the result:

* Work that depends on one side only is done once per side, not once per row: the embeddings, their
  first-layer query/key/value/residual projections, the linear term and the DNN's first layer are
  sums over fields, and each field belongs to the user (with the rating-time context) or to the movie.
  Attention is equivariant in the order of fields, so the user's fields go first and the output
  weights are permuted to match.
* The remaining per-row work runs in one numba kernel over tiles of TILE movies laid out so that every
  operation is one vector instruction across the tile (no horizontal sums, no tiny matrix calls).

It scores exactly what the Keras model scores, up to float rounding (~1e-6); a test compares the two,
scores and rankings. `scoring.ModelScorer` uses it for every Top-N; rows with arbitrary
(user, movie) pairs, such as the test ratings, still go through the Keras model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from pipeline import config

SIDE_FIELDS = (*config.USER_FIELDS, *config.CONTEXT_FIELDS)
MOVIE_FIELDS = config.MOVIE_FIELDS
GRID_ORDER = (*SIDE_FIELDS, *MOVIE_FIELDS)
# Movies per tile. A run-time trip count lets LLVM vectorise every lane loop (a constant 16 gets
# unrolled into scalar code instead); 128 measured fastest of 32…256 on this machine.
TILE = 128
N_FIELDS = len(config.FIELDS)
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# The attention shape the kernel is compiled for: DeepCTR's default 8 dimensions per head (build_model
# keeps it) and the pipeline's 2 heads. Constants let LLVM unroll these loops; other shapes are
# rejected by from_model and scored by the Keras model instead.
HEAD_DIM = 8
HEADS = 2
ATT_DIM = HEADS * HEAD_DIM

_F32 = np.float32
# expf after Cephes: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-7 polynomial, 2^n from a table.
_LOG2E = _F32(1.44269504088896341)
_LN2_HI = _F32(0.693359375)
_LN2_LO = _F32(-2.12194440e-4)
_EXP_MIN = _F32(-87.0)  # exp underflows below; softmax inputs are <= 0 once the max is taken
_P0, _P1, _P2 = _F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3)
_P3, _P4, _P5 = _F32(4.1665795894e-2), _F32(1.6666665459e-1), _F32(5.0000001201e-1)
_ONE, _HALF, _ZERO = _F32(1.0), _F32(0.5), _F32(0.0)
_POW2_NEG = np.array([2.0**-k for k in range(128)], dtype=np.float32)  # 2^0 … 2^-127, exact


@njit(inline="always", fastmath=True, error_model="numpy")
def _exp_mantissa(x):
    """exp(x) = mantissa * 2^n for x <= 0 in float32: returns (mantissa, n). Split in two so that a
    loop of these vectorises (no libm call, no table lookup); within ~2 ulp of expf."""
    x = max(x, _EXP_MIN)
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _P0 * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    return p * r * r + r + _ONE, np.int32(n)


@njit(inline="always", fastmath=True, error_model="numpy")
def _pow2_bits(n):
    """The float32 bit pattern of 2^n (n >= -126), to be read through a float32 view."""
    return (n + np.int32(127)) << np.int32(23)


@njit(inline="always", fastmath=True, error_model="numpy")
def _exp_nonpositive(x, pow2_neg):
    """exp(x) for one x <= 0 (scalar use; loops use _exp_mantissa and _pow2_bits)."""
    mantissa, n = _exp_mantissa(x)
    return mantissa * pow2_neg[-n]


@njit(inline="always", fastmath=True, error_model="numpy")
def _sigmoid(x, pow2_neg):
    if x >= _ZERO:
        return _ONE / (_ONE + _exp_nonpositive(-x, pow2_neg))
    e = _exp_nonpositive(x, pow2_neg)
    return e / (_ONE + e)


@njit(nogil=True, cache=True, fastmath=True, error_model="numpy")
def _grid_kernel(
    side_proj,
    side_const,
    side_dnn,
    movie_proj_t,
    movie_const,
    movie_dnn,
    att_kernels_t,
    att_out,
    dnn_bias0,
    dnn_kernels,
    dnn_biases,
    dnn_out,
    pow2_neg,
    tile,
    worker,
    workers,
    out,
):
    """out[u, m] = P(like) for side row u and movie m; see the module docstring for the layout.

    side_proj (U, Fs, 4A) / movie_proj_t (Fm, 4A, M): first-layer [query | key | value | residual] per field
    side_const / movie_const: linear term (and, on the side, the global bias)
    side_dnn / movie_dnn (·, H0): the DNN's first-layer pre-activation contributions
    att_kernels_t (L-1, 4A, A): the later InteractingLayers' projections, transposed
    att_out (F, A): output weights of the flattened attention
    dnn_kernels (K, W, W) / dnn_biases (K, W): later DNN layers, zero-padded to one width W >= H0
    tile: movies per work item; this call does the items worker, worker + workers, … (one call per thread)
    Every innermost loop runs over the tile's movies (t) with the small dimensions (N_FIELDS, HEADS,
    HEAD_DIM) as compile-time constants, so LLVM unrolls those and vectorises across movies.
    """
    n_side, f_side, four_a = side_proj.shape
    f_movie, n_movies = movie_proj_t.shape[0], movie_proj_t.shape[2]
    a = four_a // 4
    n_att = att_kernels_t.shape[0] + 1 if four_a > 0 else 0
    h0 = dnn_bias0.shape[0]
    width = dnn_kernels.shape[1] if dnn_kernels.shape[0] > 0 else h0
    # Work items are (side row, tile of movies), dealt round-robin to the threads, so one user's
    # catalogue is spread over all cores too.
    n_tiles = (n_movies + tile - 1) // tile
    n_items = n_side * n_tiles
    proj = np.zeros((N_FIELDS, four_a, tile), dtype=np.float32)
    x = np.zeros((N_FIELDS, a, tile), dtype=np.float32)
    scores = np.zeros((N_FIELDS, tile), dtype=np.float32)
    bits = np.zeros((N_FIELDS, tile), dtype=np.int32)
    pow2 = bits.view(np.float32)
    peak = np.zeros(tile, dtype=np.float32)
    total = np.zeros(tile, dtype=np.float32)
    logit = np.zeros(tile, dtype=np.float32)
    hidden = np.zeros((width, tile), dtype=np.float32)
    nxt = np.zeros((width, tile), dtype=np.float32)
    rows = np.zeros(tile, dtype=np.int64)
    for item in range(worker, n_items, workers):
        u = item // n_tiles
        start = (item % n_tiles) * tile
        for t in range(tile):
            rows[t] = min(start + t, n_movies - 1)  # the last tile repeats its final movie
        for f in range(f_side):
            for c in range(four_a):
                value = side_proj[u, f, c]
                for t in range(tile):
                    proj[f, c, t] = value
        for f in range(f_movie):
            for c in range(four_a):
                for t in range(tile):
                    proj[f_side + f, c, t] = movie_proj_t[f, c, rows[t]]
        for layer in range(n_att):
            if layer > 0:
                kernel = att_kernels_t[layer - 1]
                for f in range(N_FIELDS):
                    for c in range(four_a):
                        for t in range(tile):
                            s = _ZERO
                            for d in range(ATT_DIM):
                                s += x[f, d, t] * kernel[c, d]
                            proj[f, c, t] = s
            for h in range(HEADS):
                q0, k0, v0, r0 = h * HEAD_DIM, a + h * HEAD_DIM, 2 * a + h * HEAD_DIM, 3 * a + h * HEAD_DIM
                for i in range(N_FIELDS):
                    for j in range(N_FIELDS):
                        for t in range(tile):
                            s = _ZERO
                            for e in range(HEAD_DIM):
                                s += proj[i, q0 + e, t] * proj[j, k0 + e, t]
                            scores[j, t] = s
                    for t in range(tile):
                        m = scores[0, t]
                        for j in range(1, N_FIELDS):
                            m = max(m, scores[j, t])
                        peak[t] = m
                    for j in range(N_FIELDS):
                        for t in range(tile):
                            scores[j, t], n = _exp_mantissa(scores[j, t] - peak[t])
                            bits[j, t] = _pow2_bits(n)
                    for t in range(tile):
                        s = _ZERO
                        for j in range(N_FIELDS):
                            scores[j, t] *= pow2[j, t]
                            s += scores[j, t]
                        total[t] = s
                    for e in range(HEAD_DIM):
                        for t in range(tile):
                            s = _ZERO
                            for j in range(N_FIELDS):
                                s += scores[j, t] * proj[j, v0 + e, t]
                            x[i, q0 + e, t] = max(s / total[t] + proj[i, r0 + e, t], _ZERO)
        for t in range(tile):
            logit[t] = side_const[u] + movie_const[rows[t]]
        for f in range(N_FIELDS if n_att > 0 else 0):
            for c in range(a):
                w = att_out[f, c]
                for t in range(tile):
                    logit[t] += x[f, c, t] * w
        if h0 > 0:
            for k in range(h0):
                for t in range(tile):
                    hidden[k, t] = max(side_dnn[u, k] + movie_dnn[rows[t], k] + dnn_bias0[k], _ZERO)
            for layer in range(dnn_kernels.shape[0]):
                for k in range(width):
                    for t in range(tile):
                        nxt[k, t] = dnn_biases[layer, k]
                    for j in range(width):
                        w = dnn_kernels[layer, j, k]
                        for t in range(tile):
                            nxt[k, t] += hidden[j, t] * w
                for k in range(width):
                    for t in range(tile):
                        hidden[k, t] = max(nxt[k, t], _ZERO)
            for k in range(dnn_out.shape[0]):
                w = dnn_out[k]
                for t in range(tile):
                    logit[t] += hidden[k, t] * w
        for t in range(min(tile, n_movies - start)):
            out[u, start + t] = _sigmoid(logit[t], pow2_neg)


class UnsupportedModel(ValueError):
    """The model is not a DeepCTR AutoInt this module can reproduce (e.g. batch norm, non-relu DNN)."""


@dataclass
class AutoIntGrid:
    """The weights of one trained AutoInt, rearranged for `_grid_kernel`; call it on a grid."""

    embeddings: dict[str, np.ndarray]  # field → (vocabulary, D)
    linear: dict[str, np.ndarray]  # field → (vocabulary,)
    first_projection: np.ndarray  # (D, 4A) [query | key | value | residual] of the first layer
    att_kernels_t: np.ndarray  # (L-1, 4A, A): later layers' projections, transposed
    att_out: np.ndarray  # (F, A) output weights of the flattened attention, in GRID_ORDER
    dnn_first: dict[str, np.ndarray]  # field → (D, H0): the DNN's first kernel, per field
    dnn_bias0: np.ndarray  # (H0,)
    dnn_kernels: np.ndarray  # (K, W, W)
    dnn_biases: np.ndarray  # (K, W)
    dnn_out: np.ndarray  # (W,)
    bias: float

    _movie_terms: tuple | None = field(default=None, repr=False)  # (key, terms) of the last catalogue

    def side_terms(self, values: dict[str, np.ndarray], fields: tuple[str, ...]):
        """Per row of one side: first-layer projections (n, k, 4A), linear term (n,), and the DNN's
        first-layer contribution (n, H0), as float32 (the sums are taken in float64)."""
        n = len(values[fields[0]])
        emb = np.stack([self.embeddings[f][values[f]] for f in fields], axis=1)  # n, k, D
        proj = emb @ self.first_projection if self.first_projection.size else np.zeros((n, len(fields), 0))
        linear = np.zeros(n)
        dnn = np.zeros((n, len(self.dnn_bias0)))
        for k, f in enumerate(fields):
            linear += self.linear[f][values[f]]
            if len(self.dnn_bias0):
                dnn += emb[:, k] @ self.dnn_first[f]
        as32 = lambda array: np.ascontiguousarray(array, dtype=np.float32)  # noqa: E731
        return as32(proj), as32(linear), as32(dnn)

    def movie_terms(self, movies: dict[str, np.ndarray]):
        """side_terms of the catalogue, projections transposed to (k, 4A, M); kept for the next call,
        since top_n scores the same catalogue chunk after chunk."""
        key = hash(tuple(np.asarray(movies[f]).tobytes() for f in MOVIE_FIELDS))
        if self._movie_terms is None or self._movie_terms[0] != key:
            proj, linear, dnn = self.side_terms(movies, MOVIE_FIELDS)
            self._movie_terms = key, (np.ascontiguousarray(proj.transpose(1, 2, 0)), linear, dnn)
        return self._movie_terms[1]

    def __call__(self, side: dict[str, np.ndarray], movies: dict[str, np.ndarray]) -> np.ndarray:
        """P(like) for every (side row, movie): side holds the user and context fields, movies the
        movie fields (codes). Returns float32 (n side rows, n movies)."""
        side_proj, side_linear, side_dnn = self.side_terms(side, SIDE_FIELDS)
        movie_proj_t, movie_linear, movie_dnn = self.movie_terms(movies)
        out = np.empty((side_proj.shape[0], movie_proj_t.shape[2]), dtype=np.float32)
        if out.size:
            side_const = side_linear + np.float32(self.bias)
            threads = min(THREADS, side_proj.shape[0] * -(-out.shape[1] // TILE))

            def run(worker: int) -> None:
                _grid_kernel(
                    side_proj,
                    side_const,
                    side_dnn,
                    movie_proj_t,
                    movie_linear,
                    movie_dnn,
                    self.att_kernels_t,
                    self.att_out,
                    self.dnn_bias0,
                    self.dnn_kernels,
                    self.dnn_biases,
                    self.dnn_out,
                    _POW2_NEG,
                    TILE,
                    worker,
                    threads,
                    out,
                )

            # The kernel releases the GIL, so plain threads run it on every core. (numba's prange
            # measured ~35 % slower per core on this kernel.)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, range(threads)))
        return out


def from_model(model) -> AutoIntGrid:
    """Read a DeepCTR AutoInt (as built by train.build_model, or loaded from .keras) into an AutoIntGrid."""
    import tensorflow as tf
    from deepctr.layers.core import DNN, PredictionLayer
    from deepctr.layers.interaction import InteractingLayer

    embeddings, linear = {}, {}
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Embedding):
            table = layer.get_weights()[0]
            if layer.name.startswith("linear0sparse_emb_"):
                linear[layer.name.removeprefix("linear0sparse_emb_")] = table[:, 0]
            elif layer.name.startswith("sparse_emb_"):
                embeddings[layer.name.removeprefix("sparse_emb_")] = table
    if set(embeddings) != set(config.FIELDS) or set(linear) != set(config.FIELDS):
        raise UnsupportedModel("the model's embeddings are not the 14 fields of config.FIELDS")
    att = [layer for layer in model.layers if isinstance(layer, InteractingLayer)]
    dnns = [layer for layer in model.layers if isinstance(layer, DNN)]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    prediction = [layer for layer in model.layers if isinstance(layer, PredictionLayer)]
    if len(dense) != 1 or len(prediction) != 1 or len(dnns) > 1 or dense[0].use_bias:
        raise UnsupportedModel("not a DeepCTR AutoInt graph")
    if any(layer.scaling or layer.att_embedding_size != HEAD_DIM or layer.head_num != HEADS for layer in att):
        raise UnsupportedModel(f"only unscaled attention with {HEADS} heads of {HEAD_DIM} dimensions is supported")

    dim = embeddings[config.FIELDS[0]].shape[1]
    out_kernel = dense[0].get_weights()[0][:, 0]
    n_fields = len(config.FIELDS)
    order = [config.FIELDS.index(f) for f in GRID_ORDER]

    def projection(layer) -> np.ndarray:
        residual = layer.W_Res.numpy() if layer.use_res else np.zeros_like(layer.W_Query.numpy())
        return np.concatenate([layer.W_Query.numpy(), layer.W_key.numpy(), layer.W_Value.numpy(), residual], axis=1)

    if att:
        a = att[0].att_embedding_size * att[0].head_num
        first_projection = projection(att[0])
        att_kernels_t = (
            np.stack([projection(layer).T for layer in att[1:]])
            if len(att) > 1
            else np.zeros((0, 4 * a, a), np.float32)
        )
        att_out = out_kernel[: n_fields * a].reshape(n_fields, a)[order]
    else:
        a = 0
        first_projection = np.zeros((dim, 0), np.float32)
        att_kernels_t = np.zeros((0, 0, 0), np.float32)
        att_out = np.zeros((n_fields, 0), np.float32)

    if dnns:
        dnn = dnns[0]
        if dnn.use_bn or dnn.activation != "relu":
            raise UnsupportedModel("only a relu DNN without batch norm is supported")
        weights = dnn.get_weights()
        kernels, biases = weights[: len(dnn.hidden_units)], weights[len(dnn.hidden_units) : 2 * len(dnn.hidden_units)]
        first = kernels[0].reshape(n_fields, dim, -1)
        dnn_first = {f: first[config.FIELDS.index(f)] for f in config.FIELDS}
        width = max(dnn.hidden_units)
        dnn_kernels = np.zeros((len(kernels) - 1, width, width), np.float32)
        dnn_biases = np.zeros((len(kernels) - 1, width), np.float32)
        for k, (kernel, bias) in enumerate(zip(kernels[1:], biases[1:])):
            dnn_kernels[k, : kernel.shape[0], : kernel.shape[1]] = kernel
            dnn_biases[k, : len(bias)] = bias
        dnn_out = np.zeros(width, np.float32)
        dnn_out[: dnn.hidden_units[-1]] = out_kernel[n_fields * a :]
        dnn_bias0 = biases[0]
    else:
        dnn_first = {}
        dnn_bias0 = np.zeros(0, np.float32)
        dnn_kernels = np.zeros((0, 0, 0), np.float32)
        dnn_biases = np.zeros((0, 0), np.float32)
        dnn_out = np.zeros(0, np.float32)

    f32 = lambda array: np.ascontiguousarray(array, dtype=np.float32)  # noqa: E731
    return AutoIntGrid(
        embeddings=embeddings,
        linear=linear,
        first_projection=f32(first_projection),
        att_kernels_t=f32(att_kernels_t),
        att_out=f32(att_out),
        dnn_first=dnn_first,
        dnn_bias0=f32(dnn_bias0),
        dnn_kernels=f32(dnn_kernels),
        dnn_biases=f32(dnn_biases),
        dnn_out=f32(dnn_out),
        bias=float(prediction[0].global_bias.numpy()[0]),
    )
