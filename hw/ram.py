"""Block-RAM read ports for the compact lanes (hw/compact_encoder.py, hw/compact_decoder.py).

`registered_read_port` is an asynchronous read followed by a register, which yosys merges into
the RAM's synchronous read: the same timing as Amaranth's synchronous port. Amaranth marks a
synchronous port's read/write collisions as defined, so yosys would wrap each such RAM in
read-before-write and transparency emulation (a delayed write port, a register and a bypass
multiplexer); with this port and `NO_RW_CHECK` on the memory it does not. Only for memories
where no read needs the entry written in the same clock (the caller says why).
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal

NO_RW_CHECK = {"no_rw_check": 1}


def registered_read_port(m: Module, mem, name: str) -> SimpleNamespace:
    """`addr` and `data` (a clock after the address, like a synchronous port; no reset)."""
    port = mem.read_port(domain="comb")
    data = Signal.like(port.data, name=f"{name}_rdata", reset_less=True)
    m.d.sync += data.eq(port.data)
    return SimpleNamespace(addr=port.addr, data=data)
