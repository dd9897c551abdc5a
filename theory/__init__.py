"""SymPy derivations of Takagi et al. (2019) and the numeric thresholds generated from them.

Modules (import them directly; nothing heavy is imported here):

- ``symbols``          the symbols alpha, beta, lambda, ... with their assumptions
- ``generic``          a generic smooth L(theta_1..theta_n) and exact bookkeeping of its partials
- ``gradient_penalty`` Sec. 2.2, Eq. 3-7: the surrogate as GD on L - (alpha/2) g^T g; the factor 2
- ``hessian``          App. A, Eq. 16-20: H - alpha (Tg + H^2); Tg = 0 at g = 0; exact MAML at g = 0
- ``quadratic``        MAML on quadratics: meta-Jacobians and per-mode curvatures, k inner steps
- ``conditions``       Sec. 3, Eq. 9-15: alpha and beta conditions, limits, bounds near alpha_c
- ``multitask``        several tasks: the task-mean surrogate Hessian, the sufficient condition
- ``thresholds``       alpha_c / beta_c / binding eigenvalue: lambdified, vectorised, float64
- ``latex``            the derivations as a LaTeX document; ``compile_pdf`` with pdflatex
"""
