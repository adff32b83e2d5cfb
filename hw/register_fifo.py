"""Register FIFO: a few stream entries held in flip-flops, to cut handshake paths between stages.

Stream contract
---------------
- `i` -> `o`: any payload shape, in order, nothing dropped or duplicated. `i.ready` is `count !=
  depth` and `o.valid`/`o.payload` come straight from registers, so no combinational path runs
  from `o.ready` to `i.ready` or from `i.valid` to `o.valid`: a downstream ready chain ends here.
- `flush`: empties the FIFO at the clock edge (a commit that drops what is in flight).

Throughput one entry per clock with `depth` >= 2 (an entry may be taken and given in the same
clock); with `depth` = 1 an entry per two clocks. Latency one clock. Cost: `depth` registers of the
payload's width and a `depth`-way input multiplexer per register.

Blocks use it where a path must start at registers: the VLC decoder keeps each tile context's
next words in one (its token loop takes them without an upstream handshake or a block RAM's
slow output on the path), and its tile sizes and its output pass through one.
"""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class RegisterFifo(wiring.Component):
    """`depth` entries of `shape` in registers (see the module docstring)."""

    def __init__(self, shape, depth: int = 2):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.shape = shape
        self.depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "flush": In(1),
            "count": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        regs = [Signal(self.shape, name=f"entry{j}") for j in range(self.depth)]
        count = self.count
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            self.i.ready.eq(count != self.depth),
            self.o.valid.eq(count != 0),
            self.o.payload.eq(regs[0]),
        ]
        # Entries shift towards the head on a pop; a push lands behind the last one kept.
        kept = count - pop
        for j, reg in enumerate(regs):
            shifted = regs[j + 1] if j + 1 < self.depth else reg
            held = Mux(pop, Value.cast(shifted), Value.cast(reg))
            m.d.sync += reg.eq(Mux(push & (kept == j), Value.cast(self.i.payload), held))
        m.d.sync += count.eq(kept + push)
        with m.If(self.flush):
            m.d.sync += count.eq(0)
        return m
