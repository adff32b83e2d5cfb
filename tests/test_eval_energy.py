"""DRAM traffic and energy arithmetic (fmcodec.eval.energy)."""

import pytest

from fmcodec.eval import energy

NAMES = ["conv1",
         "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2",
         "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample",
         "layer2.1.conv1", "layer2.1.conv2",
         "layer3.0.conv1", "layer3.0.conv2", "layer3.0.downsample",
         "layer3.1.conv1", "layer3.1.conv2",
         "layer4.0.conv1", "layer4.0.conv2", "layer4.0.downsample",
         "layer4.1.conv1", "layer4.1.conv2"]


def test_consumers():
    r = energy.consumers(NAMES)
    assert r["conv1"] == 2 and r["layer1.0.conv2"] == 2 and r["layer3.1.conv2"] == 2
    assert r["layer4.1.conv2"] == 1
    assert r["layer2.0.conv1"] == 1 and r["layer2.0.downsample"] == 1
    assert sum(r.values()) == 8 * 2 + 1 + 8 + 3   # block outputs, last one, conv1s, downsamples
    with pytest.raises(ValueError):
        energy.consumers(["fc"])


def test_energy_by_hand():
    reads = {"a.conv1": 1, "conv1": 2}
    bits = {"conv1": 1000.0, "a.conv1": 10.0}
    w, r = energy.traffic_bits(bits, reads)
    assert (w, r) == (1010.0, 2010.0)
    assert energy.energy_pj(bits, reads, energy.DDR3) == pytest.approx(
        1010 * 63.3 + 2010 * 77.4)
    assert energy.energy_pj(bits, reads, energy.LPDDR4) == pytest.approx(3020 * 14.0)


def test_report_reduction():
    reads = energy.consumers(NAMES)
    int8 = {n: 8.0 * 100 for n in NAMES}
    half = {n: 4.0 * 100 for n in NAMES}
    rep = energy.report(half, reads, int8)
    assert rep["energy_reduction_ddr3"] == pytest.approx(0.5)
    assert rep["energy_reduction_lpddr4"] == pytest.approx(0.5)
    assert rep["dram_bytes_written"] == pytest.approx(20 * 400 / 8)
    assert rep["dram_bytes"] == pytest.approx((20 + 28) * 400 / 8)
    same = energy.report(int8, reads, int8)
    assert same["energy_reduction_ddr3"] == pytest.approx(0.0)
    # one layer compressed: the reduction weighs by its reads and the read/write energies
    one = dict(int8, conv1=0.0)
    r1 = energy.report(one, reads, int8)
    e8 = 20 * 800 * 63.3 + 28 * 800 * 77.4
    assert r1["energy_reduction_ddr3"] == pytest.approx((800 * 63.3 + 2 * 800 * 77.4) / e8)
