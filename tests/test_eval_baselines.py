"""ZVC and EBPC (fmcodec.eval.baselines): bit-exact round trips and known stream sizes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fmcodec.eval import baselines as b

int8_vectors = hnp.arrays(np.int8, st.integers(1, 200),
                          elements=st.sampled_from([0, 0, 0, 1, -1, 2, 127, -128, 64, -7]))
int8_any = hnp.arrays(np.int8, st.integers(1, 200))


@settings(max_examples=150, deadline=None)
@given(st.one_of(int8_vectors, int8_any))
def test_ebpc_roundtrip(v):
    s = b.ebpc_encode_image(v)
    np.testing.assert_array_equal(b.ebpc_decode_image(s, v.size), v)


@settings(max_examples=150, deadline=None)
@given(st.one_of(int8_vectors, int8_any))
def test_zvc_roundtrip(v):
    s = b.zvc_encode_image(v)
    assert len(s) == -(-v.size // 8) + int(np.count_nonzero(v))
    np.testing.assert_array_equal(b.zvc_decode_image(s, v.size), v)


@pytest.mark.parametrize("fill", [0, 127, -128, 1, -1])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 33, 1000])
def test_constant_and_extremes(fill, n):
    v = np.full(n, fill, dtype=np.int8)
    for enc, dec in ((b.ebpc_encode_image, b.ebpc_decode_image),
                     (b.zvc_encode_image, b.zvc_decode_image)):
        np.testing.assert_array_equal(dec(enc(v), n), v)


def test_alternating_extremes():
    v = np.tile(np.array([127, -128], dtype=np.int8), 50)   # deltas of +-255: 9-bit planes
    np.testing.assert_array_equal(b.ebpc_decode_image(b.ebpc_encode_image(v), v.size), v)


def test_ebpc_known_sizes():
    # all zero: 1000 zeros = 62 runs of 16 + one of 8, 5 bits each; no BPC stream
    s = b.ebpc_encode_image(np.zeros(1000, dtype=np.int8))
    assert s.bpc == b"" and len(s.znz) == -(-63 * 5 // 8)
    # 8 equal non-zero words: base (8 bits) + all nine planes zero ('001' + 3 bits)
    s = b.ebpc_encode_image(np.full(8, 5, dtype=np.int8))
    assert len(s.znz) == 1 and len(s.bpc) == 2                 # 8 ZNZ bits; 14 BPC bits
    assert s.bpc == bytes([0b00000101, 0b00111100])
    # a ramp +1: deltas all 1 -> plane 0 is all ones, its DBX against plane 1 (zero) too
    v = np.arange(1, 9, dtype=np.int8)
    s = b.ebpc_encode_image(v)
    # base 8 + run of 8 zero planes (6 bits) + all-ones '00000' (5 bits) = 19 bits
    assert len(s.bpc) == 3


def test_tensor_api_and_sizes():
    rng = np.random.default_rng(0)
    x = (rng.integers(-20, 20, (3, 4, 5, 6)) * (rng.random((3, 4, 5, 6)) < 0.4)).astype(np.int8)
    z, e = b.zvc_encode(x), b.ebpc_encode(x)
    assert len(z) == len(e) == 3
    np.testing.assert_array_equal(b.zvc_decode(z, x.shape), x)
    np.testing.assert_array_equal(b.ebpc_decode(e, x.shape), x)
    assert b.coded_bytes(z) == sum(15 + np.count_nonzero(x[i]) for i in range(3))
    with pytest.raises(ValueError, match="int8"):
        b.zvc_encode(x.astype(np.int16))


def test_decoders_refuse_bad_streams():
    v = np.array([3, 0, 0, 5, 9, 0, -2, 1, 1, 7], dtype=np.int8)
    s = b.ebpc_encode_image(v)
    with pytest.raises(ValueError):
        b.ebpc_decode_image(b.EbpcStreams(s.znz, s.bpc[:-1]), v.size)
    with pytest.raises(ValueError):
        b.ebpc_decode_image(b.EbpcStreams(s.znz, s.bpc + b"\x80"), v.size)
    with pytest.raises(ValueError):
        b.zvc_decode_image(b.zvc_encode_image(v)[:-1], v.size)
    with pytest.raises(ValueError):
        b.zvc_decode_image(b"\x00", 9)
