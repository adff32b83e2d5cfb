"""P encoder or decoder lanes side by side: P values per clock, the single-lane container.

The container does not depend on P (docs/FORMAT.md): its tiles are in tensor order, numbered
from 0. Lane p of P handles the tiles p, p + P, p + 2P, ... (numbering restarts with every
tensor; it runs across images, and the last tile of each image may be short); every lane is an
ordinary hw/encoder_lane.py or hw/decoder_lane.py built with `tile_first` = p, `tile_step` = P,
so it counts exactly its own tiles' sizes and numbers. Here the P lanes' tiles are merged into
(or split from) the one word stream in container order, whole tiles round-robin. With P = 1 both
components are the single lane and nothing else.

EncoderLanes
------------
- `i[p]`: lane p's values (`signed(in_width)`, channel order within a pixel, pixels in raster
  order) of the tiles p, p + P, ... in order: what P parallel conv-engine lanes naturally give.
- `o`: `packed_word()` (hw/bit_packer.py), ONE word stream in container order: whole tiles taken
  in turn from lane 0, 1, ..., P - 1, 0, ... (a tile runs from its `first` word to its `last`).
- `cfg`: the configuration writes, broadcast to every lane; the commit (global 7) starts a
  tensor (the merge restarts at lane 0). Commit between tensors, after the last word is out.
- `error`: OR of the lanes' `error`.

Throughput P values per clock sustained (each lane one per clock) as long as the merged words fit
in one word per clock (P x bits/value <= 64 plus one header per tile); a lane's packer holds two
tiles, so the merge may wait for one lane while the others go on. At the end of a tensor the
lanes' last tiles finish together and leave one after the other, so a tensor costs about P tiles'
words more than values / P clocks (measured, tests/test_hw_lanes.py, 65,536 values per lane of
a real 64-channel layer with 32-pixel tiles, fill included: 1.010 cycles/value per lane with
P = 2, 1.013 with P = 4). Latency: a lane's, plus one clock (the merge's output register,
`o.ready` to the lanes' `o.ready` combinational), plus the wait for the tiles that come first.

DecoderLanes
------------
- `i`: `container_word()` (hw/bit_unpacker.py), ONE word stream in container order with `last`
  on each tile's final word, as the DRAM reader delivers it (the hw/bit_unpacker.py contract);
  whole tiles go in turn to lane 0, 1, ..., P - 1, 0, ..., split at `last`.
- `o[p]`: lane p's reconstruction, `framed(out_width)`: the values of the tiles p, p + P, ... in
  order (`comp`, `tile_last` as hw/decoder_lane.py).
- `cfg`: broadcast; the commit starts a tensor (the split restarts at lane 0, the lanes' input
  buffers are emptied).
- `status`: the lanes' `lane_status()` OR-ed (`bad_tiles` summed, saturating), and `lanes`: lane
  p's `error` in bit p.

With P > 1 each lane has an input FIFO of 2 x `max_tile_words` + 2 words (two whole tiles, raw
tiles included), so the split moves on at one word per clock while a lane still decodes the tile
before: P values per clock sustained while the words arrive at one per clock and
P x bits/value <= 64 (plus headers); lane p starts once the words of the p tiles before its
first have passed (measured as above: 1.003 cycles/value per lane with P = 2, 1.008 with P = 4).
`i.ready` is the selected FIFO's `w_rdy` (from registers). Latency: a lane's, plus the FIFO's
(3 clocks), plus the words of the tiles before in the stream.
"""

from amaranth.hdl import Array, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.bit_packer import packed_word
from hw.bit_unpacker import BAD_TILE_BITS, container_word
from hw.config import config_signature, is_commit
from hw.decoder_lane import DecoderLane, lane_status
from hw.encoder_lane import EncoderLane


def _check(lanes: int, kwargs: dict) -> int:
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    for k in ("tile_first", "tile_step"):
        if k in kwargs:
            raise TypeError(f"{k} is set per lane by the multi-lane component")
    return lanes


def _broadcast(m: Module, cfg, lanes) -> None:
    # Configuration is a broadcast: every lane's port is always ready.
    for lane in lanes:
        m.d.comb += [lane.cfg.valid.eq(cfg.valid), lane.cfg.payload.eq(cfg.payload)]


