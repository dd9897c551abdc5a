"""The theory commands: ``mamlconv derive`` runs the SymPy derivations and writes them as a
LaTeX document (and PDF); ``mamlconv thresholds`` prints alpha_c, beta_c(alpha) and the
binding eigenvalue for a spectrum."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mamlconv.cli._args import UsageError, float_list, nonnegative_float, positive_int
from mamlconv.util.files import jsonable

MODELS = ("surrogate", "first_order", "exact")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "derive",
        help="check the paper's derivations with SymPy; write them as LaTeX / PDF",
        description=(
            "Derive, with SymPy, every identity and condition of the paper that the package "
            "relies on (Eq. 3-7 for a generic loss, Appendix A's Hessian, the conditions of "
            "Eq. 9-15, exact and first-order MAML, several tasks) and check each against the "
            "paper's statement. Without --out or --latex, print one line per check. With "
            "--out DIR, write DIR/derivation.tex, a standalone LaTeX document (numbered steps "
            "tied to the paper's equations, every expression printed by sympy.latex from the "
            "derived object, the findings in words), and compile it to DIR/derivation.pdf with "
            "pdflatex. --latex FILE writes the document to FILE instead; --pdf compiles it."
        ),
        epilog="example: mamlconv derive --out derivation  (derivation/derivation.tex, .pdf)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="write DIR/derivation.tex and compile DIR/derivation.pdf (folder created)",
    )
    parser.add_argument(
        "--latex", metavar="FILE", type=Path, help="write the LaTeX document to FILE (.tex)"
    )
    parser.add_argument(
        "--pdf",
        action="store_true",
        help="also compile FILE with pdflatex (needs --latex; says so when pdflatex is missing)",
    )
    parser.set_defaults(func=run)
    _add_thresholds_parser(subparsers)


def _print_checks() -> int:
    from mamlconv.theory import conditions, gradient_penalty, hessian, multitask

    failures = 0
    identities = [
        *(i for n in (2, 3) for i in gradient_penalty.all_identities(n)),
        *(i for n in (2, 3) for i in hessian.all_identities(n)),
        conditions.eq9_eigenvalues(),
        multitask.mean_surrogate_hessian_identity(2, 2),
    ]
    for identity in identities:
        ok = identity.holds()
        failures += not ok
        verdict = "ok  " if ok else "FAIL"
        print(f"{verdict}  {identity.label:<18} n={identity.n}  {identity.statement}")
    # Derived values (not pass/fail checks): the factor 2 and the beta_c bounds at 1/lambda_max.
    print(f"      factor between Eq. 7 and Eq. 5 (derived): {gradient_penalty.penalty_factor(2)}")
    for model in ("surrogate", "exact"):
        bound = conditions.bound_at_alpha_c(model)
        print(
            f"      {model}: beta_c(alpha = 1/lambda_max) >= {bound.beta_lower} "
            f"= {bound.ratio_to_gd} x GD's 2/lambda_max (derived)"
        )
    print(f"{len(identities) - failures}/{len(identities)} identities hold")
    return 1 if failures else 0


OUT_NAME = "derivation.tex"
"""The document's name in ``--out DIR``."""


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        if args.latex is not None:
            raise UsageError("give --out DIR or --latex FILE, not both")
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {str(args.out)!r} exists and is not a folder; name a folder")
        args.latex, args.pdf = args.out / OUT_NAME, True
    if args.pdf and args.latex is None:
        raise UsageError("--pdf needs --latex FILE (or use --out DIR)")
    if args.latex is None:
        return _print_checks()
    if args.latex.suffix != ".tex":
        raise UsageError(f"--latex FILE must end in .tex, got {str(args.latex)!r}")
    if args.latex.exists() and args.latex.is_dir():
        raise UsageError(f"--latex FILE is a directory: {str(args.latex)!r}")

    from mamlconv.theory.latex import (
        LatexError,
        PdflatexNotFoundError,
        compile_pdf,
        write_document,
    )

    try:
        path = write_document(args.latex)
    except OSError as exc:
        raise UsageError(f"cannot write {str(args.latex)!r}: {exc.strerror or exc}") from None
    print(f"wrote {path}")
    if not args.pdf:
        return 0
    try:
        pdf = compile_pdf(path)
    except PdflatexNotFoundError as exc:
        sys.stderr.write(f"mamlconv derive: no PDF: {exc}\n")
        return 1
    except LatexError as exc:
        sys.stderr.write(f"mamlconv derive: LaTeX failed: {exc}\n")
        return 1
    print(f"wrote {pdf}")
    return 0


