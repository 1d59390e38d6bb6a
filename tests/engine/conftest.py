"""Fixtures for engine tests (data generators live in engine_synth.py)."""
from __future__ import annotations

import pytest

from engine import fit
from tests.engine.engine_synth import SCRATCH, STAIN, fast_options, make_items


@pytest.fixture(scope="session")
def synth_train():
    return make_items(16, 12, seed=1)


@pytest.fixture(scope="session")
def synth_test():
    return make_items(12, 12, seed=2, masks=True)


@pytest.fixture(scope="session")
def cls_model(synth_train):
    items, _ = synth_train
    return fit(items, options=fast_options())


@pytest.fixture(scope="session")
def seg_model():
    items, _ = make_items(16, 12, seed=3, masks=True)
    return fit(items, options=fast_options(), label_colors={"stain": STAIN, "scratch": SCRATCH})
