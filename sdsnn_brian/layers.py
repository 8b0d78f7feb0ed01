r"""How each trained layer forms its input current: dense, convolution, pooling.

Pure numpy; :mod:`sdsnn_brian.builder` turns these maps into Brian2 objects and
:mod:`sdsnn_brian.gradient` uses the same operators backwards.

Per trained layer ``k`` a :class:`Connection` says what it sees and how:

``dense``
    ``I = W z`` with ``W`` of shape ``(N, n_in)``; ``z`` is the previous layer's
    spikes flattened channel-major (``c*H*W + y*W + x``), or their pooled average.
``conv``
    ``I = K * z`` (cross-correlation with stride and zero padding, as
    ``torch.nn.functional.conv2d``), one tied kernel ``K`` of shape
    ``(C_out, C_in, kh, kw)``; the bias, if any, is one value per output channel.

Tied weights (Brian2 2.8 has no synaptic weight sharing)
--------------------------------------------------------
On C++ standalone (with sdsnn_brian's event code) a conv layer is one ``Synapses``
object with one synapse per kernel entry (:class:`KernelMap`), whose generated code
applies the kernel to each spiking source's output window
(:func:`sdsnn_brian.codegen.conv_codeobj_class`).  Elsewhere it has one synapse per
(input position, output position) pair that a kernel entry links; synapse ``q``
carries the value ``K.ravel()[kidx[q]]`` (:class:`SynapseMap`), written before every
run.  Gradients are computed per kernel entry directly (im2col), which equals
``np.bincount(kidx, weights=per-synapse gradient)``; the tests check both.

Average pooling (decision)
--------------------------
The SD-SNN reference pools *spikes* with ``F.avg_pool2d`` and feeds the average to
the next trained layer, which therefore receives ``W @ avgpool(s)``: the pool is not
a layer of neurons and has no delay.  In Brian2 the pool is a *relay group*, one
unit per pooled position, between the two layers within the same time step:

1. each spike of the layer below adds ``1/(ph*pw)`` to its window's relay unit
   (``x += 1/4`` for 2x2; one fixed synapse per source neuron);
2. a relay unit with ``x > 0`` emits one event; the next layer's synapses add
   ``w * x_pre`` (so one event carries the graded average, exactly ``w * count/4``);
3. ``x`` is put back to 0 after the next layer has read it.

This is exactly ``W @ avgpool(s)`` (sums of powers of two are exact in floating
point; only the summation order differs from numpy's), costs one synapse per
kernel entry and pooled position -- four times fewer than folding the 1/4 factors
into the next layer's synapses -- and one synaptic event per active window.  The
numpy backward (:meth:`Connection.pooled` / :meth:`Connection.unpool`) mirrors it:
the next layer's input gradient is spread back over each window with weight 1/4.
Windows that do not fit (an odd row or column) are dropped, as in ``F.avg_pool2d``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Connection", "SynapseMap", "KernelMap", "LayerDynamics", "connections_of", "conv2d_synapses",
           "conv2d_kernel_entries"]

#: Elements of scratch (im2col columns) per chunk of the conv operators' products (2^21 was the
#: fastest of 2^20..2^24 in benchmarks/conv_backward.py: the chunk stays in the cache).
CHUNK_ELEMENTS = 1 << 21


class LayerDynamics(list):
    """A list of per-layer :class:`~sdsnn_brian.neuron.Dynamics` that also carries the
    layers' :class:`Connection` objects (``.connections``), so that the backward pass
    knows how each layer's input was formed."""

    def __init__(self, dynamics, connections):
        super().__init__(dynamics)
        self.connections = list(connections)


