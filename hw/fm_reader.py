"""Feature-map reader: a range of tiles from DRAM through AXI4 bursts, decoded to conv values.

    AXI4 AR (several bursts outstanding) -> R -> word FIFO -> DecoderLane(s) -> conv engine

Stream contract
---------------
- `cmd`: one `read_job()` per tile range (from hw/fm_control.py): DRAM base, layout, slot
  words, index-table words, region words, the range (first tile `first`, `count` tiles), and
  the lane geometry of the range's first image (`image_pixels` = pixels from the range's first
  tile to the end of its image; `raw_bpp`). Taken only while idle.
- `o`: the lane's reconstruction (`framed`, one value per beat, `tile_last` per tile), exactly
  `count` tiles' values whatever DRAM holds; `lanes` streams for P > 1.
- `cfg`: the profile's configuration writes for the lane(s); while a job runs the reader owns
  the port (it seeks the lane to the range, see below).
- `axi`: AXI4 read channels, 64-bit INCR bursts of at most `max_burst` beats, never across a
  4 KB boundary, up to `outstanding` bursts in flight, one ID (in-order data).
- `status`: busy, error causes (sticky for the job), words read, values and tiles delivered.

Random access: a range starts at any tile. The lane counts tiles and image pixels from its
last commit, so the reader seeks it first (lane drained, then global 8 = pixels to the end of
the first image, global 7 commit), and renumbers each header's tile field to its position in
the range (`h - first` mod 1024), patching the header CRC by the exact CRC-32 difference of the
changed bits (CRC is linear; the tile field sits in the message's last four bytes, so the
difference depends on the changed bits alone). A header that carried a wrong tile number still
mismatches, a corrupt one still fails its CRC: the lane's checks see exactly what they would
have seen reading from tile 0. Fixed layout: tile t is at `base + 8 t slot`. Compacted: the
range's first index entry is read (one beat), then each header's length gives the next tile.
A 3x3 convolution's row plus halo is the range of tiles of rows r-1..r+1.

Per tile: a one-beat header read, then (when the header arrives) its payload in bursts, then
the next header at once, so header round trips overlap payload transfers; beats go to the
`fifo_depth`-word FIFO before the lane, and a burst is issued only when the FIFO has room for
all beats in flight, so R never waits on the lane.

Safety: a header whose length exceeds a slot's payload (raw words of a full tile) or the
region is passed on alone (the lane flags it and still yields the tile's values) and its
payload is not read; in the compacted layout the chain is then lost, and the remaining tiles
are fed as empty (zero) headers, each yielding its values and an error. An index entry outside
the region does the same. Nothing outside `[base, base + 8 region_words)` is read, and every
job ends with exactly its tiles' values delivered.
"""

import zlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.axi import RESP_OKAY, axi4_read_signature, full_beat_defaults
from hw.config import GLOBAL_COMMIT, GLOBAL_IMAGE_PIXELS, REGION_GLOBAL, config_signature
from hw.decoder_lane import DecoderLane, lane_status

LEN_BITS = 20
TILE_NO_LO, TILE_NO_BITS = 22, 10
KIND_PAYLOAD, KIND_HEADER, KIND_TABLE = 0, 1, 2


def read_job(addr_width: int = 32) -> data.StructLayout:
    return data.StructLayout({
        "base": addr_width,
        "compacted": 1,
        "slot_words": LEN_BITS + 1,
        "table_words": 32,
        "region_words": 32,
        "first": 32,
        "count": 32,
        "image_pixels": 32,
        "raw_bpp": 32,
    })


def reader_errors() -> data.StructLayout:
    return data.StructLayout({"lane": 1, "resp": 1, "length": 1, "table": 1})


def reader_status() -> data.StructLayout:
    return data.StructLayout({
        "busy": 1,
        "error": reader_errors(),
        "lane": lane_status(),
        "words": 32,        # 64-bit words read (R beats)
        "values": 32,       # values delivered on `o`
        "tiles": 32,        # tiles delivered on `o`
    })


