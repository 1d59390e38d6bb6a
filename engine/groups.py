"""Near-duplicate groups of training images, and cross-validation folds that keep each group whole.

Real lines often photograph one physical part several times (exposures, angles, neighbouring
regions). If a part's captures fall on both sides of a cross-validation split, the held-out capture
is scored by a model that has seen its sibling: out-of-fold scores look better than new parts ever
will, and a threshold chosen on them does not transfer. The engine is not told which images belong
together, so it finds out from the images' own global descriptors:

* each image is described by its pooled patch descriptor, standardised per channel across the
  training images, and compared by correlation distance (1 - Pearson correlation), which ignores a
  capture's overall offset and gain in feature space (a brighter exposure of the same part);
* the threshold comes from the data's nearest-neighbour distances: the log distances from each image
  to its k nearest neighbours form one population when images are unrelated, and two when some
  images have siblings (siblings much closer than anything else). k must exceed a part's captures,
  so it is 8, and where that finds nothing, 16 and then 32 in sets large enough (``_NEIGHBOURS``). A
  Gaussian mixture with one or two components is fitted; near-duplicates exist when the Bayesian
  information criterion prefers two and the fitted density really has two peaks. The cut is then
  where the near component stops being the likelier one; otherwise there are no near-duplicates. The
  two-component fit is repeated from fixed starts and any fit that shows two populations counts
  (``_MIXTURE_STARTS``), so the groups depend on the images alone: neither the training seed nor the
  images' order changes them;
* images closer than the cut are grouped by average linkage (average rather than single linkage, so
  a chain of merely similar parts does not fuse into one large group);
* the groups must then stand out from chance. On small sets the mixture also "finds" two
  populations among unrelated images: 20 photographs of 20 different cookies came out as groups
  holding 16 of them, and so did 5 of 12 random sets of 20 KolektorSDD training images and 15 of 30
  sets of 20 random descriptors -- at LFV's smallest dataset size, a grouping that leaves a fold
  without most of the normals. So the images the grouping gives siblings (m of them) must be more
  sibling-like -- a nearest neighbour much closer than the k-th: the mean of their m lowest
  log(d1 / dk) -- than the m most sibling-like images of each of ``_NULL_SETS`` sets of unrelated
  images drawn from one Gaussian with the descriptors' mean and covariance, or there are no groups.
  Those draws mix the rows, which makes their neighbours' distances more uneven than the data's
  (a conservative test: an unrelated set rarely passes it); twins and exposures of one part pass it
  (KolektorSDD's kos38 / kos39, three exposures of cookies, three pairs among 121);
* copies of one image (a file uploaded twice: identical descriptors) are one group whatever the
  mixture says, and count once in it. At distance zero they are the extreme of the near population,
  yet they left it unseen: their log distances lie far below every other (-20.7, the floor of
  log 1e-9, against -2.3 for KolektorSDD's closest captures), the density grid stretched to reach
  them, and no second peak remained inside it -- three copies among 121 random descriptors with 7
  noisy pairs hid the copies and the pairs alike;
* exposures of one part are found in a second view: histogram-equalised grayscale thumbnails
  (``tone_free_thumbnails``), which any monotonic change of tone leaves as they were. The backbone's
  descriptors move with the light: KolektorSDD images each taken under 4-12 tone curves (gamma
  0.6-1.6, gain 0.8-1.2) were split over several groups (0-5% of the parts whole), and the
  thumbnails alone kept every part whole. Each view is searched as above (the thumbnails' cut at
  most ``_SAME_PICTURE``: they are for the same picture up to tone); where both find groups, their
  distances, each in units of its own cut, are joined by one average linkage (``_joint_groups``):
  94-100% of those parts whole, every group one part.

``grouped_folds`` then hands out stratified K folds of whole groups.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

# How many nearest neighbours of each image enter the distance population, tried in this order until
# groups are found. The count must exceed the number of captures of one part, so that the population
# also holds the distances to other parts (the second mode the mixture needs to see): with 8 alone,
# parts captured 10 or 12 times (10-40 parts, random descriptors) got no groups at all, nor did 40
# parts captured 8 times with noisy captures.
_NEIGHBOURS = (8, 16, 32)
# A count past the first is tried only in sets of at least this many times as many images: a part
# captured more than 8 times in a set of fewer than 64 images leaves too few parts to hold out anyway.
# The whole search takes 0.1-0.4 s for 300 images and 0.7-1.3 s for 1,000 (2 vCPU; most when nothing
# is found and every count is tried).
_IMAGES_PER_NEIGHBOUR = 4
# Correlation distance up to which two descriptors are copies of one image: float rounding of equal
# descriptors leaves ~1e-15, and distinct photographs, even of one part, are orders of magnitude apart.
_COPY_DISTANCE = 1e-9
# Fewer images than this cannot show two distance populations: every image is its own group.
_MIN_IMAGES = 6
# Fits of the two-component mixture, each from its own random starts (scikit-learn's random_state 0,
# 1, ...). A small near population leaves the likelihood nearly flat between a fit that separates it
# and one that does not. On KolektorSDD's kos31-kos50, where kos38 and kos39 are one commutator
# photographed twice (seven pairs of captures, pixel correlation 0.96-0.99), the single fit used
# before (random_state = the training seed) found them for seeds 1, 3 and 5 and not for 0, 2 and 4,
# and changed with the images' order. Any fit that shows two populations is evidence of
# near-duplicates; the smallest of their cuts is kept (the tightest groups). On 90 sets of random
# descriptors (20-240 images) it grouped the very sets one fit grouped (some of 20-60 images: a
# weakness of both), and it found the pairs exactly in 76 of 144 synthetic sets of 3-12 parts
# captured twice among 121, against 69 for one fit, losing none. 0.34 s for 1,000 images (one fit 0.16).
_MIXTURE_STARTS = 8
# Points at which the fitted mixture's density is evaluated to count its peaks (over the range of the
# log distances): fine enough that two modes a few percent of the range apart stay distinct.
_DENSITY_GRID = 512
# Sets of unrelated images that the images said to have siblings must be more sibling-like than
# (``_beats_unrelated_images``). Beating all 19 would be a test at the 5% level if the draws were
# exchangeable with the data; they are more uneven than unrelated images (module docstring), so it is
# stricter. Of 180 sets of 20-240 random descriptors, 30 got groups before; none now. The draws are
# the search's main cost in a wide view: thumbnails of 2,560 values with near-duplicates take 0.7 s for
# 320 images and 4.9 s for 1,000 (2 vCPU).
_NULL_SETS = 19
# Shorter side of the tone-free thumbnails (px), and the most their longer side may have: enough to
# tell parts apart, small enough to blur what a capture's small shifts and the sensor's noise change.
_THUMBNAIL_SIDE = 32
_THUMBNAIL_LONGEST = 128
# The thumbnails are there to find the same picture up to its tone, so their cut is at most this
# distance (a correlation of 0.85). Measured: a part under tone curves 0.003-0.012, KolektorSDD's kos38
# / kos39 twins (one commutator photographed twice) 0.014-0.055, one cookie photographed twice 0.062;
# different parts 0.31 and more (different cookies alike in shape on one tray; without this bound the
# mixture's cut reached 0.66 in some sets of 30 cookies and grouped them).
_SAME_PICTURE = 0.15
# Larger images are sampled (every step-th pixel) down to about this shorter side before they are
# equalised: the thumbnail's blocks average hundreds of samples either way, and a 12-megapixel image
# took 0.55 s at full size (0.002 s for KolektorSDD's 256 x 640).
_THUMBNAIL_SOURCE_SIDE = 256
# Joint distances are capped here before the linkage (a view's copies-only search leaves infinities).
_FAR = 1e6
# Grey level from RGB (ITU-R BT.601 luma).
_LUMA = np.array([0.299, 0.587, 0.114])
# Distances are floored here before their logarithm is taken (copies were set aside before, so only
# float rounding of nearly equal descriptors reaches down to it).
_DISTANCE_FLOOR = 1e-9


@dataclass(frozen=True)
class Groups:
    """Group id per image (0..n_groups-1) and the distance cut that produced them (None: no
    near-duplicates were found, every image is its own group; 0.0: only copies of one image were
    grouped)."""

    ids: np.ndarray
    cut: float | None
    thumbnail_cut: float | None = None  # the same for the tone-free thumbnails, where they were searched

    @property
    def count(self) -> int:
        """Number of groups (an image without near-duplicates is a group of one)."""
        return int(self.ids.max()) + 1 if len(self.ids) else 0

    @property
    def with_siblings(self) -> int:
        """Images that share their group with at least one other image."""
        sizes = np.bincount(self.ids) if len(self.ids) else np.zeros(0, dtype=np.int64)
        return int(sizes[sizes > 1].sum())

    @property
    def largest(self) -> int:
        """Images in the largest group."""
        return int(np.bincount(self.ids).max()) if len(self.ids) else 0

    def summary(self) -> dict[str, object]:
        """For the training report."""
        return {"groups": self.count, "images_with_siblings": self.with_siblings,
                "largest_group": self.largest,
                "distance_cut": None if self.cut is None else round(float(self.cut), 6),
                "thumbnail_distance_cut": None if self.thumbnail_cut is None else round(float(self.thumbnail_cut), 6)}


def correlation_distances(descriptors: np.ndarray) -> np.ndarray:
    """(n, n) correlation distances between rows after standardising each column across rows."""
    x = np.asarray(descriptors, dtype=np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    x = x - x.mean(1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    d = 1.0 - x @ x.T
    np.fill_diagonal(d, 0.0)
    return np.clip(d, 0.0, 2.0)


def _neighbour_counts(n: int) -> list[int]:
    """The neighbour counts a set of n images is searched with, in order (``_NEIGHBOURS``)."""
    first, *more = _NEIGHBOURS
    return [min(first, n - 1), *(k for k in more if k * _IMAGES_PER_NEIGHBOUR <= n)]


def _neighbour_distances(d: np.ndarray, k: int) -> np.ndarray:
    """(n, k) distances from each image to its k nearest neighbours, nearest first."""
    return np.sort(d + np.diag(np.full(d.shape[0], np.inf)), axis=1)[:, :k]


def _distance_cut(d: np.ndarray, k: int) -> float | None:
    """The distance below which two images are near-duplicates, or None when the nearest-neighbour
    distances show a single population in every start of the mixture (see the module docstring)."""
    from sklearn.mixture import GaussianMixture

    # Sorted: the fits' random starts pick values by position, and the images' order must not matter.
    logs = np.sort(np.log(np.maximum(_neighbour_distances(d, k).ravel(), _DISTANCE_FLOOR)))[:, None]
    single = GaussianMixture(1).fit(logs).bic(logs)
    fits = (GaussianMixture(2, random_state=start, n_init=2).fit(logs) for start in range(_MIXTURE_STARTS))
    cuts = [cut for cut in (_two_population_cut(mix, logs, single) for mix in fits) if cut is not None]
    return min(cuts) if cuts else None


def _sibling_contrast(d: np.ndarray, m: int, k: int) -> float:
    """Mean of the m lowest per-image log(nearest-neighbour distance / k-th-neighbour distance): low
    when m images have a sibling much closer than their other neighbours."""
    near = np.maximum(_neighbour_distances(d, k), _DISTANCE_FLOOR)
    return float(np.mean(np.sort(np.log(near[:, 0] / near[:, -1]))[:m]))


def _beats_unrelated_images(descriptors: np.ndarray, d: np.ndarray, m: int, k: int) -> bool:
    """Whether the m images said to have siblings are more sibling-like (``_sibling_contrast``) than the
    m most sibling-like images of every one of ``_NULL_SETS`` sets of unrelated images, each drawn as
    as many images from one Gaussian with the descriptors' mean and covariance. The images are put in
    a canonical order first, so the draws do not depend on the upload order."""
    x = np.asarray(descriptors, dtype=np.float64)
    x = x[np.lexsort(x.T[::-1])]
    centred = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    observed = _sibling_contrast(d, m, k)
    rng = np.random.default_rng(0)
    unrelated = (correlation_distances(rng.standard_normal((len(x), len(x))) @ centred) for _ in range(_NULL_SETS))
    return all(_sibling_contrast(null, m, k) > observed for null in unrelated)


def _two_population_cut(mix: GaussianMixture, logs: np.ndarray, single_bic: float) -> float | None:
    """The cut of one fitted two-component mixture ``mix``: where its near component stops being the
    likelier, if the mixture beats one component (``single_bic``) and its density has two peaks."""
    if mix.bic(logs) >= single_bic:
        return None
    low = int(np.argmin(mix.means_[:, 0]))
    grid = np.linspace(logs.min(), logs.max(), _DENSITY_GRID)[:, None]
    # Two populations means two modes: the k-th-neighbour distances of unrelated images also differ
    # by rank (the first neighbour is nearer than the eighth), a skew a two-component mixture fits
    # better without any second mode. Only a density with two peaks shows near-duplicates.
    density = mix.score_samples(grid)
    peaks = np.flatnonzero((density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:]))
    if len(peaks) < 2:
        return None
    near_likelier = mix.predict_proba(grid)[:, low] >= 0.5
    # The cut: the end of the first run of grid points where the near component is the likelier.
    stop = np.flatnonzero(~near_likelier)
    if not near_likelier[0] or len(stop) == 0:
        return None
    return float(np.exp(grid[stop[0] - 1, 0]))


def near_duplicate_groups(descriptors: np.ndarray, thumbnails: np.ndarray | None = None) -> Groups:
    """Groups of near-duplicate images from their (n, D) global descriptors and, when given, their
    ``tone_free_thumbnails``. Each view is searched on its own; where both find groups, one average
    linkage over their joint distance gives them (``_joint_groups``)."""
    by_descriptor, descriptor_distances = _groups_of_view(np.asarray(descriptors))
    if thumbnails is None:
        return by_descriptor
    by_thumbnail, thumbnail_distances = _groups_of_view(np.asarray(thumbnails), _SAME_PICTURE)
    found = [(d, groups) for d, groups in ((descriptor_distances, by_descriptor), (thumbnail_distances, by_thumbnail))
             if groups.with_siblings]
    if len(found) == 2:
        ids = _joint_groups([(d, groups.cut) for d, groups in found])
    elif found:
        ids = found[0][1].ids
    else:
        ids = np.arange(len(by_descriptor.ids))
    return Groups(ids, by_descriptor.cut, by_thumbnail.cut)


def _joint_groups(views: Sequence[tuple[np.ndarray, float | None]]) -> np.ndarray:
    """Group ids from several views of the same images, each given as its (n, n) correlation distances
    and the cut its own search found: a
    pair's joint distance is the smallest of its distances in units of each view's cut (below 1:
    near-duplicates in some view), and average linkage joins below 1. Joining the two views'
    partitions instead chained a view's few mixed groups to whole parts (3-7% of the groups of
    KolektorSDD images taken under 4-12 exposures each held two parts; none this way)."""
    from sklearn.cluster import AgglomerativeClustering

    scaled = [d / cut if cut else np.where(d <= _COPY_DISTANCE, 0.0, np.inf)  # cut 0: copies only
              for d, cut in views]
    joint = np.minimum.reduce(scaled)
    labels = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                     distance_threshold=1.0).fit_predict(np.minimum(joint, _FAR))
    return _by_first_appearance(labels)


def tone_free_thumbnails(images: Sequence[np.ndarray]) -> np.ndarray:
    """(n, h * w) small grayscale pictures of ``images`` (all of one size) whose grey levels are
    histogram-equalised: any monotonic change of tone -- exposure, gain, gamma -- leaves an image's
    equalised picture as it was, so captures of one part under other exposures look alike here even
    where the backbone's descriptors move with the light (module docstring)."""
    step = max(1, min(images[0].shape[:2]) // _THUMBNAIL_SOURCE_SIDE)
    height, width = images[0][::step, ::step].shape[:2]
    scale = _THUMBNAIL_SIDE / min(height, width)
    rows = _block_edges(height, min(round(height * scale), _THUMBNAIL_LONGEST))
    cols = _block_edges(width, min(round(width * scale), _THUMBNAIL_LONGEST))
    out = np.empty((len(images), (len(rows) - 1) * (len(cols) - 1)))
    for i, image in enumerate(images):
        image = image[::step, ::step]
        grey = image[..., :3] @ _LUMA if image.ndim == 3 else image.astype(np.float64)
        levels = np.clip(np.rint(grey), 0, 255).astype(np.int64)
        equalised = (np.cumsum(np.bincount(levels.ravel(), minlength=256)) / levels.size)[levels]
        sums = np.add.reduceat(np.add.reduceat(equalised, rows[:-1], axis=0), cols[:-1], axis=1)
        out[i] = (sums / np.outer(np.diff(rows), np.diff(cols))).ravel()
    return out


def _block_edges(length: int, blocks: int) -> np.ndarray:
    """Edges of ``blocks`` near-equal runs of pixels covering ``length`` (area downsampling)."""
    return np.linspace(0, length, max(1, min(blocks, length)) + 1).round().astype(np.int64)


def _groups_of_view(descriptors: np.ndarray, largest_cut: float = np.inf) -> tuple[Groups, np.ndarray]:
    """Groups of near-duplicate images from one (n, D) view of them, and the view's (n, n) correlation
    distances (which ``_joint_groups`` reuses); copies of one image are grouped first and enter the
    search for near-duplicates once. No cut is taken above ``largest_cut``."""
    if len(descriptors) == 0:
        return Groups(np.zeros(0, dtype=np.int64), None), np.zeros((0, 0))
    every = correlation_distances(descriptors)
    original = _first_copy(every)
    distinct = np.unique(original)  # the first of each image's copies, in order
    copies = len(distinct) < len(descriptors)
    # Among distinct images the distances are standardised without the copies.
    d = correlation_distances(descriptors[distinct]) if copies else every
    found = _near_duplicates(descriptors[distinct], d, largest_cut)
    ids = _by_first_appearance(found.ids[np.searchsorted(distinct, original)])
    return Groups(ids, found.cut if found.cut is not None or not copies else 0.0), every


def _first_copy(d: np.ndarray) -> np.ndarray:
    """(n,) index of the first image each image is a copy of (itself when it is the first)."""
    return np.argmax(d <= _COPY_DISTANCE, axis=1)  # the diagonal is 0: every row has a match


def _near_duplicates(descriptors: np.ndarray, d: np.ndarray, largest_cut: float) -> Groups:
    """Groups of near-duplicate images from the descriptors of distinct images and their (n, n)
    correlation distances ``d``."""
    n = len(d)
    if n >= _MIN_IMAGES:
        for k in _neighbour_counts(n):
            found = _groups_with_neighbours(descriptors, d, k, largest_cut)
            if found is not None:
                return found
    return Groups(np.arange(n), None)


def _groups_with_neighbours(descriptors: np.ndarray, d: np.ndarray, k: int, largest_cut: float) -> Groups | None:
    """The groups the search finds with k neighbours per image (its cut at most ``largest_cut``), or
    None when it finds none that stand out from unrelated images."""
    cut = _distance_cut(d, k)
    if cut is None:
        return None
    cut = min(cut, largest_cut)
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                     distance_threshold=cut).fit_predict(d)
    found = Groups(_by_first_appearance(labels), cut)
    if not found.with_siblings or not _beats_unrelated_images(descriptors, d, found.with_siblings, k):
        return None
    return found


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Group labels renumbered 0, 1, ... in order of first appearance, so ids do not depend on the
    clustering's internal order."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].astype(np.int64)


