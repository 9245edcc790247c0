"""Readers: folders, manifests, DICOM (real pydicom-data files), video, UltraBench folders, spec detection."""

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from usjepa.data.sources import frame_indices, open_source, parse_spec
from usjepa.errors import DataError


def _png(path: Path, value: int, shape=(40, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_class_folders_give_sorted_labels_and_list_faults(tmp_path):
    for c, v in (("benign", 10), ("malignant", 20)):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", v + i)
    (tmp_path / "benign" / "readme.txt").write_text("x")
    src = open_source(str(tmp_path) + "?organ=breast&name=bus")
    assert (src.name, src.opts.organ, len(src)) == ("bus", "breast", 6)
    assert [src.load(i).label for i in range(6)] == [0, 0, 0, 1, 1, 1]
    s = src.load(4)
    assert s.image[0, 0] == 21 and s.scan_mask.all() and s.meta["source"] == "bus" and s.meta["organ"] == "breast"
    assert [Path(p).name for p, _ in src.faults] == ["readme.txt"]


def test_manifests_csv_and_json(tmp_path):
    for i in range(3):
        _png(tmp_path / "img" / f"{i}.png", 50 + i)
    _png(tmp_path / "m.png", 0)
    m = np.zeros((40, 50), np.uint8)
    m[5:30, 5:40] = 1
    Image.fromarray(m).save(tmp_path / "mask.png")
    (tmp_path / "list.csv").write_text(
        "image,label,patient,scan_mask\nimg/0.png,2,p1,mask.png\nimg/1.png,,p1,\nimg/9.png,1,p2,\n"
    )
    src = open_source(str(tmp_path / "list.csv"))
    assert len(src) == 2 and len(src.faults) == 1 and "img/9.png" in src.faults[0][0]
    s0, s1 = src.load(0), src.load(1)
    assert (s0.label, s1.label, s0.meta["group"]) == (2, -1, "p1")
    assert s0.scan_mask.sum() == 25 * 35 and s1.scan_mask.all()
    (tmp_path / "list.json").write_text(json.dumps([{"image": "img/2.png", "label": 1, "organ": "liver"}]))
    js = open_source(str(tmp_path / "list.json"))
    assert js.load(0).image[0, 0] == 52 and js.load(0).meta["organ"] == "liver"


def test_sonosite_cine_frames_sampled_at_fps_cap():
    path = get_testdata_file("color3d_jpeg_baseline.dcm")  # 120 frames at 30 fps, YBR JPEG
    src = open_source(path + "?fps=3&max_frames=30")
    assert [it.frame for it in src.items] == list(range(0, 120, 10))
    capped = open_source(path + "?fps=10&max_frames=5")
    assert [it.frame for it in capped.items] == [0, 3, 6, 9, 12]
    a, b = src.load(0).image, src.load(5).image
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8 and not np.array_equal(a, b)
    assert len({src.group(i) for i in range(len(src))}) == 1  # frames of one clip share a group


@pytest.mark.parametrize(
    "name,shape",
    [
        ("OBXXXX1A.dcm", (600, 800, 3)),
        ("gdcm-US-ALOKA-16.dcm", (480, 640, 3)),
        ("SC_ybr_full_uncompressed.dcm", (100, 100, 3)),
        ("MR_small.dcm", (64, 64)),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024)),
    ],
)
def test_dicom_photometrics_decode_to_uint8(name, shape):
    img = open_source(get_testdata_file(name)).load(0).image
    assert img.shape == shape and img.dtype == np.uint8 and img.max() > 100


def test_palette_lut_gives_colour_and_ybr_is_rgb():
    pal = open_source(get_testdata_file("OBXXXX1A.dcm")).load(0).image.astype(int)
    assert (pal.max(-1) - pal.min(-1)).max() > 100  # the blue banner survives the LUT
    big_endian = open_source(get_testdata_file("OBXXXX1A_expb.dcm")).load(0).image.astype(int)
    assert np.abs(big_endian - pal).max() <= 1  # its LUT holds 8-bit values in 16-bit words: not scaled to black
    ybr = open_source(get_testdata_file("SC_ybr_full_uncompressed.dcm")).load(0).image
    rgb = open_source(get_testdata_file("SC_rgb.dcm")).load(0).image
    assert np.abs(ybr.astype(int) - rgb.astype(int)).max() <= 8  # YBR rounding


def test_video_frames_sampled(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    src = open_source(f"{path}?fps=5&max_frames=4")
    assert [it.frame for it in src.items] == [0, 2, 4, 6]
    assert [round(float(src.load(i).image.mean()) / 10) for i in range(4)] == [0, 2, 4, 6]


def test_ultrabench_main_layout_wrapped(tmp_path):
    for i in range(4):
        _png(tmp_path / "images" / f"{i}.png", 30 + i)
        _png(tmp_path / "masks" / "scan" / f"{i}.png", 1)

    def rec(i):
        return {"image": f"images/{i}.png", "scan_mask": f"masks/scan/{i}.png", "patient": i // 2}

    (tmp_path / "train_val.json").write_text(json.dumps([rec(i) for i in range(3)]))
    (tmp_path / "test.json").write_text(json.dumps([rec(3)]))
    src = open_source(str(tmp_path))
    assert src.kind == "ultrabench" and len(src) == 3  # the test split stays out of pretraining
    assert [src.group(i) for i in range(3)] == ["patient:0", "patient:0", "patient:1"]
    s = src.load(2)
    assert s.image[0, 0] == 32 and s.scan_mask.all() and s.meta["has_mask"] and s.label == -1


def test_specs_and_frame_rule(tmp_path):
    assert frame_indices(120, 30.0003, 3, 30) == list(range(0, 120, 10))
    assert frame_indices(10, None, 3, 4) == [0, 1, 2, 3]
    assert parse_spec("d/x?organ=lung&fps=2")[1].fps == 2.0
    with pytest.raises(DataError, match="unknown option"):
        parse_spec("d/x?orgn=lung")
    with pytest.raises(DataError, match="not found"):
        open_source(str(tmp_path / "missing"))
    os.makedirs(tmp_path / "s")
    with pytest.raises(DataError, match="no shard files"):
        open_source(str(tmp_path / "s" / "*.tar"))
