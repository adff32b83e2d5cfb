"""Host link: the board side of the framed protocol of fmcodec/protocol.py, around the codec lanes.

Stream contract
---------------
- `rx`: bytes from the UART receiver. Always ready: a byte that arrives while the link is busy
  with a request (running the codec or sending a reply) is dropped, as the host sends one
  request and then waits for its reply.
- `tx`: the reply bytes, one frame per request.
- `cfg`: configuration writes of a CONFIG request, one per clock, after its frame checked good.
- `enc_i` / `enc_o`: the encoder lane: values in (channel order), `packed_word()` tiles out.
- `dec_i` / `dec_o`: the decoder lane: `container_word()` words in, values out; `dec_error` is
  the decoder lane's error flag, sampled while it runs.
- `error`: high after a request was answered with ERROR, until the next good reply.

Two on-chip buffers, each one simple dual-port memory, hold what a request carries:

- the value buffer (`value_depth` x 16 bits): the values of a TILE request (or the bytes of an
  ECHO), later overwritten by the decoder's reconstruction;
- the word buffer (`word_depth` x 66 bits: a word and its `first`/`last` flags): the writes of a
  CONFIG request, or the encoder's container words.

A TILE request runs in three phases, one after the other, so each lane's cycle count is its own
and the UART never paces a lane: the encoder takes the values from the value buffer at up to one
per clock and its words go to the word buffer; then the decoder takes those words and its values
go back to the value buffer; then the reply is sent from both buffers. A lane that makes no
progress for `idle_limit` clocks ends its phase with ERROR STALL (the decoder, when it has
flagged an error, with the TILE reply and the error bit in its status instead). Outside its phase
a lane's output is taken and dropped, so a confused lane never blocks the next request.

The link itself costs nothing per value on the codec side; its throughput is the UART's.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fmcodec import protocol as P
from hw.bit_packer import packed_word
from hw.bit_unpacker import container_word
from hw.compare import le_const
from hw.config import config_signature
from hw.ram import NO_RW_CHECK, registered_read_port

VALUE_BITS = 16


def crc16_next(crc, byte):
    """CRC-16/CCITT-FALSE after one more byte (most significant bit first), as logic."""
    for i in reversed(range(8)):
        feedback = crc[15] ^ byte[i]
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(feedback, P.CRC16_POLY, 0)
    return crc


WORD_ROW_BITS = 72     # a word buffer row: data 0..63, first 64, last 65, then unused


class HostLink(wiring.Component):
    """Framed requests in on `rx`, replies out on `tx`, the codec lanes in between.

    Parameters: `clk_freq` and `baud` (reported by INFO; `clk_freq` also times out a stalled
    frame), `dtype` (how values travel on the link), `value_depth` and `word_depth` (buffer
    sizes), `codec` (False: a link-only build without lanes, which answers TILE with ERROR
    NO_CODEC), `lanes`, `group`, `max_channels`, `max_tile_words` (reported by INFO),
    `in_shape` and
    `out_shape` (value shapes of the encoder input and decoder output), `idle_limit` (clocks
    without lane progress before a phase is abandoned), `frame_timeout_s` (silence within a
    frame before it is abandoned).
    """

    def __init__(self, *, clk_freq: float, baud: int, dtype: str = "int8",
                 value_depth: int = 1024, word_depth: int = 256, codec: bool = True,
                 lanes: int = 1, group: int = 8, max_channels: int = 512,
                 max_tile_words: int = 512, in_shape=None, out_shape=None,
                 idle_limit: int = 1 << 16,
                 frame_timeout_s: float = P.FRAME_TIMEOUT_S):
        if dtype not in P.DTYPES:
            raise ValueError(f"dtype {dtype!r} not one of {P.DTYPES}")
        vb = P.value_bytes(dtype)
        if not 1 <= value_depth or P.TILE_HEADER_BYTES + vb * value_depth > P.MAX_PAYLOAD:
            raise ValueError(f"value_depth {value_depth} does not fit a frame")
        if not 1 <= word_depth or P.CONFIG_WRITE_BYTES * word_depth > P.MAX_PAYLOAD:
            raise ValueError(f"word_depth {word_depth} does not fit a frame")
        reply = (P.RESULT_HEADER_BYTES + P.WORD_BYTES * word_depth + vb * value_depth)
        if reply > P.MAX_PAYLOAD:
            raise ValueError(f"a TILE reply of {reply} bytes would not fit a frame; "
                             f"reduce value_depth or word_depth")
        self.clk_freq = int(clk_freq)
        self.baud = int(baud)
        self.dtype = dtype
        self.value_bytes = vb
        self.value_depth = value_depth
        self.word_depth = word_depth
        self.codec = codec
        self.info = P.Info(version=P.VERSION,
                           design=P.DESIGN_CODEC if codec else P.DESIGN_LINK,
                           lanes=lanes if codec else 0, dtype=dtype, value_depth=value_depth,
                           word_depth=word_depth, clk_hz=self.clk_freq, baud=self.baud,
                           group=group if codec else 0,
                           max_channels=max_channels if codec else 0,
                           max_tile_words=max_tile_words if codec else 0)
        self.timeout_cycles = max(16, round(clk_freq * frame_timeout_s))
        self.idle_limit = idle_limit
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "cfg": Out(config_signature()),
            "enc_i": Out(stream.Signature(signed(8) if in_shape is None else in_shape)),
            "enc_o": In(stream.Signature(packed_word())),
            "dec_i": Out(stream.Signature(container_word())),
            "dec_o": In(stream.Signature(signed(8) if out_shape is None else out_shape)),
            "dec_error": In(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        vb = self.value_bytes
        vdepth, wdepth = self.value_depth, self.word_depth

        # Word buffer rows: 64 data bits, `first` (bit 64), `last` (bit 65); written a byte lane
        # at a time by CONFIG (no assembly register), a whole row at a time by the encoder.
        # No state reads an entry in the clock it is written (a phase writes one buffer and reads
        # the other), so the read ports need no read/write collision logic (hw/ram.py).
        m.submodules.vmem = vmem = Memory(shape=VALUE_BITS, depth=vdepth, init=[],
                                          attrs=NO_RW_CHECK)
        m.submodules.wmem = wmem = Memory(shape=WORD_ROW_BITS, depth=wdepth, init=[],
                                          attrs=NO_RW_CHECK)
        vmem_w = vmem.write_port()
        wmem_w = wmem.write_port(granularity=8)
        vmem_r = registered_read_port(m, vmem, "vmem", enable=True)
        wmem_r = registered_read_port(m, wmem, "wmem", enable=True)
        all_lanes = (1 << (WORD_ROW_BITS // 8)) - 1
        # Read ports hold their data unless a state reads (their enable defaults to 1).
        m.d.comb += [vmem_r.en.eq(0), wmem_r.en.eq(0)]

        # -- request ---------------------------------------------------------------------------
        code = Signal(8)
        remaining = Signal(16)          # payload bytes still to come
        err = Signal(8)                 # error found while receiving (0: none)
        crc = Signal(16)                # the request's CRC, then the reply's
        crc_lo = Signal(8)
        tiles = Signal(16)              # TILE: header field, then tiles still to come out
        n_values = Signal(range(vdepth + 1))    # TILE values, ECHO bytes received
        n_words = Signal(range(wdepth + 1))     # CONFIG writes, then encoder words
        lane = Signal(3)                # CONFIG: byte of the write; TILE: header byte
        lo_byte = Signal(8)
        half = Signal()                 # int16 values: low byte held
        timeout = Signal(range(self.timeout_cycles + 1))

        # -- codec phases ----------------------------------------------------------------------
        feed_addr = Signal(range(max(vdepth, wdepth) + 1))
        feed_valid = Signal()
        received = Signal(range(vdepth + 1))
        idle = Signal(range(self.idle_limit + 1))
        cycles = Signal(32)
        enc_cycles = Signal(32)
        status = Signal(8)

        # -- reply -----------------------------------------------------------------------------
        reply = Signal(8)               # reply code; the reply's shape follows from it
        idx = Signal(5)                 # byte within the fixed part, a word or a value
        item = Signal(range(max(vdepth, wdepth) + 1))   # word or value being sent

        m.d.comb += self.rx.ready.eq(1)
        rx_byte = self.rx.payload
        got = self.rx.valid
        tx_byte = self.tx.payload
        sent = self.tx.valid & self.tx.ready

        # A lane's output is drained outside its phase (see the module docstring).
        m.d.comb += [self.enc_o.ready.eq(1), self.dec_o.ready.eq(1)]

        # What the buffers feed the lanes and the configuration: the read data, whatever the
        # state (only `valid` says when it counts), so that no state decoding gates it.
        m.d.comb += [self.enc_i.payload.eq(vmem_r.data),
                     self.dec_i.payload.eq(Cat(wmem_r.data[:64], wmem_r.data[65])),
                     self.cfg.payload.addr.eq(wmem_r.data[:20]),
                     self.cfg.payload.data.eq(wmem_r.data[32:64])]

        # What each reply carries, from its code and the request's counters.
        fixed_len = Signal(range(P.INFO_BYTES + 1))
        reply_len = Signal(16)
        reply_words = Signal.like(n_words)
        reply_values = Signal.like(n_values)
        value_bytes = Signal(2)
        with m.Switch(reply):
            with m.Case(P.INFO | P.REPLY):
                m.d.comb += [fixed_len.eq(P.INFO_BYTES), reply_len.eq(P.INFO_BYTES)]
            with m.Case(P.ECHO | P.REPLY):
                m.d.comb += [reply_len.eq(n_values), reply_values.eq(n_values),
                             value_bytes.eq(1)]
            with m.Case(P.CONFIG | P.REPLY):
                m.d.comb += [fixed_len.eq(2), reply_len.eq(2)]
            with m.Case(P.TILE | P.REPLY):
                m.d.comb += [fixed_len.eq(P.RESULT_HEADER_BYTES),
                             reply_len.eq(P.RESULT_HEADER_BYTES + (n_words << 3)
                                          + (n_values << (vb - 1))),
                             reply_words.eq(n_words), reply_values.eq(n_values),
                             value_bytes.eq(vb)]
            with m.Default():   # ERROR
                m.d.comb += [fixed_len.eq(2), reply_len.eq(2)]

        def start_reply(code_value):
            m.d.sync += [reply.eq(code_value), idx.eq(0), crc.eq(0xFFFF)]
            m.next = "TX_HEAD"

        def start_error(code_value):
            m.d.sync += err.eq(code_value)
            start_reply(P.ERROR)

        # A frame that stalls is abandoned; outside the receive states `timeout` stays 0.
        receiving = Signal()
        with m.If(receiving & ~got):
            m.d.sync += timeout.eq(timeout + 1)
        with m.Else():
            m.d.sync += timeout.eq(0)

        # The received frame's CRC covers code, length and payload; the sent frame's likewise.
        # A request is checked before its reply starts, so one register holds both.
        rx_crc_en = Signal()
        tx_crc_en = Signal()
        with m.If((rx_crc_en & got) | (tx_crc_en & sent)):
            m.d.sync += crc.eq(crc16_next(crc, Mux(rx_crc_en, rx_byte, tx_byte)))

        def receive(crc=True):
            m.d.comb += [receiving.eq(1), rx_crc_en.eq(crc)]
            with m.If(timeout == self.timeout_cycles):
                start_error(P.ERR_TIMEOUT)

        # Length rules of each request, checked when the length is complete.
        new_len = Cat(remaining[:8], rx_byte)
        len_ok = Signal()
        with m.Switch(code):
            with m.Case(P.INFO):
                m.d.comb += len_ok.eq(new_len == 0)
            with m.Case(P.ECHO):
                m.d.comb += len_ok.eq(le_const(new_len, vdepth))
            with m.Case(P.CONFIG):
                m.d.comb += len_ok.eq((new_len[:3] == 0) & le_const(new_len[3:], wdepth))
            with m.Case(P.TILE):
                limit = P.TILE_HEADER_BYTES + vb * vdepth
                even = (new_len[0] == 0) if vb == 2 else Const(1)
                m.d.comb += len_ok.eq(~le_const(new_len, P.TILE_HEADER_BYTES - 1)
                                      & le_const(new_len, limit)
                                      & even)

        # The buffers' write address and data, whatever the state (only the enables are
        # decoded): the word buffer takes a CONFIG byte (into every byte lane; the enable picks
        # one) or an encoder word; the value buffer a request's value or byte, or a decoded one.
        encoding, decoding = Signal(), Signal()
        store_value = Signal(VALUE_BITS)
        if vb == 2:
            m.d.comb += store_value.eq(Mux(code == P.ECHO, rx_byte, Cat(lo_byte, rx_byte)))
        else:
            m.d.comb += store_value.eq(rx_byte.as_signed() if self.dtype == "int8" else rx_byte)
        dec_value = Signal(VALUE_BITS)
        m.d.comb += [
            dec_value.eq(self.dec_o.payload),
            wmem_w.addr.eq(n_words),
            wmem_w.data.eq(Mux(encoding, Cat(self.enc_o.payload.data, self.enc_o.payload.first,
                                             self.enc_o.payload.last),
                               rx_byte.replicate(9))),
            vmem_w.addr.eq(Mux(decoding, received, n_values)),
            vmem_w.data.eq(Mux(decoding, dec_value, store_value)),
        ]

        with m.FSM() as fsm:
            # -- receive a request ---------------------------------------------------------
            with m.State("SYNC"):
                with m.If(got & (rx_byte == P.SYNC)):
                    m.d.sync += [crc.eq(0xFFFF), err.eq(0), half.eq(0), lane.eq(0),
                                 n_values.eq(0), n_words.eq(0)]
                    m.next = "CODE"

            with m.State("CODE"):
                receive()
                with m.If(got):
                    m.d.sync += code.eq(rx_byte)
                    m.next = "LEN0"

            with m.State("LEN0"):
                receive()
                with m.If(got):
                    m.d.sync += remaining[:8].eq(rx_byte)
                    m.next = "LEN1"

            with m.State("LEN1"):
                receive()
                with m.If(got):
                    m.d.sync += remaining.eq(new_len)
                    known = Cat(*(code == c for c in P.REQUESTS)).any()
                    with m.If(~known):
                        m.d.sync += err.eq(P.ERR_COMMAND)
                    with m.Elif(~len_ok):
                        m.d.sync += err.eq(P.ERR_LENGTH)
                    if not self.codec:
                        with m.Elif(code == P.TILE):
                            m.d.sync += err.eq(P.ERR_NO_CODEC)
                    with m.If(new_len == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                receive()
                with m.If(got):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.next = "CRC0"
                    with m.If(err == 0):
                        self._store(m, code, rx_byte, vmem_w, wmem_w, n_values, n_words, tiles,
                                    lane, lo_byte, half)

            with m.State("CRC0"):
                receive(crc=False)
                with m.If(got):
                    m.d.sync += crc_lo.eq(rx_byte)
                    m.next = "CRC1"

            with m.State("CRC1"):
                receive(crc=False)
                with m.If(got):
                    m.d.sync += [feed_addr.eq(0), feed_valid.eq(0), received.eq(0),
                                 idle.eq(0), cycles.eq(0), status.eq(0)]
                    with m.If(Cat(crc_lo, rx_byte) != crc):
                        start_error(P.ERR_CHECKSUM)
                    with m.Elif(err != 0):
                        start_error(err)
                    with m.Elif(code == P.CONFIG):
                        m.next = "CONFIG"
                    if self.codec:
                        with m.Elif(code == P.TILE):
                            m.d.sync += n_words.eq(0)
                            m.next = "ENCODE"
                    with m.Else():
                        start_reply(code | P.REPLY)

            # -- act on it -----------------------------------------------------------------
            with m.State("CONFIG"):
                # One write per clock: the read issued in one clock is on `cfg` in the next.
                m.d.comb += [wmem_r.addr.eq(feed_addr), wmem_r.en.eq(1),
                             self.cfg.valid.eq(feed_valid)]
                more = feed_addr != n_words     # feed_addr counts up to n_words
                m.d.sync += [feed_valid.eq(more), feed_addr.eq(feed_addr + more)]
                with m.If((feed_addr == n_words) & ~feed_valid):
                    start_reply(P.CONFIG | P.REPLY)

            if self.codec:
                with m.State("ENCODE"):
                    m.d.sync += cycles.eq(cycles + 1)
                    progress = self._feed(m, vmem_r, self.enc_i, feed_addr, feed_valid, n_values)
                    with m.If(self.enc_o.valid):
                        m.d.comb += progress.eq(1)
                        with m.If(n_words != wdepth):   # counts up to wdepth
                            m.d.comb += wmem_w.en.eq(all_lanes)
                            m.d.sync += n_words.eq(n_words + 1)
                        with m.Else():
                            m.d.sync += status.eq(status | P.STATUS_WORD_OVERFLOW)
                        with m.If(self.enc_o.payload.last & (tiles != 0)):
                            m.d.sync += tiles.eq(tiles - 1)
                    self._watch(m, progress, idle)
                    with m.If((feed_addr == n_values) & ~feed_valid & (tiles == 0)):
                        m.d.sync += [feed_addr.eq(0), feed_valid.eq(0), idle.eq(0),
                                     enc_cycles.eq(cycles), cycles.eq(0)]
                        m.next = "DECODE"
                    with m.Elif(idle == self.idle_limit):
                        start_error(P.ERR_STALL)

                with m.State("DECODE"):
                    m.d.sync += cycles.eq(cycles + 1)
                    progress = self._feed(m, wmem_r, self.dec_i, feed_addr, feed_valid, n_words)
                    with m.If(self.dec_error):
                        m.d.sync += status.eq(status | P.STATUS_DECODE_ERROR)
                    with m.If(self.dec_o.valid):
                        m.d.comb += progress.eq(1)
                        with m.If(received != n_values):    # counts up to n_values
                            m.d.comb += vmem_w.en.eq(1)
                            m.d.sync += received.eq(received + 1)
                    self._watch(m, progress, idle)
                    all_fed = (feed_addr == n_words) & ~feed_valid
                    with m.If((all_fed & (received == n_values))
                              | ((idle == self.idle_limit) & status[0])):
                        start_reply(P.TILE | P.REPLY)
                    with m.Elif(idle == self.idle_limit):
                        start_error(P.ERR_STALL)

            # -- send the reply ------------------------------------------------------------
            with m.State("TX_HEAD"):
                m.d.comb += [self.tx.valid.eq(1), tx_crc_en.eq(idx != 0)]
                with m.Switch(idx[:2]):
                    with m.Case(0):
                        m.d.comb += tx_byte.eq(P.SYNC)
                    with m.Case(1):
                        m.d.comb += tx_byte.eq(reply)
                    with m.Case(2):
                        m.d.comb += tx_byte.eq(reply_len[:8])
                    with m.Case(3):
                        m.d.comb += tx_byte.eq(reply_len[8:])
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.d.sync += [idx.eq(0), item.eq(0)]
                        m.next = "TX_FIXED"

            with m.State("TX_FIXED"):
                fixed = self._fixed_byte(m, reply, idx, status, n_words, enc_cycles, cycles, err,
                                         code)
                # idx counts up to fixed_len (it moves only while a byte is sent).
                m.d.comb += [self.tx.valid.eq(idx != fixed_len), tx_byte.eq(fixed),
                             tx_crc_en.eq(1)]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                with m.If(idx == fixed_len):
                    m.d.sync += idx.eq(0)
                    m.next = "TX_WORD_READ"

            # Words and values: read one (a clock), then send its bytes, least significant first.
            with m.State("TX_WORD_READ"):
                m.d.comb += [wmem_r.addr.eq(item), wmem_r.en.eq(1)]
                with m.If(item != reply_words):     # item counts up to reply_words
                    m.next = "TX_WORD"
                with m.Else():
                    m.d.sync += item.eq(0)
                    m.next = "TX_VALUE_READ"

            with m.State("TX_WORD"):
                m.d.comb += [self.tx.valid.eq(1), tx_crc_en.eq(1),
                             tx_byte.eq(wmem_r.data.word_select(idx[:3], 8))]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx[:3] == 7):
                        m.d.sync += [idx.eq(0), item.eq(item + 1)]
                        m.next = "TX_WORD_READ"

            with m.State("TX_VALUE_READ"):
                m.d.comb += [vmem_r.addr.eq(item), vmem_r.en.eq(1)]
                with m.If(item != reply_values):
                    m.next = "TX_VALUE"
                with m.Else():
                    m.next = "TX_CRC"

            with m.State("TX_VALUE"):
                m.d.comb += [self.tx.valid.eq(1), tx_crc_en.eq(1),
                             tx_byte.eq(vmem_r.data.word_select(idx[:1], 8))]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx[:1] + 1 == value_bytes):
                        m.d.sync += [idx.eq(0), item.eq(item + 1)]
                        m.next = "TX_VALUE_READ"

            with m.State("TX_CRC"):
                m.d.comb += [self.tx.valid.eq(1), tx_byte.eq(crc.word_select(idx[:1], 8))]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx[:1] == 1):
                        m.d.sync += self.error.eq(reply == P.ERROR)
                        m.next = "SYNC"

        m.d.comb += [encoding.eq(fsm.ongoing("ENCODE") if self.codec else 0),
                     decoding.eq(fsm.ongoing("DECODE") if self.codec else 0)]
        return m

    def _store(self, m, code, byte, vmem_w, wmem_w, n_values, n_words, tiles, lane, lo_byte,
               half):
        """Put one payload byte where its request keeps it."""
        with m.Switch(code):
            with m.Case(P.ECHO):
                m.d.comb += vmem_w.en.eq(1)
                m.d.sync += n_values.eq(n_values + 1)
            with m.Case(P.CONFIG):
                # Byte `lane` of write `n_words` goes straight into its byte lane of the row.
                m.d.comb += wmem_w.en.eq(1 << lane)
                m.d.sync += lane.eq(lane + 1)
                with m.If(lane == 7):
                    m.d.sync += n_words.eq(n_words + 1)
            with m.Case(P.TILE):
                with m.If(lane != 2):
                    m.d.sync += [lane.eq(lane + 1), tiles.word_select(lane[0], 8).eq(byte)]
                with m.Else():
                    if self.value_bytes == 2:
                        m.d.sync += [lo_byte.eq(byte), half.eq(~half)]
                        with m.If(half):
                            m.d.comb += vmem_w.en.eq(1)
                            m.d.sync += n_values.eq(n_values + 1)
                    else:
                        m.d.comb += vmem_w.en.eq(1)
                        m.d.sync += n_values.eq(n_values + 1)

    def _feed(self, m, rport, out, addr, valid, n):
        """Stream entries 0..n-1 of a memory to `out`; the read port's data is the payload
        register (read enable = `~valid | ready`, so it holds while `out` is stalled)."""
        take = Signal()
        progress = Signal()
        m.d.comb += [take.eq(~valid | out.ready), rport.addr.eq(addr), rport.en.eq(take),
                     out.valid.eq(valid),
                     progress.eq(valid & out.ready)]
        with m.If(take):    # addr counts up to n
            more = addr != n
            m.d.sync += [valid.eq(more), addr.eq(addr + more)]
        return progress

    def _watch(self, m, progress, idle):
        with m.If(progress):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self.idle_limit):
            m.d.sync += idle.eq(idle + 1)

    def _fixed_byte(self, m, reply, idx, status, n_words, enc_cycles, dec_cycles, err, code):
        """Byte `idx` of the fixed part of the reply's payload (a comb signal)."""
        byte = Signal(8)
        tile = Cat(status, n_words, Const(0, 16 - len(n_words)), enc_cycles, dec_cycles)
        info = Array(Const(b, 8) for b in self.info.pack())
        with m.Switch(reply):
            with m.Case(P.INFO | P.REPLY):
                m.d.comb += byte.eq(info[idx])
            with m.Case(P.CONFIG | P.REPLY):
                m.d.comb += byte.eq(Cat(n_words, Const(0, 16 - len(n_words))).word_select(
                    idx[0], 8))
            with m.Case(P.TILE | P.REPLY):
                m.d.comb += byte.eq(tile.word_select(idx[:4], 8))
            with m.Default():
                m.d.comb += byte.eq(Mux(idx[0], code, err))
        return byte