class EncoderLanes(wiring.Component):
    """P encoder lanes, P value streams in, one container word stream out (module docstring).

    Parameters: `lanes` (P) and EncoderLane's (`in_width`, `group`, `max_channels`,
    `max_tile_words`, `transform`).
    """

    def __init__(self, lanes: int = 1, **kwargs):
        self.lanes = _check(lanes, kwargs)
        self._lanes = [EncoderLane(**kwargs, tile_first=p, tile_step=self.lanes)
                       for p in range(self.lanes)]
        in_width = self._lanes[0].in_width
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(signed(in_width))).array(self.lanes),
            "o": Out(stream.Signature(packed_word())),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        for p, lane in enumerate(self._lanes):
            m.submodules[f"lane{p}"] = lane
            wiring.connect(m, wiring.flipped(self.i[p]), lane.i)
        _broadcast(m, self.cfg, self._lanes)
        m.d.comb += self.error.eq(_or(lane.error for lane in self._lanes))

        if self.lanes == 1:
            wiring.connect(m, self._lanes[0].o, wiring.flipped(self.o))
            return m

        # Merge: whole tiles in turn from lane 0, 1, ..., P - 1 (container order).
        sel = Signal(range(self.lanes))
        o_free = ~self.o.valid | self.o.ready
        valid = Array(lane.o.valid for lane in self._lanes)[sel]
        word = Signal(packed_word())
        m.d.comb += word.eq(Array(lane.o.payload.as_value() for lane in self._lanes)[sel])
        for p, lane in enumerate(self._lanes):
            m.d.comb += lane.o.ready.eq(o_free & (sel == p))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(valid & o_free):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(word)]
            with m.If(word.last):
                m.d.sync += sel.eq(_next(sel, self.lanes))
        with m.If(is_commit(self.cfg)):
            m.d.sync += sel.eq(0)
        return m


class DecoderLanes(wiring.Component):
    """One container word stream in, split to P decoder lanes, P value streams out (module
    docstring).

    Parameters: `lanes` (P), `max_tile_words` (P > 1: sizes the lanes' input FIFOs; as for
    EncoderLane, at least the raw words of the largest tile of any profile used; a larger tile
    still decodes, only slower) and DecoderLane's (`dtype`, `group`, `max_channels`).
    """

    def __init__(self, lanes: int = 1, max_tile_words: int = 512, **kwargs):
        self.lanes = _check(lanes, kwargs)
        self.max_tile_words = int(max_tile_words)
        self._lanes = [DecoderLane(**kwargs, tile_first=p, tile_step=self.lanes)
                       for p in range(self.lanes)]
        out_shape = self._lanes[0].o.payload.shape()
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(container_word())),
            "o": Out(stream.Signature(out_shape)).array(self.lanes),
            "status": Out(multi_status(self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        for p, lane in enumerate(lanes):
            m.submodules[f"lane{p}"] = lane
            wiring.connect(m, lane.o, wiring.flipped(self.o[p]))
        _broadcast(m, self.cfg, lanes)

        status = self.status
        flags = [f for f in lane_status().members if f not in ("unpacker", "decoder")]
        for f in flags:
            m.d.comb += getattr(status, f).eq(_or(getattr(lane.status, f) for lane in lanes))
        for part in ("unpacker", "decoder"):
            for f in lane_status().members[part].members:
                if f == "bad_tiles":
                    continue
                m.d.comb += getattr(status[part], f).eq(
                    _or(getattr(lane.status[part], f) for lane in lanes))
        total = sum(lane.status.unpacker.bad_tiles for lane in lanes)
        limit = (1 << BAD_TILE_BITS) - 1
        m.d.comb += status.unpacker.bad_tiles.eq(
            total if len(lanes) == 1 else Mux(total > limit, limit, total))
        for p, lane in enumerate(lanes):
            m.d.comb += status.lanes[p].eq(lane.status.error)

        if self.lanes == 1:
            wiring.connect(m, wiring.flipped(self.i), lanes[0].i)
            return m

        # Split: whole tiles in turn to lane 0, 1, ..., P - 1, each into a FIFO deep enough for
        # two tiles, so the split is never held up by a lane busy with its previous tile.
        commit = is_commit(self.cfg)
        sel = Signal(range(self.lanes))
        w = len(self.i.payload.as_value())
        readies = []
        for p, lane in enumerate(lanes):
            fifo = ResetInserter(commit)(SyncFIFOBuffered(width=w,
                                                          depth=2 * self.max_tile_words + 2))
            m.submodules[f"fifo{p}"] = fifo
            m.d.comb += [
                fifo.w_data.eq(self.i.payload.as_value()),
                fifo.w_en.eq(self.i.valid & (sel == p)),
                lane.i.valid.eq(fifo.r_rdy),
                lane.i.payload.eq(fifo.r_data),
                fifo.r_en.eq(lane.i.ready),
            ]
            readies.append(fifo.w_rdy)
        m.d.comb += self.i.ready.eq(Array(readies)[sel])
        with m.If(self.i.valid & self.i.ready & self.i.payload.last):
            m.d.sync += sel.eq(_next(sel, self.lanes))
        with m.If(commit):
            m.d.sync += sel.eq(0)
        return m


def multi_status(lanes: int) -> data.StructLayout:
    """`lane_status()` of P lanes combined, plus `lanes`: lane p's error in bit p."""
    return data.StructLayout({**dict(lane_status().members), "lanes": lanes})


def _or(values):
    out = 0
    for v in values:
        out = out | v
    return out


def _next(sel, n):
    """The lane after `sel` in the round-robin of n."""
    return Mux(sel == n - 1, 0, sel + 1)
