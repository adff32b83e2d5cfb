"""Bit packer: token pairs -> tiles of 64-bit words with a header (twin of golden/bit_packer.py).

Stream contract
---------------
- `i`: `token_pair()` (hw/vlc_encoder.py), one per value: the coded token, the raw token and
  `tile_last` on the tile's last value.
- `o`: `packed_word()`: `data` (64 bits), `first` on a tile's header word, `last` on its final
  word (a tile with an empty payload is one word with both). Per tile: the header word, then the
  payload words of the chosen payload, in container order (docs/FORMAT.md, "Tiles").
- `cfg`: only the commit write (global 7) is used: a clock after its write it restarts the tile
  number at `tile_first` and clears `error`.
- `error`: set when a raw payload overran the tile buffer (the profile's tiles are larger than
  `max_tile_words`; such a tile goes out cut short), held until the next commit.

Both payloads of a tile are packed side by side as the tokens arrive, LSB first (stream bit b is
bit b % 64 of word b // 64, the last word zero-padded), each into its own tile buffer. At the
tile's end the raw payload is chosen when coded_words >= raw_words. The header (length, mode,
tile number mod 1024, CRC-32 over the payload bytes followed by header bits 0..31) precedes the
payload but depends on all of it, hence whole-tile buffers, double-buffered (banks 0 and 1) so
the next tile packs while the previous one is sent. Each payload runs its own 64-bit CRC step as
its words are written, so the header is ready a few clocks after the tile's last token and the
tile goes out at once (one CRC step reading the chosen payload back before sending, as an earlier
version did, saves one CRC's logic but delays every tile, and the end of the stream, by its
payload).

Pipeline: P1 (bit position, shift by position mod 8), P2 (shift by bytes into a 64-bit
accumulator, full word out; a tile's end waits one clock in `pend`), W (word into the buffer and
its payload's CRC), F (mode choice, header bits 0..31, the chosen CRC), E (header with its CRC
finished over bits 0..31, payload words).
`i.ready` depends on registers only; `o.ready` reaches the E stage and the buffer read enables
combinationally.

Throughput: one token pair per clock sustained, as long as sending a tile takes no longer than
packing the next: E needs payload words + 3 clocks per tile (+ the sink's stalls) and starts
about 6 clocks after the tile's last token, the packing needs one clock per value, and payload
words <= raw words <= values / 4 + 1 (bits <= 16), so tiles of 16 values or more never stall the
input. The input stalls only while both banks wait to be sent. Latency from taking a tile's last
token to its header on `o`: 8 clocks.

Storage: two memories (coded, raw) of 2 x `max_tile_words` x 64 bits (two banks each), one write
and one read port each. `max_tile_words` must be at least the raw words of the largest tile the
profiles use (`Profile.raw_words(tile_pixels)`); a longer coded payload is not stored (the tile
goes raw, so it is never needed).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import config_signature, restart_after_commit
from hw.crc import CRC32_XOROUT, Crc32, crc32_next
from hw.vlc_encoder import token_pair

WORD_BITS = 64
LEN_BITS = 20
MODE_CODED, MODE_RAW = 0, 1
TILE_NO_BITS = 10


def packed_word() -> data.StructLayout:
    """An output word: `data`, `first` (tile header) and `last` (tile's final word)."""
    return data.StructLayout({"data": WORD_BITS, "first": 1, "last": 1})


class BitPacker(wiring.Component):
    """Token pairs in, tiles of words out (see the module docstring).

    Parameters: `max_tile_words` (tile buffer depth, >= raw words of the largest tile),
    `tile_first`, `tile_step` (tile numbers are tile_first, tile_first + tile_step, ... mod 1024:
    lane p of P uses p and P).
    """

    def __init__(self, max_tile_words: int, tile_first: int = 0, tile_step: int = 1):
        if not 1 <= max_tile_words < 1 << LEN_BITS:
            raise ValueError(f"max_tile_words must be in 1..{(1 << LEN_BITS) - 1}")
        self.max_tile_words = int(max_tile_words)
        self.tile_first = int(tile_first) % (1 << TILE_NO_BITS)
        self.tile_step = int(tile_step) % (1 << TILE_NO_BITS)
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(token_pair())),
            "o": Out(stream.Signature(packed_word())),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.max_tile_words
        count_shape = range(depth + 1)         # word counts saturate at depth (see _payload)

        # -- banks -----------------------------------------------------------------------------
        in_flight = Signal(2)                  # bank's tile is closed and not yet sent
        ready = Signal(2)                      # bank's header is done: it may be sent
        flight_set, flight_clr = Signal(2), Signal(2)
        ready_set, ready_clr = Signal(2), Signal(2)
        m.d.sync += [
            in_flight.eq((in_flight | flight_set) & ~flight_clr),
            ready.eq((ready | ready_set) & ~ready_clr),
        ]

        wb = Signal()                          # bank that takes the incoming tokens
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~in_flight.bit_select(wb, 1)),
            take.eq(self.i.valid & self.i.ready),
        ]
        tile_end = take & self.i.p.tile_last
        with m.If(tile_end):
            m.d.sync += wb.eq(~wb)
            m.d.comb += flight_set.eq(Mux(wb, 0b10, 0b01))

        # -- P and W for both payloads -----------------------------------------------------------
        mems = {}
        fin = {}                               # word count of each payload of the tile
        fcrc = {}                              # its finished CRC over the payload bytes
        fin_valid = Signal()
        fin_bank = Signal()
        overflow = Signal()
        for name in ("coded", "raw"):
            # Both banks in one memory (bank b from word b * depth): one write port and one read
            # port, and on FPGAs whose block RAMs are deeper than a tile, half the RAMs.
            mem = Memory(shape=WORD_BITS, depth=2 * depth, init=[])
            m.submodules[name] = mem
            mems[name] = mem
            fin[name], fcrc[name] = self._payload(m, name, self.i.p[name], take, tile_end, wb,
                                                  mem, depth, count_shape, fin_valid, fin_bank,
                                                  overflow)

        # A raw payload longer than the buffer: the profile's tiles are too large for this
        # instance; such tiles go out cut short (and fail their length check when read).
        # The commit acts a clock after its write (hw/config.py `restart_after_commit`).
        restart = restart_after_commit(m, self.cfg)
        with m.If(restart):
            m.d.sync += self.error.eq(0)
        with m.Elif(overflow):
            m.d.sync += self.error.eq(1)

        # -- F: mode choice and header bits 0..31 ----------------------------------------------
        tile_no = Signal(TILE_NO_BITS, init=self.tile_first)
        with m.If(restart):
            m.d.sync += tile_no.eq(self.tile_first)

        length = Array(Signal(count_shape, name=f"length{b}") for b in range(2))
        use_raw = Array(Signal(name=f"use_raw{b}") for b in range(2))
        low = Array(Signal(32, name=f"low{b}") for b in range(2))
        coded_words, raw_words = fin["coded"], fin["raw"]
        f_raw = Signal()
        f_len = Signal(count_shape)
        m.d.comb += [
            f_raw.eq(coded_words >= raw_words),
            f_len.eq(Mux(f_raw, raw_words, coded_words)),
        ]
        crc_bank = Array(Signal(32, name=f"crc{b}") for b in range(2))
        with m.If(fin_valid):
            m.d.sync += [
                # kept as the CRC state, for the header bits still to come
                crc_bank[fin_bank].eq(Mux(f_raw, fcrc["raw"], fcrc["coded"]) ^ CRC32_XOROUT),
                length[fin_bank].eq(f_len),
                use_raw[fin_bank].eq(f_raw),
                low[fin_bank].eq(Cat(f_len, Const(0, LEN_BITS - len(f_len)), f_raw, Const(0, 1),
                                     tile_no)),
                tile_no.eq(tile_no + self.tile_step),
            ]
            m.d.comb += ready_set.eq(Mux(fin_bank, 0b10, 0b01))

        # -- E: header (its CRC finished over bits 0..31), then the payload ------------------
        # Sending a tile takes payload + 3 clocks (WAIT 1, HEADER 1, SEND payload + 1).
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        eb = Signal()                          # bank being sent
        e_raw = Signal()                       # the payload read comes from the raw buffer
        e_len = Signal(count_shape)
        e_low = Signal(32)
        e_crc = Signal(32)
        pos = Signal(count_shape)              # next payload word to read
        rd_en = Signal()
        rd_addr = Signal(range(2 * depth))
        # The reads after a tile's last word (pos >= length, possibly = depth) are never used.
        m.d.comb += rd_addr.eq(Mux(eb, depth, 0) + Mux(pos < depth, pos, 0))
        # Both buffers' outputs are registered (`rdq`) before the payload choice and the
        # output: a block RAM's data output is slow.
        rdq_en = Signal()
        rdq = {}
        for name in ("coded", "raw"):
            port = mems[name].read_port()
            m.d.comb += [port.addr.eq(rd_addr), port.en.eq(rd_en)]
            rdq[name] = Signal(WORD_BITS, name=f"rdq_{name}")
            with m.If(rdq_en):
                m.d.sync += rdq[name].eq(port.data)
        word = Signal(WORD_BITS)
        m.d.comb += word.eq(Mux(e_raw, rdq["raw"], rdq["coded"]))

        header = Signal(WORD_BITS)
        sent = Signal(count_shape)             # payload words sent
        # The next payload word is the tile's last, decided a word ahead (and the empty tile in
        # HEADER) so that the end of a tile, which frees its bank for the incoming tokens, waits
        # for no comparison.
        is_last = Signal()
        empty = Signal()                       # the tile has no payload words (e_len == 0)

        with m.If(advance):
            m.d.sync += self.o.valid.eq(0)
        done = Signal()
        with m.FSM(name="send"):
            with m.State("WAIT"):
                with m.If(ready.bit_select(eb, 1)):
                    m.d.sync += [
                        e_raw.eq(use_raw[eb]), e_len.eq(length[eb]), e_low.eq(low[eb]),
                        e_crc.eq(crc_bank[eb]), pos.eq(0),
                    ]
                    m.next = "HEADER"
            with m.State("HEADER"):
                # Word 0 is read here, so that it is in `rdq` when the header goes out.
                m.d.comb += rd_en.eq(1)
                m.d.sync += [
                    header.eq(Cat(e_low, crc32_next(e_crc, e_low) ^ CRC32_XOROUT)),
                    pos.eq(1),
                    sent.eq(0),
                    is_last.eq(e_len == 1),
                    empty.eq(e_len == 0),
                ]
                m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                m.d.comb += [rd_en.eq(advance), rdq_en.eq(advance)]
                with m.If(advance):
                    m.d.sync += [
                        self.o.valid.eq(1),
                        self.o.p.data.eq(header),
                        self.o.p.first.eq(1),
                        self.o.p.last.eq(empty),
                        pos.eq(pos + 1),
                    ]
                    with m.If(empty):
                        m.d.comb += done.eq(1)
                        m.next = "WAIT"
                    with m.Else():
                        m.next = "SEND_PAYLOAD"
            with m.State("SEND_PAYLOAD"):
                # One word per taken beat; the buffer reads two words ahead.
                m.d.comb += [rd_en.eq(advance), rdq_en.eq(advance)]
                with m.If(advance):
                    m.d.sync += [
                        self.o.valid.eq(1),
                        self.o.p.data.eq(word),
                        self.o.p.first.eq(0),
                        self.o.p.last.eq(is_last),
                        pos.eq(pos + 1),
                        sent.eq(sent + 1),
                        is_last.eq(sent + 2 == e_len),
                    ]
                    with m.If(is_last):
                        m.d.comb += done.eq(1)
                        m.next = "WAIT"
        with m.If(done):
            m.d.sync += eb.eq(~eb)
            m.d.comb += [
                ready_clr.eq(Mux(eb, 0b10, 0b01)),
                flight_clr.eq(Mux(eb, 0b10, 0b01)),
            ]

        return m

    @staticmethod
    def _payload(m, name, tok, take, tile_end, wb, mem, depth, count_shape, fin_valid,
                 fin_bank, overflow):
        """P and W of one payload; returns its word count and CRC state at the tile's end
        (valid with `fin_valid`, which both payloads drive identically: their tiles end
        together)."""
        width = len(tok.value)
        assert width < WORD_BITS  # a tile's first token never fills a word (see pend)

        # P1: the token's bit position in its word (`pos`, the only feedback) and a first shift
        # by pos mod 8. P2 shifts by whole bytes and ORs into the accumulator: the shifter is
        # split in two so that neither stage is longer than the accumulator loop itself.
        pos = Signal(range(WORD_BITS), name=f"{name}_pos")
        total = Signal(range(WORD_BITS + width), name=f"{name}_total")
        m.d.comb += total.eq(pos + tok.nbits)
        p2 = Signal(data.StructLayout({
            "valid": 1, "end": 1, "bank": 1,
            "value": width + 7,           # token << (pos mod 8)
            "byte": 3,                    # pos // 8
            "full": 1,                    # the token completes a word
            "left": 1,                    # bits remain after it (the tile's last word, at its end)
        }), name=f"{name}_p2")
        m.d.sync += p2.valid.eq(take)
        with m.If(take):
            m.d.sync += [
                p2.end.eq(tile_end), p2.bank.eq(wb),
                p2.value.eq(tok.value << pos[:3]), p2.byte.eq(pos[3:]),
                p2.full.eq(total >= WORD_BITS), p2.left.eq(total[:6] != 0),
                pos.eq(Mux(tile_end, 0, total[:6])),
            ]

        # P2: the accumulator holds the bits of the current word below `pos`.
        acc = Signal(WORD_BITS, name=f"{name}_acc")
        merged = Signal(WORD_BITS + width, name=f"{name}_merged")
        m.d.comb += merged.eq(acc | (p2.value << Cat(Const(0, 3), p2.byte)))
        rest = Mux(p2.full, merged[WORD_BITS:], merged[:WORD_BITS])

        # Events into W: a full word, or the tile's end (with its padded last word, if any bits
        # are left). A tile's end waits one clock in `pend` when its last token also fills a
        # word; the next token is the first of a tile, which never fills one, so the two never
        # compete for W.
        ev = Signal(data.StructLayout({"word": WORD_BITS, "has_word": 1, "end": 1, "bank": 1}),
                    name=f"{name}_ev")
        pend = Signal.like(ev, name=f"{name}_pend")
        m.d.sync += [ev.has_word.eq(0), ev.end.eq(0), pend.end.eq(0)]
        with m.If(p2.valid):
            with m.If(p2.end):
                m.d.sync += [
                    acc.eq(0),
                    pend.word.eq(rest),
                    pend.has_word.eq(p2.left),
                    pend.end.eq(1),
                    pend.bank.eq(p2.bank),
                ]
            with m.Else():
                m.d.sync += acc.eq(rest)
        with m.If(p2.valid & p2.full):
            m.d.sync += [ev.word.eq(merged[:WORD_BITS]), ev.has_word.eq(1), ev.bank.eq(p2.bank)]
        with m.Elif(pend.end):
            m.d.sync += ev.eq(pend)

        # W: buffer write; word counts saturate at `depth` (a longer coded payload is never
        # sent, and `coded >= raw` stays right because raw <= depth).
        words = Signal(count_shape, name=f"{name}_words")
        fwords = Signal(count_shape, name=f"{name}_fin_words")
        room = words < depth
        port = mem.write_port()
        m.d.comb += [
            port.addr.eq(words + Mux(ev.bank, depth, 0)),
            port.data.eq(ev.word),
            port.en.eq(ev.has_word & room),
        ]
        new_words = Mux(ev.has_word & room, words + 1, words)
        with m.If(ev.end):
            m.d.sync += [words.eq(0), fwords.eq(new_words)]
        with m.Else():
            m.d.sync += words.eq(new_words)
        # The CRC over exactly the stored words (a coded payload past `depth` is never sent).
        # Its `crc` is the tile's in the clock after the end (with `fin_valid`), when it
        # restarts for the next tile (a word of which may be absorbed in that same clock).
        crc = m.submodules[f"{name}_crc"] = Crc32(WORD_BITS)
        restart = Signal(name=f"{name}_crc_restart")
        m.d.sync += restart.eq(ev.end)
        m.d.comb += [crc.clear.eq(restart), crc.valid.eq(ev.has_word & room),
                     crc.data.eq(ev.word)]
        if name == "raw":
            m.d.sync += [fin_valid.eq(ev.end), fin_bank.eq(ev.bank)]
            m.d.comb += overflow.eq(ev.has_word & ~room)
        return fwords, crc.crc
