"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports in generated Verilog.

Amaranth 0.5 flattens a component's stream port ``i: In(stream.Signature(shape))`` into three
top-level Verilog ports: ``i__valid``, ``i__ready`` and ``i__payload``. The payload is always one
flat vector, also for structured shapes: a ``data.StructLayout`` puts its fields one after another
from bit 0 up, in declaration order (``ArrayLayout`` element 0 at bit 0). :class:`Payload` packs
and unpacks that vector. A stream with ``always_ready``/``always_valid`` has no ready/valid port;
the drivers treat a missing one as constant 1.

Timing: everything the testbench drives changes at the falling clock edge, and everything it
samples is read in the ``ReadOnly`` phase right after the falling edge, when the values that the
next rising edge will register are settled. A transfer is seen there as ``valid & ready`` and
takes effect at the following rising edge. This keeps drivers free of races with the DUT's
registers in any simulator (Verilator and Icarus order edge callbacks differently).

Typical testbench::

    from sim.streams import Payload, StreamSink, StreamSource, start_clock, reset

    @cocotb.test()
    async def adder_tb(dut):
        await start_clock(dut)
        await reset(dut)
        src = StreamSource(dut, "i", shape=PairLayout(), valid_prob=0.7, seed=1)
        snk = StreamSink(dut, "o", shape=signed(9), ready_prob=0.6, seed=2)
        src.send([{"a": 1, "b": -2}, {"a": 3, "b": 4}])
        got = await snk.receive(2)
        assert got == [-1, 7]
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

try:
    from cocotb.simtime import get_sim_time as _get_sim_time
except ImportError:  # cocotb 2.0
    from cocotb.utils import get_sim_time as _get_sim_time

__all__ = [
    "Field",
    "Payload",
    "StreamSource",
    "StreamSink",
    "HandshakeChecker",
    "HandshakeError",
    "start_clock",
    "reset",
    "default_seed",
    "sim_time_ns",
]


class Field(NamedTuple):
    """One field of a flat payload, for shapes given as a field list (lowest bits first)."""

    name: str
    width: int
    signed: bool = False


class HandshakeError(AssertionError):
    """A stream broke the rule: valid and payload are held while ready is low."""


# -- payload packing ---------------------------------------------------------------------------


