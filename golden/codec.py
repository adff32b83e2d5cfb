"""The whole golden codec: tensor -> .fmc bytes -> reconstructed tensor.

Write path: pixels (golden.transform.to_pixels) -> forward transform -> quantizer -> container
(tiles, VLC, DRAM image, file). Read path: container -> symbols -> dequantizer -> inverse
transform (with the profile's ReLU) -> tensor of the profile's dtype and the original shape.
"""

from __future__ import annotations

import numpy as np

from golden.container import (
    HEADER_BYTES,
    EncodedTensor,
    encode_q,
    parse_file_header,
    read_file_bytes,
    to_file_bytes,
)
from golden.profile import DTYPES, Profile
from golden.quantizer import dequantize, quantize
from golden.transform import forward, from_pixels, inverse, to_pixels


def _check_tensor(x, profile: Profile) -> np.ndarray:
    x = np.asarray(x)
    want = np.dtype(DTYPES[profile.dtype][0])
    if x.dtype != want:
        raise ValueError(f"tensor dtype {x.dtype} does not match the profile's {want}")
    if x.ndim not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) tensor, got shape {x.shape}")
    if x.shape[-3] != profile.channels:
        raise ValueError(f"tensor has {x.shape[-3]} channels, the profile {profile.channels}")
    return x


def quantize_tensor(x, profile: Profile) -> np.ndarray:
    """(P, C) quantized symbols of a tensor, pixels in raster order."""
    x = _check_tensor(x, profile)
    return quantize(forward(to_pixels(x), profile), profile)


def encode_tensor(x, profile: Profile) -> EncodedTensor:
    """A tensor's DRAM image and per-tile facts (modes, lengths, bytes moved)."""
    x = _check_tensor(x, profile)
    return encode_q(quantize_tensor(x, profile), x.shape, profile)


def encode(x, profile: Profile, embed_profile: bool = True) -> bytes:
    """A (C, H, W) or (N, C, H, W) tensor of the profile's dtype -> .fmc file bytes."""
    return to_file_bytes(encode_tensor(x, profile), profile, embed_profile=embed_profile)


def reconstruct(q, shape, profile: Profile) -> np.ndarray:
    """Symbols (P, C) -> the reconstructed tensor of `shape`: dequantize, inverse transform."""
    pixels = inverse(dequantize(q, profile), profile)
    return from_pixels(pixels, shape, profile.dtype)


def decode_file(data, profile: Profile | None = None):
    """.fmc bytes -> (header, profile, reconstructed tensor)."""
    hdr, profile, q = read_file_bytes(data, profile)
    return hdr, profile, reconstruct(q, hdr.tensor_shape, profile)


def decode(data, profile: Profile | None = None) -> np.ndarray:
    """.fmc bytes -> the reconstructed tensor (the profile embedded in the file when none given)."""
    return decode_file(data, profile)[2]


def container_bytes(data) -> int:
    """Bytes of the coded tensor in a .fmc file: the 64-byte header and the DRAM image, without
    an embedded profile (a layer's profile is configuration, sent once, not per tensor)."""
    return HEADER_BYTES + parse_file_header(data).image_bytes
