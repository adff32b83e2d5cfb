"""The codec profile: every parameter a layer carries, as calibration produced it.

A profile is stored as a versioned JSON file with a SHA-256 checksum over its canonical form, is
consumed by the golden model, and is turned into the configuration write sequence the hardware
takes (`config_writes`). docs/FORMAT.md defines every field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "fmcodec-profile"
VERSION = 1

MODES = ("drop", "raw", "rice", "huffman")
MODE_ID = {m: i for i, m in enumerate(MODES)}
LAYOUTS = ("fixed", "compacted")
TRANSFORMS = ("identity", "wht", "dct", "pca")
DTYPES = {"int8": (np.int8, -128, 127), "uint8": (np.uint8, 0, 255),
          "int16": (np.int16, -32768, 32767)}
DTYPE_CODE = {"int8": 0, "uint8": 1, "int16": 2}

HUFF_SYMBOLS = 64  # 0..62 zigzag values, 63 escape
HUFF_ESC = 63
HUFF_MAX_LEN = 16
MAX_CLASSES = 16
Y_BITS = 24  # transform output and dequantizer output width (sclamp to 24 bits)


class ProfileError(ValueError):
    """A profile file or object that is malformed, inconsistent or does not fit the data."""


@dataclass
class ClassParams:
    mode: str
    zflag: bool = False
    bits: int = 8
    qmul: int = 1
    qshift: int = 0
    dqmul: int = 1
    dqshift: int = 0
    k: int = 0
    esc: int = 16
    lengths: list[int] = field(default_factory=lambda: [0] * HUFF_SYMBOLS)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode, "zflag": bool(self.zflag), "bits": int(self.bits),
            "qmul": int(self.qmul), "qshift": int(self.qshift),
            "dqmul": int(self.dqmul), "dqshift": int(self.dqshift),
            "k": int(self.k), "esc": int(self.esc), "lengths": [int(v) for v in self.lengths],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassParams:
        try:
            return cls(mode=str(d["mode"]), zflag=bool(d["zflag"]), bits=int(d["bits"]),
                       qmul=int(d["qmul"]), qshift=int(d["qshift"]), dqmul=int(d["dqmul"]),
                       dqshift=int(d["dqshift"]), k=int(d["k"]), esc=int(d["esc"]),
                       lengths=[int(v) for v in d["lengths"]])
        except (KeyError, TypeError, ValueError) as e:
            raise ProfileError(f"malformed class entry: {e!r}") from None

    def validate(self, index: int) -> None:
        where = f"class {index}"
        if self.mode not in MODES:
            raise ProfileError(f"{where}: unknown mode {self.mode!r} (expected one of {MODES})")
        if not 1 <= self.bits <= 16:
            raise ProfileError(f"{where}: bits {self.bits} outside 1..16")
        if not (0 <= self.qmul < 1 << 16 and 0 <= self.dqmul < 1 << 16):
            raise ProfileError(f"{where}: quantizer multipliers must be in 0..65535")
        if not (0 <= self.qshift <= 47 and 0 <= self.dqshift <= 47):
            raise ProfileError(f"{where}: quantizer shifts must be in 0..47")
        if self.mode == "drop" and self.zflag:
            raise ProfileError(f"{where}: a dropped class cannot carry a zero flag")
        if self.mode == "rice":
            if not 0 <= self.k <= 15:
                raise ProfileError(f"{where}: rice k {self.k} outside 0..15")
            if not 1 <= self.esc <= 16 or self.esc + self.bits > 32:
                raise ProfileError(f"{where}: rice esc {self.esc} must be 1..16 with esc+bits<=32")
        if self.mode == "huffman":
            ln = self.lengths
            if len(ln) != HUFF_SYMBOLS or any(not 0 <= v <= HUFF_MAX_LEN for v in ln):
                raise ProfileError(f"{where}: huffman needs {HUFF_SYMBOLS} lengths in 0..16")
            if ln[HUFF_ESC] == 0:
                raise ProfileError(f"{where}: huffman escape symbol needs a code")
            if sum(1 << (HUFF_MAX_LEN - v) for v in ln if v) > 1 << HUFF_MAX_LEN:
                raise ProfileError(f"{where}: huffman lengths violate the Kraft inequality")


@dataclass
class Profile:
    channels: int
    group: int
    transform: str
    frac_bits: int
    matrix: np.ndarray          # (G, N, N) int64, row = output component, column = input channel
    offsets: np.ndarray         # (C,) int64
    class_map: np.ndarray       # (C,) int64, component -> class
    classes: list[ClassParams]
    tile_pixels: int
    layout: str = "fixed"
    dtype: str = "int8"
    relu: bool = False
    calibration: dict = field(default_factory=dict)   # informational: how it was made

    # -- derived views -----------------------------------------------------------------------
    @property
    def groups(self) -> int:
        return self.channels // self.group

    def class_array(self, name: str) -> np.ndarray:
        """Per-component array of a class field, e.g. class_array("bits") -> (C,) int64."""
        if name == "mode":
            vals = [MODE_ID[c.mode] for c in self.classes]
        else:
            vals = [int(getattr(c, name)) for c in self.classes]
        return np.asarray(vals, dtype=np.int64)[self.class_map]

    @property
    def raw_bits_per_pixel(self) -> int:
        comp_bits = self.class_array("bits")
        coded = self.class_array("mode") != MODE_ID["drop"]
        return int(comp_bits[coded].sum())

    def raw_words(self, pixels: int) -> int:
        return -(-pixels * self.raw_bits_per_pixel // 64)

    @property
    def dtype_range(self) -> tuple[int, int]:
        _, lo, hi = DTYPES[self.dtype]
        return lo, hi

    # -- serialization -----------------------------------------------------------------------
    def body(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION,
            "channels": int(self.channels), "group": int(self.group),
            "transform": self.transform, "frac_bits": int(self.frac_bits),
            "matrix": np.asarray(self.matrix, dtype=np.int64).tolist(),
            "offsets": np.asarray(self.offsets, dtype=np.int64).tolist(),
            "class_map": np.asarray(self.class_map, dtype=np.int64).tolist(),
            "classes": [c.to_dict() for c in self.classes],
            "tile_pixels": int(self.tile_pixels), "layout": self.layout, "dtype": self.dtype,
            "relu": bool(self.relu), "calibration": self.calibration,
        }

    @staticmethod
    def _digest(body: dict) -> str:
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(canon).hexdigest()

    @property
    def checksum(self) -> str:
        return self._digest(self.body())

    @property
    def profile_id(self) -> int:
        """First 4 bytes of the checksum as a u32: what a container records of its profile."""
        return int(self.checksum.split(":")[1][:8], 16)

    def to_json(self) -> str:
        body = self.body()
        body["checksum"] = self._digest(body)
        return json.dumps(body, separators=(",", ":"))

    def save(self, path: str | Path) -> None:
        """Write atomically: a failed write never leaves a half profile behind."""
        self.validate()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_dict(cls, d: dict, verify: bool = True) -> Profile:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ProfileError("not an fmcodec profile (missing 'format': 'fmcodec-profile')")
        if d.get("version") != VERSION:
            raise ProfileError(f"profile version {d.get('version')!r} not supported "
                               f"(this fmcodec reads version {VERSION})")
        body = {k: v for k, v in d.items() if k != "checksum"}
        if verify:
            if "checksum" not in d:
                raise ProfileError("profile has no checksum")
            if cls._digest(body) != d["checksum"]:
                raise ProfileError("profile checksum mismatch: the file was modified or corrupted")
        try:
            p = cls(channels=int(d["channels"]), group=int(d["group"]),
                    transform=str(d["transform"]), frac_bits=int(d["frac_bits"]),
                    matrix=np.asarray(d["matrix"], dtype=np.int64),
                    offsets=np.asarray(d["offsets"], dtype=np.int64),
                    class_map=np.asarray(d["class_map"], dtype=np.int64),
                    classes=[ClassParams.from_dict(c) for c in d["classes"]],
                    tile_pixels=int(d["tile_pixels"]), layout=str(d["layout"]),
                    dtype=str(d["dtype"]), relu=bool(d.get("relu", False)),
                    calibration=dict(d.get("calibration", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ProfileError(f"malformed profile: {e!r}") from None
        p.validate()
        return p

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except OSError as e:
            raise ProfileError(f"cannot read profile {path}: {e.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ProfileError(f"profile {path} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def validate(self) -> None:
        C, N = self.channels, self.group
        if C < 1 or N < 1 or C % N:
            raise ProfileError(f"group size {N} must divide the channel count {C}")
        if self.transform not in TRANSFORMS:
            raise ProfileError(f"unknown transform {self.transform!r}")
        if not 0 <= self.frac_bits <= 16:
            raise ProfileError(f"frac_bits {self.frac_bits} outside 0..16")
        if self.matrix.shape != (C // N, N, N):
            raise ProfileError(f"matrix shape {self.matrix.shape} != {(C // N, N, N)}")
        if np.abs(self.matrix).max(initial=0) >= 1 << 17:
            raise ProfileError("transform coefficients must fit 18-bit signed")
        if self.offsets.shape != (C,) or self.class_map.shape != (C,):
            raise ProfileError("offsets and class_map need one entry per channel")
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise ProfileError(f"1..{MAX_CLASSES} classes needed, got {len(self.classes)}")
        if self.class_map.min() < 0 or self.class_map.max() >= len(self.classes):
            raise ProfileError("class_map refers to a class that does not exist")
        if self.tile_pixels < 1 or self.tile_pixels >= 1 << 16:
            raise ProfileError(f"tile_pixels {self.tile_pixels} outside 1..65535")
        if self.layout not in LAYOUTS:
            raise ProfileError(f"unknown layout {self.layout!r} (expected one of {LAYOUTS})")
        if self.dtype not in DTYPES:
            raise ProfileError(f"unknown dtype {self.dtype!r} (expected one of {tuple(DTYPES)})")
        for i, c in enumerate(self.classes):
            c.validate(i)
        if self.raw_words(self.tile_pixels) >= 1 << 20:
            raise ProfileError("a raw tile would not fit the 20-bit header length field")


# -- configuration write sequence ------------------------------------------------------------
REGION_COEFF, REGION_OFFSET, REGION_CLASSMAP, REGION_CLASS = 0, 1, 2, 3
REGION_HUFF_ENC, REGION_HUFF_DEC, REGION_HUFF_SYM, REGION_GLOBAL = 4, 5, 6, 7
CLASS_FIELDS = ("mode", "zflag", "bits", "qmul", "qshift", "dqmul", "dqshift", "k_esc")
GLOBAL_FIELDS = ("channels", "group", "frac_bits", "tile_pixels", "classes", "relu", "layout",
                 "raw_bits_per_pixel", "image_pixels")


def config_address(region: int, index: int) -> int:
    return (region << 16) | index


def config_writes(profile: Profile, image_pixels: int | None = None) -> np.ndarray:
    """The (address, data) pairs that program the hardware for this profile, shape (M, 2) uint32.

    Order: coefficients, offsets, class map, class parameters, Huffman tables, global registers;
    the write of global index 7 comes last (docs/FORMAT.md, "Configuration writes").
    `image_pixels` (H*W of the layer) defaults to tile_pixels, i.e. one tile per image.
    """
    from golden.huffman import canonical_codes, decoder_tables

    p = profile
    p.validate()
    w: list[tuple[int, int]] = []
    mask32 = 0xFFFFFFFF
    for idx, v in enumerate(p.matrix.reshape(-1)):
        w.append((config_address(REGION_COEFF, idx), int(v) & mask32))
    for c, v in enumerate(p.offsets):
        w.append((config_address(REGION_OFFSET, c), int(v) & mask32))
    for c, v in enumerate(p.class_map):
        w.append((config_address(REGION_CLASSMAP, c), int(v)))
    for ci, cp in enumerate(p.classes):
        vals = (MODE_ID[cp.mode], int(cp.zflag), cp.bits, cp.qmul, cp.qshift, cp.dqmul,
                cp.dqshift, cp.k | (cp.esc << 8))
        for f, v in enumerate(vals):
            w.append((config_address(REGION_CLASS, ci * 8 + f), int(v)))
    for ci, cp in enumerate(p.classes):
        if cp.mode != "huffman":
            continue
        codes = canonical_codes(cp.lengths)
        for s, (code_rev, length) in enumerate(codes):
            w.append((config_address(REGION_HUFF_ENC, ci * 64 + s), code_rev | (length << 16)))
        first, count, base, symbols = decoder_tables(cp.lengths)
        for ln in range(1, HUFF_MAX_LEN + 1):
            w.append((config_address(REGION_HUFF_DEC, ci * 16 + ln - 1),
                      first[ln] | (count[ln] << 16) | (base[ln] << 24)))
        for i, s in enumerate(symbols):
            w.append((config_address(REGION_HUFF_SYM, ci * 64 + i), int(s)))
    if image_pixels is None:
        image_pixels = p.tile_pixels
    if not 1 <= image_pixels < 1 << 32:
        raise ProfileError(f"image_pixels {image_pixels} out of range")
    glob = (p.channels, p.group, p.frac_bits, p.tile_pixels, len(p.classes), int(p.relu),
            LAYOUTS.index(p.layout), p.raw_bits_per_pixel, image_pixels)
    for i in (0, 1, 2, 3, 4, 5, 6, 8, 7):
        w.append((config_address(REGION_GLOBAL, i), int(glob[i])))
    return np.asarray(w, dtype=np.uint32).reshape(-1, 2)