class Payload:
    """Packs Python values into a flat payload vector and back, laid out as Amaranth lays it out.

    ``shape`` is any of:

    * an ``int`` width (unsigned) or an Amaranth shape: ``unsigned(8)``, ``signed(9)``, an enum;
      the value is an ``int``;
    * an Amaranth ``data.StructLayout`` / ``data.ArrayLayout`` (or a layout class such as a
      ``data.Struct`` subclass), nested freely; the value is a ``dict`` (struct) or ``list``
      (array) of such values;
    * a field list ``[("a", 8, True), ("b", 4, False)]`` or of :class:`Field`; the value is a
      ``dict``. Fields go from bit 0 up, like a ``StructLayout``.

    Packing checks ranges (a value that does not fit its field is a test bug, not something to
    wrap silently); unpacking sign-extends signed fields.
    """

    def __init__(self, shape: Any):
        from amaranth.hdl import Shape, ShapeCastable, signed, unsigned
        from amaranth.lib import data

        if isinstance(shape, int):
            shape = unsigned(shape)
        elif isinstance(shape, Sequence) and not isinstance(shape, (str, bytes)):
            fields = [Field(*f) for f in shape]
            shape = data.StructLayout(
                {f.name: (signed(f.width) if f.signed else unsigned(f.width)) for f in fields}
            )
        self.shape = shape

        layout = None
        if isinstance(shape, data.Layout):
            layout = shape
        elif isinstance(shape, ShapeCastable):
            try:
                layout = data.Layout.cast(shape)
            except TypeError:
                layout = None

        if layout is not None:
            self.kind = "array" if isinstance(layout, data.ArrayLayout) else "struct"
            self.fields = [(key, fld.offset, Payload(fld.shape)) for key, fld in layout]
            self.width = layout.size
            self.signed = False
        else:
            cast = Shape.cast(shape)
            self.kind = "int"
            self.fields = []
            self.width = cast.width
            self.signed = cast.signed

    def __repr__(self) -> str:
        return f"Payload({self.shape!r})"

    def pack(self, value: Any) -> int:
        """Python value -> unsigned int of ``width`` bits."""
        if self.kind == "int":
            v = int(value)
            if self.width == 0:
                lo, hi = 0, 1
            elif self.signed:
                lo, hi = -(1 << (self.width - 1)), 1 << (self.width - 1)
            else:
                lo, hi = 0, 1 << self.width
            if not lo <= v < hi:
                kind = "signed" if self.signed else "unsigned"
                raise ValueError(f"{v} does not fit {kind}({self.width})")
            return v & ((1 << self.width) - 1)
        if self.kind == "array":
            if len(value) != len(self.fields):
                raise ValueError(f"expected {len(self.fields)} elements, got {len(value)}")
            items = zip(self.fields, value, strict=True)
            return sum(sub.pack(v) << off for (_, off, sub), v in items)
        if not isinstance(value, Mapping):
            raise TypeError(f"a structured payload takes a dict, not {type(value).__name__}")
        names = {key for key, _, _ in self.fields}
        unknown = set(value) - names
        if unknown:
            raise KeyError(f"unknown payload fields {sorted(unknown)}; fields are {sorted(names)}")
        missing = names - set(value)
        if missing:
            raise KeyError(f"missing payload fields {sorted(missing)}")
        bits = 0
        for key, off, sub in self.fields:
            bits |= sub.pack(value[key]) << off
        return bits

    def unpack(self, bits: int) -> Any:
        """Unsigned int of ``width`` bits -> Python value."""
        bits = int(bits) & ((1 << self.width) - 1)
        if self.kind == "int":
            if self.signed and self.width and bits >> (self.width - 1):
                return bits - (1 << self.width)
            return bits
        values = {key: sub.unpack(bits >> off) for key, off, sub in self.fields}
        if self.kind == "array":
            return [values[i] for i in range(len(self.fields))]
        return values


# -- helpers -----------------------------------------------------------------------------------


def default_seed() -> int:
    """``FMCODEC_SEED`` if the test set one, else cocotb's random seed."""
    seed = os.environ.get("FMCODEC_SEED")
    if seed is not None:
        return int(seed)
    return int(getattr(cocotb, "RANDOM_SEED", 0) or 0)


def sim_time_ns() -> float:
    return _get_sim_time("ns")


def _bits(handle: Any, what: str) -> int:
    value = handle.value
    try:
        return int(value) if len(handle) == 1 else value.to_unsigned()
    except ValueError:
        raise HandshakeError(f"{what} is {value} (X or Z) at {sim_time_ns()} ns") from None


def _port(dut: Any, name: str) -> Any:
    return getattr(dut, name, None)


def _clock(dut: Any, clk: Any) -> Any:
    if clk is None:
        clk = "clk"
    return getattr(dut, clk) if isinstance(clk, str) else clk


def _rng(rng: random.Random | None, seed: int | None) -> random.Random:
    if rng is not None:
        return rng
    return random.Random(default_seed() if seed is None else seed)


async def start_clock(dut: Any, period_ns: float = 10, clk: str = "clk") -> Clock:
    """Start a free-running clock on ``dut.<clk>`` (Amaranth's default domain port is ``clk``)."""
    clock = Clock(getattr(dut, clk), period_ns, unit="ns")
    clock.start()
    return clock


async def reset(dut: Any, cycles: int = 2, clk: str = "clk", rst: str = "rst") -> None:
    """Hold ``dut.<rst>`` high for ``cycles`` rising edges; return at a falling edge, out of reset.

    Create the stream drivers after this returns; they start idle (valid low, ready low). Until
    then the DUT's stream inputs are undriven (0 in Verilator, X in Icarus), which a synchronous
    reset makes harmless.
    """
    clock = getattr(dut, clk)
    reset_port = getattr(dut, rst, None)
    if reset_port is not None:
        reset_port.value = 1
    for _ in range(cycles):
        await RisingEdge(clock)
    await FallingEdge(clock)
    if reset_port is not None:
        reset_port.value = 0


