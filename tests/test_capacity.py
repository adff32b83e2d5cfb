"""fmcodec/capacity.py: a profile is checked against a hardware build before anything is sent."""

import dataclasses

import numpy as np
import pytest

from fmcodec.capacity import CapacityError, LaneBuild, check_profile, problems
from golden.calibrate import calibrate
from golden.synthetic import correlated_tensor


@pytest.fixture(scope="module")
def profile():
    x = correlated_tensor(channels=32, height=8, width=8, batch=2, seed=3)
    return calibrate(x, group=8, bits=8, tile_pixels=8)


def test_default_build_takes_a_calibrated_profile(profile):
    assert problems(profile, LaneBuild()) == []
    check_profile(profile, LaneBuild(), image_pixels=64)


@pytest.mark.parametrize("build, words", [
    (LaneBuild(group=16), "group N=8, the build has N=16"),
    (LaneBuild(max_channels=16), "32 channels, the build holds at most 16"),
    (LaneBuild(max_classes=1), "the build holds at most 1"),
    (LaneBuild(dtype="int16"), "dtype int8, the build reconstructs int16"),
    (LaneBuild(max_tile_words=1), "the tile buffers hold 1"),
    (LaneBuild(coeff_width=8), "coefficients need more than 8 bits"),
])
def test_each_limit_is_named(profile, build, words):
    found = problems(profile, build)
    assert len(found) == 1 and words in found[0], found
    with pytest.raises(CapacityError, match=words):
        check_profile(profile, build)


def test_offsets_wider_than_the_build(profile):
    wide = dataclasses.replace(profile, offsets=np.full(profile.channels, 1 << 16))
    assert problems(wide, LaneBuild(offset_width=17)) == [
        "channel offsets need more than 17 bits"]
    assert problems(wide, LaneBuild(offset_width=18)) == []


def test_every_problem_is_reported_at_once(profile):
    with pytest.raises(CapacityError) as e:
        check_profile(profile, LaneBuild(group=16, max_channels=16), image_pixels=0)
    msg = str(e.value)
    assert "N=16" in msg and "at most 16" in msg and "pixels per image" in msg


def test_tile_buffer_advice_fits(profile):
    """The tile size the message suggests does fit the buffers it names."""
    build = LaneBuild(max_tile_words=2)
    (msg,) = problems(profile, build)
    suggested = int(msg.rsplit("at most ", 1)[1].split()[0])
    smaller = dataclasses.replace(profile, tile_pixels=suggested)
    assert problems(smaller, build) == []
    assert problems(dataclasses.replace(profile, tile_pixels=suggested + 1), build)


def test_compact_lanes_hold_16_bit_coefficients(profile):
    """The compact decoder keeps coefficients and offsets in 16 bits (hw/compact_decoder.py):
    a profile with F = 16 (coefficients up to 2^16) fits the full lanes, not the compact ones."""
    compact = LaneBuild.of_kind("compact")
    assert (compact.coeff_width, compact.offset_width) == (16, 16)
    assert problems(profile, compact) == []
    wide = dataclasses.replace(profile, frac_bits=16,
                               matrix=np.full_like(profile.matrix, 1 << 15))
    assert problems(wide, LaneBuild.of_kind("full")) == []
    (found,) = problems(wide, compact)
    assert "coefficients need more than 16 bits" in found
    with pytest.raises(ValueError, match="unknown lane kind"):
        LaneBuild.of_kind("tiny")
