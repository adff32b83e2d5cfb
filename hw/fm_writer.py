"""Feature-map writer: conv-engine values in, the container in DRAM through AXI4 bursts.

    conv values -> gate (the job's value count) -> EncoderLane(s) -> tile sequencer
                -> word FIFO / burst FIFO -> AXI4 AW, W; B counted

Stream contract
---------------
- `cmd`: one `write_job()` per tensor (from hw/fm_control.py): DRAM base (8-byte aligned),
  layout, tile count, slot words, index-table words, region words (the bytes the job may touch,
  from `base`), value count, and H*W and raw bits per pixel for the lane restart: at each
  start the writer sends the lane(s) global 8 (pixels per image) and global 7 (the commit), so
  every tensor's tiles are numbered from 0 without reprogramming the profile. Taken only while
  idle.
- `i`: the conv engine's values (one signed value per beat, channel order, pixels in raster
  order), `lanes` streams for P > 1 (hw/multi_lane.py: stream p carries tiles p, p+P, ...).
  Exactly the job's value count is taken; `i.ready` is low otherwise.
- `cfg`: the profile's configuration writes, passed to the lane(s).
- `axi`: AXI4 write channels, 64-bit INCR bursts of at most `max_burst` beats, never across a
  4 KB boundary, one ID.
- `status`: busy, the error causes (sticky for the job), words written and values taken.

Layouts (docs/FORMAT.md "Layouts"): a tile's header word carries its payload length, so the
sequencer knows each tile's extent when its header arrives: fixed slots put tile t at
`base + 8 t slot`, compacted packs the tiles after the index table and writes one table word
(two entries) per pair of tiles as a one-beat burst between the tiles' bursts.

Safety: a tile is written only when it fits (fixed: its slot; compacted: the job's region), and
only as many words as its header says; a tile the lane frames differently from its header is
cut or padded-by-dropping and flagged (`framing`), one that does not fit is dropped (`bounds`).
So no write ever leaves `[base, base + 8 region_words)`, and the job always ends.

Bursts are issued only when all their words are in the word FIFO (the burst FIFO is written at
a burst's last word), so W never waits on the lane and AW never promises data that may not
come. Throughput: one word per clock into the FIFO, the lane's one value per clock (a word
carries many values) is never held back while DRAM keeps up; DRAM stalls reach the lane only
once the `2 max_burst`-word FIFO is full.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import RESP_OKAY, axi4_write_signature, full_beat_defaults
from hw.config import GLOBAL_COMMIT, GLOBAL_IMAGE_PIXELS, REGION_GLOBAL, config_signature
from hw.encoder_lane import EncoderLane

LEN_BITS = 20


def write_job(addr_width: int = 32) -> data.StructLayout:
    return data.StructLayout({
        "base": addr_width,
        "compacted": 1,
        "n_tiles": 32,
        "slot_words": LEN_BITS + 1,
        "table_words": 32,
        "region_words": 32,
        "n_values": 32,
        "image_pixels": 32,     # H*W: the encoder lane's restart (see `cmd` above)
        "raw_bpp": 32,          # raw bits per pixel (the profile's global 7)
    })


def writer_errors() -> data.StructLayout:
    return data.StructLayout({"lane": 1, "resp": 1, "framing": 1, "bounds": 1})


def writer_status() -> data.StructLayout:
    return data.StructLayout({
        "busy": 1,
        "error": writer_errors(),
        "words": 32,        # 64-bit words written (accepted on W)
        "values": 32,       # conv values taken
    })


def _encoder_lanes(lanes: int, lane_kwargs: dict):
    if lanes == 1:
        return EncoderLane(**lane_kwargs)
    from hw.multi_lane import EncoderLanes  # noqa: PLC0415 (lands separately)

    return EncoderLanes(lanes=lanes, **lane_kwargs)


class FeatureMapWriter(wiring.Component):
    """Conv values in, the tensor's container written to DRAM (see the module docstring).

    Parameters: `lanes` (P), `addr_width`, `max_burst` (beats per burst, <= 256), and the
    encoder lane's parameters (`in_width`, `group`, `max_channels`, `max_tile_words`, ...).
    """

    def __init__(self, lanes: int = 1, addr_width: int = 32, max_burst: int = 16,
                 **lane_kwargs):
        if not 1 <= max_burst <= 256:
            raise ValueError("max_burst must be in 1..256")
        self.lanes = lanes
        self.addr_width = addr_width
        self.max_burst = max_burst
        self.lane_kwargs = lane_kwargs
        self.in_width = lane_kwargs.get("in_width", 8)
        value = stream.Signature(signed(self.in_width))
        super().__init__({
            "cfg": In(config_signature()),
            "cmd": In(stream.Signature(write_job(addr_width))),
            "i": In(value) if lanes == 1 else In(value).array(lanes),
            "axi": Out(axi4_write_signature(addr_width)),
            "status": Out(writer_status()),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_width
        m.submodules.lane = lane = _encoder_lanes(self.lanes, self.lane_kwargs)
        job = Signal(write_job(aw))
        busy = Signal()

        # -- lane configuration: the host's writes, or the restart at a job's start ------------
        seek = Signal(2)    # 1: image pixels, 2: commit (the lane is empty: the last job ended)
        with m.Switch(seek):
            with m.Case(1):
                m.d.comb += [lane.cfg.valid.eq(1),
                             lane.cfg.payload.addr.eq(REGION_GLOBAL << 16 | GLOBAL_IMAGE_PIXELS),
                             lane.cfg.payload.data.eq(job.image_pixels)]
                m.d.sync += seek.eq(2)
            with m.Case(2):
                m.d.comb += [lane.cfg.valid.eq(1),
                             lane.cfg.payload.addr.eq(REGION_GLOBAL << 16 | GLOBAL_COMMIT),
                             lane.cfg.payload.data.eq(job.raw_bpp)]
                m.d.sync += seek.eq(0)
            with m.Default():
                m.d.comb += [lane.cfg.valid.eq(self.cfg.valid),
                             lane.cfg.payload.eq(self.cfg.payload)]
        err = Signal(writer_errors())
        m.d.comb += [self.cmd.ready.eq(~busy), self.status.busy.eq(busy),
                     self.status.error.eq(err)]
        start = self.cmd.valid & self.cmd.ready

        # -- gate: exactly the job's values enter the lane(s) ---------------------------------
        values = Signal(32)
        gate_open = busy & (seek == 0) & (values != job.n_values)
        ins = [self.i] if self.lanes == 1 else list(self.i)
        outs = [lane.i] if self.lanes == 1 else list(lane.i)
        taken = []
        for a, b in zip(ins, outs, strict=True):
            m.d.comb += [b.payload.eq(a.payload), b.valid.eq(a.valid & gate_open),
                         a.ready.eq(b.ready & gate_open)]
            taken.append(a.valid & a.ready)
        # P > 1: the streams carry whole tiles each, so a conv engine that sends the tensor
        # ends every stream together; the count closes the gate after the last value.
        n_taken = sum(taken[1:], taken[0]) if len(taken) > 1 else taken[0]
        m.d.sync += values.eq(values + n_taken)
        m.d.comb += self.status.values.eq(values)
        with m.If(lane.error & busy):
            m.d.sync += err.lane.eq(1)

        # -- FIFOs towards AXI ----------------------------------------------------------------
        m.submodules.wfifo = wfifo = SyncFIFOBuffered(width=65, depth=2 * self.max_burst)
        m.submodules.bfifo = bfifo = SyncFIFOBuffered(width=aw + 8, depth=4)

        # -- tile sequencer: one lane word per clock -------------------------------------------
        w = lane.o.payload
        tiles = Signal(32)              # tile headers seen
        left = Signal(LEN_BITS + 1)     # words of the current tile still to write
        dropping = Signal()             # discard lane words up to the lane's `last`
        addr = Signal(aw)               # address of the next word of the current tile
        slot_addr = Signal(aw)          # fixed: the next tile's slot
        next_off = Signal(33)           # compacted: the next tile's word offset from base
        bstart = Signal(aw)
        bbeats = Signal(9)              # beats of the open burst (0: none open)
        entry_lo = Signal(32)
        table_data = Signal(64)
        table_addr = Signal(aw)
        table_pend = Signal()

        hdr_len = w.data[:LEN_BITS]
        words = hdr_len + 1
        in_tile = left != 0
        tile_addr = Mux(job.compacted, job.base + (next_off << 3), slot_addr)
        fits = Mux(job.compacted, next_off + words <= job.region_words,
                   words <= job.slot_words) & (tiles < job.n_tiles)
        entry = (next_off - job.table_words)[:32]

        # A word is written (enters the FIFO) at `waddr`; the open burst ends after it when
        # the tile ends, the burst is full, the next word is on a 4 KB boundary, or the lane
        # ended the tile early.
        wr = Signal()
        waddr = Signal(aw)
        wend = Signal()
        take = Signal()
        can = busy & wfifo.w_rdy & bfifo.w_rdy & ~(table_pend & (bbeats == 0))
        m.d.comb += [lane.o.ready.eq(can), take.eq(lane.o.valid & can)]

        tile_ends = Signal()
        with m.If(take):
            with m.If(dropping):
                with m.If(w.last):
                    m.d.sync += dropping.eq(0)
            with m.Elif(~in_tile):
                m.d.sync += tiles.eq(tiles + 1)
                with m.If(~w.first):
                    m.d.sync += [err.framing.eq(1), dropping.eq(~w.last)]
                with m.Elif(~fits):
                    m.d.sync += [err.bounds.eq(1), dropping.eq(~w.last)]
                with m.Else():
                    m.d.comb += [wr.eq(1), waddr.eq(tile_addr)]
                    m.d.comb += tile_ends.eq((hdr_len == 0) | w.last)
                    with m.If((hdr_len == 0) != w.last):
                        m.d.sync += [err.framing.eq(1), dropping.eq(~w.last)]
                    m.d.sync += [left.eq(Mux(w.last, 0, hdr_len)), addr.eq(tile_addr + 8),
                                 slot_addr.eq(slot_addr + (job.slot_words << 3)),
                                 next_off.eq(next_off + words)]
                    with m.If(job.compacted):
                        with m.If(~tiles[0]):
                            m.d.sync += entry_lo.eq(entry)
                            with m.If(tiles + 1 == job.n_tiles):
                                m.d.sync += [table_pend.eq(1), table_data.eq(entry),
                                             table_addr.eq(job.base + (tiles[1:] << 3))]
                        with m.Else():
                            m.d.sync += [table_pend.eq(1),
                                         table_data.eq(Cat(entry_lo, entry)),
                                         table_addr.eq(job.base + (tiles[1:] << 3))]
            with m.Else():
                m.d.comb += [wr.eq(1), waddr.eq(addr), tile_ends.eq((left == 1) | w.last)]
                m.d.sync += [left.eq(Mux(w.last, 0, left - 1)), addr.eq(addr + 8)]
                with m.If((left == 1) != w.last):
                    m.d.sync += [err.framing.eq(1), dropping.eq(~w.last)]

        table_go = busy & table_pend & (bbeats == 0) & wfifo.w_rdy & bfifo.w_rdy
        with m.If(table_go):
            m.d.sync += table_pend.eq(0)

        beats = Mux(bbeats == 0, 1, bbeats + 1)
        first_addr = Mux(bbeats == 0, waddr, bstart)
        boundary = waddr[3:12].all()
        with m.If(wr):
            m.d.comb += wend.eq(tile_ends | (beats == self.max_burst) | boundary)
            m.d.comb += [wfifo.w_en.eq(1), wfifo.w_data.eq(Cat(w.data, wend))]
            with m.If(wend):
                m.d.comb += [bfifo.w_en.eq(1), bfifo.w_data.eq(Cat(first_addr, beats - 1))]
                m.d.sync += bbeats.eq(0)
            with m.Else():
                m.d.sync += [bbeats.eq(beats), bstart.eq(first_addr)]
        with m.Elif(table_go):
            m.d.comb += [wfifo.w_en.eq(1), wfifo.w_data.eq(Cat(table_data, 1)),
                         bfifo.w_en.eq(1), bfifo.w_data.eq(Cat(table_addr, 0))]

        # -- AXI -------------------------------------------------------------------------------
        axi = self.axi
        m.d.comb += full_beat_defaults(axi)
        m.d.comb += [axi.awvalid.eq(bfifo.r_rdy), axi.awaddr.eq(bfifo.r_data[:aw]),
                     axi.awlen.eq(bfifo.r_data[aw:]), bfifo.r_en.eq(axi.awready)]
        m.d.comb += [axi.wvalid.eq(wfifo.r_rdy), axi.wdata.eq(wfifo.r_data[:64]),
                     axi.wlast.eq(wfifo.r_data[64]), wfifo.r_en.eq(axi.wready),
                     axi.bready.eq(1)]
        outstanding = Signal(16)
        aw_go = axi.awvalid & axi.awready
        b_go = axi.bvalid & axi.bready
        m.d.sync += outstanding.eq(outstanding + aw_go - b_go)
        with m.If(b_go & (axi.bresp != RESP_OKAY)):
            m.d.sync += err.resp.eq(1)
        written = Signal(32)
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += written.eq(written + 1)
        m.d.comb += self.status.words.eq(written)

        # -- job start and end ----------------------------------------------------------------
        finished = ((seek == 0) & (tiles >= job.n_tiles) & ~in_tile & ~dropping & ~table_pend
                    & (bbeats == 0) & ~wfifo.r_rdy & ~bfifo.r_rdy & (outstanding == 0) & ~aw_go)
        with m.If(start):
            m.d.sync += [job.eq(self.cmd.payload), busy.eq(1), err.eq(0), values.eq(0),
                         tiles.eq(0), left.eq(0), dropping.eq(0), bbeats.eq(0),
                         table_pend.eq(0), written.eq(0), seek.eq(1),
                         slot_addr.eq(self.cmd.payload.base),
                         next_off.eq(self.cmd.payload.table_words)]
        with m.Elif(busy & finished):
            m.d.sync += busy.eq(0)
        return m
