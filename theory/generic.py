"""A generic smooth loss L(theta_1, ..., theta_n) as an undefined SymPy Function, and its calculus.

SymPy differentiates L(theta - alpha g(theta)) by the chain rule, but writes the partial
derivatives at a shifted point as nested ``Subs`` objects whose form depends on the order of
operations, so two equal results may not cancel. :func:`canonical` rewrites every partial
derivative of L as an undefined function of the FULL evaluation point,

    d^3 L / d theta_i d theta_j d theta_k (p)  ->  L_{ijk}(p_1, ..., p_n)   (indices sorted),

which makes equal expressions structurally equal, so that ``simplify(a - b) == 0`` decides the
identities of paper Sec. 2 and App. A exactly. Nothing is approximated: this is bookkeeping.
In this notation g_i = L_{i}(theta), H_ij = L_{ij}(theta), T_ijk = L_{ijk}(theta).
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp
from sympy.core.function import AppliedUndef

from mamlconv.theory.symbols import thetas

# name of an undefined function -> (base name, sorted 0-based derivative multi-index)
_REGISTRY: dict[str, tuple[str, tuple[int, ...]]] = {}


def partial_function(base: str, index: tuple[int, ...] = ()) -> sp.FunctionClass:
    """The undefined function standing for the partial derivative of ``base`` at ``index``.

    ``partial_function("L", (0, 1))`` is ``L_{12}``: d^2 L / d theta_1 d theta_2.
    """
    index = tuple(sorted(index))
    if any(i > 8 for i in index):
        raise ValueError(f"at most 9 parameters are supported, got index {index}")
    name = base if not index else f"{base}_{{{''.join(str(i + 1) for i in index)}}}"
    _REGISTRY[name] = (base, index)
    return sp.Function(name, real=True)


def _registered(expr: sp.Basic) -> tuple[str, tuple[int, ...]] | None:
    if isinstance(expr, AppliedUndef):
        return _REGISTRY.get(expr.func.__name__)
    return None


def _derivative_at(derivative: sp.Derivative, mapping: dict[sp.Basic, sp.Basic]) -> sp.Expr | None:
    """Derivative(F(args), vars) evaluated at args[vars := mapping], in canonical form."""
    fn = derivative.expr
    entry = _registered(fn)
    if entry is None:
        return None
    base, index = entry
    extra: list[int] = []
    for var, count in derivative.variable_count:
        positions = [j for j, arg in enumerate(fn.args) if arg == var]
        if len(positions) != 1 or any(var in a.free_symbols for a in fn.args if a != var):
            return None  # not a plain partial derivative; leave it to SymPy
        extra.extend(positions * int(count))
    point = [canonical(arg.xreplace(mapping)) for arg in fn.args]
    return partial_function(base, index + tuple(extra))(*point)


def canonical(expr: sp.Basic) -> sp.Basic:
    """Rewrite every partial derivative of a registered function as ``L_{idx}(full point)``.

    Differentiate one variable at a time and canonicalise in between (as :func:`grad` and
    :func:`jacobian` do): SymPy 1.14 mis-handles a second derivative of nested ``Subs``.
    """
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(canonical)
    if isinstance(expr, sp.Subs):
        mapping = {var: canonical(pt) for var, pt in zip(expr.variables, expr.point, strict=True)}
        body = expr.expr
        if isinstance(body, sp.Derivative):
            done = _derivative_at(body, mapping)
            if done is not None:
                return done
        return canonical(body.xreplace(mapping))
    if isinstance(expr, sp.Derivative):
        done = _derivative_at(expr, {})
        if done is not None:
            return done
    entry = _registered(expr)
    if entry is not None:
        return expr.func(*[canonical(a) for a in expr.args])
    if not expr.args:
        return expr
    return expr.func(*[canonical(a) for a in expr.args])


def generic_loss(n: int, name: str = "L") -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    """(L(theta_1, ..., theta_n), thetas): a generic smooth loss of n parameters."""
    theta = thetas(n)
    return partial_function(name)(*theta), theta


def grad(expr: sp.Expr, theta: tuple[sp.Symbol, ...]) -> sp.Matrix:
    """Column gradient of ``expr`` w.r.t. theta, in canonical form (chain rule by SymPy)."""
    return sp.Matrix([canonical(sp.diff(expr, t)) for t in theta])


def jacobian(vector: sp.Matrix, theta: tuple[sp.Symbol, ...]) -> sp.Matrix:
    """d vector_i / d theta_j in canonical form."""
    return sp.Matrix(len(vector), len(theta), lambda i, j: canonical(sp.diff(vector[i], theta[j])))


def gradient_symbols(n: int, name: str = "L") -> sp.Matrix:
    """g(theta): the column of first partials L_{i}(theta)."""
    theta = thetas(n)
    return sp.Matrix([partial_function(name, (i,))(*theta) for i in range(n)])


def hessian_symbols(n: int, name: str = "L") -> sp.Matrix:
    """H(theta): the matrix of second partials L_{ij}(theta) (symmetric by construction)."""
    theta = thetas(n)
    return sp.Matrix(n, n, lambda i, j: partial_function(name, (i, j))(*theta))


def third_derivative_contracted(n: int, name: str = "L") -> sp.Matrix:
    """(Tg)_ij = sum_k T_ijk g_k with T_ijk = L_{ijk}(theta): the paper's Tg (App. A, Eq. 20)."""
    theta = thetas(n)
    g = gradient_symbols(n, name)
    return sp.Matrix(
        n,
        n,
        lambda i, j: sum(partial_function(name, (i, j, k))(*theta) * g[k] for k in range(n)),
    )