@dataclass
class SynapseMap:
    """Synapses of a tied (conv) layer: ``pre[q] -> post[q]`` carries ``param.ravel()[kidx[q]]``.

    Sorted pre-major (the synapses one spike reaches lie together).
    """

    pre: np.ndarray
    post: np.ndarray
    kidx: np.ndarray

    def __len__(self):
        return len(self.pre)

    def select(self, mask) -> "SynapseMap":
        """The synapses whose parameter entry is present in ``mask`` (parameter-shaped 0/1)."""
        keep = np.asarray(mask).ravel()[self.kidx] != 0
        return type(self)(self.pre[keep], self.post[keep], self.kidx[keep])

    def expand(self, param) -> np.ndarray:
        """Per-synapse float64 values of a parameter-shaped array."""
        return np.ascontiguousarray(np.asarray(param, dtype=np.float64).ravel()[self.kidx])

    def reduce(self, per_synapse, shape) -> np.ndarray:
        """Sum per-synapse values per parameter entry (the tied-weight gradient rule)."""
        n = int(np.prod(shape))
        return np.bincount(self.kidx, weights=per_synapse, minlength=n).reshape(shape)


class KernelMap(SynapseMap):
    """The synapses of a conv layer built as its kernel (C++ standalone, :mod:`sdsnn_brian.codegen`):
    one synapse per kernel entry, ``kidx[q]`` its flat index into ``(C_out, C_in, kh, kw)``.

    Ordered tap-major: input channel, kernel row, kernel column, then output channel (the
    entries one source spike reaches through one kernel offset lie together).  ``pre[q]`` is
    the first position of the entry's input channel and ``post[q]`` the first position of its
    output channel: Brian2 needs valid indices, the generated code ignores them and finds the
    targets of each spiking source from the layer's geometry.
    """


def conv2d_kernel_entries(in_shape, out_channels, kernel, out_hw) -> KernelMap:
    """Every kernel entry of a 2-D convolution as a :class:`KernelMap` (tap-major)."""
    C_in, H, W = in_shape
    kh, kw = kernel
    Ho, Wo = out_hw
    ci, ky, kx, co = np.meshgrid(np.arange(C_in), np.arange(kh), np.arange(kw), np.arange(out_channels),
                                 indexing="ij")
    kidx = ((co * C_in + ci) * kh + ky) * kw + kx
    itype = np.int32 if max(C_in * H * W, out_channels * Ho * Wo, kidx.size) < 2 ** 31 else np.int64
    return KernelMap((ci * (H * W)).ravel().astype(itype), (co * (Ho * Wo)).ravel().astype(itype),
                     kidx.ravel().astype(itype))


def conv2d_synapses(in_shape, out_channels, kernel, stride, padding) -> SynapseMap:
    """All (input position, output position, kernel entry) triples of a 2-D convolution.

    ``in_shape = (C_in, H, W)``; indices are channel-major flat indices of the input
    and output maps and flat indices into the ``(C_out, C_in, kh, kw)`` kernel.
    """
    C_in, H, W = in_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    # spatial geometry, shared by every channel pair: output (oy, ox), kernel entry (dy, dx)
    oy, ox, dy, dx = np.meshgrid(np.arange(Ho), np.arange(Wo), np.arange(kh), np.arange(kw), indexing="ij")
    iy, ix = oy * sh + dy - ph, ox * sw + dx - pw
    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    sp_pre = (iy * W + ix)[ok]
    sp_post = (oy * Wo + ox)[ok]
    sp_k = (dy * kw + dx)[ok]
    order = np.lexsort((sp_post, sp_pre))
    sp_pre, sp_post, sp_k = sp_pre[order], sp_post[order], sp_k[order]
    n_sp = sp_pre.size
    # axes (ci, spatial, co): pre = ci*H*W + spatial pre is non-decreasing, i.e. pre-major
    shape = (C_in, n_sp, out_channels)
    ci = np.arange(C_in, dtype=np.int64).reshape(C_in, 1, 1)
    co = np.arange(out_channels, dtype=np.int64).reshape(1, 1, out_channels)
    pre = np.broadcast_to(ci * (H * W) + sp_pre.reshape(1, n_sp, 1), shape).reshape(-1)
    post = np.broadcast_to(co * (Ho * Wo) + sp_post.reshape(1, n_sp, 1), shape).reshape(-1)
    kidx = np.broadcast_to((co * C_in + ci) * (kh * kw) + sp_k.reshape(1, n_sp, 1), shape).reshape(-1)
    largest = max(C_in * H * W, out_channels * Ho * Wo, out_channels * C_in * kh * kw)
    itype = np.int32 if largest < 2 ** 31 else np.int64  # int32: half the memory of a large map
    return SynapseMap(pre.astype(itype), post.astype(itype), kidx.astype(itype))


