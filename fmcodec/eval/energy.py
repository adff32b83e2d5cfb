"""DRAM traffic and energy of the feature maps of one inference.

Traffic model: every DRAM boundary tensor (``fmcodec.eval.activations``) is written once and read
once per consumer. In ResNet-18 (torchvision topology):

- the stem output (``conv1``) and every block output (``layerX.Y.conv2``) feed the next block's
  ``conv1`` and its identity path (the residual add, or the ``downsample`` conv): 2 reads; the last
  block output feeds only the average pool: 1 read;
- a block's ``conv1`` output feeds its ``conv2``: 1 read;
- a ``downsample`` output feeds the residual add: 1 read.

The same counts are used in both placements (``pre``: the reader applies ReLU, max pool and the
residual add; ``post``: the tensor is what the next layer reads). The network input, the weights
and the logits are not feature maps and are not counted.

Energy per bit moved, (read, write) in pJ/bit:

- DDR3: 77.4 read, 63.3 write, the constants of the reference code of Chmiel et al., "Feature Map
  Transform Coding for Energy-Efficient CNN Inference", IJCNN 2020 (arXiv 1905.10830).
- LPDDR4: 14.0 pJ/bit for both, the access energy of a 32 Gb single-die-package LPDDR4 device at
  3.2 Gb/s per pin from H. Ha, "Understanding and Improving the Energy Efficiency of DRAM",
  PhD thesis, Stanford University, 2018 (https://stacks.stanford.edu/file/yp843xn4828/
  Heonjae_Thesis-augmented.pdf), as tabulated in github.com/Dongyunkam/DRAM_info. The source
  gives one access energy; it is used for reads and writes alike.

Only the energy proportional to bits moved is modelled (no activate/precharge overfetch, refresh or
background power), so reductions against int8 equal the reduction in weighted bits moved.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DramModel:
    name: str
    read_pj_per_bit: float
    write_pj_per_bit: float
    source: str


DDR3 = DramModel("DDR3", 77.4, 63.3,
                 "Chmiel et al., IJCNN 2020 (arXiv 1905.10830), reference code constants")
LPDDR4 = DramModel("LPDDR4", 14.0, 14.0,
                   "H. Ha, Understanding and Improving the Energy Efficiency of DRAM, PhD thesis, "
                   "Stanford University, 2018: 32 Gb LPDDR4 (single-die package), 3.2 Gb/s/pin")
MODELS = (DDR3, LPDDR4)


def consumers(names: list[str]) -> dict[str, int]:
    """Reads per inference of each boundary tensor, for the ResNet-18 boundary names in forward
    order (``activations.boundary_names``)."""
    kinds = (".conv1", ".conv2", ".downsample")
    bad = [n for n in names if not (n == "conv1" or n.endswith(kinds))]
    if bad or not names:
        raise ValueError(f"not ResNet-18 boundary names: {bad or names!r}")
    outputs = [n for n in names if n == "conv1" or n.endswith(".conv2")]
    return {n: (1 if n == outputs[-1] else 2) if n in outputs else 1 for n in names}


def traffic_bits(bits: dict[str, float], reads: dict[str, int]) -> tuple[float, float]:
    """(bits written, bits read) per inference from the coded bits of each tensor (one image)."""
    written = float(sum(bits.values()))
    read = float(sum(b * reads[n] for n, b in bits.items()))
    return written, read


def energy_pj(bits: dict[str, float], reads: dict[str, int], model: DramModel) -> float:
    """Feature-map DRAM energy of one inference in pJ."""
    w, r = traffic_bits(bits, reads)
    return w * model.write_pj_per_bit + r * model.read_pj_per_bit


def report(bits: dict[str, float], reads: dict[str, int],
           int8_bits: dict[str, float]) -> dict:
    """DRAM bytes and energy per inference, and the reduction against the int8 network."""
    w, r = traffic_bits(bits, reads)
    out = {"dram_bytes_written": w / 8, "dram_bytes_read": r / 8, "dram_bytes": (w + r) / 8}
    for m in MODELS:
        e = energy_pj(bits, reads, m)
        e8 = energy_pj(int8_bits, reads, m)
        out[f"energy_uj_{m.name.lower()}"] = e * 1e-6
        out[f"energy_reduction_{m.name.lower()}"] = 1 - e / e8 if e8 else None
    return out
