"""The traced backbone is shared by trunks with the same weights: torch keeps every trace (and the
parameters it froze) for the life of the process, so one trace per training made a long-running
server grow by ~10 MB per training."""
from __future__ import annotations

import gc

import torch

from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict


def _live_parameters() -> int:
    gc.collect()
    return sum(type(o) is torch.nn.Parameter for o in gc.get_objects())  # no isinstance: no metaclass hooks


def test_trunks_with_the_same_weights_share_one_trace_and_leave_nothing_behind():
    sd = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
    x = torch.rand(1, 3, 64, 64)
    first = Trunk("efficientnet_lite0", sd)
    first(x)
    baseline = _live_parameters()
    for _ in range(3):  # a training each: a new trunk, features of a few batches, then dropped
        trunk = Trunk("efficientnet_lite0", sd)
        trunk(x)
        assert trunk._traced[("cpu", 64, 64)] is first._traced[("cpu", 64, 64)]
        del trunk
    assert _live_parameters() == baseline


def test_different_weights_get_their_own_trace():
    sd = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
    changed = {name: tensor.clone() for name, tensor in sd.items()}
    name = next(iter(changed))
    changed[name] += 0.5
    x = torch.rand(1, 3, 64, 64)
    a, b = Trunk("efficientnet_lite0", sd), Trunk("efficientnet_lite0", changed)
    fa, fb = a(x), b(x)
    assert a._traced[("cpu", 64, 64)] is not b._traced[("cpu", 64, 64)]
    with torch.inference_mode():
        for fast, slow in zip(fb, b.eager(x), strict=True):
            assert torch.allclose(fast, slow, atol=1e-5)
    assert not all(torch.equal(p, q) for p, q in zip(fa, fb, strict=True))
