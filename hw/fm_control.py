"""Control and status: an AXI4-Lite register file that programs and starts the DRAM writer and
reader and reports their outcome and byte counters.

Register map (32-bit registers, byte offsets; R read-only, W write-only, RW both):

| offset | name | |
|---|---|---|
| 0x00 | CTRL | W: bit 0 starts a write job, bit 1 a read job (ignored while busy) |
| 0x04 | STATUS | R: bit 0 busy, 1 done, 2 error; bits 8.. the causes (`control_errors`) |
| 0x08 | CFG_ADDR | RW: configuration address (docs/FORMAT.md "Configuration writes") |
| 0x0C | CFG_DATA | W: sends (CFG_ADDR, data) to the lanes, then CFG_ADDR += 1 |
| 0x10 | WR_BASE | RW: DRAM byte address of the tensor written (8-byte aligned) |
| 0x14 | RD_BASE | RW: DRAM byte address of the tensor read |
| 0x18..0x24 | N, C, H, W | RW: tensor shape |
| 0x28 | LAYOUT | RW: 0 fixed, 1 compacted (must match the profile's) |
| 0x2C, 0x30, 0x34 | RD_IMAGE, RD_TILE, RD_COUNT | RW: read range: image, first tile in it, tiles |
| 0x40 | RAW_BYTES | R: raw bytes the write job took (values x bytes per value) |
| 0x44 | WR_BYTES | R: bytes the write job wrote to DRAM (0 when it failed its checks) |
| 0x48 | RD_BYTES | R: bytes the read job read from DRAM (0 when it failed its checks) |
| 0x4C | RD_VALUES | R: values the read job delivered |
| 0x50, 0x54 | WR_CYCLES, RD_CYCLES | R: clocks the last write / read job ran |
| 0x58 | N_TILES | R: tiles of the tensor (last start) |
| 0x5C | REGION_BYTES | R: bytes a tensor may occupy from its base (allocate this) |
| 0x60 | LANE_STATUS | R: the decoder lane's status word (hw/decoder_lane.py `lane_status`) |
| 0x64 | TILES_PER_IMAGE | R |

STATUS cause bits (sticky until the next start; `control_errors`):

| bit | cause | |
|---|---|---|
| 8 | uncommitted | no profile committed yet (global 7 never written); reported alone |
| 9 | zero | N, C, H or W is 0 (or the profile's tile_pixels) |
| 10 | mismatch | C or H*W differs from the profile's (global 0, global 8) |
| 11 | layout | LAYOUT differs from the profile's (global 6) |
| 12 | align | WR_BASE / RD_BASE not 8-byte aligned |
| 13 | range | read range empty, outside the tensor, or leaving an image with a short last tile |
| 14 | region | base + REGION_BYTES past the address space |
| 16 | wr_lane | write job: encoder lane error |
| 17 | wr_resp | write job: AXI B error |
| 18 | wr_framing | write job: a tile framed unlike its header |
| 19 | wr_bounds | write job: a tile that did not fit its slot/region (dropped) |
| 20 | rd_lane | read job: decoder lane error (CRC, mode, tile number, code) |
| 21 | rd_resp | read job: AXI R error |
| 22 | rd_length | read job: a header length past its slot/region (payload not read) |
| 23 | rd_table | read job: an index entry outside the region |

Bits 8..14 end a job at its start with no DRAM access; 16..23 come at the end of a job that
ran. A read job always delivers exactly its range's values (garbage where the DRAM was
corrupt) and a write job never writes outside `[base, base + REGION_BYTES)`. A write job waits
for its H*W*C*N values; there is no abort, so the conv engine must send them all.

Usage sequence (software):

1. Program the profile: for each configuration write (golden/profile.py `config_writes(profile,
   image_pixels=H*W)`), write CFG_ADDR when the address is not the previous one + 1, then
   CFG_DATA. The last write (global 7) commits. Once per layer profile; several tensors and
   reads may follow without reprogramming (each job restarts the lanes' counters itself).
2. Write a tensor: N, C, H, W, LAYOUT, WR_BASE (REGION_BYTES after a start tells how much to
   allocate: the worst case), then CTRL = 1 and stream the values on `i`. Poll STATUS until
   done (bit 1) with busy (bit 0) low; bit 2 is the error summary, bits 8.. the causes. Read
   RAW_BYTES / WR_BYTES (compression measured on the hardware) and WR_CYCLES.
3. Read a range: RD_BASE, RD_IMAGE, RD_TILE, RD_COUNT (tiles; TILES_PER_IMAGE after a start;
   a 3x3 convolution's row r with its halo is rows r-1..r+1, i.e. the tiles of those rows when
   a tile is one row), CTRL = 2, take the values on `o` (one `tile_last` per tile), poll
   STATUS; RD_BYTES, RD_VALUES, RD_CYCLES, LANE_STATUS.

A start checks the configuration before anything moves: the profile committed (global 7 seen),
no zero dimension, C and H*W equal to the profile's channels (global 0) and image pixels
(global 8), LAYOUT equal to the profile's (global 6), the base 8-byte aligned, the region
inside the address space; a read also checks its range. A failed check ends the job at once
(done, error, cause bit) with no DRAM access. The geometry (tiles per image by a 32-step
divider, tiles, slot and table words, region size) is computed at each start, a few dozen
clocks. The configuration writes are passed on as they arrive; the host writes them while idle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import axil_signature
from hw.config import (
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    GLOBAL_IMAGE_PIXELS,
    GLOBAL_LAYOUT,
    GLOBAL_TILE_PIXELS,
    REGION_GLOBAL,
    config_signature,
    index,
    region,
)
from hw.fm_reader import read_job, reader_status
from hw.fm_writer import write_job, writer_status

REGS = {
    "CTRL": 0x00, "STATUS": 0x04, "CFG_ADDR": 0x08, "CFG_DATA": 0x0C, "WR_BASE": 0x10,
    "RD_BASE": 0x14, "N": 0x18, "C": 0x1C, "H": 0x20, "W": 0x24, "LAYOUT": 0x28,
    "RD_IMAGE": 0x2C, "RD_TILE": 0x30, "RD_COUNT": 0x34, "RAW_BYTES": 0x40, "WR_BYTES": 0x44,
    "RD_BYTES": 0x48, "RD_VALUES": 0x4C, "WR_CYCLES": 0x50, "RD_CYCLES": 0x54,
    "N_TILES": 0x58, "REGION_BYTES": 0x5C, "LANE_STATUS": 0x60, "TILES_PER_IMAGE": 0x64,
}
CTRL_WRITE, CTRL_READ = 1, 2
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4
CAUSE_SHIFT = 8


def control_errors() -> data.StructLayout:
    """STATUS bits 8 and up, in this order."""
    return data.StructLayout({
        "uncommitted": 1, "zero": 1, "mismatch": 1, "layout": 1, "align": 1, "range": 1,
        "region": 1, "_pad": 1,
        "wr_lane": 1, "wr_resp": 1, "wr_framing": 1, "wr_bounds": 1,
        "rd_lane": 1, "rd_resp": 1, "rd_length": 1, "rd_table": 1,
    })


class FeatureMapControl(wiring.Component):
    """AXI4-Lite slave `axil`; `cfg` to the lanes; job commands to the writer and reader and
    their status back (see the module docstring)."""

    def __init__(self, addr_width: int = 32, raw_bytes_per_value: int = 1):
        self.addr_width = addr_width
        self.raw_bytes_per_value = raw_bytes_per_value
        super().__init__({
            "axil": In(axil_signature()),
            "cfg": Out(config_signature()),
            "wr_cmd": Out(stream.Signature(write_job(addr_width))),
            "rd_cmd": Out(stream.Signature(read_job(addr_width))),
            "wr_status": In(writer_status()),
            "rd_status": In(reader_status()),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_width
        regs = {n: Signal(32, name=f"r_{n.lower()}") for n in
                ("CFG_ADDR", "WR_BASE", "RD_BASE", "N", "C", "H", "W", "LAYOUT", "RD_IMAGE",
                 "RD_TILE", "RD_COUNT")}
        busy, done = Signal(), Signal()
        errs = Signal(control_errors())
        op_read = Signal()
        wr_cycles, rd_cycles = Signal(32), Signal(32)
        wr_ran, rd_ran = Signal(), Signal()     # the last job of that kind reached the datapath

        # -- what the configuration stream says (snooped as it passes) -------------------------
        cfg_c, cfg_tp, cfg_layout, cfg_hw, cfg_bpp = (Signal(32) for _ in range(5))
        committed = Signal()
        cfg = self.cfg
        with m.If(cfg.valid & (region(cfg.payload.addr) == REGION_GLOBAL)):
            with m.Switch(index(cfg.payload.addr)):
                for idx, sig in ((GLOBAL_CHANNELS, cfg_c), (GLOBAL_TILE_PIXELS, cfg_tp),
                                 (GLOBAL_LAYOUT, cfg_layout), (GLOBAL_IMAGE_PIXELS, cfg_hw)):
                    with m.Case(idx):
                        m.d.sync += sig.eq(cfg.payload.data)
                with m.Case(GLOBAL_COMMIT):
                    m.d.sync += [cfg_bpp.eq(cfg.payload.data), committed.eq(1)]

        # -- geometry --------------------------------------------------------------------------
        image_px = Signal(32)
        n_tiles, tpi = Signal(32), Signal(32)
        slot, table_words, region_words = Signal(21), Signal(32), Signal(64)
        n_values, first, img_px = Signal(64), Signal(64), Signal(32)
        dvd, quo = Signal(32), Signal(32)
        rem = Signal(33)
        step = Signal(6)
        base = Mux(op_read, regs["RD_BASE"], regs["WR_BASE"])

        # -- AXI4-Lite slave -------------------------------------------------------------------
        ax = self.axil
        bvalid, rvalid = Signal(), Signal()
        rdata = Signal(32)
        m.d.comb += [ax.bvalid.eq(bvalid), ax.bresp.eq(0), ax.rvalid.eq(rvalid),
                     ax.rdata.eq(rdata), ax.rresp.eq(0)]
        wr_ok = ax.awvalid & ax.wvalid & ~bvalid
        m.d.comb += [ax.awready.eq(wr_ok), ax.wready.eq(wr_ok)]
        with m.If(bvalid & ax.bready):
            m.d.sync += bvalid.eq(0)
        start_w, start_r = Signal(), Signal()
        with m.If(wr_ok):
            m.d.sync += bvalid.eq(1)
            with m.Switch(ax.awaddr[2:8]):
                for name, sig in regs.items():
                    with m.Case(REGS[name] >> 2):
                        m.d.sync += sig.eq(ax.wdata)
                with m.Case(REGS["CFG_DATA"] >> 2):
                    m.d.comb += [cfg.valid.eq(1), cfg.payload.addr.eq(regs["CFG_ADDR"]),
                                 cfg.payload.data.eq(ax.wdata)]
                    m.d.sync += regs["CFG_ADDR"].eq(regs["CFG_ADDR"] + 1)
                with m.Case(REGS["CTRL"] >> 2):
                    m.d.comb += [start_w.eq(ax.wdata[0] & ~busy),
                                 start_r.eq(ax.wdata[1] & ~ax.wdata[0] & ~busy)]

        ws, rs = self.wr_status, self.rd_status
        status = Cat(busy, done, errs.as_value().any(), Signal(5), errs)
        readable = {
            "STATUS": status,
            "RAW_BYTES": Mux(wr_ran, ws.values * self.raw_bytes_per_value, 0),
            "WR_BYTES": Mux(wr_ran, ws.words << 3, 0),
            "RD_BYTES": Mux(rd_ran, rs.words << 3, 0), "RD_VALUES": Mux(rd_ran, rs.values, 0),
            "WR_CYCLES": wr_cycles, "RD_CYCLES": rd_cycles, "N_TILES": n_tiles,
            "REGION_BYTES": region_words << 3, "LANE_STATUS": rs.lane,
            "TILES_PER_IMAGE": tpi, **regs,
        }
        m.d.comb += ax.arready.eq(~rvalid)
        with m.If(rvalid & ax.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(ax.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rdata.eq(0)]
            with m.Switch(ax.araddr[2:8]):
                for name, value in readable.items():
                    with m.Case(REGS[name] >> 2):
                        m.d.sync += rdata.eq(Value.cast(value)[:32])

        # -- jobs ------------------------------------------------------------------------------
        with m.If(ws.busy):
            m.d.sync += wr_cycles.eq(wr_cycles + 1)
        with m.If(rs.busy):
            m.d.sync += rd_cycles.eq(rd_cycles + 1)
        m.d.comb += [
            self.wr_cmd.payload.base.eq(regs["WR_BASE"]),
            self.wr_cmd.payload.compacted.eq(regs["LAYOUT"][0]),
            self.wr_cmd.payload.n_tiles.eq(n_tiles),
            self.wr_cmd.payload.slot_words.eq(slot),
            self.wr_cmd.payload.table_words.eq(table_words),
            self.wr_cmd.payload.region_words.eq(region_words),
            self.wr_cmd.payload.n_values.eq(n_values),
            self.wr_cmd.payload.image_pixels.eq(image_px),
            self.wr_cmd.payload.raw_bpp.eq(cfg_bpp),
            self.rd_cmd.payload.base.eq(regs["RD_BASE"]),
            self.rd_cmd.payload.compacted.eq(regs["LAYOUT"][0]),
            self.rd_cmd.payload.slot_words.eq(slot),
            self.rd_cmd.payload.table_words.eq(table_words),
            self.rd_cmd.payload.region_words.eq(region_words),
            self.rd_cmd.payload.first.eq(first),
            self.rd_cmd.payload.count.eq(regs["RD_COUNT"]),
            self.rd_cmd.payload.image_pixels.eq(img_px),
            self.rd_cmd.payload.raw_bpp.eq(cfg_bpp),
        ]
        N, C, H, W = (regs[k] for k in "NCHW")
        with m.FSM():
            with m.State("IDLE"):
                with m.If(start_w | start_r):
                    m.d.sync += [busy.eq(1), done.eq(0), errs.eq(0), op_read.eq(start_r)]
                    with m.If(start_w):
                        m.d.sync += [wr_cycles.eq(0), wr_ran.eq(0)]
                    with m.Else():
                        m.d.sync += [rd_cycles.eq(0), rd_ran.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                bad = Signal(control_errors())
                m.d.comb += [
                    bad.uncommitted.eq(~committed),
                    bad.zero.eq((N == 0) | (C == 0) | (H == 0) | (W == 0) | (cfg_tp == 0)),
                    bad.mismatch.eq((C != cfg_c) | (H * W != cfg_hw)),
                    bad.layout.eq(regs["LAYOUT"] != cfg_layout),
                    bad.align.eq(base[:3] != 0),
                ]
                m.d.sync += [image_px.eq(H * W), dvd.eq(H * W), rem.eq(0), quo.eq(0), step.eq(0)]
                with m.If(~committed):
                    # nothing else can be judged against a profile that is not there
                    m.d.sync += [errs.uncommitted.eq(1), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(bad.as_value().any()):
                    m.d.sync += [errs.eq(bad), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                # tiles per image = ceil(H*W / tile_pixels), restoring division, a bit a clock
                r2 = Cat(dvd[31], rem[:32])
                ge = r2 >= cfg_tp
                m.d.sync += [dvd.eq(dvd << 1), rem.eq(Mux(ge, r2 - cfg_tp, r2)),
                             quo.eq(Cat(ge, quo[:31])), step.eq(step + 1)]
                with m.If(step == 31):
                    m.next = "TILES"
            with m.State("TILES"):
                per = quo + (rem != 0)
                m.d.sync += [tpi.eq(per), n_tiles.eq(N * per),
                             slot.eq(1 + ((cfg_tp * cfg_bpp + 63) >> 6)),
                             n_values.eq(N * image_px * C),
                             first.eq(regs["RD_IMAGE"] * per + regs["RD_TILE"]),
                             img_px.eq(image_px - regs["RD_TILE"] * cfg_tp)]
                m.next = "REGION"
            with m.State("REGION"):
                tw = Mux(regs["LAYOUT"][0], (n_tiles + 1) >> 1, 0)
                m.d.sync += [table_words.eq(tw), region_words.eq(tw + n_tiles * slot)]
                m.next = "RANGE"
            with m.State("RANGE"):
                bad = Signal(control_errors())
                m.d.comb += bad.region.eq((base + (region_words << 3)) >> aw != 0)
                with m.If(op_read):
                    cnt, tile = regs["RD_COUNT"], regs["RD_TILE"]
                    m.d.comb += bad.range.eq(
                        (cnt == 0) | (regs["RD_IMAGE"] >= N) | (tile >= tpi)
                        | (first + cnt > n_tiles)
                        # a range that starts inside an image with a short last tile must
                        # end in that image (the lane's seek covers one image geometry)
                        | ((tile != 0) & (rem != 0) & (tile + cnt > tpi)))
                with m.If(bad.as_value().any()):
                    m.d.sync += [errs.eq(bad), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                cmd = Mux(op_read, self.rd_cmd.ready, self.wr_cmd.ready)
                m.d.comb += [self.wr_cmd.valid.eq(~op_read), self.rd_cmd.valid.eq(op_read)]
                with m.If(cmd):
                    with m.If(op_read):
                        m.d.sync += rd_ran.eq(1)
                    with m.Else():
                        m.d.sync += wr_ran.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~op_read & ~ws.busy):
                    e = ws.error
                    m.d.sync += [errs.wr_lane.eq(e.lane), errs.wr_resp.eq(e.resp),
                                 errs.wr_framing.eq(e.framing), errs.wr_bounds.eq(e.bounds),
                                 busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.If(op_read & ~rs.busy):
                    e = rs.error
                    m.d.sync += [errs.rd_lane.eq(e.lane), errs.rd_resp.eq(e.resp),
                                 errs.rd_length.eq(e.length), errs.rd_table.eq(e.table),
                                 busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
        return m
