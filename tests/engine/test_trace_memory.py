"""The traced backbone is shared by trunks with the same weights: torch keeps every trace (and the
parameters it froze) for the life of the process, so one trace per training made a long-running
server grow by ~10 MB per training."""
from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest
import torch

from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict, upper_stages
from engine.finetune import FineTuned, FineTunedNet


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


def _rss_mb() -> float:
    import ctypes

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what glibc's arenas keep is not what the process holds
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not sys.platform.startswith("linux"),
                    reason="measures the process's resident memory through /proc and glibc")
def test_fine_tuned_networks_share_one_trace_and_loads_leave_nothing_behind():
    """Each load of a fine-tuned model once traced and froze its networks, and torch kept every such
    trace, weights included (~20 MB per StartModel). Models of one shape now share one trace that
    takes the weights as inputs, and each still scores exactly as its eager networks do."""
    sd = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
    trunk = Trunk("efficientnet_lite0", sd)
    with torch.inference_mode():
        base = trunk.eager(torch.rand(2, 3, 96, 96))[0]

    def model(seed: int) -> FineTuned:
        torch.manual_seed(seed)
        return FineTuned([FineTunedNet(upper_stages(trunk)).eval() for _ in range(3)], input_stage=trunk.base_stage)

    first, second = model(1), model(2)
    fast_first, fast_second = first.image_scores(base), second.image_scores(base)
    assert first._traced[("cpu", *base.shape[-2:])] is not None
    with torch.inference_mode():
        for scores, fine_tuned in ((fast_first, first), (fast_second, second)):
            image_logits = fine_tuned._logits(base)[..., 0]  # (B, K, [image logit, cell maximum])
            assert np.allclose(scores, image_logits.double().mean(1).numpy(), atol=1e-5)
    assert not np.allclose(fast_first, fast_second)
    size_mb = sum(t.numel() * t.element_size() for t in first._logits.parameters()) / 2**20
    before = _rss_mb()
    for seed in range(3, 11):  # eight model loads: each scores a few times, then is dropped
        loaded = model(seed)
        for _ in range(3):
            loaded.image_scores(base)
        del loaded
    grown = _rss_mb() - before
    assert grown < 2 * size_mb, f"{grown:.0f} MB kept after 8 loads of {size_mb:.0f} MB of networks"
