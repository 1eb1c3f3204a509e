"""Fuzzing the readers: anything thrown at them loads correctly or raises PetsegError.

``read_image`` is also petseg-predict's reader, so this covers both.
"""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from petseg.data.dataset import probe_image, read_image, read_trimap
from petseg.errors import PetsegError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = ["1", "L", "P", "RGB", "RGBA", "I;16", "LA", "CMYK", "I", "F"]


SCRATCH = Path(tempfile.gettempdir()) / f"petseg-fuzz-{os.getpid()}.jpg"  # rewritten each example


def _write(data: bytes) -> Path:
    SCRATCH.write_bytes(data)
    return SCRATCH


def _image_bytes(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes | None:
    rng = np.random.default_rng(seed)
    image = Image.new(mode, size)
    if mode in ("L", "P", "RGB", "RGBA", "LA", "CMYK", "1"):
        raw = rng.integers(0, 256, len(image.tobytes()), dtype=np.uint8).tobytes()
        image = Image.frombytes(mode, size, raw)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return None  # this format cannot store this mode; nothing to test
    return buffer.getvalue()


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    path = _write(data)
    for reader in (read_image, read_trimap, probe_image):
        try:
            reader(path)
        except PetsegError as err:
            assert str(path) in str(err)


@FUZZ
@given(
    mode=st.sampled_from(MODES),
    size=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]),
    cut=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_real_images_of_any_mode_and_size_or_cut_short(mode, size, fmt, cut, seed):
    data = _image_bytes(mode, size, fmt, seed)
    if data is None:
        return
    truncated = cut < 0.3
    path = _write(data[: int(len(data) * cut)] if truncated else data)
    try:
        image = read_image(path)
    except PetsegError as err:
        assert str(path) in str(err)
        return
    assert image.dtype == np.uint8 and image.shape == (size[1], size[0], 3)


@FUZZ
@given(
    values=st.lists(st.integers(0, 255), min_size=1, max_size=6),
    size=st.tuples(st.integers(1, 64), st.integers(1, 64)),
)
def test_trimaps_with_any_values(values, size):
    rng = np.random.default_rng(len(values))
    trimap = rng.choice(np.array(values, np.uint8), size=(size[1], size[0]))
    buffer = io.BytesIO()
    Image.fromarray(trimap).save(buffer, format="PNG")
    path = _write(buffer.getvalue())
    try:
        loaded = read_trimap(path)
    except PetsegError as err:
        assert set(np.unique(trimap).tolist()) - {1, 2, 3}
        assert str(path) in str(err) and "official trimaps hold 1, 2, 3" in str(err)
        return
    np.testing.assert_array_equal(loaded, trimap)
