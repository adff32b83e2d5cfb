"""Encoder lane: conv-engine values in, container tiles out (the write path of one lane).

    Framer -> Transform -> Quantizer -> RegisterFifo(2) -> VlcEncoder -> RegisterFifo(2)
           -> BitPacker

With `transform=False` the lane is the write path of the folded placement (docs/FORMAT.md,
DESIGN.md): the conv engine's weights already carry the transform, so its outputs enter the
quantizer directly and only the decoder lane holds a (inverse) transform.

Stream contract
---------------
- `i`: one signed value per beat (`in_width` bits), channel order within a pixel, pixels in
  raster order; `in_width` is 8 for int8, 9 for uint8 (framed data is signed), 16 for int16, and
  up to 24 for transformed values in the folded placement. Lane p of P (`tile_first` = p,
  `tile_step` = P; hw/multi_lane.py) takes only the pixels of the tensor's tiles p, p + P, ...
- `o`: `packed_word()` (hw/bit_packer.py): per tile its header word (`first`) and payload words,
  `last` on the tile's final word, in container order (tile numbers p, p + P, ... for lane p).
- `cfg`: the profile's configuration writes (golden.profile.config_writes), broadcast to every
  block; each keeps the regions it needs. The commit (global 7) starts a new tensor.
- `error`: the transform's group-size check or the encoder's symbol check failed, or the
  packer's tile buffer overflowed (the profile's tiles exceed `max_tile_words`).

Throughput one value per clock sustained (every block is 1 value/clock and fully backpressured).
A value's tile leaves when the tile is packed: the header (length, CRC) precedes the payload, so
the last word of a stream trails its last value by the encoder's lookahead D (0 for profiles
without zero flags, at most C; hw/vlc_encoder.py), the last tile's payload words and a few tens of
clocks of pipeline.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bit_packer import BitPacker, packed_word
from hw.config import config_signature
from hw.framer import Framer
from hw.quantizer import Quantizer
from hw.register_fifo import RegisterFifo
from hw.transform import Transform
from hw.vlc_encoder import VlcEncoder


class EncoderLane(wiring.Component):
    """Raw channel values in, container words out (see the module docstring).

    Parameters: `in_width`, `group` (transform N), `max_channels`, `max_tile_words` (tile buffer
    depth: at least the raw words of the largest tile of any profile used), `transform` (False:
    folded placement), `tile_first`/`tile_step` (tile numbering of lane p of P).
    """

    def __init__(self, in_width: int = 8, group: int = 8, max_channels: int = 512,
                 max_tile_words: int = 512, transform: bool = True, tile_first: int = 0,
                 tile_step: int = 1):
        self.in_width = in_width
        self.group = group
        self.max_channels = max_channels
        self.max_tile_words = max_tile_words
        self.transform = transform
        self.tile_first = tile_first
        self.tile_step = tile_step
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(signed(in_width))),
            "o": Out(stream.Signature(packed_word())),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.framer = framer = Framer(self.in_width, self.tile_first, self.tile_step)
        blocks = [framer]
        if self.transform:
            m.submodules.transform = transform = Transform(
                in_width=self.in_width, group=self.group, max_channels=self.max_channels)
            blocks.append(transform)
            q_in = transform.o.payload.data.shape().width
        else:
            q_in = self.in_width
        m.submodules.quantizer = quantizer = Quantizer(in_width=q_in,
                                                       max_channels=self.max_channels)
        m.submodules.encoder = encoder = VlcEncoder(max_channels=self.max_channels)
        m.submodules.packer = packer = BitPacker(self.max_tile_words, self.tile_first,
                                                 self.tile_step)
        blocks += [quantizer, encoder, packer]

        # Configuration is a broadcast: every block's port is always ready.
        for b in blocks:
            m.d.comb += [b.cfg.valid.eq(self.cfg.valid), b.cfg.payload.eq(self.cfg.payload)]

        # The encoder's ready depends on its lookahead stage, the packer's on its send state;
        # two registers in front of each end those paths there instead of running on through
        # the stages before.
        fifos = {
            encoder: RegisterFifo(quantizer.o.payload.shape(), depth=2),
            packer: RegisterFifo(encoder.o.payload.shape(), depth=2),
        }
        m.submodules.q_fifo, m.submodules.e_fifo = fifos[encoder], fifos[packer]
        wiring.connect(m, wiring.flipped(self.i), framer.i)
        for a, b in zip(blocks, blocks[1:], strict=False):
            if b in fifos:
                wiring.connect(m, a.o, fifos[b].i)
                a = fifos[b]
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, packer.o, wiring.flipped(self.o))

        errors = Signal()
        m.d.comb += errors.eq(encoder.error | packer.error |
                              (transform.error if self.transform else 0))
        m.d.comb += self.error.eq(errors)
        return m
