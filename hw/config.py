"""Run-time configuration port shared by every codec block.

One `ConfigSignature` stream (20-bit address, 32-bit data, docs/FORMAT.md "Configuration writes")
is broadcast to all blocks of a lane; each block keeps the regions it needs in its own registers or
memories and ignores the rest. Blocks accept a write every clock (the port is always ready), so a
lane broadcasts without arbitration.

Mirrors golden/profile.py (`config_writes`); the region numbers here must equal those there.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream

ADDR_BITS = 20
DATA_BITS = 32

REGION_COEFF = 0
REGION_OFFSET = 1
REGION_CLASSMAP = 2
REGION_CLASS = 3
REGION_HUFF_ENC = 4
REGION_HUFF_DEC = 5
REGION_HUFF_SYM = 6
REGION_GLOBAL = 7

# Fields of REGION_CLASS, index = class * 8 + field.
CLASS_MODE, CLASS_ZFLAG, CLASS_BITS, CLASS_QMUL = 0, 1, 2, 3
CLASS_QSHIFT, CLASS_DQMUL, CLASS_DQSHIFT, CLASS_K_ESC = 4, 5, 6, 7

# Indices of REGION_GLOBAL.
GLOBAL_CHANNELS, GLOBAL_GROUP, GLOBAL_FRAC_BITS, GLOBAL_TILE_PIXELS = 0, 1, 2, 3
GLOBAL_CLASSES, GLOBAL_RELU, GLOBAL_LAYOUT, GLOBAL_COMMIT, GLOBAL_IMAGE_PIXELS = 4, 5, 6, 7, 8
GLOBAL_RAW_BITS = GLOBAL_COMMIT  # index 7 carries raw bits per pixel and commits the config

MODE_DROP, MODE_RAW, MODE_RICE, MODE_HUFFMAN = 0, 1, 2, 3

ConfigWrite = data.StructLayout({
    "addr": ADDR_BITS,
    "data": DATA_BITS,
})


def config_signature():
    """The configuration stream as seen by a block (use `.flip()` on the block's side)."""
    return stream.Signature(ConfigWrite, always_ready=True)


def region(addr):
    """Region field of a configuration address (an Amaranth value)."""
    return addr[16:20]


def index(addr):
    """Index field of a configuration address (an Amaranth value)."""
    return addr[0:16]


def is_commit(cfg):
    """The commit write (global 7) is on `cfg` in this clock (an Amaranth value)."""
    return cfg.valid & (region(cfg.p.addr) == REGION_GLOBAL) & (index(cfg.p.addr) == GLOBAL_COMMIT)


def restart_after_commit(m: Module, cfg) -> Signal:
    """A flip-flop that is 1 in the clock after the commit write. A block resets on it rather
    than on the write, so the address decode ends at this flip-flop (synthesis merges the blocks'
    identical ones) instead of running on into every block's counters. What a block takes in the
    commit's clock belongs to the tensor before (or is flushed, as the block's docstring says);
    in the restart's clock a block takes nothing that the restart would lose."""
    restart = Signal()
    m.d.sync += restart.eq(is_commit(cfg))
    return restart
