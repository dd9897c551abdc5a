"""Numerics: MAML steps on any differentiable loss, exact dynamics on quadratics and linear
regression, empirical boundaries, and curvature spectra (Hessian-vector products, Lanczos)."""