@dataclass
class Connection:
    """How trained layer ``index`` (1-based) forms its input current from the layer below.

    ``in_shape``: shape of the layer below ((n,) or (C, H, W)); ``pool``: the
    :class:`~sdsnn_brian.network.AvgPool2d` between them, or None; ``op_shape``: what
    the operator sees (pooled shape, or ``in_shape``); ``out_shape``: this layer's
    neurons; ``param_shape``/``bias_shape``: the trained arrays.
    """

    index: int
    kind: str
    in_shape: tuple
    op_shape: tuple
    out_shape: tuple
    param_shape: tuple
    bias_shape: tuple
    pool: object = None
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    _map: SynapseMap | None = field(default=None, repr=False, compare=False)
    _kmap: KernelMap | None = field(default=None, repr=False, compare=False)

    # -- sizes ----------------------------------------------------------------
    @property
    def n_pre(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_op(self) -> int:
        """Inputs of the operator (pooled positions when pooling)."""
        return int(np.prod(self.op_shape))

    @property
    def n_post(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.param_shape[1:]))

    @property
    def plain(self) -> bool:
        """The original fully connected case: dense, no pooling."""
        return self.kind == "dense" and self.pool is None

    @property
    def pool_scale(self) -> float:
        return 1.0 / (self.pool.kernel[0] * self.pool.kernel[1]) if self.pool is not None else 1.0

    # -- synapses ---------------------------------------------------------------
    def synapse_map(self) -> SynapseMap:
        """The conv layer's synapse triples (from the operator's inputs); cached."""
        if self.kind != "conv":
            raise ValueError(f"layer {self.index} is dense: its synapses are all-to-all (builder.synapse_order)")
        if self._map is None:
            self._map = conv2d_synapses(self.op_shape, self.out_shape[0], self.kernel, self.stride, self.padding)
        return self._map

    def kernel_map(self) -> KernelMap:
        """The conv layer's kernel entries as the synapses of a kernel build (:class:`KernelMap`); cached."""
        if self.kind != "conv":
            raise ValueError(f"layer {self.index} is dense: it has no kernel")
        if self._kmap is None:
            self._kmap = conv2d_kernel_entries(self.op_shape, self.out_shape[0], self.kernel, self.out_shape[1:])
        return self._kmap

    def n_synapses(self, mask=None) -> int:
        """Synapses of the layer, one per (input position, output position, kernel entry) for a conv
        layer (present ones only when ``mask`` is given); counted without building the map."""
        if self.kind == "dense":
            return self.n_op * self.n_post if mask is None else int(np.count_nonzero(mask))
        per_entry = np.broadcast_to(self.positions_per_offset(), self.param_shape)
        if mask is None:
            return int(per_entry.sum())
        return int(per_entry[np.asarray(mask) != 0].sum())

    def _offset_reach(self) -> tuple:
        """``(rows (kh, H), cols (kw, W))`` 0/1: whether kernel row (column) offset ``a`` puts input row
        (column) ``y`` in the window of an output position (``oy*sh + a - ph = y``, ``0 <= oy < Ho``)."""
        _, H, W = self.op_shape
        _, Ho, Wo = self.out_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding

        def reach(n_in, n_out, k, s, p):
            n = np.arange(n_in)[None, :] + p - np.arange(k)[:, None]  # oy * s
            return ((n >= 0) & (n % s == 0) & (n // s < n_out)).astype(np.float64)

        return reach(H, Ho, kh, sh, ph), reach(W, Wo, kw, sw, pw)

    def positions_per_offset(self) -> np.ndarray:
        """``(kh, kw)``: for each kernel offset, the output positions whose window puts it on the input
        map (not on the padding): the synapses each kernel entry of that offset stands for."""
        _, H, W = self.op_shape
        _, Ho, Wo = self.out_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding

        def inside(n_out, k, s, p, n_in):
            pos = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] - p
            return ((pos >= 0) & (pos < n_in)).sum(axis=0)

        return np.outer(inside(Ho, kh, sh, ph, H), inside(Wo, kw, sw, pw, W))

    def pool_members(self) -> tuple:
        """``(source, relay)`` index arrays: which neuron below feeds which pooled position."""
        C, H, W = self.in_shape
        _, Hp, Wp = self.op_shape
        (kh, kw), (sh, sw) = self.pool.kernel, self.pool.stride
        c, py, px, a, b = np.meshgrid(np.arange(C), np.arange(Hp), np.arange(Wp), np.arange(kh), np.arange(kw),
                                      indexing="ij")
        src = (c * H + py * sh + a) * W + px * sw + b
        relay = (c * Hp + py) * Wp + px
        order = np.argsort(src.ravel(), kind="stable")
        return src.ravel()[order].astype(np.int64), relay.ravel()[order].astype(np.int64)

    def expand_bias(self, b) -> np.ndarray:
        """Per-neuron float64 bias (a conv layer's per-channel bias repeated over positions)."""
        b = np.asarray(b, dtype=np.float64)
        if self.kind == "conv":
            return np.repeat(b, self.out_shape[1] * self.out_shape[2])
        return b

    def fanout(self, mask) -> np.ndarray:
        """Present synapses per neuron of the layer below (synaptic events per spike).

        With pooling a source spike reaches its relay unit, which sends at most one event
        per step however many of its window's sources spiked; each source is credited
        with its relay's full fan-out (an upper bound on the events it causes)."""
        m = np.asarray(mask)
        if self.kind == "dense":
            per_op = (m != 0).sum(axis=0).astype(np.float64)
        else:  # per input position: the present entries of each kernel offset that puts it in a window
            C, H, W = self.op_shape
            present = (m != 0).sum(axis=0).astype(np.float64)  # (C_in, kh, kw): output channels present
            rows, cols = self._offset_reach()
            per_op = np.einsum("cab,ay,bx->cyx", present, rows, cols).reshape(-1)
        if self.pool is None:
            return per_op
        src, relay = self.pool_members()
        out = np.zeros(self.n_pre)
        np.add.at(out, src, per_op[relay])
        return out

    # -- numpy operators (forward re-simulation and backward) -------------------
    def pooled(self, z, dtype=None) -> np.ndarray:
        """``[M, n_pre]`` spikes -> ``[M, n_op]`` window averages (identity without pooling).

        ``dtype``: of the result (float64 when None).  Spikes given as bool or unsigned
        integers are counted per window in integers and scaled once, which gives the same
        values as summing floats (the counts are exact)."""
        z = np.asarray(z)
        if self.pool is None:
            return z
        M = z.shape[0]
        out = np.empty((M,) + tuple(self.op_shape), dtype=np.float64 if dtype is None else dtype)
        self._pool_into(z, out)
        return out.reshape(M, -1)

    def _pool_into(self, z, out):
        """Window averages of ``z [M, n_pre]`` written into ``out``, any ``[M, C, Hp, Wp]`` float view."""
        M = z.shape[0]
        C, H, W = self.in_shape
        _, Hp, Wp = self.op_shape
        (kh, kw), (sh, sw) = self.pool.kernel, self.pool.stride
        z4 = z.reshape(M, C, H, W)
        if z.dtype == np.bool_ or z.dtype.kind in "ui":
            # integer counts per window (exact: first along rows, then along columns), then the
            # float64 product count * scale, the value the float sum times the scale gives
            if z.dtype == np.bool_:
                z4 = z4.view(np.uint8)
            n = kh * kw
            if z4.dtype == np.uint8 and n * int(z4.max(initial=0)) <= 255:
                acc = np.uint8
            else:
                acc = np.uint16 if z4.dtype == np.uint8 and n <= 257 else np.int64
            rows = _sum([z4[:, :, i:i + sh * (Hp - 1) + 1:sh] for i in range(kh)], acc)
            counts = _sum([rows[..., j:j + sw * (Wp - 1) + 1:sw] for j in range(kw)], acc)
            np.multiply(counts, self.pool_scale, out=out, casting="same_kind")
            return out
        windows = [z4[:, :, a:a + sh * (Hp - 1) + 1:sh, b:b + sw * (Wp - 1) + 1:sw]
                   for a in range(kh) for b in range(kw)]
        acc = np.zeros((M, C, Hp, Wp))
        for w in windows:
            acc += w
        acc *= self.pool_scale
        np.copyto(out, acc, casting="same_kind")
        return out

    def unpool(self, e) -> np.ndarray:
        """Adjoint of :meth:`pooled`: ``[M, n_op]`` -> ``[M, n_pre]``."""
        if self.pool is None:
            return e
        M = e.shape[0]
        C, _, _ = self.in_shape
        _, Hp, Wp = self.op_shape
        out = np.empty((M,) + tuple(self.in_shape), dtype=e.dtype)
        self._unpool_into(e.reshape(M, C, Hp, Wp), out)
        return out.reshape(M, -1)

    def _unpool_into(self, e4, out):
        """:meth:`unpool` of ``e4`` (any ``[m, C, Hp, Wp]`` view) into ``out`` (any ``[m, C, H, W]`` view)."""
        _, H, W = self.in_shape
        _, Hp, Wp = self.op_shape
        (kh, kw), (sh, sw) = self.pool.kernel, self.pool.stride
        e4 = e4 * self.pool_scale
        if (sh, sw) == (kh, kw):  # non-overlapping windows: one write per window entry
            if Hp * kh != H:
                out[:, :, Hp * kh:] = 0
            if Wp * kw != W:
                out[:, :, :, Wp * kw:] = 0
            for a in range(kh):
                for b in range(kw):
                    out[:, :, a:Hp * kh:kh, b:Wp * kw:kw] = e4
            return out
        out[...] = 0
        for a in range(kh):
            for b in range(kw):
                out[:, :, a:a + sh * (Hp - 1) + 1:sh, b:b + sw * (Wp - 1) + 1:sw] += e4
        return out

    def _chunk(self) -> int:
        _, Ho, Wo = self.out_shape
        per_row = Ho * Wo * self.fan_in
        return max(1, CHUNK_ELEMENTS // max(per_row, 1))

    def _im2col(self, x, dtype) -> np.ndarray:
        """``[m, n_op]`` -> columns ``[m*Ho*Wo, C_in*kh*kw]``."""
        m = x.shape[0]
        C, H, W = self.op_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        _, Ho, Wo = self.out_shape
        x4 = np.asarray(x, dtype=dtype).reshape(m, C, H, W)
        if ph or pw:
            x4 = np.pad(x4, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = np.lib.stride_tricks.sliding_window_view(x4, (kh, kw), axis=(2, 3))
        win = win[:, :, :sh * (Ho - 1) + 1:sh, :sw * (Wo - 1) + 1:sw]  # [m, C, Ho, Wo, kh, kw]
        return win.transpose(0, 2, 3, 1, 4, 5).reshape(m * Ho * Wo, C * kh * kw)

    def current(self, z, W, dtype=np.float64) -> np.ndarray:
        """Input current ``[M, n_post]`` from the layer below's spikes ``z [M, n_pre]``."""
        x = self.pooled(z)
        W = np.asarray(W, dtype=dtype)
        if self.kind == "dense":
            return np.asarray(x, dtype=dtype) @ W.T
        M = x.shape[0]
        C_out, Ho, Wo = self.out_shape
        Kmat = W.reshape(C_out, -1)
        out = np.empty((M, C_out, Ho, Wo), dtype=dtype)
        step = self._chunk()
        for i in range(0, M, step):
            cols = self._im2col(x[i:i + step], dtype)
            r = (cols @ Kmat.T).reshape(-1, Ho, Wo, C_out)
            out[i:i + step] = r.transpose(0, 3, 1, 2)
        return out.reshape(M, -1)

    # -- backward: the layer's operator transposed ------------------------------------
    # The conv operators below take dL/du in the "channel-major" layout ``Gc [C_out, M, Ho*Wo]``
    # (every output channel's positions of all rows together), in which both products are
    # one matrix product per chunk of rows without any transposed copy of G:
    #     dK = Gc[:, rows] @ cols^T        cols [C_in*kh*kw, rows*Ho*Wo]  (im2col, channel-major)
    #     dcols = K^T @ Gc[:, rows]        then added back onto the input positions (col2im)
    # :func:`sdsnn_brian.gradient.backward` writes G in this layout directly.

    def op_input(self, z, dtype) -> np.ndarray:
        """The operator's input, channel-major and zero-padded: ``[C_in, M, H + 2ph, W + 2pw]``."""
        z = np.asarray(z)
        M = z.shape[0]
        C, H, W = self.op_shape
        ph, pw = self.padding
        xp = np.empty((C, M, H + 2 * ph, W + 2 * pw), dtype=dtype)
        if ph:
            xp[:, :, :ph] = 0
            xp[:, :, H + ph:] = 0
        if pw:
            xp[:, :, :, :pw] = 0
            xp[:, :, :, W + pw:] = 0
        inner = xp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)
        if self.pool is None:
            np.copyto(inner, z.reshape(M, C, H, W), casting="unsafe" if z.dtype.kind in "biu" else "same_kind")
        else:
            self._pool_into(z, inner)
        return xp

    def _conv_chunks(self, M, rows):
        """Chunks of rows ``(index, count)``: slices of ``range(M)``, or of the index array ``rows``."""
        _, Ho, Wo = self.out_shape
        step = max(1, CHUNK_ELEMENTS // max(Ho * Wo * self.fan_in, 1))
        n = M if rows is None else len(rows)
        for i in range(0, n, step):
            m = min(step, n - i)
            yield (slice(i, i + m) if rows is None else rows[i:i + m]), m

    def conv_grad_params(self, Gc, xp, need_bias=True, rows=None):
        """``(dK, db)`` of a conv layer from ``Gc = dL/du [C_out, M, Ho*Wo]`` and :meth:`op_input`'s ``xp``.

        ``rows``: the rows (``t*B + b``) to use, or None for all; rows left out must have
        ``Gc[:, row] == 0`` or an all-zero input (their contribution is exactly 0)."""
        C_out, M, P = Gc.shape
        C, _, _ = self.op_shape
        (kh, kw), (sh, sw) = self.kernel, self.stride
        _, Ho, Wo = self.out_shape
        K = C * kh * kw
        dtype = Gc.dtype
        dK = np.zeros((C_out, K), dtype=dtype)
        buf = None
        for sel, m in self._conv_chunks(M, rows):
            if buf is None:
                buf = np.empty(min(M if rows is None else len(rows), m) * K * P, dtype=dtype)
            cols = buf[:m * K * P].reshape(C, kh, kw, m, Ho, Wo)
            xs = xp[:, sel]
            for a in range(kh):
                for b in range(kw):
                    cols[:, a, b] = xs[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw]
            Gm = Gc[:, sel].reshape(C_out, m * P)
            dK += Gm @ cols.reshape(K, m * P).T
        db = Gc.sum(axis=(1, 2)) if need_bias else None
        return dK.reshape(self.param_shape), db

    def conv_grad_input(self, Gc, W, rows=None) -> np.ndarray:
        """``dL/dx`` of the operator's input, channel-major ``[C_in, M, H, W]`` (before :meth:`unpool`),
        from ``Gc = dL/du [C_out, M, Ho*Wo]``; ``rows`` as in :meth:`conv_grad_params` (rows with
        ``Gc[:, row] == 0`` may be left out: theirs is 0)."""
        C_out, M, P = Gc.shape
        C, H, Wd = self.op_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        _, Ho, Wo = self.out_shape
        K = C * kh * kw
        dtype = Gc.dtype
        KT = np.ascontiguousarray(np.asarray(W, dtype=dtype).reshape(C_out, K).T)
        e = np.zeros((C, M, H, Wd), dtype=dtype)
        # for each kernel offset: the output positions whose input lies inside the map
        spans = []
        for a in range(kh):
            y0, y1 = _inside(Ho, H, a, sh, ph)
            for b in range(kw):
                x0, x1 = _inside(Wo, Wd, b, sw, pw)
                if y1 > y0 and x1 > x0:
                    spans.append((a, b, slice(y0, y1), slice(x0, x1),
                                  slice(y0 * sh + a - ph, (y1 - 1) * sh + a - ph + 1, sh),
                                  slice(x0 * sw + b - pw, (x1 - 1) * sw + b - pw + 1, sw)))
        buf = None
        for sel, m in self._conv_chunks(M, rows):
            if buf is None:
                buf = np.empty(min(M if rows is None else len(rows), m) * K * P, dtype=dtype)
            dcols = buf[:m * K * P].reshape(K, m * P)
            np.matmul(KT, Gc[:, sel].reshape(C_out, m * P), out=dcols)
            d6 = dcols.reshape(C, kh, kw, m, Ho, Wo)
            dest = e[:, sel] if rows is None else np.zeros((C, m, H, Wd), dtype=dtype)
            for a, b, oy, ox, iy, ix in spans:
                dest[:, :, iy, ix] += d6[:, a, b, :, oy, ox]
            if rows is not None:
                e[:, sel] = dest
        return e

    def grad_params(self, G, z, need_bias=True, dtype=np.float64):
        """``(dW, db)`` from ``G = dL/du [M, n_post]`` and the layer below's spikes ``z [M, n_pre]``."""
        if self.kind == "dense":
            Z = self.pooled(z, dtype)
            Z = np.asarray(Z, dtype=dtype)
            return G.T @ Z, (G.sum(axis=0) if need_bias else None)
        M = G.shape[0]
        C_out, Ho, Wo = self.out_shape
        Gc = np.ascontiguousarray(np.asarray(G, dtype=dtype).reshape(M, C_out, Ho * Wo).transpose(1, 0, 2))
        return self.conv_grad_params(Gc, self.op_input(z, dtype), need_bias)

    def grad_input(self, G, W, dtype=np.float64) -> np.ndarray:
        """``dL/dz [M, n_pre]`` (to the layer below's spikes) from ``G = dL/du [M, n_post]``."""
        if self.kind == "dense":
            return self.unpool(G @ np.asarray(W, dtype=dtype))
        M = G.shape[0]
        C_out, Ho, Wo = self.out_shape
        Gc = np.ascontiguousarray(np.asarray(G, dtype=dtype).reshape(M, C_out, Ho * Wo).transpose(1, 0, 2))
        e = self.conv_grad_input(Gc, W)
        return self.unpool(np.ascontiguousarray(e.transpose(1, 0, 2, 3)).reshape(M, -1))


def _sum(views, dtype):
    """The sum of same-shaped arrays, accumulated in ``dtype`` (integers: exact)."""
    total = np.add(views[0], views[1], dtype=dtype) if len(views) > 1 else views[0].astype(dtype)
    for v in views[2:]:
        np.add(total, v, out=total, casting="unsafe")
    return total


def _inside(n_out, n_in, offset, stride, pad):
    """Output positions ``o`` in ``[lo, hi)`` whose input ``o*stride + offset - pad`` lies in ``[0, n_in)``."""
    lo = max(0, -(-(pad - offset) // stride))
    hi = min(n_out, (n_in - 1 + pad - offset) // stride + 1)
    return lo, max(lo, hi)


def connections_of(net) -> list:
    """The :class:`Connection` of every trained layer of a :class:`~sdsnn_brian.network.Network`."""
    from .network import AvgPool2d, Conv2d, Dense

    conns = []
    shape = net.input.shape if net.input.shape is not None else (net.input.size,)
    pool = None
    k = 0
    for layer in net.layers[1:]:
        if isinstance(layer, AvgPool2d):
            pool = layer
            continue
        k += 1
        op_shape = pool.output_shape(shape) if pool is not None else shape
        if isinstance(layer, Conv2d):
            out = layer.output_shape
            conns.append(Connection(k, "conv", tuple(shape), tuple(op_shape), tuple(out),
                                    (layer.channels, op_shape[0]) + tuple(layer.kernel), (layer.channels,),
                                    pool, tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)))
        elif isinstance(layer, Dense):
            out = (layer.size,)
            n_op = int(np.prod(op_shape))
            conns.append(Connection(k, "dense", tuple(shape), tuple(op_shape), out, (layer.size, n_op),
                                    (layer.size,), pool))
        shape = out
        pool = None
    return conns