def _whole_group_folds(strata: np.ndarray, groups: np.ndarray, folds: int,
                       seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified K folds of whole groups, or None when no such split keeps every stratum in every
    training part (a stratum with fewer than two groups)."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.unique(strata)
    per_stratum = [len(np.unique(groups[strata == s])) for s in labels]
    if min(per_stratum) < 2:
        return None
    split = StratifiedGroupKFold(min(folds, *per_stratum), shuffle=True, random_state=seed)
    pairs = list(split.split(np.zeros(len(strata)), strata, groups))
    if all(len(np.unique(strata[tr])) == len(labels) for tr, _ in pairs):
        return pairs
    return None


def folds_hold_out_groups(strata: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> bool:
    """Whether ``grouped_folds`` holds out whole groups (True) or falls back to image folds (False):
    the training report says so, since image folds make the out-of-fold figures optimistic when
    near-duplicates exist."""
    return _whole_group_folds(np.asarray(strata), np.asarray(groups), folds, seed) is not None


def grouped_folds(strata: np.ndarray, groups: np.ndarray, folds: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold over whole groups: (train, held-out) index pairs; every group is held out
    exactly once. ``folds`` shrinks to what the smallest stratum's groups allow (at least 2).

    Every training part must still hold every stratum (a head cannot learn anomalies from normals
    alone). When a stratum has fewer than two groups (all anomalies of a set are near-duplicates of
    one another, say), no grouped split can do that, and the folds hold out images instead of groups:
    a flattering out-of-fold estimate is better than no candidate at all."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.asarray(strata)
    groups = np.asarray(groups)
    pairs = _whole_group_folds(strata, groups, folds, seed)
    if pairs is not None:
        return pairs
    members = [int(np.sum(strata == s)) for s in np.unique(strata)]
    split_images = StratifiedKFold(max(2, min(folds, *members)), shuffle=True, random_state=seed)
    return list(split_images.split(np.zeros(len(strata)), strata))
