"""Unit tests of engine building blocks (no training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import EngineError
from engine.backbone import EfficientNetLite0, SameConv2d, Trunk, load_pretrained_state_dict, trunk_state_dict
from engine.images import decode_mask, to_rgb_uint8, working_size
from engine.memory import greedy_coreset, knn_distance
from engine.metrics import SegmentationAccumulator, auroc, prf
from engine.patch_head import PatchClassifier
from engine.segmentation import label_regions, render
from engine.threshold import (
    ScoreNormaliser,
    held_out_normal_stats,
    normal_only_threshold,
    normal_score_stats,
    qn_scale,
    youden_threshold,
)


def test_lite0_weights_load_strictly_and_trunk_is_small():
    sd = load_pretrained_state_dict("efficientnet_lite0")
    EfficientNetLite0().load_state_dict(sd, strict=True)
    trunk = trunk_state_dict("efficientnet_lite0", sd)
    n = sum(v.numel() for v in trunk.values())
    assert 100_000 < n < 2_000_000  # stages 0-4 only, not the 4.6M-parameter classifier


def test_lite0_tf_same_padding_shapes():
    net = EfficientNetLite0().eval()
    with torch.no_grad():
        outs = net.forward_stages(torch.zeros(1, 3, 100, 130), 6)
    # TF 'SAME': every stride-2 stage gives ceil(in / 2)
    assert outs[2].shape[-2:] == (13, 17)
    assert outs[4].shape[-2:] == (7, 9)


@pytest.mark.parametrize(("size", "kernel"), [((96, 128), 3), ((95, 127), 3), ((96, 127), 5), ((33, 40), 5)])
def test_stride_2_depthwise_conv_equals_tensorflow_same_padding(size: tuple[int, int], kernel: int):
    """The depthwise stride-2 convs avoid a padded copy of their input (a zero-tap kernel instead);
    the result must be exactly the explicit asymmetric TF 'SAME' padding, for odd and even sizes."""
    torch.manual_seed(0)
    conv = SameConv2d(24, 24, kernel, stride=2, groups=24, bias=True).eval()
    x = torch.randn(1, 24, *size).contiguous(memory_format=torch.channels_last)
    (ih, iw), pads = size, []
    for extent in (iw, ih):
        total = max((math.ceil(extent / 2) - 1) * 2 + kernel - extent, 0)
        pads += [total // 2, total - total // 2]
    with torch.no_grad():
        expected = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, 2, 0, 1, 24)
        got = conv(x)
    assert got.shape == expected.shape == (1, 24, math.ceil(ih / 2), math.ceil(iw / 2))
    assert torch.equal(got, expected)


def test_traced_trunk_matches_eager():
    sd = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
    trunk = Trunk("efficientnet_lite0", sd)
    x = torch.rand(2, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    fast = trunk(x)
    with torch.inference_mode():
        slow = trunk.eager(x)
    for a, b in zip(fast, slow, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_the_base_stage_alone_is_the_full_trunks_base_stage():
    """Fine-tuning's flipped views stop the trunk at its base stage (``Trunk.base``); the networks must
    see the same map the full, traced trunk gives the images they are later applied to."""
    from engine.features import PatchFeatureExtractor

    sd = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
    extractor = PatchFeatureExtractor("efficientnet_lite0", sd, (64, 96))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 64, 3), dtype=np.uint8) for _ in range(3)]
    _, base = extractor.describe(images)
    alone = extractor.base(images)
    assert alone.shape == base.shape == (3, 24, 24, 16) and alone.dtype == base.dtype
    assert torch.allclose(alone, base, atol=1e-5)


def test_unknown_backbone_and_missing_weights_are_engine_errors(monkeypatch, tmp_path):
    with pytest.raises(EngineError, match="unknown backbone"):
        load_pretrained_state_dict("vgg16")
    monkeypatch.delenv("LOOKOUT_BACKBONE_WEIGHTS", raising=False)
    with pytest.raises(EngineError, match="LOOKOUT_BACKBONE_WEIGHTS"):
        load_pretrained_state_dict("resnet18")
    with pytest.raises(EngineError, match="not found"):
        load_pretrained_state_dict("resnet18", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(EngineError, match="do not match"):
        load_pretrained_state_dict("resnet18", str(bad))


def test_image_conversions():
    rgb = np.random.default_rng(0).integers(0, 256, (70, 80, 3), dtype=np.uint8)
    assert to_rgb_uint8(rgb, "x") is rgb or np.array_equal(to_rgb_uint8(rgb, "x"), rgb)
    grey = rgb[:, :, 0]
    assert np.array_equal(to_rgb_uint8(grey, "x"), np.repeat(grey[:, :, None], 3, 2))
    assert np.array_equal(to_rgb_uint8(grey[:, :, None], "x"), np.repeat(grey[:, :, None], 3, 2))
    rgba = np.concatenate([rgb, np.full((70, 80, 1), 7, np.uint8)], 2)
    assert np.array_equal(to_rgb_uint8(rgba, "x"), rgb)
    assert np.array_equal(to_rgb_uint8(rgb.astype(np.uint16) * 257, "x"), rgb)
    for bad, msg in [
        (rgb.astype(np.float32), "dtype"),
        (rgb[:, :, :2], "channels"),
        (rgb[:10, :10], "between"),
        (np.zeros((70, 80, 3, 1), np.uint8), "shape"),
        ([[1, 2]], "numpy array"),
    ]:
        with pytest.raises(EngineError, match=msg):
            to_rgb_uint8(bad, "image 3")


def test_working_size_keeps_aspect_and_multiple_of_16():
    assert working_size(576, 768, 384, 160) == (288, 384)
    assert working_size(128, 128, 384, 160) == (160, 160)  # small: up to min_resolution only
    assert working_size(200, 200, 384, 160) == (192, 192)  # never upscaled past the original (/16)
    assert working_size(256, 640, 384, 160) == (256, 640)  # within twice the budget: native size
    assert working_size(1024, 1024, 384, 160) == (336, 336)  # beyond it: the budget of 288x384
    w, h = working_size(1000, 200, 384, 160)  # wide: short side upscaled to >= min_resolution
    assert h >= 160 and w % 16 == 0 and h % 16 == 0
    w, h = working_size(4096, 64, 384, 160)  # extreme: long side capped at 2x resolution
    assert w <= 768 and h >= 16


def test_decode_mask_white_or_black_background_and_tolerance():
    m = np.full((64, 64, 3), 255, np.uint8)
    m[10:20, 10:20] = (0x23, 0xA4, 0x36)
    m[30:40, 30:40] = (0x25, 0xA2, 0x36)  # near the colour (resampling)
    idx = decode_mask(m, (64, 64), [(0x23, 0xA4, 0x36)], "mask")
    assert idx[15, 15] == 1 and idx[35, 35] == 1 and idx[0, 0] == 0
    m2 = m.copy()
    m2[m2.sum(2) == 765] = 0
    assert np.array_equal(decode_mask(m2, (64, 64), [(0x23, 0xA4, 0x36)], "mask"), idx)
    m[50, 50] = (200, 0, 200)
    with pytest.raises(EngineError, match="#C800C8"):
        decode_mask(m, (64, 64), [(0x23, 0xA4, 0x36)], "item 4")
    with pytest.raises(EngineError, match="mask is 64x64 but the image is 32x64"):
        decode_mask(m2, (64, 32), [(0x23, 0xA4, 0x36)], "item 4")


def test_youden_threshold_separates_and_is_robust():
    neg = np.array([1.0, 1.1, 1.2, 1.3, 2.5])  # one outlier normal
    pos = np.array([2.0, 2.2, 3.0, 3.1, 3.2, 3.3])
    t = youden_threshold(neg, pos)
    # J is maximal with the outlier sacrificed: 1 FP of 5, all anomalies caught.
    assert 1.3 < t < 2.0
    assert youden_threshold([1.0, 2.0], [3.0, 4.0]) == pytest.approx(2.5)
    # many anomalies, weak separation: never "flag everything"
    rng = np.random.default_rng(0)
    t = youden_threshold(rng.normal(0, 1, 30), rng.normal(0.5, 1, 300))
    assert t > -1.5


def test_normal_only_threshold_above_bulk():
    neg = np.random.default_rng(0).normal(10, 1, 50)
    assert normal_only_threshold(neg) > np.quantile(neg, 0.95)


def test_held_out_normal_stats_are_robust_and_steady():
    """A fold network's scale is Qn of its few held-out normals: a few crack-like normals cannot set it
    (the upper spread q90 - median of the same normals follows them), and it varies less from one
    sample of ~47 normals to the next than the interquartile range did (why it replaced it)."""
    rng = np.random.default_rng(0)
    neg = rng.normal(size=47)
    centre, scale = held_out_normal_stats(neg)
    assert centre == np.median(neg)
    assert scale == qn_scale(neg)
    crack_like = neg.copy()
    crack_like[np.argsort(crack_like)[-6:]] += 20.0  # six normals that score like cracks
    assert held_out_normal_stats(crack_like)[1] == pytest.approx(scale, rel=0.05)
    assert normal_score_stats(crack_like)[1] > 3 * normal_score_stats(neg)[1]
    assert np.std(crack_like) > 3 * np.std(neg)  # and the plain standard deviation
    samples = rng.normal(size=(2000, 47))
    qn = np.array([qn_scale(x) for x in samples])
    iqr = np.subtract(*np.quantile(samples, [0.75, 0.25], axis=1)) / 1.349  # IQR of a unit Gaussian
    assert abs(qn.mean() - 1.0) < 0.06  # Qn estimates the standard deviation of Gaussian scores
    assert qn.std() / qn.mean() < 0.8 * iqr.std() / iqr.mean()
    assert held_out_normal_stats(np.array([])) == (0.0, 1.0)
    assert held_out_normal_stats(np.zeros(5))[1] > 0 and held_out_normal_stats(np.array([2.0]))[1] > 0


def test_qn_scale_is_the_kth_pairwise_distance():
    """Qn by its definition, on a small sample where the pairs can be listed by hand: n = 5 gives h = 3
    and k = 3, the third smallest of the ten distances."""
    x = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    # distances: 1 2 3 4 6 7 8 12 14 15 -> the third smallest is 3; two scores 1 apart: distance 1
    # (h = 2, k = 1), so the ratio cancels the Gaussian factor
    assert qn_scale(x) / qn_scale(np.array([0.0, 1.0])) == pytest.approx(3.0)
    assert qn_scale(x[::-1]) == qn_scale(x)
    assert qn_scale(np.array([1.0])) == 0.0


def test_score_normaliser_monotone_and_centred():
    n = ScoreNormaliser.fit(2.0, np.array([1.0, 1.2, 1.4]), np.array([3.0, 4.0]))
    assert n(np.array([2.0]))[0] == pytest.approx(0.5)
    assert n(np.array([1.2]))[0] == pytest.approx(0.05, abs=1e-6)
    assert n(np.array([3.5]))[0] == pytest.approx(0.95, abs=1e-6)
    xs = np.linspace(-10, 10, 1001)
    ys = n(xs)
    assert np.all(np.diff(ys) >= 0) and ys.min() >= 0 and ys.max() <= 1
    assert ScoreNormaliser.from_dict(n.to_dict()).to_dict() == n.to_dict()


def test_prf_and_auroc_conventions():
    assert prf(0, 0, 0) == (1.0, 1.0, 1.0)
    assert prf(0, 3, 0) == (0.0, 0.0, 0.0)
    assert prf(0, 0, 2) == (0.0, 0.0, 0.0)
    assert prf(2, 1, 1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert auroc(np.array([0, 0]), np.array([0.1, 0.2])) is None


def test_coreset_deterministic_and_spread():
    x = torch.randn(3000, 20, generator=torch.Generator().manual_seed(0))
    a = greedy_coreset(x, 100, seed=1)
    assert torch.equal(a, greedy_coreset(x, 100, seed=1))
    assert len(set(a.tolist())) == 100
    # farthest-point sampling covers the data better than the first 100 rows
    bank = x[a]
    d_core = knn_distance(x, bank, (bank * bank).sum(1)).max()
    first = x[:100]
    d_first = knn_distance(x, first, (first * first).sum(1)).max()
    assert d_core < d_first


def test_knn_distance_is_the_brute_force_nearest_distance():
    g = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(300, 20, generator=g), torch.randn(50, 20, generator=g)
    expected = torch.cdist(queries.double(), bank.double()).amin(1)
    got = knn_distance(queries, bank, (bank * bank).sum(1), chunk=64)
    assert torch.allclose(got.double(), expected, atol=1e-4)


def test_knn_distance_exclude():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    q = torch.tensor([[0.0, 0.0]])
    sq = (bank * bank).sum(1)
    assert knn_distance(q, bank, sq)[0] == pytest.approx(0.0)
    assert knn_distance(q, bank, sq, exclude=torch.tensor([True, False]))[0] == pytest.approx(5.0)


def test_patch_classifier_multilabel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    t = np.where(x[:, 0] > 1.5, 1, np.where(x[:, 1] > 1.5, 2, 0))
    clf = PatchClassifier.fit(x, t, 2)
    logit, lab = clf.anomaly_logit(x)
    assert ((logit > 0) == (t > 0)).mean() > 0.9
    assert (lab[t > 0] + 1 == t[t > 0]).mean() > 0.9
    again = PatchClassifier.fit(x, t, 2)
    assert np.array_equal(clf.coef, again.coef)
    # label absent from training is never predicted
    clf1 = PatchClassifier.fit(x, np.where(t == 2, 0, t), 2)
    assert (clf1.anomaly_logit(x)[1] == 0).all()


def test_label_regions_and_render():
    amap = np.zeros((40, 40), np.float32)
    amap[5:10, 5:10] = 0.9
    amap[25:35, 25:35] = 0.8
    cells = np.zeros((4, 4), np.int64)
    cells[2:, 2:] = 1
    idx = label_regions(amap, True, cells)
    assert idx[7, 7] == 1 and idx[30, 30] == 2 and idx[0, 0] == 0
    assert not label_regions(amap, False, cells).any()
    mask, anomalies = render(idx, ["a", "b"], ["#FF0000", "#0000FF"])
    assert tuple(mask[0, 0]) == (255, 255, 255) and tuple(mask[7, 7]) == (255, 0, 0)
    assert anomalies[0][0] == "background" and anomalies[0][1] == "#FFFFFF"
    assert [a[0] for a in anomalies] == ["background", "a", "b"]
    assert sum(a[2] for a in anomalies) == pytest.approx(1.0)
    # anomalous verdict but nothing over threshold: strongest region is painted
    weak = np.zeros((40, 40), np.float32)
    weak[3:6, 3:6] = 0.3
    assert label_regions(weak, True, None)[4, 4] == 1


def test_segmentation_accumulator():
    acc = SegmentationAccumulator(["a"])
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[:5, :5] = 1
    acc.add(gt, pred)
    acc.add(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))  # normal: no IoU entry
    per_label, miou = acc.result()
    assert per_label["a"]["iou"] == pytest.approx(0.5)
    assert per_label["a"]["precision"] == 1.0 and per_label["a"]["recall"] == 0.5
    assert miou == pytest.approx(0.5)
