"""The fine-tuned candidate: seeded and reproducible on CPU, saved bit-exactly, and chosen on merit."""
from __future__ import annotations

import numpy as np
import pytest

from engine import EngineError, fit, load_model
from tests.engine.engine_synth import SCRATCH, STAIN, fast_options, make_items

COLOURS = {"stain": STAIN, "scratch": SCRATCH}


@pytest.fixture(scope="module")
def data():
    train, _ = make_items(14, 10, seed=11, masks=True)
    test, _ = make_items(6, 6, seed=12)
    return train, test


def _finetuned(train, seed: int = 0):
    return fit(train, options=fast_options(seed=seed, candidates=["finetuned"]), label_colors=COLOURS)


def test_finetuning_is_seeded_and_reproducible(data, tmp_path):
    train, test = data
    a, b = _finetuned(train), _finetuned(train)
    assert a.report["candidate"] == "finetuned"
    tuned = [k for k in a.tensors if k.startswith("finetuned.")]
    assert len(tuned) > 3 * 10  # three fold networks, each with upper stages and two heads
    for k, v in a.tensors.items():
        assert np.array_equal(v.numpy(), b.tensors[k].numpy()), k
    images = [t.image for t in test]
    assert [p.score for p in a.predict_batch(images)] == [p.score for p in b.predict_batch(images)]
    # The weights moved away from the pretrained ones, and another seed trains other networks.
    c = _finetuned(train, seed=1)
    assert any(not np.array_equal(c.tensors[k].numpy(), a.tensors[k].numpy()) for k in tuned)
    a.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.candidate == "finetuned"
    for pa, pb in zip(a.predict_batch(images), loaded.predict_batch(images), strict=True):
        assert pa.score == pb.score and np.array_equal(pa.anomaly_map, pb.anomaly_map)
        assert np.array_equal(pa.mask, pb.mask)


def test_finetuned_model_detects_and_explains(data):
    train, test = data
    model = _finetuned(train)
    report = model.report
    assert report["candidates"]["finetuned"]["cv_auroc"] >= 0.9
    assert "finetuned" in report["choice"] or report["choice"].startswith("highest")
    metrics = model.evaluate(test)
    assert metrics.auroc is not None and metrics.auroc >= 0.9
    assert model.predict(test[0].image).anomaly_map.shape == test[0].image.shape[:2]


def test_repeats_train_and_save_a_network_per_fold_of_each_partition(data, tmp_path):
    train, test = data
    model = fit(train, options=fast_options(candidates=["finetuned"], finetune_repeats=2), label_colors=COLOURS)
    stored = {k.split(".")[1] for k in model.tensors if k.startswith("finetuned.")}
    assert stored == {str(k) for k in range(6)}  # two partitions of three folds
    model.save(tmp_path / "m")
    images = [t.image for t in test]
    assert [p.score for p in load_model(tmp_path / "m").predict_batch(images)] == \
        [p.score for p in model.predict_batch(images)]


def test_finetuning_needs_labelled_anomalies_and_can_be_turned_off():
    normal_only, _ = make_items(10, 0, seed=13)
    model = fit(normal_only, options=fast_options(candidates=["finetuned"]))
    assert model.candidate == "oneclass" and "finetuned" not in model.report["candidates"]
    train, _ = make_items(12, 9, seed=14)
    off = fit(train, options=fast_options(finetune_epochs=0))
    assert "finetuned" not in off.report["candidates"]
    with pytest.raises(EngineError, match="candidates"):
        fit(train, options=fast_options(candidates=["bogus"]))
    with pytest.raises(EngineError, match="finetune_epochs"):
        fit(train, options=fast_options(finetune_epochs=-1))
    with pytest.raises(EngineError, match=r"finetune_repeats must be in \[1, 5\]"):
        fit(train, options=fast_options(finetune_repeats=0))


