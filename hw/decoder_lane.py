"""Decoder lane: container tiles in, reconstructed values out (the read path of one lane).

    BitUnpacker -> VlcDecoder -> Dequantizer -> RegisterFifo(2) -> InverseTransform (+ ReLU)

Stream contract
---------------
- `i`: `container_word()` (hw/bit_unpacker.py): each tile's header and payload words as the DRAM
  reader fetches them, `last` on the final word it delivers for the tile; lane p of P
  (`tile_first` = p, `tile_step` = P; hw/multi_lane.py) gets only the tensor's tiles p, p + P, ...
- `o`: `framed(out_width)` (hw/framing.py): the reconstruction, one channel value per beat in
  channel order, `comp` = channel, `tile_last` on the tile's last value; `out_width` 8 (int8),
  9 (uint8) or 16 (int16). ReLU (global 5) clamps at zero.
- `cfg`: the profile's configuration writes, broadcast; the commit (global 7) starts a tensor.
- `status`: the unpacker's header/CRC errors and the decoder's code errors (sticky since the
  commit), OR-ed into `error`. A bad tile still yields exactly its pixel count of values.

Throughput one value per clock sustained while words arrive; never more values than the tiles
hold, never a hang on corrupted words (bounded clocks per tile; see the blocks' docstrings).
"""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bit_unpacker import BitUnpacker, container_word, unpacker_status
from hw.config import config_signature
from hw.framing import framed
from hw.quantizer import Dequantizer
from hw.register_fifo import RegisterFifo
from hw.transform import InverseTransform
from hw.vlc_decoder import VlcDecoder, decoder_status


def lane_status() -> data.StructLayout:
    return data.StructLayout({
        "error": 1,
        "unpacker": unpacker_status(),
        "decoder": decoder_status(),
        "transform": 1,
    })


class DecoderLane(wiring.Component):
    """Container words in, reconstructed channel values out (see the module docstring).

    Parameters: `dtype` of the reconstruction ("int8", "uint8", "int16"), `group` (transform N),
    `max_channels`, `tile_first`/`tile_step` (the tiles of lane p of P: p, P).
    """

    def __init__(self, dtype: str = "int8", group: int = 8, max_channels: int = 512,
                 tile_first: int = 0, tile_step: int = 1):
        self.dtype = dtype
        self.group = group
        self.max_channels = max_channels
        self.tile_first = tile_first
        self.tile_step = tile_step
        self._inverse = InverseTransform(dtype=dtype, group=group, max_channels=max_channels)
        out_width = self._inverse.o.payload.data.shape().width
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(container_word())),
            "o": Out(stream.Signature(framed(out_width))),
            "status": Out(lane_status()),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpacker = unpacker = BitUnpacker(self.tile_first, self.tile_step)
        m.submodules.decoder = decoder = VlcDecoder(max_channels=self.max_channels,
                                                    tile_first=self.tile_first,
                                                    tile_step=self.tile_step)
        m.submodules.dequantizer = dequantizer = Dequantizer(max_channels=self.max_channels)
        m.submodules.inverse = inverse = self._inverse
        blocks = [unpacker, decoder, dequantizer, inverse]

        for b in blocks:  # configuration is a broadcast: every block's port is always ready
            m.d.comb += [b.cfg.valid.eq(self.cfg.valid), b.cfg.payload.eq(self.cfg.payload)]

        # The inverse transform's ready depends on its output slots; two registers between it
        # and the dequantizer end that path there instead of running on through the
        # dequantizer's stages into its memories' enables.
        m.submodules.dq_fifo = dq_fifo = RegisterFifo(dequantizer.o.payload.shape(), depth=2)
        wiring.connect(m, wiring.flipped(self.i), unpacker.i)
        for a, b in zip(blocks, blocks[1:], strict=False):
            if b is inverse:
                wiring.connect(m, a.o, dq_fifo.i)
                a = dq_fifo
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, inverse.o, wiring.flipped(self.o))

        m.d.comb += [
            self.status.unpacker.eq(unpacker.status),
            self.status.decoder.eq(decoder.status),
            self.status.transform.eq(inverse.error),
            self.status.error.eq(unpacker.status.error | decoder.status.error | inverse.error),
        ]
        return m
