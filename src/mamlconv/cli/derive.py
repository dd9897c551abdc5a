"""``mamlconv derive``: run the SymPy derivations; write them as a LaTeX document (and PDF)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mamlconv.cli._args import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "derive",
        help="check the paper's derivations with SymPy; write them as LaTeX / PDF",
        description=(
            "Derive, with SymPy, every identity and condition of the paper that the package "
            "relies on (Eq. 3-7 for a generic loss, Appendix A's Hessian, the conditions of "
            "Eq. 9-15, exact and first-order MAML, several tasks) and check each against the "
            "paper's statement. Without --latex, print one line per check. With --latex FILE, "
            "write a standalone LaTeX document: numbered steps tied to the paper's equations, "
            "every expression printed by sympy.latex from the derived object, and the findings "
            "in words. --pdf compiles it with pdflatex."
        ),
        epilog="example: mamlconv derive --latex out/derivations.tex --pdf",
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


def run(args: argparse.Namespace) -> int:
    if args.pdf and args.latex is None:
        raise UsageError("--pdf needs --latex FILE")
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
