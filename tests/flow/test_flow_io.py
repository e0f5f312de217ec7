"""Flow file IO: Middlebury .flo, KITTI 2015 16-bit PNG, dispatch by extension."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
import torch

from pyflowops.flow import io as fio
from pyflowops.flow import read_flo, read_flow, read_kitti_png, write_flo, write_flow, write_kitti_png


def _rand_flow(h=5, w=7, scale=20.0, seed=0):
    return (np.random.default_rng(seed).standard_normal((h, w, 2)) * scale).astype(np.float32)


def _png_all_filters(image: np.ndarray) -> bytes:
    """A 16-bit RGB PNG whose rows cycle through the five filter types (None, Sub, Up, Average,
    Paeth), as libpng's adaptive filtering produces; written the slow, obvious way."""
    height, width, _ = image.shape
    bpp, out, prev = 6, bytearray(), bytes(width * 6)
    for r in range(height):
        row = image[r].astype(">u2").tobytes()
        kind = r % 5
        out.append(kind)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((x - (0, a, b, (a + b) // 2, paeth)[kind]) & 255)
        prev = row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")


class TestFlo:
    def test_round_trip_exact(self, tmp_path):
        flow = _rand_flow(7, 5)  # odd sizes, H != W
        write_flo(tmp_path / "a.flo", flow)
        back = read_flo(tmp_path / "a.flo")
        assert back.dtype == np.float32 and back.shape == (7, 5, 2)
        np.testing.assert_array_equal(back, flow)
        assert os.path.getsize(tmp_path / "a.flo") == 12 + 7 * 5 * 8

    def test_layout_on_disk(self, tmp_path):
        # header and the (u, v) interleaving, row-major, checked byte by byte
        flow = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
        write_flo(tmp_path / "a.flo", flow)
        blob = (tmp_path / "a.flo").read_bytes()
        assert struct.unpack("<fii", blob[:12]) == (202021.25, 3, 2)
        np.testing.assert_array_equal(np.frombuffer(blob[12:], "<f4"), np.arange(12))

    def test_chw_torch_accepted(self, tmp_path):
        flow = torch.from_numpy(_rand_flow(5, 7))
        write_flo(tmp_path / "a.flo", flow.permute(2, 0, 1))  # [2, H, W], non-contiguous
        np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow.numpy())

    @pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7), (1, 2, 5, 7), (5, 7, 3)])
    def test_bad_shape_rejected(self, tmp_path, shape):
        with pytest.raises(ValueError, match=r"flow must have shape \[H, W, 2\] or \[2, H, W\]"):
            write_flo(tmp_path / "a.flo", np.zeros(shape, np.float32))

    def test_bad_type_rejected(self, tmp_path):
        with pytest.raises(TypeError, match="flow must be a numpy.ndarray or torch.Tensor, got list"):
            write_flo(tmp_path / "a.flo", [[[0.0, 0.0]]])

    def test_bad_magic(self, tmp_path):
        path = tmp_path / "a.flo"
        path.write_bytes(struct.pack("<fii", 1.5, 1, 1) + bytes(8))
        with pytest.raises(ValueError, match=r"a\.flo: not a \.flo file: expected magic 202021\.25, found 1\.5"):
            read_flo(path)

    def test_truncated(self, tmp_path):
        path = tmp_path / "a.flo"
        write_flo(path, _rand_flow(5, 7))
        path.write_bytes(path.read_bytes()[:-5])
        with pytest.raises(ValueError, match=r"truncated: a 7x5 \.flo needs 292 bytes, found 287 bytes"):
            read_flo(path)

    def test_trailing_bytes(self, tmp_path):
        path = tmp_path / "a.flo"
        write_flo(path, _rand_flow(2, 2))
        path.write_bytes(path.read_bytes() + b"xx")
        with pytest.raises(ValueError, match="trailing bytes"):
            read_flo(path)

    @pytest.mark.parametrize("w, h", [(2**30, 2**30), (-3, 4), (0, 4)])
    def test_absurd_header(self, tmp_path, w, h):
        path = tmp_path / "a.flo"
        path.write_bytes(struct.pack("<fii", 202021.25, w, h) + bytes(16))
        with pytest.raises(ValueError, match=rf"implausible \.flo header: width={w}, height={h}"):
            read_flo(path)

    def test_short_file(self, tmp_path):
        (tmp_path / "a.flo").write_bytes(b"PIEH")
        with pytest.raises(ValueError, match="expected a 12-byte header, found 4 bytes"):
            read_flo(tmp_path / "a.flo")

    def test_atomic_write_keeps_old_file_on_failure(self, tmp_path, monkeypatch):
        path = tmp_path / "a.flo"
        old = _rand_flow(3, 4)
        write_flo(path, old)

        def boom(src, dst):
            raise OSError("disk on fire")

        monkeypatch.setattr(fio.os, "replace", boom)
        with pytest.raises(OSError, match="disk on fire"):
            write_flo(path, _rand_flow(3, 4, seed=1))
        np.testing.assert_array_equal(read_flo(path), old)
        assert os.listdir(tmp_path) == ["a.flo"]  # the temporary file was removed


