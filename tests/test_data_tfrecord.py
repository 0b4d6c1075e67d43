"""TFRecord framing checked byte by byte against the spec (with an independent CRC32C), index sidecar, errors."""

import os
import struct

import numpy as np
import pytest

from nitrogen_jax.data.example import Sample, decode_sample, encode_sample
from nitrogen_jax.data.tfrecord import RecordError, read_index, read_record, rebuild_index, scan_records, write_shard


def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), independent of google-crc32c."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_reference(data: bytes) -> int:
    crc = crc32c_reference(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


RECORDS = [b"", b"a", b"hello tfrecord", bytes(range(256)) * 3]


def test_framing_follows_the_spec(tmp_path):
    assert crc32c_reference(b"123456789") == 0xE3069283  # the standard check value
    path = tmp_path / "x.tfrecord"
    assert write_shard(path, RECORDS) == len(RECORDS)
    raw = path.read_bytes()
    pos, offsets = 0, []
    for rec in RECORDS:
        offsets.append(pos)
        (length,) = struct.unpack_from("<Q", raw, pos)
        (len_crc,) = struct.unpack_from("<I", raw, pos + 8)
        assert length == len(rec)
        assert len_crc == masked_reference(raw[pos : pos + 8])
        assert raw[pos + 12 : pos + 12 + length] == rec
        (data_crc,) = struct.unpack_from("<I", raw, pos + 12 + length)
        assert data_crc == masked_reference(rec)
        pos += 12 + length + 4
    assert pos == len(raw)
    index = read_index(path)
    assert index.tolist() == [[o, len(r)] for o, r in zip(offsets, RECORDS, strict=False)]
    fd = os.open(path, os.O_RDONLY)
    try:
        assert [read_record(fd, int(o), int(n), str(path)) for o, n in index] == RECORDS
    finally:
        os.close(fd)
    assert [d for _, d in scan_records(path)] == RECORDS


def test_corruption_is_reported_with_file_and_offset(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_shard(path, RECORDS)
    index = read_index(path)
    raw = bytearray(path.read_bytes())
    off = int(index[2, 0])
    raw[off + 12 + 3] ^= 0xFF  # a data byte of record 2
    path.write_bytes(raw)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(RecordError, match=rf"x.tfrecord @ offset {off}: data CRC mismatch"):
            read_record(fd, off, int(index[2, 1]), str(path))
        raw[off + 12 + 3] ^= 0xFF
        raw[off + 1] ^= 0x01  # its length field
        path.write_bytes(raw)
        with pytest.raises(RecordError, match=rf"@ offset {off}: length CRC mismatch"):
            read_record(fd, off, int(index[2, 1]), str(path))
    finally:
        os.close(fd)
    path.write_bytes(bytes(raw[: int(index[3, 0]) + 20]))  # cut inside record 3
    with pytest.raises(RecordError, match=rf"@ offset {off}: length CRC"):
        list(scan_records(path))


def test_truncated_scan_and_rebuilt_index(tmp_path):
    path = tmp_path / "y.tfrecord"
    write_shard(path, RECORDS)
    index = read_index(path)
    os.remove(str(path) + ".index")
    with pytest.raises(RecordError, match="index sidecar missing"):
        read_index(path)
    assert rebuild_index(path) == len(RECORDS)
    np.testing.assert_array_equal(read_index(path), index)
    path.write_bytes(path.read_bytes()[: int(index[3, 0]) + 20])
    with pytest.raises(RecordError, match=rf"@ offset {int(index[3, 0])}: truncated record"):
        list(scan_records(path))


def test_example_round_trip():
    rng = np.random.default_rng(0)
    s = Sample(
        b"\xff\xd8jpeg",
        rng.random((18, 25)).astype(np.float32),
        (rng.random((18, 25)) > 0.5).astype(np.float32),
        "vid",
        12,
        15,
    )
    back = decode_sample(encode_sample(s))
    assert (back.jpeg, back.video_id, back.label_row, back.frame_index) == (s.jpeg, "vid", 12, 15)
    np.testing.assert_array_equal(back.actions, s.actions)
    np.testing.assert_array_equal(back.action_mask, s.action_mask)
    with pytest.raises(ValueError, match="no feature 'frame'"):
        decode_sample(b"")
