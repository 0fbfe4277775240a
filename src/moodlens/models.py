"""Model presets for training (PyTorch). Inference never imports this: it runs the exported ONNX.

A preset is a small function registered by name, as in timm; :func:`create_model` is the one
factory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class MoodNet(nn.Module):
    """A small ResNet for 48x48 grey faces: a full-resolution stem, then stages that halve the
    resolution and widen, global average pooling, dropout and a linear head."""

    def __init__(self, stem: int, widths: tuple[int, ...], depths: tuple[int, ...], num_classes: int = 7,
                 dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = _conv_bn_relu(1, stem)
        cin = stem
        for width, depth in zip(widths, depths):
            for i in range(depth):
                layers.append(ResidualBlock(cin, width, 2 if i == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model
def moodnet_s(num_classes: int = 7, **kwargs) -> MoodNet:
    """Real-time CPU preset: 1.2M parameters, ~100M multiply-adds per 48x48 face."""
    return MoodNet(32, (64, 128, 256), (1, 1, 1), num_classes, **kwargs)


@register_model
def moodnet_xs(num_classes: int = 7, **kwargs) -> MoodNet:
    """Smallest preset for slow machines: 0.7M parameters, ~59M multiply-adds."""
    return MoodNet(32, (48, 96, 192), (1, 1, 1), num_classes, **kwargs)


@register_model
def moodnet_m(num_classes: int = 7, **kwargs) -> MoodNet:
    """Accuracy preset for a GPU: 11M parameters, two blocks per stage and four stages."""
    return MoodNet(64, (64, 128, 256, 512), (2, 2, 2, 2), num_classes, **kwargs)
