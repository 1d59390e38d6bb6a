"""Console routes and helpers over plain HTTP (no browser): the root redirect, the overlay images,
label colours, natural sorting and wrapping names."""
from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emulator.console.blueprint import breakable
from emulator.console.colours import PALETTE, STATUS_COLOURS, label_colours, recolouring
from emulator.console.model_pages import time_left
from emulator.console.words import count, natural_key

BUCKET = "console-http-tests"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {})) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def png(pixels: np.ndarray, mode: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, "PNG")
    return out.getvalue()


def test_a_browser_opening_the_root_gets_the_console(emulator, s3):
    status, headers, _ = get(emulator.endpoint_url + "/", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert status == 302 and headers["Location"].endswith("/console/")
    # S3 at / is unaffected: ListBuckets signed by an SDK, and unsigned requests that do not ask for HTML.
    s3.create_bucket(Bucket=BUCKET)
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    status, _, body = get(emulator.endpoint_url + "/", {"Accept": "*/*"})
    assert b"ListAllMyBucketsResult" in body
    status, _, body = get(emulator.endpoint_url + "/?list-type=2", {"Accept": "text/html"})
    assert status != 302


def test_heatmap_overlay_is_see_through_where_nothing_is_found(console_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    ramp = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (64, 1))  # images have sides >= 64
    s3.put_object(Bucket=BUCKET, Key="map.png", Body=png(ramp, "L"))
    status, headers, body = get(f"{console_url}/heatmap?uri=s3://{BUCKET}/map.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(body)))
    assert rgba.shape == (64, 64, 4)
    alpha = rgba[0, :, 3]
    assert alpha[0] == 0 and alpha[-1] == 255 and (np.diff(alpha.astype(int)) >= 0).all()
    assert alpha[ramp[0] >= 128].min() == 255  # opaque from the decision level (0.5) up
    for key, expected in (("missing.png", 404),):
        assert get(f"{console_url}/heatmap?uri=s3://{BUCKET}/{key}")[0] == expected
    s3.put_object(Bucket=BUCKET, Key="notes.png", Body=b"not a png")
    assert get(f"{console_url}/heatmap?uri=s3://{BUCKET}/notes.png")[0] == 415


def heatmap_rgba(console_url: str, s3, grey: np.ndarray) -> np.ndarray:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="outlined.png", Body=png(grey, "L"))
    status, _, body = get(f"{console_url}/heatmap?uri=s3://{BUCKET}/outlined.png")
    assert status == 200
    return np.asarray(Image.open(io.BytesIO(body)))


def test_heatmap_outlines_the_flagged_region_in_light_and_dark(console_url, s3):
    grey = np.zeros((64, 64), np.uint8)
    grey[20:40, 20:40] = 255
    rgba = heatmap_rgba(console_url, s3, grey)
    assert tuple(rgba[20, 30]) == (255, 255, 255, 255)  # a light line just inside the region's edge
    assert tuple(rgba[19, 30]) == (0, 0, 0, 255)  # and a dark one just outside it
    assert tuple(rgba[30, 30]) == (252, 255, 164, 255)  # inside: the ramp's brightest colour
    assert rgba[10, 10, 3] == 0  # nothing unusual: see-through
    # A region that reaches the image's border is not outlined along the border.
    assert not np.all(heatmap_rgba(console_url, s3, np.full((64, 64), 255, np.uint8))[..., :3] == 255, axis=-1).any()


def test_heatmap_ramp_grows_lighter_with_the_score(console_url, s3):
    """A perceptual ramp: each step up in score is a step up in lightness (the outline aside)."""
    grey = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (64, 1))
    rgba = heatmap_rgba(console_url, s3, grey)[32].astype(float) / 255
    edge = int(np.argmax(grey[32] >= 128))  # the outline is drawn on either side of this column
    linear = np.where(rgba[:, :3] <= 0.03928, rgba[:, :3] / 12.92, ((rgba[:, :3] + 0.055) / 1.055) ** 2.4)
    luminance = linear @ [0.2126, 0.7152, 0.0722]
    assert (np.diff(luminance[:edge - 2]) >= -1e-3).all() and (np.diff(luminance[edge + 2:]) >= -1e-3).all()
    assert luminance[-1] > 0.9 and luminance[0] < 0.01


