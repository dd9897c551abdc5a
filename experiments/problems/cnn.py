"""The 4-block CNN of Vinyals et al. (2016) / Finn et al. (2017), as a pure function of a dict.

Each block is 3x3 convolution ('same' padding, stride 1) -> batch norm -> ReLU -> 2x2 max-pool
(floor); a linear head maps the flattened features to the N class logits. Paper Section 4.2 uses
64 filters on Omniglot (1 x 28 x 28: 28 -> 14 -> 7 -> 3 -> 1, 64 features) and 32 filters on
MiniImagenet (3 x 84 x 84: 84 -> 42 -> 21 -> 10 -> 5, 800 features).

Batch norm, as in MAML: the statistics are always those of the batch passed in, i.e. of ONE
task's support set or query set (per-task batch statistics, biased variance, eps = 1e-3 as
TensorFlow's default that Finn et al. used); there are no running statistics, so training and
evaluation compute the same function. The affine transform is learnable (scale and shift; Finn
et al.'s TensorFlow code learns only the shift). The convolutions carry no bias: batch norm's
mean subtraction cancels it exactly (its gradient is identically zero), so it would only add
flat directions to every Hessian this package measures.

Choices the paper leaves open, stated here: Omniglot uses max-pooling like MiniImagenet
(Vinyals et al.; Finn et al.'s Omniglot code used stride-2 convolutions instead); weights are
Glorot-uniform (Finn et al.'s xavier initialiser), biases zero, batch-norm scale one.

Everything is built from ``torch.nn.functional`` on explicit tensors, so ``torch.func.grad``,
``jvp`` and ``vmap`` (over tasks and over cells of a learning-rate grid) apply directly.
:class:`ConvNetModule` is the independent ``nn.Module`` twin used to check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlconv.numerics.tasks import Params

BN_EPS = 1e-3
N_BLOCKS = 4
INITS: tuple[str, ...] = ("glorot", "finn", "torch_default")


@dataclass(frozen=True)
class ConvNetSpec:
    """Shape of the network: input channels and side, filters per block, number of classes."""

    in_channels: int
    image_size: int
    filters: int
    n_classes: int
    blocks: int = N_BLOCKS
    init: str = "glorot"
    """Initialisation (:data:`INITS`; the paper is silent): ``glorot`` Glorot-uniform weights
    everywhere; ``finn`` Finn et al.'s reference code (cbfinn/maml, maml.py
    ``construct_conv_weights``: xavier convolutions, zero biases, and a head drawn from a
    standard normal on Omniglot, Glorot-uniform on MiniImagenet); ``torch_default`` what
    ``nn.Conv2d`` / ``nn.Linear`` draw, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and the
    head's bias. Batch-norm scale one and shift zero in all three."""

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    @property
    def feature_side(self) -> int:
        side = self.image_size
        for _ in range(self.blocks):
            side //= 2  # 'same' convolution keeps the side; 2x2 max-pool floors it
        return side

    @property
    def n_features(self) -> int:
        return self.filters * self.feature_side**2

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        c_in = self.in_channels
        for b in range(self.blocks):
            shapes[f"conv{b}.weight"] = (self.filters, c_in, 3, 3)
            shapes[f"bn{b}.weight"] = (self.filters,)
            shapes[f"bn{b}.bias"] = (self.filters,)
            c_in = self.filters
        shapes["head.weight"] = (self.n_classes, self.n_features)
        shapes["head.bias"] = (self.n_classes,)
        return shapes

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())


def omniglot_spec(n_classes: int = 5, *, filters: int = 64, init: str = "glorot") -> ConvNetSpec:
    """Paper Section 4.2 / Finn et al.: 64 filters on 1 x 28 x 28 Omniglot."""
    return ConvNetSpec(
        in_channels=1, image_size=28, filters=filters, n_classes=n_classes, init=init
    )


def miniimagenet_spec(
    n_classes: int = 5, *, filters: int = 32, init: str = "glorot"
) -> ConvNetSpec:
    """Paper Section 4.2 / Finn et al.: 32 filters on 3 x 84 x 84 MiniImagenet."""
    return ConvNetSpec(
        in_channels=3, image_size=84, filters=filters, n_classes=n_classes, init=init
    )


