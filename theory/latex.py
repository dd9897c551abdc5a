"""The derivations as a standalone LaTeX document, and its compilation with pdflatex.

:func:`build_document` runs every derivation of ``mamlconv.theory`` and writes one numbered step
per result, tied to the paper's equation numbers (Takagi et al., 2019). Every expression in the
document is ``sympy.latex`` of a derived object (or of the stated form it is compared with, whose
difference is also printed, simplified by SymPy); only the prose is written by hand. The document
uses the ``article`` class with amsmath/amssymb only (Debian's texlive-latex-base has them).

:func:`compile_pdf` runs ``pdflatex`` (nonstop mode, twice when the log asks for a rerun; its
auxiliary files in a temporary folder, so only the PDF lands beside the .tex) and raises
:class:`LatexError` on any error or "Undefined control sequence" in the log, and
:class:`PdflatexNotFoundError` when pdflatex is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import sympy as sp

from mamlconv.theory import conditions as cd
from mamlconv.theory import gradient_penalty as gp
from mamlconv.theory import hessian as hs
from mamlconv.theory import latex_text as tx
from mamlconv.theory import multitask as mt
from mamlconv.theory import quadratic as qd
from mamlconv.theory.generic import Identity, display
from mamlconv.theory.symbols import alpha, lam, lam_pos


class LatexError(RuntimeError):
    """pdflatex failed, or its log reports an error or an undefined control sequence."""


class PdflatexNotFoundError(LatexError):
    """No ``pdflatex`` on PATH (install Debian's texlive-latex-base)."""


# ------------------------------------------------------------------------ rendering helpers


def _tex(expr: sp.Basic, n: int = 2) -> str:
    """sympy.latex of a derived expression, partials shown as g_i, H_ij, T_ijk, grouped by alpha."""
    shown = display(expr, n)
    if isinstance(shown, sp.Expr) and shown.has(alpha):
        shown = sp.collect(sp.expand(shown), alpha)
    return sp.latex(shown)


def _entries(name: str, matrix: sp.Matrix, n: int, *, upper: bool = True) -> str:
    """An align* block listing the entries of a derived vector or (upper triangle of a) matrix."""
    rows = []
    if matrix.shape[1] == 1:
        for i in range(matrix.shape[0]):
            rows.append(f"{name}_{{{i + 1}}} &= {_tex(matrix[i], n)}")
    else:
        for i in range(matrix.shape[0]):
            for j in range(i if upper else 0, matrix.shape[1]):
                rows.append(f"{name}_{{{i + 1}{j + 1}}} &= {_tex(matrix[i, j], n)}")
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"


def _residual_line(identities: Sequence[Identity]) -> str:
    """'Residual ... = 0 for n = 2 and n = 3', computed now from each identity."""
    parts = []
    for identity in identities:
        residual = identity.residual()
        if isinstance(residual, sp.MatrixBase) and residual.is_zero_matrix:
            shown = f"\\mathbf{{0}}_{{{residual.rows}\\times{residual.cols}}}"
        else:
            shown = sp.latex(residual)
        verdict = "holds" if identity.holds() else "FAILS"
        parts.append(f"$n={identity.n}$: ${shown}$ ({verdict})")
    return (
        "\\noindent\\emph{Check.} Derived minus stated, simplified by SymPy: "
        + "; ".join(parts)
        + ".\n\n"
    )


def _section_gradient_penalty(dims: Sequence[int]) -> str:
    n = dims[0]
    ids = {d: gp.all_identities(d) for d in dims}

    def pick(k: int) -> list[Identity]:
        return [ids[d][k] for d in dims]

    out = ["\\section{MAML as a negative gradient penalty (paper Sec.~2.2, Eq.~3--7)}\n"]
    out.append(
        "\\step{Eq.~3}{Chain rule through the inner step.}\\label{st:eq3}\n"
        "SymPy differentiates $L(\\theta-\\alpha g(\\theta))$; the gradient of exact MAML is\n"
        + _entries("\\nabla_{\\theta} L(\\theta')", gp.maml_gradient(n), n)
        + "which is $(I-\\alpha H)\\,g(\\theta')$, the paper's Eq.~3.\n"
        + _residual_line(pick(0))
    )
    out.append(
        "\\step{Eq.~4}{The approximation $g(\\theta')\\approx g(\\theta)$.}\\label{st:eq4}\n"
        "Replacing the gradient at $\\theta'$ by the gradient at $\\theta$ in "
        "Step~\\ref{st:eq3} gives the "
        "surrogate direction\n"
        + _entries("d", gp.surrogate_direction(n), n)
        + "i.e.\\ $g-\\alpha Hg$. This is an approximation: the part it drops,"
        " Step~\\ref{st:eq3} minus Step~\\ref{st:eq4}, is not zero; its first component is\n"
        + f"\\[ {_tex(gp.eq3_differs_from_eq4(n)[0], n)} \\]\n"
        + _residual_line(pick(1))
    )
    out.append(
        "\\step{Sec.~2.2}{The gradient of the squared gradient norm.}\\label{st:gtg}\n"
        + _entries("\\nabla(g^{\\top}g)", pick(2)[0].derived, n)
        + "that is, $\\nabla(g^\\top g)=2Hg$.\n"
        + _residual_line(pick(2))
    )
    out.append(
        "\\step{Eq.~5}{The surrogate is gradient descent on "
        "$L-\\frac{\\alpha}{2}g^\\top g$.}\\label{st:eq5}\n"
        "The gradient of the penalised loss "
        + f"${sp.latex(display(gp.penalised_loss(n), n))}$ is\n"
        + _entries("\\nabla\\tilde L", pick(3)[0].derived, n)
        + "exactly the direction of Step~\\ref{st:eq4} (no approximation beyond Eq.~4).\n"
        + _residual_line(pick(3))
    )
    out.append(
        "\\step{Eq.~6--7}{Taylor expansion of the MAML loss to first order in $\\alpha$.}"
        "\\label{st:eq67}\n"
        "SymPy's first-order Taylor polynomial of $L(\\theta-\\alpha g)$ in $\\alpha$ is\n"
        + f"\\[ L(\\theta-\\alpha g) = {_tex(gp.taylor_adapted_loss(n), n)} + O(\\alpha^2), \\]\n"
        + "i.e.\\ $L-\\alpha g^\\top g$, with the full $\\alpha$.\n"
        + _residual_line(pick(4))
    )
    out.append(
        "\\step{Eq.~3, first order}{Exact MAML to first order in $\\alpha$.}\\label{st:exact1}\n"
        "Expanding Step~\\ref{st:eq3} in $\\alpha$:\n"
        + _entries("\\nabla_{\\theta} L(\\theta')", gp.exact_gradient_first_order(n), n)
        + "$+\\,O(\\alpha^2)$, i.e.\\ $g-2\\alpha Hg$.\n"
        + _residual_line(pick(5))
    )
    factor = gp.penalty_factor(n)
    correction = gp.gradient_correction_factor(n)
    out.append(
        "\\step{Eq.~5 vs Eq.~7}{The factor between the two penalties, derived.}\\label{st:factor}\n"
        "The ratio of the $\\alpha$-coefficients of Eq.~7 and Eq.~5 is "
        + f"${sp.latex(factor)}$; the ratio of the first-order corrections of exact MAML "
        + "(Step~\\ref{st:exact1}) and of the surrogate (Step~\\ref{st:eq4}) is "
        + f"${sp.latex(correction)}$.\n"
        + "\\finding{The paper's Eq.~5 ($\\frac{\\alpha}{2}g^\\top g$) and Eq.~6--7 "
        "($\\alpha g^\\top g$) differ by exactly this factor "
        + f"${sp.latex(factor)}$"
        + ", which the text calls ``up to scale''. To first order in $\\alpha$, exact MAML is "
        "gradient descent on $L-\\alpha g^\\top g$, while the surrogate analysed in Sec.~3 is "
        "$L-\\frac{\\alpha}{2}g^\\top g$: it keeps only half of exact MAML's first-order "
        "correction. The conditions of Eq.~15 belong to the $\\alpha/2$ object.}\n"
    )
    return "".join(out)


def _section_hessian(dims: Sequence[int]) -> str:
    n = dims[0]
    ids = {d: hs.all_identities(d) for d in dims}

    def pick(k: int) -> list[Identity]:
        return [ids[d][k] for d in dims]

    out = ["\\section{The Hessian of the surrogate (paper Eq.~8, Appendix~A, Eq.~16--20)}\n"]
    out.append(
        "\\step{Eq.~16--20}{The Hessian of $L-\\frac{\\alpha}{2}g^\\top g$, derived.}"
        "\\label{st:appA}\n"
        "SymPy's Hessian of the penalised loss has the entries\n"
        + _entries("\\tilde H", hs.surrogate_hessian(n), n)
        + "which is $H-\\alpha(Tg+H^2)$ of the paper's Eq.~20.\n"
        + _residual_line(pick(0))
    )
    out.append(
        "\\step{Eq.~8, $g=0$}{$Tg$ vanishes at a stationary point.}\n"
        "Every entry of $Tg$ is linear in $g$ (checked: "
        + ("yes" if all(hs.tg_is_linear_in_g(d) for d in dims) else "NO")
        + "); setting $g=0$ gives\n"
        + f"\\[ Tg\\big|_{{g=0}} = {sp.latex(pick(1)[0].derived)}. \\]\n"
        + _residual_line(pick(1))
    )
    out.append(
        "\\step{Eq.~8--9}{At a stationary point the surrogate Hessian is "
        "$H-\\alpha H^2$ exactly.}\n"
        "Step~\\ref{st:appA} at $g=0$:\n"
        + _entries("\\tilde H", pick(2)[0].derived, n)
        + "so the paper's neglect of $Tg$ (App.~B) is exact at a stationary point of $L$; "
        "elsewhere $Tg\\neq 0$ (Step~\\ref{st:appA}).\n" + _residual_line(pick(2))
    )
    out.append(
        "\\step{beyond the paper}{Exact MAML's meta-Hessian at a stationary point.}\n"
        "SymPy's Hessian of $L(\\theta-\\alpha g(\\theta))$, at $g=0$, has the entries\n"
        + _entries("\\nabla^2 L(\\theta')", pick(3)[0].derived, n)
        + "which is $(I-\\alpha H)H(I-\\alpha H)$: not $H-\\alpha H^2$.\n"
        + _residual_line(pick(3))
    )
    return "".join(out)


def _section_conditions() -> str:
    c_s = qd.mode_curvature("surrogate")
    out = ["\\section{Conditions from the eigen-decomposition (paper Sec.~3, Eq.~9--15)}\n"]
    eq9 = cd.eq9_eigenvalues()
    out.append(
        "\\step{Eq.~9}{Eigenvalues of $H-\\alpha H^2$.}\n"
        "With $H=P\\Lambda P^\\top$ ($P$ a generic rotation of the plane, entries rational in "
        "$t=\\tan(\\phi/2)$), SymPy gives\n"
        + f"\\[ P^\\top(H-\\alpha H^2)P = {sp.latex(eq9.derived)}, \\]\n"
        + "so each eigen-mode has the effective curvature "
        + f"$\\tilde\\lambda = {sp.latex(c_s)}$. "
        + f"(Residual: ${sp.latex(eq9.residual())}$.)\n"
    )
    out.append(
        "\\step{Eq.~10--11}{When is $\\theta^*$ a minimum of the surrogate?}\n"
        "Solving $\\tilde\\lambda\\ge 0$ for $\\alpha\\ge 0$ with $\\lambda>0$:\n"
        + f"\\[ \\alpha \\in {sp.latex(cd.curvature_nonnegative_set('surrogate'))}, \\]\n"
        + "i.e.\\ $\\alpha\\le 1/\\lambda$ for every positive eigenvalue (Eq.~11); the mode turns "
        + "negative at $\\alpha = "
        + sp.latex(cd.alpha_turning_point("surrogate"))
        + "$, so $\\alpha_c = 1/\\lambda_{\\max}$.\n"
    )
    out.append(
        "\\step{Eq.~12--14}{When does gradient descent with rate $\\beta$ converge?}\n"
        "A mode of positive curvature $c$ evolves as $v(t+1)=(1-\\beta c)v(t)$. Solving "
        "$|1-\\beta c|<1$ for $\\beta$:\n"
        + f"\\[ \\beta \\in {sp.latex(cd.beta_stable_set())}, \\qquad "
        + f"\\beta_c = {sp.latex(cd.beta_bound('surrogate'))} \\quad (c=\\tilde\\lambda). \\]\n"
    )
    flat = cd.flat_mode_factor("surrogate")
    excluded = cd.beta_c_excluded()
    out.append(
        "\\step{Eq.~15}{Both conditions together, as derived.}\n"
        + f"\\[ {sp.latex(cd.eq15('surrogate'))}. \\]\n"
        + "\\finding{Strictness. Eq.~15 prints $\\beta\\le 2/(\\lambda-\\alpha\\lambda^2)$, but "
        + "the derived interval is open: ``$2/c$ is stable'' evaluates to "
        + f"${sp.latex(excluded)}$ (at $\\beta=2/c$ the mode oscillates with constant amplitude). "
        + "The correct condition is $\\beta<2/\\tilde\\lambda$. At $\\alpha=1/\\lambda$, which "
        + "Eq.~11 admits, the mode is flat: its update factor $1-\\beta\\tilde\\lambda$ is "
        + f"${sp.latex(flat)}$ for every $\\beta$, so that mode does not converge (it does not "
        + "diverge either).}\n"
    )
    out.append(
        "\\step{Sec.~3.2}{The limit $\\alpha=0$ is gradient descent.}\n"
        + f"At $\\alpha=0$, $\\beta_c={sp.latex(cd.gd_limit())}$, whose derivative in $\\lambda$ "
        + f"is ${sp.latex(cd.gd_limit_slope())}<0$: the largest eigenvalue binds, "
        + "$\\beta<2/\\lambda_{\\max}$ (LeCun et al.).\n"
    )
    out.append(
        "\\step{Sec.~3.2}{$\\beta_c$ diverges as $\\alpha\\to 1/\\lambda$.}\n"
        + "\\[ \\lim_{\\alpha\\to 1/\\lambda^-} "
        + sp.latex(cd.beta_bound("surrogate").subs(lam, lam_pos))
        + " = "
        + sp.latex(cd.limit_at_turning_point("surrogate"))
        + ". \\]\n"
        + "So near $\\alpha_c$ the top mode no longer binds and the other eigenvalues matter "
        + "(paper Fig.~2).\n"
    )
    peak = cd.curvature_peak("surrogate")
    bound = cd.bound_at_alpha_c("surrogate")
    limit, minimum = cd.limit_near_alpha_c("surrogate")
    out.append(
        "\\step{Sec.~3.2, Fig.~2}{How large is $\\beta_c$ near $\\alpha_c$? A bound, derived.}"
        "\\label{st:bound}\n"
        + "Over $0<\\lambda\\le 1/\\alpha$ the curvature "
        + f"${sp.latex(c_s)}$ peaks at $\\lambda^*={sp.latex(peak.argmax)}$ with value "
        + f"${sp.latex(peak.peak)}$, so for every spectrum and every $\\alpha\\le\\alpha_c$\n"
        + f"\\[ \\beta_c(\\alpha) \\ge {sp.latex(peak.beta_lower)}, \\]\n"
        + "and $\\lambda_{\\max}$ binds only while $\\lambda_{\\max}\\le\\lambda^*$, i.e.\\ "
        + "$\\alpha\\le 1/(2\\lambda_{\\max})$; beyond, a middle eigenvalue binds. At "
        + f"$\\alpha=\\alpha_c={sp.latex(bound.alpha_at)}$:\n"
        + f"\\[ \\beta_c(\\alpha_c) \\ge {sp.latex(bound.beta_lower)} = "
        + f"{sp.latex(bound.ratio_to_gd)}\\times\\frac{{2}}{{\\lambda_{{\\max}}}}, \\]\n"
        + "with equality when an eigenvalue sits at "
        + f"${sp.latex(bound.binding_eigenvalue)}$. "
        + "For two modes $\\lambda<\\lambda_{\\max}$ and $\\alpha\\to\\alpha_c^-$, "
        + f"$\\beta_c\\to {sp.latex(limit)}$, whose minimum over $\\lambda$ is "
        + f"${sp.latex(minimum)}$.\n"
        + "\\finding{The paper says $\\beta_c$ near $\\alpha_c$ ``is larger'' than at $\\alpha=0$; "
        + "derived here: it is at least "
        + f"${sp.latex(bound.ratio_to_gd)}$ times gradient descent's $2/\\lambda_{{\\max}}$, "
        + "for every spectrum.}\n"
    )
    return "".join(out)


def _section_exact() -> str:
    out = [
        "\\section{Exact and first-order MAML on a quadratic (beyond the paper)}\n",
        "On $L=\\frac12 v^\\top A v$ (one task, no resampling) every MAML update is "
        "$v\\leftarrow v-\\beta Jv$; SymPy derives $J$ by running each algorithm symbolically, "
        "for a generic symmetric $2\\times2$ matrix $A$, and the curvature of one eigen-mode.\n",
    ]
    A = qd.symmetric_matrix(2)
    rows = []
    for model, steps in (("surrogate", 1), ("first_order", 1), ("exact", 1)):
        derived = qd.meta_jacobian(model, A, steps=steps)
        closed = qd.meta_jacobian_closed_form(model, A, steps=steps)
        zero = (derived - closed).applyfunc(sp.simplify) == sp.zeros(2, 2)
        rows.append((model, steps, zero))
    checks = ", ".join(
        f"\\texttt{{{m.replace('_', '-')}}}: {'0' if z else 'NONZERO'}" for m, _, z in rows
    )
    out.append(
        "\\step{docs/MATH.md~\\S4}{Meta-Jacobians on a quadratic.}\n"
        "Derived $J$ minus $A(I-\\alpha A)$ (surrogate, first-order) and minus "
        "$(I-\\alpha A)A(I-\\alpha A)$ (exact), simplified: "
        + checks
        + ". Effective curvatures of one mode, derived:\n\\begin{align*}\n"
        + " \\\\\n".join(
            f"\\text{{{label}}}\\colon\\quad \\tilde\\lambda &= "
            f"{sp.latex(qd.mode_curvature(m, steps=k))}"
            for label, m, k in (
                ("surrogate", "surrogate", 1),
                ("first-order, 1 step", "first_order", 1),
                ("exact, 1 step", "exact", 1),
                ("first-order, 2 steps", "first_order", 2),
                ("exact, 2 steps", "exact", 2),
                ("first-order, 3 steps", "first_order", 3),
                ("exact, 3 steps", "exact", 3),
            )
        )
        + "\n\\end{align*}\n"
        + "in general $\\lambda(1-\\alpha\\lambda)^k$ for first-order and "
        + "$\\lambda(1-\\alpha\\lambda)^{2k}$ for exact MAML with $k$ inner steps.\n"
    )
    exact_set = cd.curvature_nonnegative_set("exact")
    gap = cd.exact_minus_surrogate_curvature()
    bound = cd.bound_at_alpha_c("exact")
    peak = cd.curvature_peak("exact")
    limit, minimum = cd.limit_near_alpha_c("exact")
    out.append(
        "\\step{Eq.~11 for exact MAML}{Exact MAML has no $\\alpha_c$ at a minimum.}\n"
        + f"Solving $\\lambda(1-\\alpha\\lambda)^2\\ge 0$: $\\alpha\\in{sp.latex(exact_set)}$; "
        + "the root $\\alpha=1/\\lambda$ is double, so the curvature touches zero and turns "
        + "positive again. Hence Eq.~15 is exact for the surrogate and for first-order MAML on "
        + "quadratics, and is not the condition for exact MAML. On $0\\le\\alpha\\le 1/\\lambda$, "
        + f"surrogate minus exact curvature is ${sp.latex(gap)}\\ge 0$: exact MAML tolerates "
        + "at least as large a $\\beta$.\n"
    )
    out.append(
        "\\step{Sec.~3.2 for exact MAML}{The counterpart of the bound of Step~\\ref{st:bound}.}\n"
        + "For $\\alpha\\le 1/\\lambda_{\\max}$ the exact curvature peaks at "
        + f"$\\lambda^*={sp.latex(peak.argmax)}$, value ${sp.latex(peak.peak)}$, so "
        + f"$\\beta_c^{{\\text{{exact}}}}(\\alpha)\\ge {sp.latex(peak.beta_lower)}$. "
        + "At $\\alpha=1/\\lambda_{\\max}$ (where its top mode is flat):\n"
        + f"\\[ \\beta_c^{{\\text{{exact}}}} \\ge {sp.latex(bound.beta_lower)} = "
        + f"{sp.latex(bound.ratio_to_gd)}\\times\\frac{{2}}{{\\lambda_{{\\max}}}}, \\]\n"
        + f"attained at $\\lambda={sp.latex(bound.binding_eigenvalue)}$; for two modes and "
        + f"$\\alpha\\to 1/\\lambda_{{\\max}}^-$, $\\beta_c\\to{sp.latex(limit)}$ with minimum "
        + f"${sp.latex(minimum)}$.\n"
        + "\\finding{Exact vs surrogate. Exact MAML's local curvatures at a minimum are "
        + "$\\lambda(1-\\alpha\\lambda)^2$, not $\\lambda(1-\\alpha\\lambda)$: no mode ever turns "
        + "negative, there is no $\\alpha_c$, and at $\\alpha=1/\\lambda_{\\max}$ the bound is "
        + f"${sp.latex(bound.ratio_to_gd)}\\times$ (not $4\\times$) gradient descent's.}}\n"
    )
    return "".join(out)


def _section_multitask(dims: Sequence[int]) -> str:
    identities = [mt.mean_surrogate_hessian_identity(d, 2) for d in dims]
    ex = mt.noncommuting_example()
    out = ["\\section{Several tasks (extended version)}\n"]
    out.append(
        "\\step{App.~A, $m$ tasks}{The task-mean surrogate Hessian.}\n"
        "For two generic task losses $L_1,L_2$, SymPy's Hessian of "
        "$\\frac12\\sum_\\tau (L_\\tau-\\frac{\\alpha}{2}g_\\tau^\\top g_\\tau)$ "
        "equals the mean of "
        "$H_\\tau-\\alpha(T_\\tau g_\\tau+H_\\tau^2)$.\n" + _residual_line(identities)
    )
    a_val = ex.alpha_value
    out.append(
        "\\step{extended version}{``Every eigenvalue of every task'' is sufficient, "
        "not necessary.}\n"
        "The extended version asks Eq.~15 of every eigenvalue of every $H_\\tau$. For quadratic "
        "tasks ($T_\\tau=0$), if $\\alpha\\le 1/\\lambda$ for all of them, each "
        "$A_\\tau-\\alpha A_\\tau^2$ is positive semi-definite, hence so is their mean $M$ (a "
        "minimum), and since $\\lambda_{\\max}$ is convex, "
        "$\\lambda_{\\max}(M)\\le\\max_{\\tau,i}(\\lambda_{\\tau i}-\\alpha\\lambda_{\\tau i}^2)$: "
        "the condition guarantees local convergence of gradient descent on the task mean. "
        "The $H_\\tau$ need not commute, so it is only sufficient. Example, derived exactly: "
        + f"$A_1={sp.latex(ex.matrices[0])}$, $A_2={sp.latex(ex.matrices[1])}$ "
        + "(both with eigenvalues $4,1$), mean surrogate Hessian\n"
        + f"\\[ M(\\alpha) = {sp.latex(ex.mean_hessian)}. \\]\n"
        + f"Per task $\\alpha_c={sp.latex(ex.alpha_c_per_task)}$, but $M$ stays positive "
        + f"semi-definite up to $\\alpha={sp.latex(ex.alpha_c_mean)}"
        + f"\\approx {float(ex.alpha_c_mean):.4f}$; at $\\alpha={sp.latex(a_val)}$ the per-task "
        + f"bound is $\\beta<{sp.latex(ex.beta_c_per_task)}$ while the mean's spectrum gives "
        + f"$\\beta_c={sp.latex(ex.beta_c_mean)}\\approx {float(ex.beta_c_mean):.4f}$.\n"
    )
    return "".join(out)


def _section_example() -> str:
    from mamlconv.theory.thresholds import alpha_c, beta_c, binding_eigenvalue

    eigs = [0.5, 1.0, 2.0, 4.0]
    lines = []
    for a in (0.0, 0.1, 0.125, 0.2, 0.25):
        cells = [f"{a:g}"]
        for model in ("surrogate", "exact"):
            cells.append(f"{float(beta_c(eigs, a, model=model)):.4g}")
            cells.append(f"{float(binding_eigenvalue(eigs, a, model=model)):g}")
        lines.append(" & ".join(cells) + " \\\\")
    return (
        "\\section{A worked example}\n"
        "The numeric thresholds of \\texttt{mamlconv.theory.thresholds} are the lambdified "
        "curvatures above (\\texttt{mamlconv thresholds} prints them). For the spectrum "
        f"$\\{{{', '.join(f'{e:g}' for e in eigs)}\\}}$: "
        f"$\\alpha_c={alpha_c(eigs, model='surrogate'):g}$ (surrogate), "
        f"$\\alpha_c=\\infty$ (exact; computed: {alpha_c(eigs, model='exact')}).\n"
        "\\begin{center}\\begin{tabular}{c|cc|cc}\n"
        "$\\alpha$ & $\\beta_c$ surrogate & binds & $\\beta_c$ exact & binds \\\\ \\hline\n"
        + "\n".join(lines)
        + "\n\\end{tabular}\\end{center}\n"
        "At $\\alpha=\\alpha_c=0.25$ the surrogate's $\\beta_c=2=8/\\lambda_{\\max}$: the bound of "
        "Step~\\ref{st:bound} is attained because $\\lambda=2=\\lambda_{\\max}/2$ is in the "
        "spectrum.\n"
    )


def build_document(*, dims: Sequence[int] = (2, 3)) -> str:
    """The whole LaTeX document as a string (runs every derivation; a few seconds, then cached).

    ``dims``: the parameter counts n for which the generic-L identities are checked; the
    expressions are shown for the first.
    """
    dims = tuple(dims)
    if not dims or any(d not in (2, 3) for d in dims):
        raise ValueError(f"dims must be a non-empty subset of (2, 3), got {dims!r}")
    return _build_document(dims)


@cache
def _build_document(dims: tuple[int, ...]) -> str:
    from mamlconv.util.version import __version__

    body = [
        tx.PREAMBLE.replace("VERSION", __version__),
        tx.INTRO,
        _section_gradient_penalty(dims),
        _section_hessian(dims),
        _section_conditions(),
        _section_exact(),
        _section_multitask(dims),
        _section_example(),
        tx.FINDINGS,
        "\\end{document}\n",
    ]
    return "".join(body)


def write_document(path: str | Path, *, dims: Sequence[int] = (2, 3)) -> Path:
    """Write :func:`build_document` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_document(dims=dims), encoding="utf-8")
    return path


_PROBLEM = re.compile(r"^(!.*|.*Undefined control sequence.*|.*LaTeX Error.*|.*:\d+: .*)$")


def latex_problems(log_text: str) -> list[str]:
    """Lines of a pdflatex log that report an error or an undefined control sequence."""
    return [line for line in log_text.splitlines() if _PROBLEM.match(line)]


def compile_pdf(tex_path: str | Path, *, timeout_s: float = 180.0, keep_log: bool = False) -> Path:
    """Compile ``tex_path`` with pdflatex; returns the PDF path (beside the .tex).

    Runs ``pdflatex -interaction=nonstopmode -halt-on-error`` (again when the log asks for a
    rerun) with its auxiliary files (.aux, .log, .out) in a temporary folder, so that only the
    PDF lands beside the .tex -- and the log too when ``keep_log`` is set or the compile fails.
    Raises :class:`PdflatexNotFoundError` when pdflatex is missing and :class:`LatexError`
    (quoting the offending log lines) on a non-zero exit, any ``!`` error, "LaTeX Error" or
    "Undefined control sequence" in the log, or a missing PDF.
    """
    tex_path = Path(tex_path).resolve()
    if not tex_path.is_file():
        raise FileNotFoundError(f"no such LaTeX file: {tex_path}")
    exe = shutil.which("pdflatex")
    if exe is None:
        raise PdflatexNotFoundError(
            "pdflatex not found on PATH; install a TeX distribution "
            "(Debian/Ubuntu: apt-get install --no-install-recommends texlive-latex-base)"
        )
    log_path = tex_path.with_suffix(".log")
    pdf_path = tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="mamlconv-latex-") as build_dir:
        build = Path(build_dir)
        built_log, built_pdf = build / log_path.name, build / pdf_path.name
        for _ in range(3):
            try:
                result = subprocess.run(
                    [
                        exe,
                        "-interaction=nonstopmode",
                        "-halt-on-error",
                        "-file-line-error",
                        f"-output-directory={build}",
                        tex_path.name,
                    ],
                    cwd=tex_path.parent,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise LatexError(
                    f"pdflatex took longer than {timeout_s:g} s on {tex_path}"
                ) from None
            log = built_log.read_text(errors="replace") if built_log.exists() else result.stdout
            problems = latex_problems(log)
            if result.returncode != 0 or problems:
                log_path.write_text(log)
                shown = "\n  ".join(problems[:10]) or result.stdout[-2000:]
                raise LatexError(
                    f"pdflatex failed on {tex_path} (exit {result.returncode}); see {log_path}:\n"
                    f"  {shown}"
                )
            if "Rerun to get" not in log and "Label(s) may have changed" not in log:
                break
        if not built_pdf.is_file():
            raise LatexError(f"pdflatex reported success but wrote no {pdf_path}")
        shutil.copyfile(built_pdf, pdf_path)
        if keep_log:
            shutil.copyfile(built_log, log_path)
    return pdf_path


__all__ = [
    "LatexError",
    "PdflatexNotFoundError",
    "build_document",
    "compile_pdf",
    "latex_problems",
    "write_document",
]