def test_heatmap_legend_shows_the_overlays_own_colours(console_url):
    from emulator.console.objects import heatmap_gradient

    gradient = heatmap_gradient()
    assert gradient.startswith("linear-gradient(90deg, rgba(0, 0, 4, 0.00) 0.0%")
    assert gradient.endswith("rgba(252, 255, 164, 1.00) 100.0%)")


def test_mask_overlay_paints_labels_in_display_colours(console_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    mask = np.full((64, 64, 3), 255, np.uint8)
    mask[0, 0] = (0x23, 0xA4, 0x36)  # the user's green "cracked"
    mask[1, 1] = (0xD1, 0x32, 0x12)  # another label, in the console's red
    s3.put_object(Bucket=BUCKET, Key="mask.png", Body=png(mask, "RGB"))
    labels = {"cracked": "#23a436", "dent": "#D13212"}
    status, _, body = get(f"{console_url}/overlay?uri=s3://{BUCKET}/mask.png&recolour={recolouring(labels)}")
    assert status == 200
    rgba = np.asarray(Image.open(io.BytesIO(body)))
    shown = label_colours(labels)
    assert "#" + "".join(f"{v:02X}" for v in rgba[0, 0, :3]) == shown["cracked"]
    assert "#" + "".join(f"{v:02X}" for v in rgba[1, 1, :3]) == shown["dent"]
    assert rgba[0, 0, 3] == 255 and rgba[2, 2, 3] == 0
    assert get(f"{console_url}/overlay?uri=s3://{BUCKET}/mask.png&recolour=zz-123456")[0] == 400


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _hue(hex_colour: str) -> float:
    import colorsys

    return colorsys.rgb_to_hls(*(int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0] * 360


def test_label_colours_never_reuse_status_colours_and_are_readable():
    css = (Path(__file__).resolve().parents[2] / "emulator" / "console" / "static" / "console.css").read_text()
    for status in STATUS_COLOURS:
        assert status.lower() in css.lower()  # the list matches the stylesheet
        assert 1.05 / (_luminance(status) + 0.05) >= 4.5, status  # the status badges' white text too
    for colour in PALETTE:
        assert colour not in STATUS_COLOURS
        assert 1.05 / (_luminance(colour) + 0.05) >= 4.5, colour  # white badge text, WCAG AA
        for status in STATUS_COLOURS[:4]:
            distance = abs(_hue(colour) - _hue(status))
            assert min(distance, 360 - distance) >= 25, (colour, status)
    names = ["cracked", "dent", "scratch", "hole", "stain", "chip"]
    shown = label_colours(names)
    assert len(set(shown.values())) == len(names)
    assert label_colours(["cracked"])["cracked"] == label_colours(["cracked"])["cracked"]


def test_natural_sort_plurals_and_wrapping_names():
    names = ["anomaly-10.png", "anomaly-2.png", "Anomaly-1.png"]
    assert sorted(names, key=natural_key) == ["Anomaly-1.png", "anomaly-2.png", "anomaly-10.png"]
    assert (count(1, "image"), count(0, "image"), count(3, "image")) == ("1 image", "0 images", "3 images")
    assert str(breakable("a-long_name.x<y")) == "a-<wbr>long_<wbr>name.<wbr>x&lt;y"


@pytest.mark.parametrize("path", ["/console/", "/console/projects/none-such"])
def test_console_pages_still_answer(emulator, path):
    assert get(emulator.endpoint_url + path)[0] in (200, 404)


def test_training_report_values_read_in_one_line():
    from emulator.console.blueprint import format_report_value

    assert format_report_value({"oneclass": {"auroc": 0.91234, "f1": None}, "n": 3}) == \
        "n: 3, oneclass: (auroc: 0.912, f1: —)"
    assert format_report_value([160, 120]) == "160 × 120" and format_report_value("youden") == "youden"


def test_time_left_is_said_in_whole_minutes_once_there_is_something_to_go_by() -> None:
    assert time_left(2.0, 0.5) == "estimating the time left"  # too early
    assert time_left(60.0, 0.01) == "estimating the time left"  # too little done
    assert time_left(30.0, 0.5) == "less than a minute left"
    assert time_left(60.0, 0.5) == "about 1 minute left"
    assert time_left(100.0, 0.25) == "about 5 minutes left"
