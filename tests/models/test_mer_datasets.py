"""The micro-expression loaders on tiny fake trees of every layout: indices, subjects, labels, detection, errors."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import openpyxl
import pytest
from PIL import Image
from pyflowops_models.mer.datasets import (
    CLASSES,
    MERSample,
    composite_class,
    list_frames,
    load_casme2,
    load_mer_dataset,
    load_samm,
    load_smic,
    load_synthetic,
)

CASME_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Type", "Action Units", "Notes", "Estimated Emotion"]


def _frames(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(folder / name)


def _xlsx(path, rows, title_rows=0):
    book = openpyxl.Workbook()
    sheet = book.active
    for i in range(title_rows):
        sheet.append([f"SAMM description line {i}"] if i % 3 else [])
    for row in rows:
        sheet.append(row)
    book.save(path)


def _names(sample):
    return [p.name for p in sample.frames]


@pytest.fixture
def casme(tmp_path):
    root = tmp_path / "CASME2" / "CASME2_RAW_selected"
    _frames(root / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in range(46, 61)])  # non-consecutive start
    _frames(root / "sub01" / "EP03_02", [f"img{n}.jpg" for n in (9, 10, 11, 12)])  # sorts wrong lexically
    _frames(root / "sub02" / "EP01_11f", [f"reg_img{n}.jpg" for n in range(100, 106)])  # the Cropped release
    rows = [CASME_HEADER,
            [1, "EP02_01f", 46, 50, 60, "12", "happiness"],
            [1, "EP03_02", 9, "/", 12, "4", "Surprise"],
            ["02", "EP01_11f", 101, 103, 105, "4+7", "repression"],
            [2, "EP09_99", 1, 2, 3, "", "others"]]  # dropped: its folder need not exist
    return root, rows


def test_casme2_maps_frame_numbers_subjects_and_labels(casme):
    root, rows = casme
    _xlsx(root.parent / "CASME2-coding-20140508.xlsx", rows)  # found in root's parent
    with pytest.warns(UserWarning, match=r"dropped 1 of 4 clips.*emotion 'others' x1"):
        samples = load_casme2(root)
    assert [(s.subject, s.sequence) for s in samples] == [
        ("casme2/sub01", "EP02_01f"), ("casme2/sub01", "EP03_02"), ("casme2/sub02", "EP01_11f")]
    a, b, c = samples
    assert (a.onset, a.apex, a.offset) == (0, 4, 14) and a.apex_frame.name == "img50.jpg" and len(a.frames) == 15
    assert _names(b) == ["img9.jpg", "img10.jpg", "img11.jpg", "img12.jpg"]
    assert (b.onset, b.apex, b.offset) == (0, 1, 3)  # apex "/": the middle frame between onset and offset
    assert (c.onset, c.apex, c.offset) == (1, 3, 5) and c.onset_frame.name == "reg_img101.jpg"
    assert [(s.emotion, s.class_name) for s in samples] == [
        ("happiness", "positive"), ("surprise", "surprise"), ("repression", "negative")]
    assert all(s.dataset == "casme2" and s.mask is None and s.flow_facial is None for s in samples)


def test_casme2_csv_sheet_given_with_labels(casme, tmp_path):
    root, rows = casme
    sheet = tmp_path / "my_labels.csv"
    with open(sheet, "w", newline="") as f:
        csv.writer(f).writerows(rows[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: no warning
        samples = load_mer_dataset(root, labels=sheet)
    assert len(samples) == 1 and samples[0].subject == "casme2/sub01" and samples[0].apex == 4


def test_casme2_errors_name_the_problem(casme, tmp_path):
    root, _ = casme
    with pytest.raises(FileNotFoundError, match="no label sheet.*CASME2-coding-20140508.xlsx"):
        load_casme2(root)
    _xlsx(tmp_path / "no_apex.xlsx", [[c for c in CASME_HEADER if c != "ApexFrame"], [1, "EP02_01f", 46, 60]])
    with pytest.raises(ValueError, match="no column 'ApexFrame'"):
        load_casme2(root, labels=tmp_path / "no_apex.xlsx")
    _xlsx(tmp_path / "folder.xlsx", [CASME_HEADER, [3, "EP05_01", 1, 2, 3, "", "disgust"]])
    with pytest.raises(FileNotFoundError, match=r"row 2 \(sub03/EP05_01\): no clip folder .*sub03"):
        load_casme2(root, labels=tmp_path / "folder.xlsx")
    _xlsx(tmp_path / "onset.xlsx", [CASME_HEADER, [1, "EP02_01f", 40, 50, 60, "", "disgust"]])
    with pytest.raises(FileNotFoundError, match=r"onset frame 40 \(img40.jpg\) not found"):
        load_casme2(root, labels=tmp_path / "onset.xlsx")
    with pytest.raises(FileNotFoundError, match="no label sheet"):
        load_casme2(root, labels=tmp_path / "missing.xlsx")


def test_samm_finds_the_header_below_a_title_block(tmp_path):
    root = tmp_path / "SAMM"
    _frames(root / "006" / "006_1_2", [f"006_0{n}.jpg" for n in range(5562, 5570)])
    _frames(root / "007" / "007_3_1", [f"007_{n}.jpg" for n in (998, 999, 1000, 1001, 1002)])
    rows = [SAMM_HEADER,
            [6, "006_1_2", "1", 5562, 5566, 5569, 8, "Micro - 1/2", "12", "", "Happiness"],
            ["007", "007_3_1", "3", 999, -1, 1002, 4, "Micro", "4", "", "Contempt"],
            [7, "007_5_9", "5", 1, 2, 3, 3, "Micro", "", "", "Other"],     # dropped: emotion
            [7, "007_6_1", "6", 1, 2, 3, 3, "Macro", "", "", "Anger"]]     # dropped: not a micro-expression
    _xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", rows, title_rows=10)
    with pytest.warns(UserWarning, match=r"dropped 2 of 4.*emotion 'other' x1.*type 'Macro' x1"):
        samples = load_mer_dataset(root)
    assert [(s.dataset, s.subject, s.sequence) for s in samples] == [
        ("samm", "samm/006", "006_1_2"), ("samm", "samm/007", "007_3_1")]
    a, b = samples
    assert (a.onset, a.apex, a.offset, a.label) == (0, 4, 7, CLASSES.index("positive"))
    assert a.apex_frame.name == "006_05566.jpg"
    assert _names(b)[:2] == ["007_998.jpg", "007_999.jpg"]
    assert (b.onset, b.apex, b.offset, b.emotion, b.class_name) == (1, 2, 4, "contempt", "negative")  # apex -1
    _xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [SAMM_HEADER, [6, "006_1_2", "1", 5500, 5566, 5569, 8, "Micro",
                                                               "", "", "Anger"]], title_rows=10)
    with pytest.raises(FileNotFoundError, match=r"onset frame 5500 \(006_05500.jpg\) not found"):
        load_samm(root)


def test_smic_classes_from_folders_apex_in_the_middle(tmp_path):
    for subject, cls, clip, n in (("s1", "negative", "s1_ne_01", 5), ("s1", "positive", "s1_po_02", 4),
                                  ("s2", "surprise", "s2_sur_01", 3)):
        _frames(tmp_path / "HS" / subject / "micro" / cls / clip, [f"image{1000 + k:06d}.bmp" for k in range(n)])
    (tmp_path / "HS" / "s2" / "non_micro").mkdir()
    samples = load_smic(tmp_path)
    assert [(s.subject, s.sequence, s.emotion, s.label) for s in samples] == [
        ("smic/s1", "s1_ne_01", "negative", 0), ("smic/s1", "s1_po_02", "positive", 1),
        ("smic/s2", "s2_sur_01", "surprise", 2)]
    assert [(s.onset, s.apex, s.offset) for s in samples] == [(0, 2, 4), (0, 1, 3), (0, 1, 2)]
    assert samples[0].frames[0].name == "image001000.bmp"
    assert load_smic(tmp_path / "HS") == samples  # root = the variant folder
    assert load_mer_dataset(tmp_path / "HS", kind="smic") == samples
    with pytest.raises(FileNotFoundError, match="no subject folders with micro/"):
        load_smic(tmp_path / "HS" / "s1")


def _synthetic(root, clips):
    root.mkdir()
    (root / "meta.json").write_text(json.dumps({"layout": "pyflowops-micro/1", "size": 8}))
    with open(root / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["subject", "sequence", "onset", "apex", "offset", "num_frames", "emotion", "class"])
        for subject, sequence, emotion, cls, flows in clips:
            folder = root / subject / sequence
            _frames(folder, [f"{t:04d}.png" for t in range(12)])
            if flows:
                for name in ("flow_facial.flo", "flow_head.flo"):
                    (folder / name).write_bytes(b"PIEH")
                Image.fromarray(np.full((8, 8), 255, np.uint8)).save(folder / "mask.png")
            out.writerow([subject, sequence, 1, 6, 10, 12, emotion, cls])


def test_synthetic_reads_indices_and_ground_truth_paths(tmp_path):
    root = tmp_path / "micro"
    _synthetic(root, [("s007", "000012", "happiness", "positive", True), ("s001", "000003", "disgust", "negative",
                                                                          False)])
    samples = load_synthetic(root)
    assert [(s.subject, s.sequence, s.label) for s in samples] == [("synthetic/s001", "000003", 0),
                                                                   ("synthetic/s007", "000012", 1)]
    a, b = samples
    assert (b.onset, b.apex, b.offset) == (1, 6, 10) and len(b.frames) == 12 and b.apex_frame.name == "0006.png"
    assert "mask.png" not in _names(b)  # only numbered frames
    assert b.mask == root / "s007" / "000012" / "mask.png" and b.flow_head.name == "flow_head.flo"
    assert b.flow_facial == root / "s007" / "000012" / "flow_facial.flo"
    assert a.mask is None and a.flow_facial is None and a.emotion == "disgust"
    assert load_mer_dataset(root) == samples
    with pytest.raises(ValueError, match="labels= is the label sheet of CASME II or SAMM"):
        load_mer_dataset(root, labels=root / "labels.csv")


def test_auto_detection_and_its_errors(tmp_path, casme):
    root, rows = casme
    _xlsx(root / "labels.xlsx", rows[:2])
    assert [s.dataset for s in load_mer_dataset(root)] == ["casme2"]
    _frames(tmp_path / "smic" / "VIS" / "s3" / "micro" / "positive" / "s3_po_01", ["image1.bmp", "image2.bmp"])
    assert [s.subject for s in load_mer_dataset(tmp_path / "smic")] == ["smic/s3"]  # the variant there
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"cannot tell.*meta.json.*pyflowops-micro/1.*s<N>/micro.*sub<NN>.*<NNN>"):
        load_mer_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_mer_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown data set kind"):
        load_mer_dataset(root, kind="casme3")


def test_list_frames_composite_class_and_sample_checks(tmp_path):
    _frames(tmp_path, ["img10.JPG", "img9.jpg", "img100.png", "mask.png", ".img5.png"])
    (tmp_path / "img7.txt").write_text("not a frame")
    numbers, frames = list_frames(tmp_path)
    assert numbers == [9, 10, 100] and [p.name for p in frames] == ["img9.jpg", "img10.JPG", "img100.png"]
    _frames(tmp_path, ["reg_img9.jpg"])
    with pytest.raises(ValueError, match="same number 9"):
        list_frames(tmp_path)
    assert [composite_class("samm", e) for e in ("Happiness", "anger", "Contempt", "surprise", "Other")] == [
        1, 0, 0, 2, None]
    assert [composite_class("casme2", e) for e in ("repression", "fear", "sadness", "others")] == [0, 0, 0, None]
    assert [composite_class("synthetic", e) for e in ("sad", "happy", "contempt")] == [0, 1, 0]
    with pytest.raises(ValueError, match="unknown data set"):
        composite_class("casme3", "happiness")
    with pytest.raises(ValueError, match="outside its 2 frames"):
        MERSample("smic", "smic/s1", "x", frames[:2], 0, 2, 1, "negative", 0)
