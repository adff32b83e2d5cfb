"""Block-RAM read ports that cost no logic (the compact lanes, the host link).

`registered_read_port` is an asynchronous read followed by a register, which yosys merges into
the RAM's synchronous read: the same timing as Amaranth's synchronous port. Amaranth marks a
synchronous port's read/write collisions as defined, so yosys would wrap each such RAM in
read-before-write and transparency emulation (a delayed write port, a register and a bypass
multiplexer); with this port and `NO_RW_CHECK` on the memory it does not. Only for memories
where no read needs the entry written in the same clock (the caller says why).

The register's initial value (Amaranth gives every register one) would make yosys emulate it
too, on RAMs without one (the iCE40's): a flip-flop and a LUT per data bit that hold the output
at 0 until the first read. The register carries the attribute `fmcodec_no_init`, and the FPGA
builds (hw/build.py) run `YOSYS_AFTER_READ`, which drops the initial value of such registers:
only their content before the first read differs, which no user of these ports looks at
(without an enable the register is loaded every clock; with one, every user reads before it
uses the data). Simulation keeps the initial value.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal

NO_RW_CHECK = {"no_rw_check": 1}
NO_INIT = "fmcodec_no_init"
YOSYS_AFTER_READ = f"setattr -unset init a:{NO_INIT}"


def registered_read_port(m: Module, mem, name: str, enable: bool = False) -> SimpleNamespace:
    """`addr` and `data` (a clock after the address, like a synchronous port; no reset).

    With `enable`, also `en` (default 1, like Amaranth's port): `data` holds while it is 0.
    """
    port = mem.read_port(domain="comb")
    data = Signal.like(port.data, name=f"{name}_rdata", reset_less=True,
                      attrs={NO_INIT: 1})
    if not enable:
        m.d.sync += data.eq(port.data)
        return SimpleNamespace(addr=port.addr, data=data)
    en = Signal(init=1, name=f"{name}_ren")
    with m.If(en):
        m.d.sync += data.eq(port.data)
    return SimpleNamespace(addr=port.addr, data=data, en=en)
