"""Near-duplicate groups: several captures of one physical part must stay on one side of every
cross-validation split, or out-of-fold scores flatter the model (engine/groups.py)."""
from __future__ import annotations

import numpy as np
import pytest

from engine import fit
from engine.backbone import load_pretrained_state_dict, trunk_state_dict
from engine.features import PatchFeatureExtractor, pooled
from engine.groups import folds_hold_out_groups, grouped_folds, near_duplicate_groups, tone_free_thumbnails
from engine.images import working_size
from tests.engine.engine_synth import cookies_dir, fast_options, make_items

GAINS = (0.85, 1.0, 1.15)  # three exposures of each part (brighter ones saturate the cookies)


def _exposures(image: np.ndarray) -> list[np.ndarray]:
    return [np.clip(image.astype(np.float32) * g, 0, 255).astype(np.uint8) for g in GAINS]


def _cookies(numbers: range) -> list[np.ndarray]:
    from PIL import Image

    root = cookies_dir() / "dataset-files" / "training-images"
    if not root.is_dir():
        pytest.skip(f"cookies dataset not found at {root} (set LOOKOUT_COOKIES_DIR)")
    out = []
    for i in numbers:
        with Image.open(root / f"normal-{i}.jpg") as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _descriptors(images: list[np.ndarray]) -> np.ndarray:
    """[mean, max]-pooled patch descriptors, as training computes them."""
    trunk = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0", None))
    h, w = images[0].shape[:2]
    feats, _ = PatchFeatureExtractor("efficientnet_lite0", trunk, working_size(w, h, 384, 160)).describe(images)
    return pooled(feats).double().numpy()


def test_captures_of_one_part_end_up_in_one_fold():
    parts = _cookies(range(3, 15))  # normal-1 and normal-2 are two photographs of one cookie
    images = [capture for image in parts for capture in _exposures(image)]
    part = np.repeat(np.arange(len(parts)), len(GAINS))
    groups = near_duplicate_groups(_descriptors(images))
    # Every group is one part (distinct cookies are never merged) ...
    for g in range(groups.count):
        assert len(set(part[groups.ids == g])) == 1, groups.ids
    # ... and nearly every part's captures were found together.
    together = sum(len(set(groups.ids[part == p])) == 1 for p in range(len(parts)))
    assert together >= len(parts) - 2, groups.ids
    # A stratified grouped split never puts one group on both sides.
    strata = part % 2  # stand-in labels, so the split is stratified as training's are
    for train, held in grouped_folds(strata, groups.ids, 3, seed=0):
        assert not set(groups.ids[train]) & set(groups.ids[held])
        assert sorted(set(strata[held])) == [0, 1]


def test_distinct_parts_stay_apart():
    """Photographs of different cookies (one each): nothing is grouped."""
    groups = near_duplicate_groups(_descriptors(_cookies(range(3, 32))))
    assert groups.summary()["images_with_siblings"] == 0, groups.ids


def test_fit_reports_groups_and_expected_precision_recall():
    items, _ = make_items(14, 10, seed=4)
    # Every normal also taken at a second exposure: 14 more images of the same parts.
    items += [type(it)(_exposures(it.image)[2], "normal", None, it.name + "-bright") for it in items[:14]]
    model = fit(items, options=fast_options(finetune_epochs=0))
    report = model.report
    found = report["near_duplicates"]
    assert found["groups"] < len(items) and found["images_with_siblings"] >= 2, found
    assert 0.0 <= report["expected_precision"] <= 1.0 and 0.0 <= report["expected_recall"] <= 1.0
    assert report["cv_holds_out"] == "groups"


