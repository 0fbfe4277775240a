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


def create_model(name: str, num_classes: int = 7, fer2013_head: bool = False, **kwargs) -> nn.Module:
    """The preset ``name``; ``fer2013_head`` adds :class:`TwoHeads`' second head."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    model = _REGISTRY[name](num_classes=num_classes, **kwargs)
    return TwoHeads(model) if fer2013_head else model


class TwoHeads(nn.Module):
    """A network with a second linear head on the same pooled features, for FER2013's own labels.

    FER2013's labels and the FER+ crowd disagree on about a third of the faces, so one readout
    cannot match both. ``forward`` is the first head, the crowd's reading that the product shows;
    :meth:`both` adds the FER2013 head, which only the FER2013 benchmark reads. Both heads share
    every convolution, so the second costs one 7-way linear layer. The parameter names of the
    network stay as they were (``features``, ``head``), so a one-head checkpoint can start one.
    """

    def __init__(self, net: nn.Module, fer2013_classes: int = 7):
        super().__init__()
        self.features, self.head = net.features, net.head
        self.fer2013 = nn.Linear(self.head[-1].in_features, fer2013_classes)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.head[:-1](self.features(x))
        return self.head[-1](pooled), self.fer2013(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.both(x)[0]


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
def moodnet_sd(num_classes: int = 7, **kwargs) -> MoodNet:
    """moodnet_s with a second block in its last stage: 2.4M parameters, ~140M multiply-adds. The
    6x6 stage is where depth costs least; its other blocks have moodnet_s's shapes, so it can grow
    from a trained moodnet_s (``moodlens train --init``)."""
    return MoodNet(32, (64, 128, 256), (1, 1, 2), num_classes, **kwargs)


@register_model
def moodnet_xs(num_classes: int = 7, **kwargs) -> MoodNet:
    """Smallest preset for slow machines: 0.7M parameters, ~59M multiply-adds."""
    return MoodNet(32, (48, 96, 192), (1, 1, 1), num_classes, **kwargs)


@register_model
def moodnet_m(num_classes: int = 7, **kwargs) -> MoodNet:
    """Accuracy preset for a GPU: 11M parameters, two blocks per stage and four stages."""
    return MoodNet(64, (64, 128, 256, 512), (2, 2, 2, 2), num_classes, **kwargs)


# Backbones in torchvision's layout, so a user's own torchvision state dict (e.g. ImageNet
# weights they already have as a file) can start training: `moodlens train --backbone resnet18
# --pretrained resnet18.pth`. Nothing is downloaded. Both take 48x48 grey faces: the pretrained
# first convolution's colour filters are summed into one grey filter.

class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with its parameter names."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + shortcut)


class BackboneNet(nn.Module):
    """``features`` hold the backbone's layers under torchvision's names (after the prefix in
    :data:`BACKBONES`); ``head`` is new: pooling, dropout and a linear classifier."""

    def __init__(self, features: nn.Module, width: int, num_classes: int, dropout: float = 0.3):
        super().__init__()
        self.features = features
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model
def resnet18(num_classes: int = 7, **kwargs) -> BackboneNet:
    """torchvision's ResNet-18 layout on grey 48x48 input: 11M parameters, for --pretrained."""
    from collections import OrderedDict

    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(1, 64, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(64), relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, 2, 1))
    cin = 64
    for i, width in enumerate((64, 128, 256, 512), 1):
        layers[f"layer{i}"] = nn.Sequential(BasicBlock(cin, width, 1 if i == 1 else 2), BasicBlock(width, width, 1))
        cin = width
    return BackboneNet(nn.Sequential(layers), 512, num_classes, **kwargs)


@register_model
def vgg16(num_classes: int = 7, **kwargs) -> BackboneNet:
    """torchvision's VGG-16 convolutional layers (``features.N``) on grey 48x48 input, for --pretrained."""
    layers: list[nn.Module] = []
    cin = 1
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return BackboneNet(nn.Sequential(*layers), 512, num_classes, **kwargs)


# backbone name -> (prefix of its layers in a torchvision state dict, name of the first convolution's weight)
BACKBONES: dict[str, tuple[str, str]] = {"resnet18": ("", "conv1.weight"), "vgg16": ("features.", "features.0.weight")}


def load_backbone(model: BackboneNet, name: str, path: str) -> int:
    """Copy a torchvision state dict's backbone weights into ``model.features``; the classifier
    in the file is ignored. Returns the number of tensors loaded.

    Raises:
        ValueError: an unknown backbone, or a file that is not that backbone's state dict.
    """
    if name not in BACKBONES:
        raise ValueError(f"no pretrained loading for {name!r}; backbones: {', '.join(BACKBONES)}")
    prefix, first_conv = BACKBONES[name]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and runtime errors for files that are not state dicts
        raise ValueError(f"{path}: not a PyTorch state dict ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a PyTorch state dict")
    wanted = model.features.state_dict()
    loaded = {}
    for key, target in wanted.items():
        source = state.get(prefix + key)
        if source is None:
            raise ValueError(f"{path}: not a torchvision {name} state dict (no {prefix + key!r})")
        if prefix + key == first_conv and source.shape[1] == 3 and target.shape[1] == 1:
            source = source.sum(1, keepdim=True)  # colour filters -> one grey filter
        if source.shape != target.shape:
            raise ValueError(f"{path}: {prefix + key} has shape {tuple(source.shape)}, {name} needs {tuple(target.shape)}")
        loaded[key] = source
    model.features.load_state_dict(loaded)
    return len(loaded)


