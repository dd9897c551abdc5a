"""Numerics: MAML steps on any differentiable loss, exact dynamics on quadratics and linear
regression, empirical boundaries, and curvature spectra (Hessian-vector products, Lanczos).

Modules (float64 for every check against theory; the device and dtype follow the params):

- ``tasks``      TaskBatch / Problem interface shared with the experiments layer
- ``variants``   the MAML objects by name and the valid (variant, steps) pairs, torch-free
- ``maml``       one task's meta-gradient for exact, first-order and surrogate MAML (k steps)
- ``boundary``   classification of grid cells, per-alpha boundaries, bisection
- ``losses``     quadratics with a chosen spectrum; App. C linear regression (mse / half_mse)
- ``quadratic``  closed-form linear MAML updates on quadratics (the autodiff code's reference)
- ``dynamics``   outer gradient descent over a whole alpha x beta grid at once
- ``linreg``     the App. C / Fig. 3 study (grids, theory, boundary errors, JSON)
- ``multitask``  several tasks: the every-eigenvalue bound vs the true edge
- ``curvature``  HVP, Tg, H^2, surrogate and meta Hessians; Lanczos, power iteration, norms
- ``figures``    Fig. 2 and Fig. 3 redrawn
"""