def init_params(
    spec: ConvNetSpec,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Params:
    """Initial parameters by ``spec.init`` (see :class:`ConvNetSpec`); ``glorot``: weights
    U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), zero biases, BN scale one.

    Drawn on the CPU from ``generator`` in a fixed order, then moved, so the same seed gives
    the same network on every device.
    """
    params: Params = {}
    for name, shape in spec.param_shapes().items():
        receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
        if name.startswith("bn"):
            value = torch.full(shape, 1.0 if name.endswith(".weight") else 0.0, dtype=torch.float64)
        elif name == "head.bias":
            value = torch.zeros(shape, dtype=torch.float64)
            if spec.init == "torch_default":
                bound = 1.0 / math.sqrt(spec.n_features)
                u = torch.rand(shape, generator=generator, dtype=torch.float64)
                value = (2.0 * u - 1.0) * bound
        else:
            fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
            if spec.init == "finn" and name == "head.weight" and spec.in_channels == 1:
                value = torch.randn(shape, generator=generator, dtype=torch.float64)
                params[name] = value.to(device=device, dtype=dtype)
                continue
            if spec.init == "torch_default":
                bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this
            else:
                bound = math.sqrt(6.0 / (fan_in + fan_out))
            u = torch.rand(shape, generator=generator, dtype=torch.float64)
            value = (2.0 * u - 1.0) * bound
        params[name] = value.to(device=device, dtype=dtype)
    return params


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, *, eps: float = BN_EPS) -> Tensor:
    """Per-batch normalisation over (examples, height, width) per channel, then scale and shift.

    y = weight * (x - mean) / sqrt(var + eps) + bias with the biased variance of this batch.
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    x_hat = (x - mean) * torch.rsqrt(var + eps)
    return x_hat * weight[None, :, None, None] + bias[None, :, None, None]


def logits(params: Params, x: Tensor) -> Tensor:
    """Class logits of images ``x`` of shape (examples, channels, side, side)."""
    h = x
    b = 0
    while f"conv{b}.weight" in params:
        h = F.conv2d(h, params[f"conv{b}.weight"], padding=1)
        h = batch_norm(h, params[f"bn{b}.weight"], params[f"bn{b}.bias"])
        h = F.max_pool2d(F.relu(h), kernel_size=2)
        b += 1
    h = h.flatten(start_dim=1)  # (examples, filters * side * side), channel-major as nn.Flatten
    return h @ params["head.weight"].T + params["head.bias"]


def loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of ONE task's batch: -mean_i log softmax(logits(x_i))[y_i].

    ``y`` holds int64 class indices. Written with ``log_softmax`` and ``gather`` so that
    ``vmap`` over tasks and cells and every ``torch.func`` transform apply.
    """
    logp = torch.log_softmax(logits(params, x), dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).mean()


def accuracy(params: Params, x: Tensor, y: Tensor) -> Tensor:
    """Fraction of ``x`` whose arg-max logit is ``y``."""
    return (logits(params, x).argmax(dim=-1) == y).to(x.dtype).mean()


class ConvNetModule(nn.Module):
    """The same network from stock ``nn`` layers: the independent twin for the tests.

    ``BatchNorm2d(track_running_stats=False)`` always normalises with the batch statistics.
    """

    def __init__(self, spec: ConvNetSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = spec.in_channels
        for _ in range(spec.blocks):
            layers += [
                nn.Conv2d(c_in, spec.filters, 3, padding=1, bias=False),
                nn.BatchNorm2d(spec.filters, eps=BN_EPS, affine=True, track_running_stats=False),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = spec.filters
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(spec.n_features, spec.n_classes)
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.features(x), 1))

    def load_functional(self, params: Params) -> ConvNetModule:
        """Copy a functional parameter dict into this module's parameters."""
        with torch.no_grad():
            for b in range(self.spec.blocks):
                self.features[4 * b].weight.copy_(params[f"conv{b}.weight"])
                self.features[4 * b + 1].weight.copy_(params[f"bn{b}.weight"])
                self.features[4 * b + 1].bias.copy_(params[f"bn{b}.bias"])
            self.head.weight.copy_(params["head.weight"])
            self.head.bias.copy_(params["head.bias"])
        return self

    def functional_names(self) -> dict[str, nn.Parameter]:
        """This module's parameters under the functional dict's names."""
        names: dict[str, nn.Parameter] = {}
        for b in range(self.spec.blocks):
            names[f"conv{b}.weight"] = self.features[4 * b].weight
            names[f"bn{b}.weight"] = self.features[4 * b + 1].weight
            names[f"bn{b}.bias"] = self.features[4 * b + 1].bias
        names["head.weight"] = self.head.weight
        names["head.bias"] = self.head.bias
        return names