def load_exported(model: nn.Module, path: str) -> list[nn.BatchNorm2d]:
    """Start a :class:`MoodNet` (or its :class:`TwoHeads`) from an exported MoodNet's ONNX graph,
    so the shipped model, which comes without its checkpoint, can be fine-tuned or grown.

    Export folds each BatchNorm into the convolution before it, so a convolution gets the folded
    weight and its BatchNorm passes the folded bias on: the network computes what the graph does.
    Stage by stage the graph's blocks fill the first blocks of ``model``; a stage of ``model`` with
    more blocks starts its extra ones as identities (the last BatchNorm of the body at zero).
    Returns the BatchNorms that hold folded biases, for :func:`settle_batchnorms`.

    Raises:
        ValueError: a file that is not an exported MoodNet, or one whose blocks do not fit ``model``.
    """
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(path).graph
    except Exception as e:  # protobuf decode errors of a file that is not ONNX
        raise ValueError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    convs = [(weights.get(n.input[1]), weights.get(n.input[2]) if len(n.input) > 2 else None,
              next((a.ints[0] for a in n.attribute if a.name == "strides"), 1)) for n in graph.node if n.op_type == "Conv"]
    if not convs or any(w is None or b is None for w, b, _ in convs):
        raise ValueError(f"{path}: not an exported MoodNet (no folded convolutions)")
    layers = list(model.features)
    if not isinstance(model, (MoodNet, TwoHeads)) or not isinstance(layers[0], nn.Conv2d):
        raise ValueError(f"{path}: only a MoodNet preset can start from an exported model")
    source = _stages(_conv_blocks(convs[1:]), lambda block: block[0][2] == 2)
    target = _stages([m for m in layers if isinstance(m, ResidualBlock)], lambda block: block.body[0].stride[0] == 2)
    if len(source) != len(target) or any(len(s) > len(t) for s, t in zip(source, target)):
        raise ValueError(f"{path}: its stages of {[len(s) for s in source]} blocks do not fit this network's "
                         f"{[len(t) for t in target]}")
    pairs = [(layers[0], layers[1], convs[0])]
    for blocks, convs_of in zip(target, source):
        for block, parts in zip(blocks, convs_of):
            shortcut = list(block.shortcut) if isinstance(block.shortcut, nn.Sequential) else []
            if len(parts) != 2 + len(shortcut) // 2:
                raise ValueError(f"{path}: its blocks' shortcuts do not fit this network's")
            pairs += zip([block.body[0], block.body[3], *shortcut[:1]], [block.body[1], block.body[4], *shortcut[1:]], parts)
        for block in blocks[len(convs_of):]:
            nn.init.zeros_(block.body[4].weight)
            nn.init.zeros_(block.body[4].bias)
    settled = []
    for conv, bn, (w, b, _) in pairs:
        if conv.weight.shape != w.shape:
            raise ValueError(f"{path}: a convolution of shape {tuple(w.shape)} where this network has "
                             f"{tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(w)
            bn.weight.fill_(1.0)
            bn.bias.copy_(b)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        settled.append(bn)
    state = model.state_dict()
    for key, value in weights.items():  # the linear heads keep their names, under the export wrapper's "model."
        name = key.removeprefix("model.")
        if name.startswith(("head.", "fer2013.")) and name in state:
            if state[name].shape != value.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, this network's {tuple(state[name].shape)}")
            state[name].copy_(value)
    return settled


def _conv_blocks(convs: list) -> list[list]:
    """The convolutions of residual blocks, in graph order, grouped by block: two 3x3 and an
    optional 1x1 shortcut each."""
    blocks: list[list] = []
    for conv in convs:
        shortcut = conv[0].shape[-1] == 1
        if blocks and len(blocks[-1]) == (2 if shortcut else 1):
            blocks[-1].append(conv)
        else:
            blocks.append([conv])
    return blocks


def _stages(blocks: list, starts_stage: Callable) -> list[list]:
    """``blocks`` grouped into stages, a new stage at each block ``starts_stage`` says is strided."""
    stages: list[list] = []
    for block in blocks:
        if not stages or starts_stage(block):
            stages.append([])
        stages[-1].append(block)
    return stages


@torch.no_grad()
def settle_batchnorms(model: nn.Module, batchnorms: list[nn.BatchNorm2d], x: torch.Tensor) -> None:
    """Give the BatchNorms of :func:`load_exported` the statistics of real faces ``x``, keeping
    the function the same: training normalises by each batch's statistics, and a BatchNorm that
    expected mean 0 and variance 1 would otherwise rescale every layer on the first step."""
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [bn.register_forward_hook(lambda m, inp, out: seen.__setitem__(
        m, (inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=False)))) for bn in batchnorms]
    model.eval()
    model(x)
    for h in hooks:
        h.remove()
    for bn in batchnorms:
        mean, var = seen[bn]
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.bias.add_(mean)
        bn.weight.copy_((var + bn.eps).sqrt())
