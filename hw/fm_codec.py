"""Feature-map codec: the unit an accelerator instantiates between its conv engine and DRAM.

    s_axil_* (host) -> FeatureMapControl -> cfg, jobs
    i (conv values) -> FeatureMapWriter --AW/W/B--\
                                                   m_axi_* (one AXI4 master, 64-bit)
    o (conv values) <- FeatureMapReader <--AR/R---/

Ports (flat, AXI names, so verification IP and vendor tools attach directly):
- `s_axil_*`: AXI4-Lite slave, the register map of hw/fm_control.py.
- `m_axi_*`: AXI4 master; the writer owns the write channels, the reader the read channels, so
  both run at once without arbitration (one job of either kind at a time is started by the
  control, but a reader's range can follow a write without waiting for anything else).
- `i`: conv-engine values to compress (hw/fm_writer.py); `o`: decoded values for the conv engine
  (hw/fm_reader.py). Arrays of `lanes` streams for P > 1 (hw/multi_lane.py).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring

from hw.axi import (
    axi4_read_signature,
    axi4_write_signature,
    axil_signature,
    connect_flat,
    flat_members,
)
from hw.fm_control import FeatureMapControl
from hw.fm_reader import FeatureMapReader
from hw.fm_writer import FeatureMapWriter


class FeatureMapCodec(wiring.Component):
    """Writer, reader and control behind one AXI4-Lite slave and one AXI4 master.

    Parameters: `lanes`, `addr_width`, `max_burst`, `outstanding`, `fifo_depth` (reader),
    `encoder` (EncoderLane parameters) and `decoder` (DecoderLane parameters).
    """

    def __init__(self, lanes: int = 1, addr_width: int = 32, max_burst: int = 16,
                 outstanding: int = 4, fifo_depth: int = 64, encoder: dict | None = None,
                 decoder: dict | None = None):
        self.lanes = lanes
        self.addr_width = addr_width
        self.writer = FeatureMapWriter(lanes, addr_width, max_burst, **(encoder or {}))
        self.reader = FeatureMapReader(lanes, addr_width, max_burst, outstanding, fifo_depth,
                                       **(decoder or {}))
        in_width = self.writer.in_width
        self.raw_bytes_per_value = 1 if in_width <= 9 else 2
        self.control = FeatureMapControl(addr_width, self.raw_bytes_per_value)
        self._wsig = axi4_write_signature(addr_width)
        self._rsig = axi4_read_signature(addr_width)
        self._lsig = axil_signature()
        super().__init__({
            **flat_members("s_axil", self._lsig, master=False),
            **flat_members("m_axi", self._wsig, master=True),
            **flat_members("m_axi", self._rsig, master=True),
            "i": self.writer.signature.members["i"],
            "o": self.reader.signature.members["o"],
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.control = ctl = self.control
        m.submodules.writer = wr = self.writer
        m.submodules.reader = rd = self.reader
        connect_flat(m, self, "s_axil", ctl.axil, self._lsig, master=False)
        connect_flat(m, self, "m_axi", wr.axi, self._wsig, master=True)
        connect_flat(m, self, "m_axi", rd.axi, self._rsig, master=True)
        for lane_port in (wr.cfg, rd.cfg):
            m.d.comb += [lane_port.valid.eq(ctl.cfg.valid),
                         lane_port.payload.eq(ctl.cfg.payload)]
        wiring.connect(m, ctl.wr_cmd, wr.cmd)
        wiring.connect(m, ctl.rd_cmd, rd.cmd)
        m.d.comb += [ctl.wr_status.eq(wr.status), ctl.rd_status.eq(rd.status)]
        if self.lanes == 1:
            wiring.connect(m, wiring.flipped(self.i), wr.i)
            wiring.connect(m, rd.o, wiring.flipped(self.o))
        else:
            for p in range(self.lanes):
                wiring.connect(m, wiring.flipped(self.i[p]), wr.i[p])
                wiring.connect(m, rd.o[p], wiring.flipped(self.o[p]))
        return m
