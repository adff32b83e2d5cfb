"""VLC decoder: tile payload words in, quantized values out, one value per clock (twin of
golden/vlc_decoder.py; docs/FORMAT.md "Variable-length code" and "Tiles" are the definition).

Stream contract
---------------
- `i`: `payload_word()` (hw/bit_unpacker.py): per tile its payload words, `raw` = the tile's mode
  on every word, `last` on the tile's final word; a tile without payload bits is one word with
  `empty` set. Stream bit `b` of a tile is bit `b % 64` of its word `b // 64`.
- `o`: `framed(q_width)` (hw/framing.py), one per component of every pixel, `comp` = 0..C-1,
  `tile_last` on the last value of each tile. The decoder counts components and pixels in the
  tile itself (C: global 0) and takes each tile's pixel count from hw/tile_walker.py (tile_pixels,
  image_pixels: global 3, 8), so it knows the short last tile of each image; lane p of P
  (`tile_first` = p, `tile_step` = P) decodes the tensor's tiles p, p + P, ... The commit
  (global 7) restarts the counters, clears `status` and flushes everything in flight.
- `cfg`: class map (region 2), class mode/zflag/bits/k/esc (region 3), the ESC code of each
  Huffman class (region 4, symbol 63), Huffman decoder tables (regions 5 and 6).
- `status`: sticky error bits since the commit: `overrun` (a token ran past the tile's payload),
  `leftover` (the tile's values ended with a whole payload word unused), `code` (no Huffman
  code matched, or a Rice/Huffman value outside its class's `bits`). `error` is their OR.

Whatever the words hold, every tile yields exactly its pixel count x C values, in order, then
the decoder skips the tile's remaining words (up to its `last` word). After an error the
tile's values are garbage (bits past the payload read as zero), never more of them, and the
next tile starts clean at its first word; so a tile costs at most (values + its words + 2)
clocks with an always-ready sink (measured in tests/test_hw_vlc_decoder.py): the decoder never
hangs on bad data.

Throughput one value per clock sustained, tile boundaries included (a tile's first word is
loaded in the clock that decodes the previous tile's last value), as long as words arrive; any
token (at most 33 bits) is decoded in one clock. Latency: first word taken to first value out
9 clocks (tests/test_hw_vlc_decoder.py checks both).

Pipeline
--------
input FIFO (hw/register_fifo.py, IN_DEPTH words) -> S0 component counters -> A class map read
-> B class parameters and Huffman limits read -> C token length (the loop) -> D field extract
and Huffman symbol read -> E symbol registered -> F value -> output FIFO (OUT_CREDITS values).

No handshake reaches the loop: words come from the input FIFO's registers, and C fires only
while fewer than OUT_CREDITS values are past it and not yet taken (in D, E, F or the FIFO), so
D, E and F never stall and the sink's `o.ready` ends at the output FIFO. A word appended to the
queue is used from the next clock on (`level` counts the queue's bits only).

The loop is C: the length of the token in the window decides where the next token starts, so
one clock must get from the window register through the length decode to the next window. It
is cut to a decode and a 16-way one-hot select:
- the payload words wait, whole, in a three-word queue; only a bit offset moves, and the first
  word leaves in the clock after the offset passed it (decided from the offset register), so
  no word is shifted by this clock's length and refill is off the loop;
- every token length is a static part known a clock ahead from the class (stage B) plus at
  most one part found in the bits, which the decode produces one-hot: the Rice ones (the first
  zero bit, isolated with the carry chain `~x & (x + 1)`), or the Huffman length (16
  comparisons of the first l bits, MSB-first, against `limit[l] = first[l] + count[l]`,
  precomputed when the tables are written; by the canonical-code invariant an l-bit prefix
  that no shorter length matched is >= first[l], so `prefix < limit[l]` alone is the match;
  compared left-justified, as the 16-bit window against `limit[l] << (16 - l)`, the limits
  never decrease with l, so the matches form a thermometer whose first 1 is the length);
- the candidate next windows (after a flag bit alone, after a raw or escaped token of static
  length, after the static part of a code word) are extracted from the queue at offsets that
  depend on registers only, in parallel with the decode; the one-hot then picks among the 16
  shifts of the code-word candidate with an AND-OR, and a 4-way mux picks the case;
- ESC is found by comparing with the class's ESC code word (captured from region 4), not
  through the symbol table;
- the symbol table read, the field extraction, sign extension and un-zigzag happen in stages D
  and E, from the registered window.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bit_unpacker import WORD_BITS, payload_word
from hw.config import (
    CLASS_BITS,
    CLASS_K_ESC,
    CLASS_MODE,
    CLASS_ZFLAG,
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    MODE_DROP,
    MODE_HUFFMAN,
    MODE_RAW,
    MODE_RICE,
    REGION_CLASS,
    REGION_CLASSMAP,
    REGION_GLOBAL,
    REGION_HUFF_DEC,
    REGION_HUFF_ENC,
    REGION_HUFF_SYM,
    config_signature,
    index,
    region,
)
from hw.framing import COMP_BITS, framed
from hw.register_fifo import RegisterFifo
from hw.tile_walker import TILE_PIXEL_BITS, TileWalker

MAX_BITS = 16           # largest class `bits`
MAX_TOKEN = 33          # flag + 16-bit ESC code + 16 bits, or flag + esc + bits <= 32
HUFF_MAX_LEN = 16
HUFF_SYMBOLS = 64
WINDOW = MAX_TOKEN + 1  # the loop's window: a flag bit and the longest token
# Word queue: q0 is dropped in the clock after the position passed its end, so the position
# stays below 64 + MAX_TOKEN and a window, plus the 15 bits a code word may add, lies within
# three words.
QUEUE_WORDS = 3
IN_DEPTH = 2            # words waiting in the input FIFO
OUT_CREDITS = 5         # values in flight after stage C (D, E, F) or waiting in the output FIFO
OFF_MAX = WORD_BITS + MAX_TOKEN - 1

# What stages D and E make of a token.
KIND_ZERO, KIND_SEXT, KIND_RICE, KIND_HUFF = range(4)


def decoder_status() -> data.StructLayout:
    return data.StructLayout({"error": 1, "overrun": 1, "leftover": 1, "code": 1})


def _ones(n, width):
    """`(1 << n) - 1` as a `width`-bit value, for 0 <= n <= width."""
    return ~(Const((1 << width) - 1, width) << n)[:width]


def _encode(onehot, values, width):
    """`values[i]` for the set bit i of a one-hot (0 when none): an OR tree, no priority."""
    out = Const(0, width)
    for i, v in enumerate(values):
        out = out | Mux(onehot[i], v, 0)
    return out


class VlcDecoder(wiring.Component):
    """Payload words in, framed q values out (see the module docstring).

    Parameters: `q_width` (width of the decoded values, at most 16; a class's `bits` must not
    exceed it), `max_channels` (largest C; sizes the class map), `max_classes` (classes the
    parameter registers and Huffman tables hold; profiles have at most 16), `tile_first`,
    `tile_step` (the tiles of lane p of P: p, P).
    """

    def __init__(self, q_width: int = MAX_BITS, max_channels: int = 1 << COMP_BITS,
                 max_classes: int = 16, tile_first: int = 0, tile_step: int = 1):
        if not 1 <= q_width <= MAX_BITS:
            raise ValueError(f"q_width must be in 1..{MAX_BITS}")
        if not 1 <= max_channels <= 1 << COMP_BITS:
            raise ValueError(f"max_channels must be in 1..{1 << COMP_BITS}")
        if not 1 <= max_classes <= 16:
            raise ValueError("max_classes must be in 1..16")
        self.q_width = q_width
        self.max_channels = max_channels
        self.max_classes = max_classes
        self.tile_first = tile_first
        self.tile_step = tile_step
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(payload_word())),
            "o": Out(stream.Signature(framed(q_width))),
            "status": Out(decoder_status()),
        })

    def elaborate(self, platform):
        m = Module()
        ncls = self.max_classes
        cls_bits = max(1, (ncls - 1).bit_length())

        # -- configuration ---------------------------------------------------------------------
        cfg = self.cfg
        cfg_region, cfg_index, cfg_data = region(cfg.p.addr), index(cfg.p.addr), cfg.p.data

        channels = Signal(COMP_BITS + 1)
        commit = Signal()
        m.submodules.walker = walker = TileWalker(self.tile_first, self.tile_step)
        m.d.comb += [walker.cfg.valid.eq(cfg.valid), walker.cfg.payload.eq(cfg.payload)]

        mode = Array(Signal(2, name=f"mode{c}") for c in range(ncls))
        zflag = Array(Signal(name=f"zflag{c}") for c in range(ncls))
        bits = Array(Signal(range(MAX_BITS + 1), name=f"bits{c}") for c in range(ncls))
        rice_k = Array(Signal(4, name=f"k{c}") for c in range(ncls))
        rice_esc = Array(Signal(5, name=f"esc{c}") for c in range(ncls))
        esc_code = Array(Signal(HUFF_MAX_LEN, name=f"esc_code{c}") for c in range(ncls))
        esc_len = Array(Signal(5, name=f"esc_len{c}") for c in range(ncls))

        m.submodules.classmap = classmap = Memory(shape=cls_bits, depth=self.max_channels,
                                                  init=[])
        cm_wr = classmap.write_port()
        cm_rd = classmap.read_port()

        # Per code length l, per class: limit[l] = (first[l] + count[l]) << (16 - l), the
        # length decode's bound for the 16-bit window, and off[l] = base[l] - first[l] mod 64
        # for the symbol index. One memory per length, so a class's whole table is read in one
        # clock.
        lim_mems = []
        for ln in range(1, HUFF_MAX_LEN + 1):
            mem = Memory(shape=data.StructLayout({"limit": HUFF_MAX_LEN + 1, "off": 6}),
                         depth=ncls, init=[])
            m.submodules[f"huff_limit{ln}"] = mem
            lim_mems.append((mem.write_port(), mem.read_port()))

        m.submodules.symbols = symbols = Memory(shape=6, depth=ncls * HUFF_SYMBOLS, init=[])
        sym_wr = symbols.write_port()
        sym_rd = symbols.read_port()

        first_l = cfg_data[0:16]
        count_l = cfg_data[16:24]
        base_l = cfg_data[24:32]
        with m.If(cfg.valid):
            with m.Switch(cfg_region):
                with m.Case(REGION_CLASSMAP):
                    m.d.comb += [
                        cm_wr.addr.eq(cfg_index),
                        cm_wr.data.eq(cfg_data),
                        cm_wr.en.eq(cfg_index < self.max_channels),
                    ]
                with m.Case(REGION_CLASS):
                    cidx = cfg_index[3:]
                    for c in range(ncls):
                        with m.If(cidx == c):
                            with m.Switch(cfg_index[:3]):
                                with m.Case(CLASS_MODE):
                                    m.d.sync += mode[c].eq(cfg_data)
                                with m.Case(CLASS_ZFLAG):
                                    m.d.sync += zflag[c].eq(cfg_data)
                                with m.Case(CLASS_BITS):
                                    m.d.sync += bits[c].eq(cfg_data)
                                with m.Case(CLASS_K_ESC):
                                    m.d.sync += [
                                        rice_k[c].eq(cfg_data[0:8]),
                                        rice_esc[c].eq(cfg_data[8:16]),
                                    ]
                with m.Case(REGION_HUFF_ENC):
                    # Only the ESC code word is needed: the decoder spots ESC by its code.
                    for c in range(ncls):
                        with m.If(cfg_index == c * HUFF_SYMBOLS + HUFF_SYMBOLS - 1):
                            m.d.sync += [
                                esc_code[c].eq(cfg_data[0:16]),
                                esc_len[c].eq(cfg_data[16:21]),
                            ]
                with m.Case(REGION_HUFF_DEC):
                    for ln, (wr, _) in enumerate(lim_mems, start=1):
                        m.d.comb += [
                            wr.addr.eq(cfg_index[4:]),
                            wr.data.limit.eq((first_l + count_l) << (HUFF_MAX_LEN - ln)),
                            wr.data.off.eq(base_l - first_l),
                            wr.en.eq((cfg_index[:4] == ln - 1) & (cfg_index[4:] < ncls)),
                        ]
                with m.Case(REGION_HUFF_SYM):
                    m.d.comb += [
                        sym_wr.addr.eq(cfg_index),
                        sym_wr.data.eq(cfg_data),
                        sym_wr.en.eq(cfg_index < ncls * HUFF_SYMBOLS),
                    ]
                with m.Case(REGION_GLOBAL):
                    with m.Switch(cfg_index):
                        with m.Case(GLOBAL_CHANNELS):
                            m.d.sync += channels.eq(cfg_data)
                        with m.Case(GLOBAL_COMMIT):
                            m.d.comb += commit.eq(1)

        # -- back end: D (field, symbol read) -> E (symbol registered) -> F (value) -> output
        # FIFO. D, E and F never stall: stage C fires only while fewer than OUT_CREDITS values
        # are in flight or waiting in the FIFO (all registers), so the token loop does not see
        # the sink's ready.
        m.submodules.out_fifo = out_fifo = RegisterFifo(framed(self.q_width), OUT_CREDITS)
        m.submodules.in_fifo = in_fifo = RegisterFifo(payload_word(), IN_DEPTH)
        wiring.connect(m, out_fifo.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.i), in_fifo.i)
        d_valid = Signal()
        e_valid = Signal()
        f_valid = Signal()
        pending = Signal(range(OUT_CREDITS + 4))
        m.d.comb += pending.eq(d_valid + e_valid + f_valid + out_fifo.count)
        room = pending < OUT_CREDITS

        # -- S0: component counters ----------------------------------------------------------
        # The tile's pixel count comes from the tile walker (which skips other lanes' tiles);
        # the walker runs ahead, so S0 only waits for it right after a commit.
        comp = Signal(COMP_BITS)
        tile_pix = Signal(TILE_PIXEL_BITS)
        have = Signal()                # the current tile's size is in `last_pix`
        last_pix = Signal(TILE_PIXEL_BITS)
        pixel_last = comp == channels - 1
        s0_tile_last = pixel_last & (tile_pix == last_pix)

        a_valid = Signal()
        a_comp = Signal(COMP_BITS)
        a_tile_last = Signal()
        b_valid = Signal()
        c_valid = Signal()
        fire = Signal()                # stage C decodes its token this clock
        c_free = ~c_valid | fire
        b_move = b_valid & c_free
        b_free = ~b_valid | c_free
        a_move = a_valid & b_free
        a_free = ~a_valid | b_free
        s0_move = have & a_free

        m.d.comb += [cm_rd.addr.eq(comp), cm_rd.en.eq(s0_move)]
        with m.If(a_free):
            m.d.sync += a_valid.eq(s0_move)
        with m.If(s0_move):
            m.d.sync += [a_comp.eq(comp), a_tile_last.eq(s0_tile_last), comp.eq(comp + 1)]
            with m.If(pixel_last):
                m.d.sync += [comp.eq(0), tile_pix.eq(tile_pix + 1)]
            with m.If(s0_tile_last):
                m.d.sync += [tile_pix.eq(0), have.eq(0)]
        m.d.comb += walker.o.ready.eq(~have | (s0_move & s0_tile_last))
        with m.If(walker.o.valid & walker.o.ready):
            m.d.sync += [have.eq(1), last_pix.eq(walker.o.payload - 1)]

        # -- A: the class is known (class map read); whether the component carries the flag --
        a_cls = cm_rd.data
        seen = Signal(ncls)            # classes met so far in the pixel: the first carries the flag
        seen_before = Mux(a_comp == 0, 0, seen)
        b_comp = Signal(COMP_BITS)
        b_tile_last = Signal()
        b_cls = Signal(cls_bits)
        b_first = Signal()
        with m.If(b_free):
            m.d.sync += b_valid.eq(a_valid)
        with m.If(a_move):
            m.d.sync += [
                seen.eq(seen_before | (1 << a_cls)),
                b_comp.eq(a_comp),
                b_tile_last.eq(a_tile_last),
                b_cls.eq(a_cls),
                b_first.eq(~seen_before.bit_select(a_cls, 1)),
            ]

        # -- B: the class's parameters and Huffman limits for stage C ------------------------
        for _, rd in lim_mems:
            m.d.comb += [rd.addr.eq(b_cls), rd.en.eq(b_move)]

        ctrl = data.StructLayout({
            "comp": COMP_BITS,
            "tile_last": 1,
            "cls": cls_bits,
            "mode": 2,
            "zflag": 1,        # class has zero flags (in a coded tile)
            "has_flag": 1,     # this component carries the class's flag (coded tile)
            "bits": 5,         # raw width (and the raw tile's token length)
            "k": 4,
            "esc": 5,          # Rice: ones that mean escape
            "esc_len": 5,      # Huffman: length of the ESC code word
            "esc_code": HUFF_MAX_LEN,
            # Static parts of the coded token length, flag bit included: a raw or escaped
            # token is `n_alt` bits; a Rice or Huffman code word `s_dd + i` bits, where i (the
            # Rice ones, the Huffman length - 1) is what the loop finds in the bits.
            "n_alt": 6,
            "s_dd": 5,
        })
        c = Signal(ctrl)
        b_mode = mode[b_cls]
        b_bits = bits[b_cls]
        b_hf = b_first & zflag[b_cls] & (b_mode != MODE_DROP)
        with m.If(c_free):
            m.d.sync += c_valid.eq(b_valid)
        with m.If(b_move):
            m.d.sync += [
                c.comp.eq(b_comp),
                c.tile_last.eq(b_tile_last),
                c.cls.eq(b_cls),
                c.mode.eq(b_mode),
                c.zflag.eq(zflag[b_cls] & (b_mode != MODE_DROP)),
                c.has_flag.eq(b_hf),
                c.bits.eq(b_bits),
                c.k.eq(rice_k[b_cls]),
                c.esc.eq(rice_esc[b_cls]),
                c.esc_len.eq(esc_len[b_cls]),
                c.esc_code.eq(esc_code[b_cls]),
                c.n_alt.eq(b_bits + b_hf + Mux(b_mode == MODE_RICE, rice_esc[b_cls],
                                               Mux(b_mode == MODE_HUFFMAN, esc_len[b_cls], 0))),
                c.s_dd.eq(1 + b_hf + Mux(b_mode == MODE_RICE, rice_k[b_cls], 0)),
            ]

        # -- C: the token window and its length (the loop) ----------------------------------
        # The tile's words wait in a three-word queue q0..q2 (empty slots are zero, and no word
        # of the next tile enters before this one ends, so bits past the payload read as zero);
        # the current token starts at bit `off` of q0. The loop register is `win`, the 34 stream
        # bits from there. Words never shift bit by bit: `off` moves, and q0 is dropped in the
        # clock after `off` passed 64 (decided from the register, not from this clock's length).
        qw = [Signal(WORD_BITS, name=f"q{j}") for j in range(QUEUE_WORDS)]
        qcount = Signal(range(QUEUE_WORDS + 1))
        off = Signal(range(OFF_MAX + 1))
        win = Signal(WINDOW)
        win_ok = Signal()              # win holds the next 34 bits (or all the tile has left)
        level = Signal(range(QUEUE_WORDS * WORD_BITS + 1))   # tile bits from the position on
        tile_loaded = Signal()         # the current tile's first word is in
        last_loaded = Signal()         # ... and its last word too
        tile_raw = Signal()
        draining = Signal()            # skipping a finished tile's unused words up to `last`
        zero = Signal(ncls)            # per class: its flag in this pixel was 0

        coded = ~tile_raw
        flag_here = coded & c.has_flag
        fbit = win[0]
        x = Signal(MAX_TOKEN)          # the token proper, after the flag bit if there is one
        m.d.comb += x.eq(Mux(flag_here, win[1:], win[:MAX_TOKEN]))
        skip = coded & c.zflag & ~c.has_flag & zero.bit_select(c.cls, 1)

        # Rice: the first zero bit, one-hot (i = the ones before it).
        x16 = x[:16]
        x17 = Cat(x16, Const(0, 1))
        first_zero = Signal(17)
        m.d.comb += first_zero.eq(~x17 & (x17 + 1))
        rice_esc_hit = (x16 | ~_ones(c.esc, 16)).all()

        # Huffman: the lowest length l whose l-bit prefix (first bit most significant) is below
        # first[l] + count[l], i.e. the 16-bit window below limit[l]; one-hot (i = l - 1). The
        # limits of a canonical code never decrease with l, so the matches are a thermometer
        # and the lowest is where it starts. Length 16 stands in when nothing matches (a bad
        # code: garbage, flagged). ESC by its own code word.
        window16 = Cat(*(x[HUFF_MAX_LEN - 1 - j] for j in range(HUFF_MAX_LEN)))
        match = Signal(HUFF_MAX_LEN)
        for ln, (_, rd) in enumerate(lim_mems, start=1):
            m.d.comb += match[ln - 1].eq(window16 < rd.data.limit)
        forced = Cat(match[:HUFF_MAX_LEN - 1], Const(1, 1))
        lowest = Signal(HUFF_MAX_LEN)
        m.d.comb += lowest.eq(forced & ~Cat(Const(0, 1), forced[:-1]))
        huff_esc_hit = (c.esc_len != 0) & ((x16 & _ones(c.esc_len, 16)) == c.esc_code)

        # The four ways a token ends (priority in this order).
        keep = (c.mode == MODE_DROP) | skip                  # 0 bits
        one = flag_here & ~fbit                              # the flag bit 0 alone
        alt = tile_raw | (c.mode == MODE_RAW) | Mux(c.mode == MODE_RICE, rice_esc_hit,
                                                    huff_esc_hit)   # n_alt bits
        # ... else a code word: s_dd + i bits, i one-hot:
        onehot = Signal(16)
        m.d.comb += onehot.eq(Mux(c.mode == MODE_RICE, first_zero[:16], lowest))
        i_bin = Signal(4)
        m.d.comb += i_bin.eq(_encode(onehot, range(16), 4))
        n_alt = Mux(tile_raw, Mux(c.mode == MODE_DROP, 0, c.bits), c.n_alt)

        # Words in: the first word of a tile starts the queue; later ones fill the first free
        # slot. A finished tile's unused words are skipped up to its `last`.
        bits_ok = tile_loaded & win_ok
        m.d.comb += fire.eq(c_valid & bits_ok & room)
        end_tile = fire & c.tile_last
        # Words come from the input FIFO's registers. A word appended to the queue is seen by
        # the loop from the next clock on (`level` counts only the words in the queue), so no
        # handshake is on the loop; a tile's first word goes straight into q0 and the window.
        word = in_fifo.o.p

        passed = off[6]                 # the position passed q0: it leaves at this clock's edge
        pop = passed & (qcount != 0)    # (an overrun may have run past every word)
        new_tile = Signal()            # take the next tile's first word
        append = Signal()
        drop = Signal()
        m.d.comb += [
            drop.eq(draining),
            new_tile.eq(~draining & (~tile_loaded | (end_tile & last_loaded))),
            append.eq(~draining & tile_loaded & ~last_loaded & (qcount - pop < QUEUE_WORDS)),
        ]
        m.d.comb += in_fifo.o.ready.eq(new_tile | append | drop)
        take = in_fifo.o.valid & in_fifo.o.ready
        load = take & append

        # The bits from q0 on.
        view = Cat(*qw)
        # Candidate windows, from registers only (in parallel with the length decode): after
        # the flag bit alone, after an n_alt-bit token, after s_dd + i bits for every i.
        base_alt = Mux(win_ok, off + n_alt, off)         # not ok: reload the window at `off`
        w_alt = view.bit_select(base_alt, WINDOW)
        w_one = Cat(win[1:], view.bit_select(off + WINDOW, 1))
        w_dd = view.bit_select(off + c.s_dd, WINDOW + 15)
        w_code = Cat(*((onehot & w_dd[j:j + 16]).any() for j in range(WINDOW)))

        off_now = off - Mux(passed, WORD_BITS, 0)
        fill = level                    # bits in the queue from the position on
        arriving = Mux(load & ~word.empty, WORD_BITS, 0)
        more = last_loaded              # no more words to wait for

        # What follows a token of a known length n: new offset, bits left, whether the next
        # window is complete, an overrun, a whole word left over.
        def after(nbits):
            left = fill - nbits
            return {"off": off_now + nbits, "left": Mux(fill < nbits, 0, left),
                    "ok": left >= WINDOW, "over": fill < nbits,
                    "spare": (fill >= nbits) & (left >= WORD_BITS)}

        # After a code word the length is s_dd + i with i one-hot: every comparison is made
        # for each i from registers, and the one-hot picks, so no adder follows the decode.
        base = fill - c.s_dd

        def pick(conds):
            return (onehot & Cat(*conds)).any()

        code_end = {
            "off": off_now + c.s_dd + i_bin,
            "left": Mux(pick(base < i for i in range(16)), 0, base - i_bin),
            "ok": pick(base >= WINDOW + i for i in range(16)),
            "over": pick(base < i for i in range(16)),
            "spare": pick(base >= WORD_BITS + i for i in range(16)),
        }
        ends = [(keep, after(0)), (one, after(1)), (alt, after(n_alt))]

        def chosen(key):
            value = code_end[key]
            for cond, end in reversed(ends):
                value = Mux(cond, end[key], value)
            return value

        with m.If(fire):
            with m.If(keep):
                pass
            with m.Elif(one):
                m.d.sync += win.eq(w_one)
            with m.Elif(alt):
                m.d.sync += win.eq(w_alt)
            with m.Else():
                m.d.sync += win.eq(w_code)
            m.d.sync += [
                off.eq(chosen("off")),
                level.eq(chosen("left") + arriving),
                win_ok.eq(chosen("ok") | more),
            ]
        with m.Else():
            m.d.sync += [off.eq(off_now), level.eq(fill + arriving)]
            with m.If(~win_ok):
                m.d.sync += [win.eq(w_alt), win_ok.eq((fill >= WINDOW) | more)]
        # The queue: q0 leaves when used up, an arriving word goes to the first free slot.
        for j in range(QUEUE_WORDS):
            src = qw[j + 1] if j + 1 < QUEUE_WORDS else Const(0, WORD_BITS)
            keep_j = Mux(pop, src, qw[j])
            m.d.sync += qw[j].eq(Mux(load & (qcount - pop == j), word.data, keep_j))
        m.d.sync += qcount.eq(qcount - pop + load)
        with m.If(load):
            m.d.sync += last_loaded.eq(word.last)

        # D needs, besides the token window, where its field starts and the code's i.
        kind = Signal(2)
        fpos = Signal(6)               # where stage D finds the field, in x
        with m.If(keep | one):
            m.d.comb += kind.eq(KIND_ZERO)
        with m.Elif(alt):
            m.d.comb += kind.eq(KIND_SEXT)
            with m.If(~tile_raw & (c.mode == MODE_RICE)):
                m.d.comb += fpos.eq(c.esc)
            with m.Elif(~tile_raw & (c.mode == MODE_HUFFMAN)):
                m.d.comb += fpos.eq(c.esc_len)
        with m.Elif(c.mode == MODE_RICE):
            m.d.comb += [kind.eq(KIND_RICE), fpos.eq(i_bin + 1)]
        with m.Else():
            m.d.comb += kind.eq(KIND_HUFF)
        t = i_bin
        hlen = Signal(5)
        m.d.comb += hlen.eq(i_bin + 1)
        hoff = Signal(6)
        m.d.comb += hoff.eq(_encode(lowest, [rd.data.off for _, rd in lim_mems], 6))
        bad_code = (c.mode == MODE_HUFFMAN) & ~keep & ~one & ~alt & ~match.any()

        status = self.status
        with m.If(fire):
            with m.If(flag_here):
                m.d.sync += zero.bit_select(c.cls, 1).eq(~fbit)
            with m.If(last_loaded & chosen("over")):
                m.d.sync += [status.overrun.eq(1), status.error.eq(1)]
            with m.If(bad_code):
                m.d.sync += [status.code.eq(1), status.error.eq(1)]
        with m.If(end_tile):
            m.d.sync += [level.eq(0), tile_loaded.eq(0), last_loaded.eq(0), win_ok.eq(0),
                         off.eq(0), qcount.eq(0)]
            m.d.sync += [q.eq(0) for q in qw]
            # A whole word not needed by the code: not loaded yet, or still in the queue. The
            # tile's words after it are skipped up to its `last` (a word taken now may be it).
            with m.If(~last_loaded | chosen("spare")):
                m.d.sync += [status.leftover.eq(1), status.error.eq(1)]
            m.d.sync += draining.eq(~last_loaded & ~(load & word.last))
        with m.If(take & new_tile):
            first = Mux(word.empty, 0, word.data)
            m.d.sync += [
                qw[0].eq(first),
                qcount.eq(~word.empty),
                off.eq(0),
                win.eq(first[:WINDOW]),
                win_ok.eq(1),
                level.eq(Mux(word.empty, 0, WORD_BITS)),
                tile_loaded.eq(1),
                last_loaded.eq(word.last),
                tile_raw.eq(word.raw),
            ]
        with m.If(take & drop & word.last):
            m.d.sync += draining.eq(0)

        # -- D: the field at fpos, the Huffman symbol index -----------------------------------
        d = Signal(data.StructLayout({
            "comp": COMP_BITS, "tile_last": 1, "cls": cls_bits, "kind": 2, "x": MAX_TOKEN,
            "fpos": 6, "bits": 5, "k": 4, "t": 5, "hlen": 5, "hoff": 6,
        }))
        m.d.sync += d_valid.eq(fire)
        with m.If(fire):
            m.d.sync += [
                d.comp.eq(c.comp), d.tile_last.eq(c.tile_last), d.cls.eq(c.cls),
                d.kind.eq(kind), d.x.eq(x), d.fpos.eq(fpos), d.bits.eq(c.bits), d.k.eq(c.k),
                d.t.eq(t), d.hlen.eq(hlen), d.hoff.eq(hoff),
            ]
        rev16 = Cat(*(d.x[15 - j] for j in range(16)))     # stream bit 0 most significant
        drop_bits = Signal(5)
        m.d.comb += drop_bits.eq(HUFF_MAX_LEN - d.hlen)
        prefix6 = (rev16 >> drop_bits)[:6]                # low bits of the l-bit code word
        m.d.comb += [
            sym_rd.addr.eq(Cat((prefix6 + d.hoff)[:6], d.cls)),
            sym_rd.en.eq(d_valid),
        ]

        # -- E: the field extracted; the symbol (a block RAM's slow output) registered ---------
        e = Signal(data.StructLayout({
            "comp": COMP_BITS, "tile_last": 1, "kind": 2, "field": MAX_BITS, "bits": 5,
            "k": 4, "t": 5,
        }))
        m.d.sync += e_valid.eq(d_valid)
        with m.If(d_valid):
            m.d.sync += [
                e.comp.eq(d.comp), e.tile_last.eq(d.tile_last), e.kind.eq(d.kind),
                e.field.eq((d.x >> d.fpos)[:MAX_BITS]), e.bits.eq(d.bits), e.k.eq(d.k),
                e.t.eq(d.t),
            ]
        f = Signal.like(e)
        f_sym = Signal(6)
        m.d.sync += f_valid.eq(e_valid)
        with m.If(e_valid):
            m.d.sync += [f.eq(e), f_sym.eq(sym_rd.data)]

        # -- F: the value, into the output FIFO ----------------------------------------------
        qw = self.q_width
        field_mask = _ones(f.bits, MAX_BITS)
        sign = f.field.bit_select((f.bits - 1)[:4], 1)
        sext = Signal(signed(MAX_BITS))
        m.d.comb += sext.eq((f.field & field_mask) | Mux(sign, ~field_mask, 0))
        u = Signal(MAX_BITS + 4)       # Rice: ones << k | remainder < 2^20
        with m.If(f.kind == KIND_RICE):
            m.d.comb += u.eq((f.t << f.k) | (f.field & _ones(f.k, MAX_BITS)))
        with m.Else():
            m.d.comb += u.eq(f_sym)
        unzig = Signal(signed(MAX_BITS))
        m.d.comb += unzig.eq((u >> 1)[:MAX_BITS] ^ u[0].replicate(MAX_BITS))
        value = Signal(signed(MAX_BITS))
        with m.Switch(f.kind):
            with m.Case(KIND_ZERO):
                m.d.comb += value.eq(0)
            with m.Case(KIND_SEXT):
                m.d.comb += value.eq(sext)
            with m.Default():
                m.d.comb += value.eq(unzig)
        out_of_range = (f.kind[1] & ((u >> f.bits) != 0))    # RICE and HUFF kinds

        # The FIFO always has room for F's value: C fires only while fewer than OUT_CREDITS (the
        # FIFO's depth) values are in D, E, F and the FIFO together.
        m.d.comb += [
            out_fifo.i.valid.eq(f_valid),
            out_fifo.i.p.data.eq(value[:qw]),
            out_fifo.i.p.comp.eq(f.comp),
            out_fifo.i.p.tile_last.eq(f.tile_last),
        ]
        with m.If(f_valid & out_of_range):
            m.d.sync += [status.code.eq(1), status.error.eq(1)]

        # The commit starts a new tensor: counters from zero, nothing in flight, status clear.
        m.d.comb += [out_fifo.flush.eq(commit), in_fifo.flush.eq(commit)]
        with m.If(commit):
            m.d.sync += [
                comp.eq(0), tile_pix.eq(0), have.eq(0),
                a_valid.eq(0), b_valid.eq(0), c_valid.eq(0), d_valid.eq(0), e_valid.eq(0),
                f_valid.eq(0),
                level.eq(0), tile_loaded.eq(0), last_loaded.eq(0), draining.eq(0),
                win_ok.eq(0), off.eq(0), qcount.eq(0), status.eq(0),
            ]
        return m