def _add_thresholds_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "thresholds",
        help="alpha_c, beta_c(alpha) and the binding eigenvalue of a spectrum",
        description=(
            "Print the learning-rate thresholds of paper Sec. 3 (Eq. 11 and 14, taken over the "
            "whole spectrum) for one MAML object: alpha_c, the largest inner rate below which no "
            "effective curvature turns negative; beta_c(alpha) = 2 / (largest positive effective "
            "curvature), the supremum of meta rates for which gradient descent converges "
            "locally (strictly below it); and the eigenvalue that sets beta_c. Effective "
            "curvatures: surrogate lambda(1 - alpha lambda), first_order lambda(1 - alpha "
            "lambda)^K, exact lambda(1 - alpha lambda)^(2K)."
        ),
        epilog="example: mamlconv thresholds --eigs 0.5,1,2,4 --alpha 0.2 --model exact --json",
    )
    parser.add_argument(
        "--eigs",
        type=float_list,
        required=True,
        metavar="L1,L2,...",
        help="eigenvalues of the Hessian H of the loss, comma-separated",
    )
    parser.add_argument(
        "--alpha",
        type=nonnegative_float,
        required=True,
        help="inner learning rate alpha >= 0",
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="surrogate",
        help="which MAML object (default: surrogate, the paper's simplified MAML)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=1,
        metavar="K",
        help="inner steps K >= 1 (default 1; the surrogate is one-step only)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_thresholds)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "none (no mode of positive curvature)"
    return "inf" if math.isinf(value) else f"{value:.10g}"


def run_thresholds(args: argparse.Namespace) -> int:
    if args.model == "surrogate" and args.steps != 1:
        raise UsageError(
            f"--steps {args.steps} with --model surrogate: the surrogate is one-step only "
            "(use --model exact or first_order for K > 1)"
        )
    from mamlconv.theory.thresholds import alpha_c, beta_c, binding_eigenvalue

    try:
        a_c = alpha_c(args.eigs, model=args.model, steps=args.steps)
        b_c = float(beta_c(args.eigs, args.alpha, model=args.model, steps=args.steps))
        bind = float(binding_eigenvalue(args.eigs, args.alpha, model=args.model, steps=args.steps))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    gd = float(beta_c(args.eigs, 0.0, model=args.model, steps=args.steps))
    if args.json:
        record = {
            "model": args.model,
            "steps": args.steps,
            "alpha": args.alpha,
            "eigs": args.eigs,
            "alpha_c": a_c,
            "beta_c": b_c,
            "binding_eigenvalue": bind,  # NaN (no mode of positive curvature): null
            "beta_c_gd": gd,
        }
        # The package's JSON rule: inf as null with "<key>_status": "inf" (docs/engine.md).
        print(json.dumps(jsonable(record), allow_nan=False))
        return 0
    print(f"model               {args.model} ({args.steps} inner step{'s' * (args.steps > 1)})")
    print(f"eigenvalues         {', '.join(f'{e:g}' for e in args.eigs)}")
    print(f"alpha               {args.alpha:g}")
    print(f"alpha_c             {_fmt(a_c)}")
    print(f"beta_c(alpha)       {_fmt(b_c)}   (converges for beta < beta_c)")
    print(f"binding eigenvalue  {_fmt(bind)}")
    print(f"beta_c(0) (GD)      {_fmt(gd)}")
    if args.alpha > a_c:
        print(f"note: alpha > alpha_c: some mode has negative curvature, so beta_c = {_fmt(b_c)}")
    elif b_c == 0.0:
        power = 2 * args.steps if args.model == "exact" else args.steps
        print(
            "note: beta_c is positive but below the smallest float64: the binding mode's "
            f"curvature lambda (1 - alpha lambda)^{power} exceeds 1e308"
        )
    return 0