class TestKittiPng:
    def test_round_trip_quantised(self, tmp_path):
        flow = _rand_flow(9, 11, scale=100.0)
        write_kitti_png(tmp_path / "a.png", flow)
        back, valid = read_kitti_png(tmp_path / "a.png")
        assert back.dtype == np.float32 and back.shape == (9, 11, 2) and valid.dtype == bool
        assert valid.all()
        assert np.abs(back - flow).max() <= 1 / 128 + 1e-6
        np.testing.assert_array_equal(back * 64, np.round(back * 64))  # on the 1/64 grid

    def test_valid_mask_round_trip(self, tmp_path):
        flow = _rand_flow(6, 5)
        valid = np.random.default_rng(1).random((6, 5)) > 0.4
        flow[~valid] = 1e6  # unstorable, but invalid: must not raise
        write_kitti_png(tmp_path / "a.png", torch.from_numpy(flow), valid=torch.from_numpy(valid))
        back, back_valid = read_kitti_png(tmp_path / "a.png")
        np.testing.assert_array_equal(back_valid, valid)
        assert np.abs(back[valid] - flow[valid]).max() <= 1 / 128
        np.testing.assert_array_equal(back[~valid], 0)  # stored as zero flow

    def test_16_bit_encoding(self, tmp_path):
        # R = u*64 + 2^15, G = v*64 + 2^15, B = valid, decoded with our PNG reader
        flow = np.array([[[1.0, -2.0], [511.984375, -512.0]]], np.float32)
        write_kitti_png(tmp_path / "a.png", flow)
        raw = fio.decode_png_rgb16(tmp_path / "a.png")
        np.testing.assert_array_equal(raw, [[[32768 + 64, 32768 - 128, 1], [65535, 0, 1]]])

    @pytest.mark.parametrize("value", [512.0, -512.5, float("nan")])
    def test_out_of_range_raises(self, tmp_path, value):
        flow = np.zeros((3, 4, 2), np.float32)
        flow[1, 2, 0] = value
        with pytest.raises(ValueError, match=r"cannot be stored in a KITTI PNG.*at row 1, column 2"):
            write_kitti_png(tmp_path / "a.png", flow)
        assert not (tmp_path / "a.png").exists()

    def test_valid_shape_checked(self, tmp_path):
        with pytest.raises(ValueError, match=r"valid must have shape \[H, W\] = \(3, 4\), got \(4, 3\)"):
            write_kitti_png(tmp_path / "a.png", np.zeros((3, 4, 2)), valid=np.ones((4, 3), bool))

    def test_reader_undoes_every_png_filter(self, tmp_path):
        # Files from KITTI's devkit (libpng) use all five row filters; ours only 'Up'.
        image = np.random.default_rng(2).integers(0, 65536, (10, 9, 3)).astype(np.uint16)
        (tmp_path / "f.png").write_bytes(_png_all_filters(image))
        np.testing.assert_array_equal(fio.decode_png_rgb16(tmp_path / "f.png"), image)

    def test_rejects_8_bit_png(self, tmp_path):
        from PIL import Image

        Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "a.png")
        with pytest.raises(ValueError, match="expected a 16-bit RGB PNG .* found bit depth 8, colour type 2"):
            read_kitti_png(tmp_path / "a.png")

    def test_rejects_non_png(self, tmp_path):
        (tmp_path / "a.png").write_bytes(b"not a png at all, but long enough to have a header")
        with pytest.raises(ValueError, match="not a PNG file"):
            read_kitti_png(tmp_path / "a.png")


class TestDispatch:
    def test_flo(self, tmp_path):
        flow = _rand_flow()
        write_flow(tmp_path / "a.FLO", flow)  # extension is case-insensitive
        np.testing.assert_array_equal(read_flow(tmp_path / "a.FLO"), flow)
        assert (tmp_path / "a.FLO").read_bytes()[:4] == struct.pack("<f", 202021.25)

    def test_png_invalid_is_nan(self, tmp_path):
        flow = _rand_flow()
        flow[0, 0] = np.nan
        write_flow(str(tmp_path / "a.png"), flow)
        back = read_flow(tmp_path / "a.png")
        assert np.isnan(back[0, 0]).all() and np.isfinite(back.reshape(-1, 2)[1:]).all()
        assert np.nanmax(np.abs(back - flow)) <= 1 / 128

    @pytest.mark.parametrize("name", ["a.jpg", "a", "a.flo.gz"])
    def test_unknown_extension(self, tmp_path, name):
        with pytest.raises(ValueError, match="path must end in .flo or .png"):
            write_flow(tmp_path / name, _rand_flow())
        with pytest.raises(ValueError, match="path must end in .flo or .png"):
            read_flow(tmp_path / name)

    def test_path_type(self):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
            read_flow(3)