def _tile_field_crc_delta() -> list[int]:
    """CRC-32 difference caused by flipping bit 22 + i of the header's low half (last 4 bytes
    of the checked message), for each bit i of the tile field."""
    zero = zlib.crc32(bytes(4))
    return [zlib.crc32((1 << (TILE_NO_LO + i)).to_bytes(4, "little")) ^ zero
            for i in range(TILE_NO_BITS)]


def _decoder_lanes(lanes: int, lane_kwargs: dict):
    if lanes == 1:
        return DecoderLane(**lane_kwargs)
    from hw.multi_lane import DecoderLanes  # noqa: PLC0415 (lands separately)

    return DecoderLanes(lanes=lanes, **lane_kwargs)


class FeatureMapReader(wiring.Component):
    """Tile ranges read from DRAM and decoded (see the module docstring).

    Parameters: `lanes` (P), `addr_width`, `max_burst` (beats per burst), `outstanding`
    (bursts in flight), `fifo_depth` (words buffered before the lane), and the decoder lane's
    parameters (`dtype`, `group`, `max_channels`).
    """

    def __init__(self, lanes: int = 1, addr_width: int = 32, max_burst: int = 16,
                 outstanding: int = 4, fifo_depth: int = 64, **lane_kwargs):
        if fifo_depth < max_burst + 1:
            raise ValueError("fifo_depth must hold a burst and a header")
        self.lanes = lanes
        self.addr_width = addr_width
        self.max_burst = max_burst
        self.outstanding = outstanding
        self.fifo_depth = fifo_depth
        self.lane_kwargs = lane_kwargs
        self._lane = _decoder_lanes(lanes, lane_kwargs)
        out_sig = self._lane.signature.members["o"].signature
        super().__init__({
            "cfg": In(config_signature()),
            "cmd": In(stream.Signature(read_job(addr_width))),
            "o": Out(out_sig) if lanes == 1 else Out(out_sig).array(lanes),
            "axi": Out(axi4_read_signature(addr_width)),
            "status": Out(reader_status()),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_width
        m.submodules.lane = lane = self._lane
        job = Signal(read_job(aw))
        busy = Signal()
        err = Signal(reader_errors())
        start = self.cmd.valid & self.cmd.ready
        m.d.comb += [self.cmd.ready.eq(~busy), self.status.busy.eq(busy),
                     self.status.error.eq(err), self.status.lane.eq(lane.status)]

        # -- output: count what the conv engine takes ------------------------------------------
        outs = [self.o] if self.lanes == 1 else list(self.o)
        louts = [lane.o] if self.lanes == 1 else list(lane.o)
        n_val, n_tile = [], []
        for a, b in zip(louts, outs, strict=True):
            wiring.connect(m, a, wiring.flipped(b))
            n_val.append(b.valid & b.ready)
            n_tile.append(b.valid & b.ready & b.payload.tile_last)
        values, tiles_out = Signal(32), Signal(32)
        m.d.sync += [values.eq(values + sum(n_val[1:], n_val[0])),
                     tiles_out.eq(tiles_out + sum(n_tile[1:], n_tile[0]))]
        m.d.comb += [self.status.values.eq(values), self.status.tiles.eq(tiles_out)]

        # -- lane configuration: the host's writes, or the reader's seek ----------------------
        seek = Signal(2)    # 1: image pixels, 2: commit
        with m.Switch(seek):
            with m.Case(1):
                m.d.comb += [lane.cfg.valid.eq(1),
                             lane.cfg.payload.addr.eq(REGION_GLOBAL << 16 | GLOBAL_IMAGE_PIXELS),
                             lane.cfg.payload.data.eq(job.image_pixels)]
            with m.Case(2):
                m.d.comb += [lane.cfg.valid.eq(1),
                             lane.cfg.payload.addr.eq(REGION_GLOBAL << 16 | GLOBAL_COMMIT),
                             lane.cfg.payload.data.eq(job.raw_bpp)]
            with m.Default():
                m.d.comb += [lane.cfg.valid.eq(self.cfg.valid),
                             lane.cfg.payload.eq(self.cfg.payload)]

        # -- word FIFO before the lane; R beats land here --------------------------------------
        m.submodules.wfifo = wfifo = SyncFIFOBuffered(width=65, depth=self.fifo_depth)
        m.d.comb += [lane.i.valid.eq(wfifo.r_rdy), lane.i.payload.data.eq(wfifo.r_data[:64]),
                     lane.i.payload.last.eq(wfifo.r_data[64]), wfifo.r_en.eq(lane.i.ready)]
        m.submodules.tags = tags = SyncFIFOBuffered(width=3, depth=self.outstanding)

        axi = self.axi
        m.d.comb += full_beat_defaults(axi)
        m.d.comb += axi.rready.eq(1)        # the FIFO has room for every beat in flight
        r_go = axi.rvalid
        tag_kind = tags.r_data[:2]
        tag_end = tags.r_data[2]
        m.d.comb += tags.r_en.eq(r_go & axi.rlast)
        words = Signal(32)
        with m.If(r_go):
            m.d.sync += words.eq(words + 1)
            with m.If(axi.rresp != RESP_OKAY):
                m.d.sync += err.resp.eq(1)
        m.d.comb += self.status.words.eq(words)
        with m.If(r_go & (tag_kind == KIND_PAYLOAD)):
            m.d.comb += [wfifo.w_en.eq(1),
                         wfifo.w_data.eq(Cat(axi.rdata, axi.rlast & tag_end))]

        # -- AR: one registered request; `inflight` words are promised to the FIFO ------------
        ar_valid = Signal()
        ar_addr = Signal(aw)
        ar_len = Signal(8)
        inflight = Signal(range(self.fifo_depth + 1))
        m.d.comb += [axi.arvalid.eq(ar_valid), axi.araddr.eq(ar_addr), axi.arlen.eq(ar_len)]
        with m.If(ar_valid & axi.arready):
            m.d.sync += ar_valid.eq(0)
        issue = Signal()
        i_addr = Signal(aw)
        i_beats = Signal(9)
        i_kind = Signal(2)
        i_end = Signal()
        room = self.fifo_depth - wfifo.w_level - inflight
        can_issue = ~ar_valid & tags.w_rdy & (room >= i_beats)
        with m.If(issue & can_issue):
            m.d.comb += [tags.w_en.eq(1), tags.w_data.eq(Cat(i_kind, i_end))]
            m.d.sync += [ar_valid.eq(1), ar_addr.eq(i_addr), ar_len.eq(i_beats - 1)]
        m.d.sync += inflight.eq(inflight + Mux(issue & can_issue, i_beats, 0) - r_go)
        issued = issue & can_issue

        # -- header rewrite: renumber the tile field, patch the CRC ----------------------------
        hdr = axi.rdata
        h_tile = hdr[TILE_NO_LO:TILE_NO_LO + TILE_NO_BITS]
        new_tile = (h_tile - job.first[:TILE_NO_BITS])[:TILE_NO_BITS]
        flip = h_tile ^ new_tile
        delta = Const(0, 32)
        for i, k in enumerate(_tile_field_crc_delta()):
            delta = delta ^ Mux(flip[i], k, 0)
        new_hdr = Cat(hdr[:TILE_NO_LO], new_tile, hdr[32:] ^ delta)
        h_len = hdr[:LEN_BITS]

        # -- the range walk --------------------------------------------------------------------
        t = Signal(32)                  # tiles of the range begun
        addr = Signal(aw)               # the current tile's header
        word = Signal(33)               # its word offset from base
        pay_addr = Signal(aw)
        pay_left = Signal(LEN_BITS + 1)
        broken = Signal()
        next_word = Signal(34)

        def next_tile(length):
            # The tile whose header is at `word` has `length` payload words: step to the next.
            nxt = Mux(job.compacted, word + 1 + length, word + job.slot_words)
            m.d.sync += [t.eq(t + 1), word.eq(nxt), addr.eq(job.base + (nxt << 3))]
            with m.If(t + 1 == job.count):
                m.next = "DRAIN"
            with m.Else():
                m.next = "HEADER"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [job.eq(self.cmd.payload), busy.eq(1), err.eq(0), t.eq(0),
                                 broken.eq(0), values.eq(0), tiles_out.eq(0), words.eq(0),
                                 seek.eq(1)]
                    m.next = "SEEK"
            with m.State("SEEK"):
                # The lane is empty (the last job drained): point its counters at the range.
                with m.If(seek == 1):
                    m.d.sync += seek.eq(2)
                with m.Else():
                    m.d.sync += seek.eq(0)
                    with m.If(job.count == 0):
                        m.next = "DRAIN"
                    with m.Elif(job.compacted):
                        m.next = "TABLE"
                    with m.Else():
                        w0 = job.first * job.slot_words
                        m.d.sync += [word.eq(w0), addr.eq(job.base + (w0 << 3))]
                        m.next = "HEADER"
            with m.State("TABLE"):
                m.d.comb += [issue.eq(1), i_addr.eq(job.base + (job.first[1:] << 3)),
                             i_beats.eq(1), i_kind.eq(KIND_TABLE), i_end.eq(0)]
                with m.If(issued):
                    m.next = "TABLE_WAIT"
            with m.State("TABLE_WAIT"):
                entry = Mux(job.first[0], axi.rdata[32:], axi.rdata[:32])
                w0 = job.table_words + entry
                with m.If(r_go):
                    m.d.sync += [word.eq(w0), addr.eq(job.base + (w0 << 3))]
                    with m.If(w0 + 1 > job.region_words):
                        m.d.sync += [err.table.eq(1), broken.eq(1)]
                        m.next = "FAKE"
                    with m.Else():
                        m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [issue.eq(1), i_addr.eq(addr), i_beats.eq(1),
                             i_kind.eq(KIND_HEADER), i_end.eq(0)]
                with m.If(issued):
                    m.next = "HEADER_WAIT"
            with m.State("HEADER_WAIT"):
                # Beats of the previous tile's payload may still arrive; the header is the
                # beat tagged so.
                over = (h_len > job.slot_words - 1) | \
                    (job.compacted & (word + 1 + h_len > job.region_words))
                with m.If(r_go & (tag_kind == KIND_HEADER)):
                    m.d.comb += [wfifo.w_en.eq(1),
                                 wfifo.w_data.eq(Cat(new_hdr, (h_len == 0) | over))]
                    with m.If(over):
                        m.d.sync += err.length.eq(1)
                        with m.If(job.compacted):
                            m.d.sync += [broken.eq(1), t.eq(t + 1)]
                            with m.If(t + 1 == job.count):
                                m.next = "DRAIN"
                            with m.Else():
                                m.next = "FAKE"
                        with m.Else():
                            next_tile(0)
                    with m.Elif(h_len == 0):
                        next_tile(0)
                    with m.Else():
                        m.d.sync += [pay_addr.eq(addr + 8), pay_left.eq(h_len),
                                     next_word.eq(word + 1 + h_len)]
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                to_boundary = 512 - pay_addr[3:12]
                capped = Mux(pay_left > self.max_burst, self.max_burst, pay_left)
                beats = Signal(10)
                m.d.comb += beats.eq(Mux(capped > to_boundary, to_boundary, capped))
                m.d.comb += [issue.eq(1), i_addr.eq(pay_addr), i_beats.eq(beats),
                             i_kind.eq(KIND_PAYLOAD), i_end.eq(beats == pay_left)]
                with m.If(issued):
                    m.d.sync += [pay_addr.eq(pay_addr + (beats << 3)),
                                 pay_left.eq(pay_left - beats)]
                    with m.If(beats == pay_left):
                        next_tile(next_word - word - 1)
            with m.State("FAKE"):
                # The chain is lost: an empty header per remaining tile keeps the value count.
                with m.If((inflight == 0) & wfifo.w_rdy & ~r_go):
                    m.d.comb += [wfifo.w_en.eq(1), wfifo.w_data.eq(Cat(Const(0, 64), 1))]
                    m.d.sync += t.eq(t + 1)
                    with m.If(t + 1 == job.count):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If((tiles_out == job.count) & (inflight == 0) & ~ar_valid):
                    # The lane's status is sticky since the seek's commit: this range's.
                    m.d.sync += [busy.eq(0), err.lane.eq(lane.status.error)]
                    m.next = "IDLE"
        return m