def test_folds_keep_every_class_in_training_when_one_class_is_a_single_group():
    """Near-identical anomalies (one group) cannot be held out whole without leaving a fold's training
    part with normals alone: the folds then hold out images, and every training part has both classes
    (a console test's synthetic scratches made training fail with "only one class")."""
    strata = np.array([0] * 12 + [1] * 6)
    groups = np.array(list(range(12)) + [12] * 6)
    folds = grouped_folds(strata, groups, 3, seed=0)
    assert len(folds) == 3
    for train, held_out in folds:
        assert set(strata[train]) == {0, 1} and set(strata[held_out]) == {0, 1}
    assert sorted(np.concatenate([held_out for _, held_out in folds]).tolist()) == list(range(18))
    assert not folds_hold_out_groups(strata, groups, 3, seed=0)  # what the training report states
    # With two groups of anomalies, whole groups are held out again.
    groups[15:] = 13
    assert folds_hold_out_groups(strata, groups, 3, seed=0)
    for train, held_out in grouped_folds(strata, groups, 3, seed=0):
        assert not set(groups[train]) & set(groups[held_out])
        assert set(strata[train]) == {0, 1}


def test_copies_of_one_image_are_one_group_and_hide_no_other_near_duplicates():
    """A file uploaded twice is one image. Three copies among 121 descriptors used to stretch the
    distance population so far that neither they nor seven pairs of noisy captures were grouped."""
    rng = np.random.default_rng(0)
    parts = rng.normal(size=(114, 64))
    captures = np.concatenate([parts, parts[:7] + 0.3 * rng.normal(size=(7, 64))])  # parts 0-6 twice
    part = np.concatenate([np.arange(114), np.arange(7)])
    without = near_duplicate_groups(captures)
    with_copies = near_duplicate_groups(np.concatenate([captures, captures[[50, 51, 52]]]))
    part_with_copies = np.concatenate([part, [50, 51, 52]])
    # The same groups among the original descriptors, found with or without the copies ...
    assert (with_copies.ids[: len(captures)] == without.ids).all()
    assert with_copies.cut == without.cut
    # ... and they are the parts.
    _assert_groups_are_parts(without.ids, part)
    _assert_groups_are_parts(with_copies.ids, part_with_copies)


def test_copies_alone_are_grouped():
    """Only copies, no near-duplicates: the copies are grouped (cut 0.0) and nothing else."""
    images = np.random.default_rng(2).normal(size=(120, 64))
    assert near_duplicate_groups(images).cut is None
    groups = near_duplicate_groups(np.concatenate([images, images[:2]]))
    assert groups.cut == 0.0
    assert groups.ids[120] == groups.ids[0] and groups.ids[121] == groups.ids[1]
    assert groups.summary()["images_with_siblings"] == 4 and groups.count == 120


def test_a_few_parts_captured_twice_among_many_are_found_in_any_order():
    """Three of 118 parts photographed twice: a small near population, which one fit of the mixture
    found or missed depending on its start (seed 0 missed it; KolektorSDD's kos38 / kos39 pairs went
    the same way). The groups are the parts for every order of the images."""
    rng = np.random.default_rng(0)
    parts = rng.normal(size=(118, 64))
    captures = np.concatenate([parts, parts[:3] + 1.2 * rng.normal(size=(3, 64))])
    part = np.concatenate([np.arange(118), np.arange(3)])
    for shuffle in range(3):
        order = np.random.default_rng(shuffle).permutation(len(captures)) if shuffle else np.arange(len(captures))
        _assert_groups_are_parts(near_duplicate_groups(captures[order]).ids, part[order])


def _assert_groups_are_parts(ids: np.ndarray, part: np.ndarray) -> None:
    """Each group is one part, and each part is one group."""
    assert all(len(set(part[ids == g])) == 1 for g in np.unique(ids)), ids
    assert all(len(set(ids[part == p])) == 1 for p in np.unique(part)), ids


def test_a_small_set_of_different_parts_is_not_grouped():
    """Twenty photographs of twenty different cookies (LFV's smallest dataset size): the mixture alone
    saw two populations in their distances and grouped 16 of them, which leaves a cross-validation
    fold without most of the normals. The groups must stand out from unrelated images."""
    groups = near_duplicate_groups(_descriptors(_cookies(range(3, 23))))
    assert groups.summary()["images_with_siblings"] == 0, groups.ids


