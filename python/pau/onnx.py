"""ONNX export of models with ``pau`` layers.

``torch.onnx.export(..., dynamo=True)`` does not know ``pau::forward`` or
``pau::pwlu_forward``; the translations here rewrite them into standard ONNX
operators (Mul, Add, Abs, Div on broadcast coefficients for PAU; Floor and two
Gathers from per-piece tables for PWLU), so the exported model runs in any
ONNX runtime without a custom-op library. PAU, RPAU in eval mode (which is
PAU) and PWLU export; RPAU's training-mode noise has no translation (the
table's entry for it raises an error that says to call ``model.eval()``)::

    import pau.onnx

    program = torch.onnx.export(
        model, (x,), dynamo=True, custom_translation_table=pau.onnx.translation_table()
    )
    program.save("model.onnx")

Without the table the exporter fails with ``No ONNX function found for
<OpOverload(op='pau.forward', overload='default')>``: pass the table.

onnx, onnxscript and onnxruntime are optional: ``pip install "pau[onnx]"``.

Numerics: the translation evaluates P(x) / Q(x) with Horner's rule on x
directly, as :func:`pau.reference.pau_reference` does. It does not use the
operator's overflow-safe evaluation in 1/x for |x| > 1, so where x^m
overflows (float32: |x| above about 1e7 for degree 5) ONNX gives inf or NaN
where PyTorch gives the finite value. Activations in trained networks are many
orders of magnitude smaller. PWLU evaluates the per-piece slopes and
intercepts of :func:`pau.functional.segment_tables` (computed in the graph from the
parameters, folded into constants by the exporter), which agree with the
operator to a few ulp of the function's scale, with the same NaN and +-inf
behaviour. Half and bfloat16 inputs are computed in float32, as the operators
do.

Adding an operator: write ``_<op>_forward(x, ..., **attributes)`` building ONNX
ops with ``op`` (onnxscript's opset module) and add it to ``_TRANSLATIONS``
under its name in ``torch.ops.pau``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from . import _C  # noqa: F401  (registers torch.ops.pau, whose overloads are the table's keys)

_INSTALL_HINT = 'install the ONNX extras: pip install "pau[onnx]" (onnx, onnxscript, onnxruntime)'


def _opset() -> Any:
    """onnxscript's ONNX opset 18 module (the opset torch.onnx's own translations use)."""
    try:
        from onnxscript import opset18
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"pau.onnx needs onnxscript: {_INSTALL_HINT}") from error
    return opset18


def _compute_type(dtype: Any) -> Any:
    """ONNX element type the math runs in for an input of ONNX type ``dtype``."""
    from onnxscript import ir

    return ir.DataType.DOUBLE if dtype == ir.DataType.DOUBLE else ir.DataType.FLOAT


def _static_shape(value: Any, name: str) -> tuple[int, ...]:
    shape = value.shape
    dims = tuple(shape) if shape is not None else ()
    if shape is None or not all(isinstance(d, int) for d in dims):
        raise ValueError(
            f"pau.onnx: the shape of {name} must be static to unroll the polynomials, got {shape}"
        )
    return dims


def _per_element_terms(
    op: Any, coefficients: Any, x: Any, dim: int, ctype: Any, shape: Any = None
) -> list:
    """Split (G, K) coefficients into K tensors that broadcast against x.

    ``shape`` is (G, K) for coefficients computed in the graph, whose shape
    is unknown while tracing. G = 1 gives K scalars. Otherwise term k has
    shape (1, .., C, .., 1) with C at ``dim``: channel c holds group
    c // (C / G)'s k-th coefficient, the layout of the operator. With
    constant coefficients (the usual initializers) the exporter's optimizer
    folds all of this into constants.
    """
    groups, count = shape if shape is not None else _static_shape(coefficients, "the coefficients")
    coefficients = op.Cast(coefficients, to=ctype)
    if count == 0:
        return []
    if groups == 1:
        flat = op.Reshape(coefficients, op.Constant(value_ints=[count]))
        return [op.Gather(flat, op.Constant(value_int=k), axis=0) for k in range(count)]
    rank = len(x.shape)
    channels = x.shape[dim]
    # (G, K) -> (K, G, 1) -> (K, G, C / G) -> (K, C) -> (K, 1, .., C, .., 1)
    table = op.Unsqueeze(op.Transpose(coefficients, perm=[1, 0]), op.Constant(value_ints=[2]))
    if isinstance(channels, int):
        per_group = op.Constant(value_ints=[channels // groups])
    else:  # symbolic channel count: C / G from the runtime shape
        per_group = op.Div(op.Shape(x, start=dim, end=dim + 1), op.Constant(value_ints=[groups]))
    target = op.Concat(op.Constant(value_ints=[count, groups]), per_group, axis=0)
    table = op.Expand(table, target)
    broadcast = [1] * rank
    broadcast[dim] = -1
    table = op.Reshape(table, op.Constant(value_ints=[count, *broadcast]))
    return [op.Gather(table, op.Constant(value_int=k), axis=0) for k in range(count)]


def _horner(op: Any, terms: list, x: Any) -> Any:
    """terms[0] + terms[1] x + ... + terms[-1] x^(len - 1)."""
    result = terms[-1]
    for term in reversed(terms[:-1]):
        result = op.Add(op.Mul(result, x), term)
    return result


def _pau_forward(
    x: Any, numerator: Any, denominator: Any, variant: str = "safe", dim: int = 1
) -> Any:
    """pau::forward as ONNX ops: P(x) / Q(x), Q per variant (see pau.reference)."""
    op = _opset()
    if variant not in ("safe", "abs_sum", "plain"):
        raise ValueError(f"pau.onnx: unknown variant {variant!r}")
    rank = len(x.shape)
    dim = dim % rank if rank else 0
    ctype = _compute_type(x.dtype)
    # Shapes come from x itself: a Cast's output carries no shape while tracing.
    a = _per_element_terms(op, numerator, x, dim, ctype)
    b = _per_element_terms(op, denominator, x, dim, ctype)
    xc = op.Cast(x, to=ctype) if x.dtype != ctype else x

    p = _horner(op, a, xc)
    if b:
        one = op.CastLike(op.Constant(value_float=1.0), xc)
        if variant == "abs_sum":
            # sum_k |b_k x^k| = sum_k |b_k| |x|^k: Horner in |x| with |b_k|.
            ax = op.Abs(xc)
            q = op.Mul(_horner(op, [op.Abs(t) for t in b], ax), ax)
        else:
            q = op.Mul(_horner(op, b, xc), xc)  # A(x) = (b_1 + b_2 x + ...) x
            if variant == "safe":
                q = op.Abs(q)
        p = op.Div(p, op.Add(one, q))
    elif len(a) == 1:
        # A constant P (m = n = 0): the operator still returns x's shape.
        p = op.Expand(p, op.Shape(x))
    return op.Cast(p, to=x.dtype) if x.dtype != ctype else p


def _pwlu_tables(op: Any, points: Any, bounds: Any, slopes: Any, n: int) -> tuple:
    """pau.functional.segment_tables as ONNX ops on (G, N+1), (G, 2), (G, 2) parameters.

    Returns float64 (left and 1 / width as (G, 2), intercepts (G, N+3),
    slopes (G, N+3)). The exporter folds all of it into constants when the
    parameters are initializers.
    """
    double = _double_type()

    def columns(t: Any, start: int, end: int) -> Any:
        return op.Slice(
            t,
            op.Constant(value_ints=[start]),
            op.Constant(value_ints=[end]),
            op.Constant(value_ints=[1]),
        )

    y = op.Cast(points, to=double)
    b = op.Cast(bounds, to=double)
    k = op.Cast(slopes, to=double)
    left, right = columns(b, 0, 1), columns(b, 1, 2)
    k_left, k_right = columns(k, 0, 1), columns(k, 1, 2)
    width = op.Sub(right, left)
    inv_width = op.Div(op.Cast(op.Constant(value_float=float(n)), to=double), width)
    lower, last = columns(y, 0, n), columns(y, n, n + 1)
    steps = op.Sub(columns(y, 1, n + 1), lower)
    index = op.Cast(op.Constant(value_floats=[float(i) for i in range(n)]), to=double)
    inner_intercepts = op.Sub(lower, op.Mul(index, steps))
    filler = op.Mul(left, op.Cast(op.Constant(value_float=0.0), to=double))  # (G, 1) zeros
    nan = op.Add(filler, op.Cast(op.Constant(value_float=float("nan")), to=double))
    intercepts = op.Concat(
        columns(y, 0, 1), inner_intercepts, op.Sub(last, op.Mul(width, k_right)), nan, axis=1
    )
    piece_slopes = op.Concat(k_left, op.Mul(steps, inv_width), k_right, filler, axis=1)
    return op.Concat(left, inv_width, axis=1), intercepts, piece_slopes


def _double_type() -> Any:
    from onnxscript import ir

    return ir.DataType.DOUBLE


def _pwlu_forward(x: Any, points: Any, bounds: Any, slopes: Any, dim: int = 1) -> Any:
    """pau::pwlu_forward as ONNX ops, with pau.functional.pwlu_segments's formulation.

    Per element: locate the piece s from (x - B_L) N / (B_R - B_L), gather its
    intercept c_s and slope b_s, and return c_s + (x - B_L) b_s.
    """
    op = _opset()
    groups, count = _static_shape(points, "the PWLU points")
    n = count - 1
    rank = len(x.shape)
    dim = dim % rank if rank else 0
    ctype = _compute_type(x.dtype)
    frame, intercepts, piece_slopes = _pwlu_tables(op, points, bounds, slopes, n)
    left, inv_width = _per_element_terms(op, frame, x, dim, ctype, shape=(groups, 2))
    rows = n + 3
    starts = op.Constant(value_floats=[float(g * rows + 1) for g in range(groups)])
    (offset,) = _per_element_terms(
        op,
        op.Reshape(starts, op.Constant(value_ints=[groups, 1])),
        x,
        dim,
        ctype,
        shape=(groups, 1),
    )
    flat = op.Constant(value_ints=[-1])
    intercepts = op.Reshape(op.Cast(intercepts, to=ctype), flat)
    piece_slopes = op.Reshape(op.Cast(piece_slopes, to=ctype), flat)

    def constant(value: float) -> Any:
        return op.Cast(op.Constant(value_float=value), to=ctype)

    xc = op.Cast(x, to=ctype) if x.dtype != ctype else x
    dx = op.Sub(xc, left)
    # Piece -1 (left outer), 0..N-1 (intervals), N (right outer); NaN goes to
    # the NaN row N+1 (Max/Min do not promise to propagate NaN).
    piece = op.Min(op.Max(op.Floor(op.Mul(dx, inv_width)), constant(-1.0)), constant(float(n)))
    piece = op.Where(op.IsNaN(dx), constant(float(n + 1)), piece)
    index = op.Cast(op.Add(piece, offset), to=_int64_type())
    intercept = op.Gather(intercepts, index, axis=0)
    slope = op.Gather(piece_slopes, index, axis=0)
    # An infinite x on a flat outer piece gives its end point, not inf * 0.
    dx = op.Where(op.Equal(slope, constant(0.0)), constant(0.0), dx)
    y = op.Add(intercept, op.Mul(dx, slope))
    return op.Cast(y, to=x.dtype) if x.dtype != ctype else y


def _int64_type() -> Any:
    from onnxscript import ir

    return ir.DataType.INT64


#: What the exporter reports for an RPAU in training mode.
RPAU_TRAINING_MESSAGE = (
    "pau.onnx: an RPAU in training mode (pau::rpau_forward, fresh noise per element and "
    "call) has no ONNX translation; call model.eval() before torch.onnx.export: in eval "
    "mode RPAU is PAU and exports"
)


def _rpau_forward(*args: Any, **kwargs: Any) -> Any:
    """Refuses with what to do: the exporter shows this message in its error."""
    raise ValueError(RPAU_TRAINING_MESSAGE)


# torch.ops.pau operator name -> translation. One line per operator.
_TRANSLATIONS: dict[str, Callable[..., Any]] = {
    "forward": _pau_forward,
    "pwlu_forward": _pwlu_forward,
    "rpau_forward": _rpau_forward,
}


def translation_table() -> dict[Callable[..., Any], Callable[..., Any]]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``.

    Maps each ``torch.ops.pau`` operator overload to a function that builds it
    from standard ONNX operators with onnxscript.
    """
    _opset()  # fail here, with the install hint, rather than inside the exporter
    return {getattr(torch.ops.pau, name).default: fn for name, fn in _TRANSLATIONS.items()}


__all__ = ["translation_table"]