class _StreamPort:
    def __init__(self, dut: Any, name: str, shape: Any, clk: Any):
        self.name = name
        self.clk = _clock(dut, clk)
        self.valid = _port(dut, f"{name}__valid")
        self.ready = _port(dut, f"{name}__ready")
        self.payload = _port(dut, f"{name}__payload")
        if self.valid is None and self.ready is None:
            raise AttributeError(f"the DUT has no stream port {name!r} ({name}__valid/__ready)")
        if shape is None:
            shape = len(self.payload) if self.payload is not None else 0
        self.codec = shape if isinstance(shape, Payload) else Payload(shape)
        if self.payload is not None and len(self.payload) != self.codec.width:
            raise ValueError(
                f"{name}__payload is {len(self.payload)} bits but the shape is "
                f"{self.codec.width} bits"
            )

    def valid_now(self) -> int:
        return 1 if self.valid is None else _bits(self.valid, f"{self.name}__valid")

    def ready_now(self) -> int:
        return 1 if self.ready is None else _bits(self.ready, f"{self.name}__ready")

    def payload_bits(self) -> int:
        return 0 if self.payload is None else _bits(self.payload, f"{self.name}__payload")


class HandshakeChecker:
    """Watches a stream and raises :class:`HandshakeError` when it breaks the handshake rule.

    The rule: once ``valid`` is high, ``valid`` and ``payload`` stay unchanged until a cycle with
    ``ready`` high. (Also checked: no X/Z on valid and ready, and on payload while valid.) The
    exception fails the running cocotb test. Started on construction.
    """

    def __init__(self, dut: Any, name: str, *, shape: Any = None, clk: Any = None):
        self.port = _StreamPort(dut, name, shape, clk)
        self.cycles = 0
        self.transfers = 0
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        port = self.port
        held: int | None = None  # payload of a cycle with valid && !ready
        while True:
            await FallingEdge(port.clk)
            await ReadOnly()
            self.cycles += 1
            valid, ready = port.valid_now(), port.ready_now()
            payload = port.payload_bits() if valid else None
            if held is not None:
                if not valid:
                    _dropped(port)
                if payload != held:
                    _changed(port, held, payload)
            if valid and ready:
                self.transfers += 1
            held = payload if valid and not ready else None


def _dropped(port: _StreamPort) -> None:
    raise HandshakeError(f"{port.name}: valid dropped without a transfer at {sim_time_ns()} ns")


def _changed(port: _StreamPort, held: int, payload: int) -> None:
    raise HandshakeError(
        f"{port.name}: payload changed from {held:#x} to {payload:#x} while valid and not ready "
        f"at {sim_time_ns()} ns"
    )