def _bright_squares(with_masks: bool):
    """A tiny fine-tuning problem (24 random images, a bright square on each of the 8 anomalies): the
    trunk, the base-stage features, those of the images' flipped views (what fine-tuning trains on),
    labels, cell targets with or without the squares' masks, and three folds."""
    import torch

    from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict
    from engine.finetune import FLIP_VIEWS, flip_maps
    from engine.groups import grouped_folds

    trunk = Trunk("efficientnet_lite0",
                  trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0")))
    torch.manual_seed(0)
    images = torch.rand(24, 3, 64, 64)
    labels = np.array([0] * 16 + [1] * 8)
    images[labels == 1, :, 20:40, 20:40] = 1.0
    with torch.inference_mode():
        views = torch.stack([trunk.eager(flip_maps(images, view))[0] for view in range(FLIP_VIEWS)], 1).clone()
    base = views[:, 0]
    cells = torch.full((len(labels), 4, 4), -1.0)  # the networks' /16 grid on 64 px images
    cells[labels == 0] = 0.0
    if with_masks:  # 64 px / 16 = 4x4 cells; the square covers pixels 20-39, cells 1-2
        cells[labels == 1] = 0.0
        cells[np.flatnonzero(labels == 1), 1:3, 1:3] = 1.0
    return trunk, base, views, labels, cells, grouped_folds(labels, np.arange(len(labels)), 3, seed=0)


def _round_trip(tuned, trunk, drop: tuple[str, ...] = ()):
    """``tuned`` saved and restored, without the config keys ``drop`` (an older artifact)."""
    from engine.finetune import FineTuned
    from engine.state import own, put

    stored: dict = {}
    tensors: dict = {}
    put("finetuned", tuned, stored, tensors)
    config = {k: v for k, v in stored["finetuned"].items() if k not in drop}
    return FineTuned.restore(config, own("finetuned", tensors), trunk)


def test_fold_networks_score_in_units_of_their_own_held_out_normals():
    """Fold networks end on different logit scales; pooling their raw out-of-fold logits mixed the
    scales under one threshold. Each network's scores are now centred and scaled on the normals of its
    own held-out fold, and the deployed score is the mean of those calibrated scores."""
    import torch

    from engine.finetune import out_of_fold
    from engine.threshold import qn_scale

    trunk, base, views, labels, cells, folds = _bright_squares(with_masks=False)
    scores, tuned = out_of_fold(trunk, views, labels, cells, [folds], 1, 0, torch.device("cpu"))
    assert not tuned.cells_in_score  # no masks: the image head alone
    for _, held in folds:
        normals = scores[held][labels[held] == 0]
        assert abs(np.median(normals)) < 1e-9
        assert abs(qn_scale(normals) - 1.0) < 1e-9
    assert len(set(tuned.calibration)) == 3 and all(scale > 0 for _, scale in tuned.calibration)
    # Deployed: the mean of the calibrated logits, and the calibration survives save and load.
    with torch.inference_mode():
        raw = np.stack([net(base)[0].double().numpy() for net in tuned.nets], 1)
    centre, scale = np.array(tuned.calibration).T
    assert np.allclose(tuned.image_scores(base), ((raw - centre) / scale).mean(1), atol=1e-5)
    restored = _round_trip(tuned, trunk)
    assert np.allclose(restored.image_scores(base), tuned.image_scores(base), atol=1e-5)


def test_with_masks_the_cell_head_joins_the_image_score():
    """When most anomalies have masks, a network's logit is its image logit plus the maximum of its
    cell head (the localised verdict); fewer masks than that, or an artifact written before, and the
    image logit alone."""
    import torch

    from engine.finetune import learned_from_masks, out_of_fold

    trunk, base, views, labels, cells, folds = _bright_squares(with_masks=True)
    anomalies = np.flatnonzero(labels == 1)
    partly = cells.clone()
    partly[anomalies[:5]] = -1.0  # 3 of 8 anomalies masked
    assert learned_from_masks(cells, labels) and not learned_from_masks(partly, labels)
    assert not learned_from_masks(cells[labels == 0], labels[labels == 0])
    _, tuned = out_of_fold(trunk, views, labels, cells, [folds], 1, 0, torch.device("cpu"))
    assert tuned.cells_in_score and tuned.score_name == "image logit + maximum of the cell head"
    with torch.inference_mode():
        outputs = [net(base) for net in tuned.nets]
    raw = np.stack([(image + cell.flatten(1).amax(1)).double().numpy() for image, cell in outputs], 1)
    centre, scale = np.array(tuned.calibration).T
    assert np.allclose(tuned.image_scores(base), ((raw - centre) / scale).mean(1), atol=1e-5)
    restored = _round_trip(tuned, trunk)
    assert restored.cells_in_score
    assert np.allclose(restored.image_scores(base), tuned.image_scores(base), atol=1e-5)
    # An artifact from before the cell head joined the score has no flag: it keeps the image logit.
    older = _round_trip(tuned, trunk, drop=("cells_in_score",))
    assert not older.cells_in_score
    assert not np.allclose(older.image_scores(base), tuned.image_scores(base))


def test_networks_of_older_artifacts_start_from_the_finest_patch_level():
    """Until round 24 the networks started from the finest patch level (Lite0 stage 2), and artifacts
    did not say so. Restored, such networks are handed the trunk's base stage like any model's, run
    the frozen stage in between first, and score as they did on the finest level's own features."""
    import torch

    from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict, upper_stages
    from engine.finetune import FineTuned, FineTunedNet

    trunk = Trunk("efficientnet_lite0",
                  trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0")))
    finest = trunk.levels[0]
    assert trunk.base_stage < finest
    torch.manual_seed(0)
    nets = [FineTunedNet(upper_stages(trunk, finest)).eval() for _ in range(3)]
    older = FineTuned(nets, [(0.5, 2.0), (-1.0, 1.5), (0.0, 3.0)], input_stage=finest)
    with torch.inference_mode():
        base, finest_maps = trunk.eager(torch.rand(4, 3, 64, 64))[:2]
        raw = np.stack([net(finest_maps)[0].double().numpy() for net in nets], 1)
    centre, scale = np.array(older.calibration).T
    restored = _round_trip(older, trunk, drop=("input_stage",))
    assert restored.input_stage == finest
    assert np.allclose(restored.image_scores(base), ((raw - centre) / scale).mean(1), atol=1e-5)
    # Networks trained now start at the base stage and say so; a stage this trunk lacks is refused.
    current = FineTuned([FineTunedNet(upper_stages(trunk)).eval()], input_stage=trunk.base_stage)
    assert _round_trip(current, trunk).input_stage == trunk.base_stage
    for stage in (trunk.base_stage - 1, trunk.levels[-1]):
        wrong = FineTuned([FineTunedNet(upper_stages(trunk)).eval()], input_stage=stage)
        with pytest.raises(ValueError, match="outside this trunk"):
            _round_trip(wrong, trunk)


def test_repeated_cross_validation_averages_partitions_and_deploys_every_network():
    """With two partitions (``finetune_repeats=2``) each image's out-of-fold score is the mean of its
    scores from the two partitions' networks, the first partition is exactly the single run (same
    folds, same seeds), and the deployed candidate is all six networks."""
    import torch

    from engine.finetune import out_of_fold, repeat_seed
    from engine.groups import grouped_folds

    trunk, _, views, labels, cells, folds = _bright_squares(with_masks=False)
    other = grouped_folds(labels, np.arange(len(labels)), 3, seed=repeat_seed(0, 1))
    assert any(not np.array_equal(a, b) for (_, a), (_, b) in zip(folds, other, strict=True))
    cpu = torch.device("cpu")
    done: list[int] = []
    both, tuned = out_of_fold(trunk, views, labels, cells, [folds, other], 1, 0, cpu, done.append)
    first, one = out_of_fold(trunk, views, labels, cells, [folds], 1, 0, cpu)
    second, _ = out_of_fold(trunk, views, labels, cells, [other], 1, repeat_seed(0, 1), cpu)
    assert done == [1, 2, 3, 4, 5, 6] and len(tuned.nets) == 6 and len(tuned.calibration) == 6
    assert np.allclose(both, (first + second) / 2, atol=1e-9)
    assert tuned.calibration[:3] == one.calibration
    assert not np.allclose(both, first)


def test_fine_tuning_trains_on_the_stems_features_of_flipped_images():
    """Flipping cached feature maps is not flipping the image: the stem's oriented kernels see a mirrored
    edge differently. The views the networks train on are the stem's features of the flipped images
    themselves; until round 15 they were the flipped maps, three of four inputs no image produces."""
    import torch

    from engine.backbone import load_pretrained_state_dict, trunk_state_dict
    from engine.features import PatchFeatureExtractor
    from engine.finetune import FLIP_VIEWS, flip_image, flip_maps, flipped_views

    extractor = PatchFeatureExtractor("efficientnet_lite0", trunk_state_dict(
        "efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0")), (64, 96))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 64, 3), dtype=np.uint8) for _ in range(3)]
    _, base = extractor.describe(images)
    views = flipped_views(extractor, images, base)
    assert views.shape == (3, FLIP_VIEWS, *base.shape[1:]) and torch.equal(views[:, 0], base)
    for view in range(1, FLIP_VIEWS):
        _, own = extractor.describe([flip_image(image, view) for image in images])
        assert torch.allclose(views[:, view], own)
        assert not torch.allclose(views[:, view], flip_maps(base, view), atol=1e-2)
