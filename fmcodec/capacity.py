"""What one hardware build can run: the elaboration parameters of a lane pair and the profile check.

A profile (golden/profile.py) is valid for the golden model whenever `Profile.validate` passes.
A hardware build is narrower: its transform group N, table depths (max_channels), tile buffers
(max_tile_words), coefficient and offset widths and reconstruction dtype are fixed when the
Verilog is generated. The lanes flag a profile that does not suit them (`error`/`status` after
the configuration writes), but by then the tensor is lost; `check_profile` says the same thing
before anything is sent, in words a user can act on. docs/FORMAT.md, "Hardware build limits",
is the definition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from golden.profile import MAX_CLASSES, Profile
from hw.bit_unpacker import RAW_BPP_BITS
from hw.compact_decoder import COEFF_BITS as COMPACT_COEFF_BITS
from hw.framing import COMP_BITS
from hw.tile_walker import TILE_PIXEL_BITS

# hw/ and golden/ never import each other; this check needs both, so it lives here, and takes
# the counter widths from the hardware blocks that have them.
COMP_LIMIT = 1 << COMP_BITS
TILE_PIXEL_LIMIT = 1 << TILE_PIXEL_BITS
RAW_BPP_LIMIT = 1 << RAW_BPP_BITS
# The compact decoder lane holds coefficients and offsets in one DSP operand's width.
COMPACT_COEFF_WIDTH = COMPACT_OFFSET_WIDTH = COMPACT_COEFF_BITS


class CapacityError(ValueError):
    """The profile (or tensor) does not fit the hardware build; the message lists every reason."""


@dataclass(frozen=True)
class LaneBuild:
    """Elaboration parameters shared by an encoder lane and a decoder lane.

    Defaults are those of hw/encoder_lane.py and hw/decoder_lane.py.
    """

    group: int = 8
    max_channels: int = 512
    max_tile_words: int = 512
    max_classes: int = MAX_CLASSES
    dtype: str = "int8"
    coeff_width: int = 18
    offset_width: int = 17

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())

    @classmethod
    def of_kind(cls, kind: str = "full", **params) -> LaneBuild:
        """The build of a lane kind (hw/board_top.py `LANE_KINDS`): "full" (hw/encoder_lane.py,
        hw/decoder_lane.py) or "compact" (hw/compact_encoder.py, hw/compact_decoder.py, whose
        decoder holds coefficients and offsets in 16 bits signed)."""
        if kind == "compact":
            params = {"coeff_width": COMPACT_COEFF_WIDTH, "offset_width": COMPACT_OFFSET_WIDTH,
                      **params}
        elif kind != "full":
            raise ValueError(f"unknown lane kind {kind!r} (expected full or compact)")
        return cls(**params)


def _fits_signed(values: np.ndarray, width: int) -> bool:
    v = np.asarray(values, dtype=np.int64)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return bool(v.size == 0 or (v.min() >= lo and v.max() <= hi))


def problems(profile: Profile, build: LaneBuild, image_pixels: int | None = None) -> list[str]:
    """Every reason `profile` cannot run on `build` (empty when it can)."""
    p = profile
    out: list[str] = []
    if p.group != build.group:
        out.append(f"transform group N={p.group}, the build has N={build.group}")
    if p.channels > min(build.max_channels, COMP_LIMIT):
        out.append(f"{p.channels} channels, the build holds at most {build.max_channels}")
    if len(p.classes) > build.max_classes:
        out.append(f"{len(p.classes)} classes, the build holds at most {build.max_classes}")
    if p.dtype != build.dtype:
        out.append(f"dtype {p.dtype}, the build reconstructs {build.dtype}")
    if not _fits_signed(p.matrix, build.coeff_width):
        out.append(f"transform coefficients need more than {build.coeff_width} bits")
    if not _fits_signed(p.offsets, build.offset_width):
        out.append(f"channel offsets need more than {build.offset_width} bits")
    if p.tile_pixels >= TILE_PIXEL_LIMIT:
        out.append(f"tile of {p.tile_pixels} pixels, the build counts fewer than "
                   f"{TILE_PIXEL_LIMIT}")
    if p.raw_bits_per_pixel >= RAW_BPP_LIMIT:
        out.append(f"{p.raw_bits_per_pixel} raw bits per pixel, the build counts fewer than "
                   f"{RAW_BPP_LIMIT}")
    words = p.raw_words(p.tile_pixels)
    if words > build.max_tile_words:
        out.append(f"a raw tile is {words} words, the tile buffers hold {build.max_tile_words} "
                   f"(use tiles of at most "
                   f"{build.max_tile_words * 64 // max(p.raw_bits_per_pixel, 1)} pixels)")
    if image_pixels is not None and not 1 <= image_pixels < 1 << 32:
        out.append(f"{image_pixels} pixels per image, the build counts 1..2^32-1")
    return out


def check_profile(profile: Profile, build: LaneBuild, image_pixels: int | None = None) -> None:
    """Raise CapacityError naming every limit of `build` that `profile` exceeds."""
    found = problems(profile, build, image_pixels)
    if found:
        raise CapacityError("profile does not fit the hardware build (" + build.describe()
                            + "): " + "; ".join(found))