def test_small_sets_of_unrelated_descriptors_are_not_grouped():
    """Sets of 20-29 random descriptors: the mixture alone grouped 17 of 20 and 22 of 26 images."""
    for r in range(10):
        images = np.random.default_rng(20_640 + r).normal(size=(20 + r, 64))
        assert near_duplicate_groups(images).summary()["images_with_siblings"] == 0, r


def test_parts_captured_more_often_than_the_first_neighbour_count_are_found():
    """Ten parts captured twelve times each: the 8 nearest neighbours of every image are its own part's
    captures, one population, and with 8 neighbours alone nothing was grouped."""
    rng = np.random.default_rng(12)
    captures = np.repeat(rng.normal(size=(10, 64)), 12, axis=0) + 0.5 * rng.normal(size=(120, 64))
    _assert_groups_are_parts(near_duplicate_groups(captures).ids, np.repeat(np.arange(10), 12))


def _tone_curves(image: np.ndarray) -> list[np.ndarray]:
    """One part under four exposures: gamma curves that brighten (< 1) or darken (> 1) it."""
    scaled = image.astype(np.float64) / 255.0
    return [np.clip(255.0 * scaled ** g, 0, 255).astype(np.uint8) for g in (0.6, 0.85, 1.2, 1.6)]


def test_exposures_of_one_part_end_up_in_one_group():
    """Twelve cookies, each under four tone curves: the backbone's descriptors move with the light,
    and alone they split most cookies' exposures over several groups (a fold could then hold out one
    exposure and train on another). The tone-free thumbnails put each cookie's four together."""
    images = [exposure for image in _cookies(range(3, 15)) for exposure in _tone_curves(image)]
    part = np.repeat(np.arange(12), 4)
    groups = near_duplicate_groups(_descriptors(images), tone_free_thumbnails(images))
    _assert_groups_are_parts(groups.ids, part)


def test_a_tone_curve_leaves_the_thumbnail_as_it_was():
    """Equalisation undoes any monotonic change of tone: the thumbnails of one cookie under four gamma
    curves differ by a few thousandths where two different cookies' differ by more than half."""
    image = _cookies(range(5, 6))[0]
    before, *after = tone_free_thumbnails([image, *_tone_curves(image)])
    for thumbnail in after:
        assert np.abs(thumbnail - before).max() < 0.05


# A random draw of 20 normal and 10 anomalous cookies (train and test folders) in which the thumbnail
# view, before its cut was bounded, grouped normal-1 / normal-2 (one cookie photographed twice) with
# test-normal-3 and test-normal-8, two other cookies of much the same shape on the same tray.
_ROUND_COOKIES = ("test-normal-3 normal-10 normal-8 test-normal-14 normal-15 test-normal-8 normal-25 test-normal-9 "
                  "normal-18 normal-24 normal-6 normal-29 normal-27 normal-1 test-normal-12 normal-3 normal-23 "
                  "normal-20 normal-30 normal-2 anomaly-14 anomaly-1 anomaly-13 anomaly-26 anomaly-5 "
                  "test-anomaly-4 anomaly-20 test-anomaly-2 anomaly-11 anomaly-25").split()


def test_thumbnails_group_only_the_same_picture():
    """Round cookies on one tray make similar thumbnails; only a cookie photographed twice is the same
    picture up to tone (``_ROUND_COOKIES``)."""
    from PIL import Image

    root = cookies_dir()
    if not (root / "test-images").is_dir():
        pytest.skip(f"cookies dataset not found at {root} (set LOOKOUT_COOKIES_DIR)")
    images = []
    for name in _ROUND_COOKIES:
        folder = root / "test-images" if name.startswith("test-") else root / "dataset-files" / "training-images"
        with Image.open(folder / f"{name}.jpg") as im:
            images.append(np.asarray(im.convert("RGB")))
    ids = near_duplicate_groups(_descriptors(images), tone_free_thumbnails(images)).ids
    group = dict(zip(_ROUND_COOKIES, ids, strict=True))
    assert group["normal-1"] == group["normal-2"]
    assert group["test-normal-3"] != group["normal-1"] and group["test-normal-8"] != group["normal-1"]
