"""AXI4 (memory side) and AXI4-Lite (host side) port signatures, and their flat top-level names.

The signatures are seen from the master: `Out` members are driven by the master. A block that
masters DRAM has `axi: Out(axi4_write_signature())`; the control block, an AXI4-Lite slave, has
`axil: In(axil_signature())`.

Amaranth names a nested port's Verilog ports `axi__awaddr`; verification IP (cocotbext-axi's
`AxiBus.from_prefix(dut, "m_axi")`) and every vendor tool expect `m_axi_awaddr`. A top-level
component therefore lists the channel signals as flat members (`flat_members`) and ties them to
the inner blocks' nested ports with `connect_flat`: one rule for every AXI port of the design.

Only INCR bursts of full 64-bit beats are issued (`awsize` = 3, all strobes set); IDs are 0 (one
ID, responses in order), so the readers rely on AXI's in-order return for one ID.
"""

from amaranth.hdl import Const
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, In, Out

BURST_INCR = 1
RESP_OKAY = 0
BOUNDARY_BYTES = 4096       # an AXI burst never crosses a 4 KB boundary


def axi4_write_signature(addr_width: int = 32, data_width: int = 64, id_width: int = 1):
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awcache": Out(4), "awprot": Out(3),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


def axi4_read_signature(addr_width: int = 32, data_width: int = 64, id_width: int = 1):
    return wiring.Signature({
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arcache": Out(4), "arprot": Out(3),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def axil_signature(addr_width: int = 8, data_width: int = 32):
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def flat_members(prefix: str, sig: wiring.Signature, master: bool) -> dict:
    """`{prefix_name: In/Out(width)}` for a top-level component. `master`: the component is the
    master of this port (its `Out` members are outputs), else the slave (flows flipped)."""
    out = {}
    for name, member in sig.members.items():
        flow = member.flow if master else member.flow.flip()
        out[f"{prefix}_{name}"] = (Out if flow == Flow.Out else In)(member.shape)
    return out


def connect_flat(m, top, prefix: str, inner, sig: wiring.Signature, master: bool) -> None:
    """Tie the flat members of `top` to `inner` (a nested port with signature `sig`, or its
    flipped slave view); `master` as in `flat_members`."""
    for name, member in sig.members.items():
        outer, port = getattr(top, f"{prefix}_{name}"), getattr(inner, name)
        # The side that drives: the master's Out members, the slave's In members.
        if (member.flow == Flow.Out) == master:
            m.d.comb += outer.eq(port)
        else:
            m.d.comb += port.eq(outer)


def full_beat_defaults(port, data_width: int = 64) -> list:
    """The constant attributes of a master's write or read address channel and write strobes."""
    stmts = []
    for ch in ("aw", "ar"):
        if hasattr(port, f"{ch}size"):
            stmts += [getattr(port, f"{ch}size").eq((data_width // 8).bit_length() - 1),
                      getattr(port, f"{ch}burst").eq(BURST_INCR),
                      getattr(port, f"{ch}cache").eq(0b0011),     # normal, bufferable
                      getattr(port, f"{ch}prot").eq(0),
                      getattr(port, f"{ch}id").eq(0)]
    if hasattr(port, "wstrb"):
        stmts.append(port.wstrb.eq(Const(-1, data_width // 8)))
    return stmts