class StreamSource:
    """Drives a DUT's input stream with queued values, with random gaps in valid.

    Each idle cycle, valid goes high with probability ``valid_prob`` (seeded RNG). Once valid is
    high, valid and payload are held until the DUT takes the value (ready high), as the handshake
    rule demands. While valid is low the payload carries random bits, so a DUT that looks at the
    payload without valid is caught. Started on construction; create it after :func:`reset`.

    ``sent_times_ns`` gives, for every value sent, the simulation time at which the transfer was
    seen (the falling edge half a cycle before the rising edge that takes it); differences of
    these divided by the clock period are cycle counts.
    """

    def __init__(
        self,
        dut: Any,
        name: str = "i",
        *,
        shape: Any = None,
        clk: Any = None,
        valid_prob: float = 1.0,
        seed: int | None = None,
        rng: random.Random | None = None,
        junk: bool = True,
    ):
        self.port = _StreamPort(dut, name, shape, clk)
        if self.port.valid is None:
            raise ValueError(f"{name} is always_valid; it cannot be driven with gaps")
        self.valid_prob = valid_prob
        self.rng = _rng(rng, seed)
        self.junk = junk
        self.queue: deque[Any] = deque()
        self.sent: list[Any] = []
        self.sent_times_ns: list[float] = []
        self._current: Any = None
        self._busy = False
        self.port.valid.value = 0
        if self.port.payload is not None:
            self.port.payload.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, values: Iterable[Any]) -> None:
        """Queue values (ints, dicts or lists as the shape takes them)."""
        for v in values:
            self.port.codec.pack(v)  # fail here, in the caller, on a bad value
            self.queue.append(v)

    def send_one(self, value: Any) -> None:
        self.send([value])

    @property
    def idle(self) -> bool:
        return not self.queue and not self._busy

    async def wait_idle(self, timeout_cycles: int | None = None) -> None:
        """Wait until every queued value has been taken by the DUT."""
        cycles = 0
        while not self.idle:
            await FallingEdge(self.port.clk)
            cycles += 1
            if timeout_cycles is not None and cycles > timeout_cycles:
                raise TimeoutError(
                    f"{self.port.name}: {len(self.queue) + self._busy} values not taken after "
                    f"{timeout_cycles} cycles"
                )

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        port, codec, rng = self.port, self.port.codec, self.rng
        while True:
            await FallingEdge(port.clk)
            if not self._busy:
                if self.queue and rng.random() < self.valid_prob:
                    self._current = self.queue.popleft()
                    self._busy = True
                    if port.payload is not None:
                        port.payload.value = codec.pack(self._current)
                    port.valid.value = 1
                else:
                    port.valid.value = 0
                    if self.junk and port.payload is not None and codec.width:
                        port.payload.value = rng.getrandbits(codec.width)
            await ReadOnly()
            if self._busy and port.ready_now():
                # Taken at the coming rising edge.
                self.sent.append(self._current)
                self.sent_times_ns.append(sim_time_ns())
                self._current = None
                self._busy = False


class StreamSink:
    """Takes a DUT's output stream with random ready stalls and collects the payloads.

    Each cycle, ready is high with probability ``ready_prob`` (seeded RNG). Values arrive in
    ``received`` (unpacked with the shape) and ``received_times_ns`` (time each transfer was
    seen, as in :class:`StreamSource`). With ``check=True`` (default) it also checks the DUT's
    side of the handshake as :class:`HandshakeChecker` does (raising :class:`HandshakeError`).
    Started on construction; create it after :func:`reset`.
    """

    def __init__(
        self,
        dut: Any,
        name: str = "o",
        *,
        shape: Any = None,
        clk: Any = None,
        ready_prob: float = 1.0,
        seed: int | None = None,
        rng: random.Random | None = None,
        check: bool = True,
    ):
        self.port = _StreamPort(dut, name, shape, clk)
        self.ready_prob = ready_prob
        # Without a seed, not the same random sequence as a source on the default seed.
        self.rng = _rng(rng, default_seed() ^ 0x5EED if seed is None else seed)
        self.received: list[Any] = []
        self.received_times_ns: list[float] = []
        # Checked inline (one wake-up per cycle instead of two); HandshakeChecker states the rule.
        self.check = check
        if self.port.ready is not None:
            self.port.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def receive(self, count: int, timeout_cycles: int | None = None) -> list[Any]:
        """Wait until ``count`` values have arrived in total; return the first ``count``.

        Without ``timeout_cycles`` the wait is bounded by ``1000 + 100 * count`` cycles.
        """
        if timeout_cycles is None:
            timeout_cycles = 1000 + 100 * count
        cycles = 0
        while len(self.received) < count:
            await FallingEdge(self.port.clk)
            cycles += 1
            if cycles > timeout_cycles:
                raise TimeoutError(
                    f"{self.port.name}: received {len(self.received)} of {count} values after "
                    f"{timeout_cycles} cycles"
                )
        return self.received[:count]

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        port, codec, rng = self.port, self.port.codec, self.rng
        held: int | None = None
        while True:
            await FallingEdge(port.clk)
            if port.ready is not None:
                port.ready.value = 1 if rng.random() < self.ready_prob else 0
            await ReadOnly()
            valid = port.valid_now()
            if not valid:
                if held is not None and self.check:
                    _dropped(port)
                continue
            payload = port.payload_bits()
            if held is not None and self.check and payload != held:
                _changed(port, held, payload)
            if port.ready_now():
                self.received.append(codec.unpack(payload))
                self.received_times_ns.append(sim_time_ns())
                held = None
            else:
                held = payload