def at_point(expr: sp.Basic, point: sp.Matrix | list[sp.Expr], n: int) -> sp.Basic:
    """Evaluate every partial L_{idx}(theta) in ``expr`` at ``point`` instead of theta."""
    theta = thetas(n)
    pts = list(point)

    def is_at_theta(e: sp.Basic) -> bool:
        return _registered(e) is not None and tuple(e.args) == theta

    return expr.replace(is_at_theta, lambda e: e.func(*pts))


def at_stationary_point(expr: sp.Basic, n: int, name: str = "L") -> sp.Basic:
    """``expr`` with g(theta) = 0 imposed: every first partial L_{i}(theta) replaced by 0.

    ``xreplace`` matches whole nodes only, so L_{ij}, L_{ijk} are untouched; the replacement
    is repeated so that partials at theta - alpha g collapse to partials at theta.
    """
    zero = {gi: 0 for gi in gradient_symbols(n, name)}
    # Partials at theta' = theta - alpha g become partials at theta once g = 0: repeat.
    for _ in range(8):
        new = expr.xreplace(zero)
        if new == expr:
            return new
        expr = new
    return expr


def is_zero(expr: sp.Basic) -> bool:
    """Exact zero test: every entry simplifies (after expansion) to 0."""
    entries = list(expr) if isinstance(expr, sp.MatrixBase) else [expr]
    return all(sp.simplify(sp.expand(e)) == 0 for e in entries)


def display(expr: sp.Basic, n: int, name: str = "L") -> sp.Basic:
    """Readable form for printing: L_{i}(theta) -> g_i, L_{ij}(theta) -> H_ij, L_{ijk} -> T_ijk.

    Partials at other points keep their argument, e.g. g_1 at theta' = theta - alpha g.
    """
    theta = thetas(n)
    letters = {1: "g", 2: "H", 3: "T"}

    def rename(e: sp.Basic) -> sp.Basic:
        entry = _registered(e)
        if entry is None or entry[0] != name:
            return e
        _, index = entry
        label = "".join(str(i + 1) for i in index)
        if not index:
            return sp.Symbol(name) if tuple(e.args) == theta else e
        letter = letters.get(len(index), f"D{len(index)}")
        if tuple(e.args) == theta:
            return sp.Symbol(f"{letter}_{{{label}}}", real=True)
        return sp.Function(f"{letter}_{{{label}}}")(sp.Symbol(r"\theta'"))

    return expr.replace(lambda e: _registered(e) is not None, rename)


class Identity(NamedTuple):
    """A derived identity ``derived == stated`` tied to its place in the paper.

    ``derived`` comes out of a SymPy computation; ``stated`` is the paper's (or docs/MATH.md's)
    form, built from g, H, T. ``residual()`` simplifies the difference; it is 0 when the paper is
    right.
    """

    label: str  # e.g. "Eq. 5"
    statement: str  # the identity in words
    derived: sp.Basic
    stated: sp.Basic
    n: int

    def residual(self) -> sp.Basic:
        diff = self.derived - self.stated
        if isinstance(diff, sp.MatrixBase):
            return diff.applyfunc(lambda e: sp.simplify(sp.expand(e)))
        return sp.simplify(sp.expand(diff))

    def holds(self) -> bool:
        return is_zero(self.residual())
