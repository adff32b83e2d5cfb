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
next tile starts clean at its first word; so a tile costs its context at most (values + its
words + 2) turns of three clocks with an always-ready sink (measured in
tests/test_hw_vlc_decoder.py): the decoder never hangs on bad data.

Three tiles at once
-------------------
The token loop (where the next token starts depends on this token's length) cannot run in one
clock at 100 MHz on an ECP5 (49 MHz when it did, README "Synthesis"), so it is cut into three
stages C1, C2, C3, and three tiles are decoded at once, one token of each in turn (the loop is
C-slowed): tile j of the lane goes to context j % 3, each context owns an input FIFO of
`in_depth` words (`in_depth` - 1 used), its own S0/A/A2/B/B2 front and an output FIFO of
`out_depth` values, and the contexts' states ride round the ring C1 -> C2 -> C3 -> C1, so a
context fires at most every third clock and the three together one token per clock. A merger
gives the values back in tile order (context 0's tile, then 1's, then 2's, ...).

Throughput one value per clock sustained, tile boundaries included (a tile's first word is
loaded in the turn that decodes the context's previous tile's last value), as long as words
arrive and the tiles fit the buffers: a context must hold about two thirds of a tile's values
while the merger drains the tiles before it, and two of its tiles' payload words. The first
tiles of a tensor cost a start-up: the first tile leaves at one value per three clocks, so a
tensor takes about (values + 2 x the values of a tile) clocks. Latency: first word taken to
first value out at most 22 clocks (tests/test_hw_vlc_decoder.py checks both against a model of
this schedule).

Pipeline
--------
per context: S0 component counters -> A class map read -> A2 class registered -> B class
parameters registered -> B2 static token lengths and Huffman limits read; input registers ->
the tile's context's input FIFO (block RAM, then registers); then for all: C0 parameters of
the context due at C1 -> C1, C2, C3 the token (the loop) -> D field extract and Huffman symbol
read -> E symbol registered -> F value -> the context's output FIFO -> merger -> output
registers.

No handshake reaches the loop: C3 takes words from the FIFOs' registers, and C1 fires a
context's token only while fewer than `out_depth` of its values are past C1 and not yet taken
(in C2, C3, D, E, F or its FIFO; decided a clock early, when the count can only fall), so D, E
and F never stall and the sink's `o.ready` ends at the output registers; the upstream's
`i.valid` ends at the input registers. A front learns of a fire a clock
later, which leaves it two clocks to put up the context's next parameters.

The loop, per token of a context:
- C1: from the state and the parameters, the token proper `x` (after the flag bit if there is
  one), the Rice ones (the first zero bit, isolated with the carry chain `~x & (x + 1)`) and
  the 16 Huffman comparisons of the first l bits, MSB-first, against `limit[l] = first[l] +
  count[l]`, precomputed when the tables are written (by the canonical-code invariant an l-bit
  prefix that no shorter length matched is >= first[l], so `prefix < limit[l]` alone is the
  match; compared left-justified, as the 16-bit window against `limit[l] << (16 - l)`, the
  limits never decrease with l, so the matches form a thermometer whose first 1 is the
  length); ESC by comparing with the class's ESC code word (captured from region 4); the three
  cases of a token of static length (0 bits, the flag bit alone, a raw or escaped token) and
  every offset and bit count after them; and the queue from the 16-bit piece holding the
  position on, with the shift left for each candidate window;
- C2: the length one-hot (the thermometer's first 1, or the Rice ones), its binary value and
  the symbol offset it selects; the candidate windows shifted into place (after the flag bit
  alone, after a raw or escaped token, after the static part of a code word: every token
  length is a static part known from the class plus at most one part found in the bits);
- C3: the one-hot picks among the 16 shifts of the code-word candidate with an AND-OR, and a
  4-way mux picks the case; the new offset, bit count and window; the queue takes a word.
The payload words wait, whole, in a three-word queue; only a bit offset moves, and the first
word leaves in the turn after the offset passed it (decided from the offset register). The
symbol table read, the field extraction, sign extension and un-zigzag happen in stages D and E,
from the registered token.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bit_unpacker import WORD_BITS, payload_word
from hw.config import (
    CLASS_BITS,
    CLASS_K_ESC,
    CLASS_MODE,
    CLASS_ZFLAG,
    GLOBAL_CHANNELS,
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
    is_commit,
    region,
    restart_after_commit,
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
CONTEXTS = 3            # tiles decoded at once: the token loop takes three clocks per token
# Per context: payload words in block RAM (two 512-word tiles), then in registers, and values.
# A context must hold about two thirds of its tile's values for the merger to go at one value
# per clock: 4096 covers ResNet-18's row tiles (3,584 values at every stage).
INPUT_REGS = 2          # words at the input, before they go to their context
IN_DEPTH = 1024
HEAD_DEPTH = 3
OUT_DEPTH = 4096
OFF_MAX = WORD_BITS + MAX_TOKEN - 1

# What stages D and E make of a token.
KIND_ZERO, KIND_SEXT, KIND_RICE, KIND_HUFF = range(4)


def decoder_status() -> data.StructLayout:
    return data.StructLayout({"error": 1, "overrun": 1, "leftover": 1, "code": 1})


def _ones(n, width):
    """`(1 << n) - 1` as a `width`-bit value, for 0 <= n <= width."""
    return ~(Const((1 << width) - 1, width) << n)[:width]


def _next(ctx, contexts):
    """The context after `ctx`, round the ring."""
    return Mux(ctx == contexts - 1, 0, ctx + 1)


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
    `tile_step` (the tiles of lane p of P: p, P), `in_depth` (payload words each tile context
    buffers, one place left free), `out_depth` (values each tile context buffers).
    """

    def __init__(self, q_width: int = MAX_BITS, max_channels: int = 1 << COMP_BITS,
                 max_classes: int = 16, tile_first: int = 0, tile_step: int = 1,
                 in_depth: int = IN_DEPTH, out_depth: int = OUT_DEPTH):
        if not 1 <= q_width <= MAX_BITS:
            raise ValueError(f"q_width must be in 1..{MAX_BITS}")
        if not 1 <= max_channels <= 1 << COMP_BITS:
            raise ValueError(f"max_channels must be in 1..{1 << COMP_BITS}")
        if not 1 <= max_classes <= 16:
            raise ValueError("max_classes must be in 1..16")
        if in_depth < 4 or out_depth < 8:
            raise ValueError("in_depth must be >= 4 and out_depth >= 8")
        self.q_width = q_width
        self.max_channels = max_channels
        self.max_classes = max_classes
        self.tile_first = tile_first
        self.tile_step = tile_step
        self.in_depth = in_depth
        self.out_depth = out_depth
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(payload_word())),
            "o": Out(stream.Signature(framed(self.q_width))),
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
        commit = is_commit(cfg)
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
        cm_rds = [classmap.read_port() for _ in range(CONTEXTS)]

        # Per code length l, per class: limit[l] = (first[l] + count[l]) << (16 - l), the
        # length decode's bound for the 16-bit window, and off[l] = base[l] - first[l] mod 64
        # for the symbol index. One memory per length, so a class's whole table is read in one
        # clock.
        lim_mems = []
        for ln in range(1, HUFF_MAX_LEN + 1):
            mem = Memory(shape=data.StructLayout({"limit": HUFF_MAX_LEN + 1, "off": 6}),
                         depth=ncls, init=[])
            m.submodules[f"huff_limit{ln}"] = mem
            lim_mems.append((mem.write_port(), [mem.read_port() for _ in range(CONTEXTS)]))

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


        K = CONTEXTS

        # The commit's resets reach every part of the decoder, so they come a clock late
        # (hw/config.py `restart_after_commit`): what is taken in the commit's clock is flushed
        # with the rest, and in the restart's clock no word, tile size or value passes.
        restart = restart_after_commit(m, cfg)

        # -- tile contexts: input FIFOs (one per context, tile j of the lane -> context j % K) --
        in_fifos, out_fifos = [], []
        word_width = payload_word().size
        for k in range(K):
            fi = SyncFIFOBuffered(width=word_width, depth=self.in_depth)
            fo = SyncFIFOBuffered(width=framed(self.q_width).size, depth=self.out_depth)
            m.submodules[f"in_fifo{k}"] = ResetInserter(restart)(fi)
            m.submodules[f"out_fifo{k}"] = ResetInserter(restart)(fo)
            in_fifos.append(fi)
            out_fifos.append(fo)
        # A block RAM's output is slow (about 8 ns on an ECP5-6): each FIFO's goes straight into a
        # register, and each context's next words wait in registers for C3.
        stage_valids = []

        def staged(fifo, name):
            valid = Signal(name=f"{name}_valid")
            data_ = Signal(fifo.width, name=f"{name}_data")
            ready = Signal(name=f"{name}_ready")
            load = ~valid | ready
            m.d.comb += fifo.r_en.eq(load)
            with m.If(load):
                m.d.sync += [valid.eq(fifo.r_rdy), data_.eq(fifo.r_data)]
            stage_valids.append(valid)
            return valid, data_, ready

        heads = []
        for k, fi in enumerate(in_fifos):
            valid, word_k, ready = staged(fi, f"in_stage{k}")
            head = RegisterFifo(payload_word(), HEAD_DEPTH - 1)
            m.submodules[f"in_head{k}"] = head
            m.d.comb += [head.i.valid.eq(valid), head.i.payload.eq(word_k),
                         ready.eq(head.i.ready), head.flush.eq(restart)]
            heads.append(head)
        outs = [staged(fo, f"out_stage{k}") for k, fo in enumerate(out_fifos)]
        def held(name, shape, depth, src, dst):
            """A RegisterFifo between streams `src` and `dst` (either may be None: its own
            port), flushed by the restart; nothing passes into or out of it in that clock."""
            fifo = RegisterFifo(shape, depth)
            m.submodules[name] = fifo
            src = src if src is not None else fifo.i
            dst = dst if dst is not None else fifo.o
            for a, b in ((src, fifo.i), (fifo.o, dst)):
                if a is not b:
                    m.d.comb += [b.payload.eq(a.payload), b.valid.eq(a.valid & ~restart),
                                 a.ready.eq(b.ready & ~restart)]
            m.d.comb += fifo.flush.eq(restart)
            return fifo

        # Words arrive through registers (the upstream's handshake ends there) and go to the
        # context of their tile.
        in_reg = held("in_reg", payload_word(), INPUT_REGS, self.i, None)
        tin = Signal(range(K))         # the context the arriving tile's words go to
        arriving_word = in_reg.o
        # Whether the context's FIFO takes the word comes from a register: it had two free
        # places a clock ago (at most one word comes per clock), so its last place stays unused.
        # The level comparison would otherwise run on into the input registers' shift.
        room = Signal(K, init=(1 << K) - 1)
        m.d.sync += [room[k].eq(fi.level < self.in_depth - 1) for k, fi in enumerate(in_fifos)]
        m.d.comb += arriving_word.ready.eq(room.bit_select(tin, 1) & ~restart)
        for k, fi in enumerate(in_fifos):
            m.d.comb += [fi.w_data.eq(arriving_word.payload),
                         fi.w_en.eq(arriving_word.valid & arriving_word.ready & (tin == k))]
        with m.If(arriving_word.valid & arriving_word.ready & arriving_word.payload.last):
            m.d.sync += tin.eq(_next(tin, K))

        # The merger gives the contexts' values back in tile order, through registers.
        out_head = held("out_head", framed(self.q_width), 2, None, self.o)
        cur = Signal(range(K))
        out_payload = Signal(framed(self.q_width))
        m.d.comb += [
            out_payload.eq(Array(data_ for _, data_, _ in outs)[cur]),
            out_head.i.payload.eq(out_payload),
            out_head.i.valid.eq(Array(valid for valid, _, _ in outs)[cur]),
        ]
        for k, (_, _, ready) in enumerate(outs):
            m.d.comb += ready.eq(out_head.i.ready & (cur == k))
        with m.If(out_head.i.valid & out_head.i.ready & out_payload.tile_last):
            m.d.sync += cur.eq(_next(cur, K))

        # The ring: the context at C1 this clock is `ph`; it is at C2 in the next clock and at
        # C3 in the one after, then back at C1.
        ph = Signal(range(K))
        ph_next = _next(ph, K)
        m.d.sync += ph.eq(ph_next)
        ph2 = Signal(range(K), init=K - 1)     # the context at C2
        ph3 = Signal(range(K), init=K - 2)     # the context at C3
        m.d.sync += [ph2.eq(ph), ph3.eq(ph2)]

        # -- back end registers (D, E, F), tagged with their context ---------------------------
        d_valid = Signal()
        e_valid = Signal()
        f_valid = Signal()

        params = data.StructLayout({
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
        # What the loop gets: those, with the class's Huffman limits and symbol offsets, one per
        # code length (read into the memories' outputs, not registered again).
        ctrl = data.StructLayout({
            **{name: field.shape for name, field in params},
            "limit": data.ArrayLayout(HUFF_MAX_LEN + 1, HUFF_MAX_LEN),
            "loff": data.ArrayLayout(6, HUFF_MAX_LEN),
        })

        # -- S0, A, A2, B, B2 per context: component counters, class, class parameters --------
        # Each context walks its own tiles' components; the tile walker's counts go to the
        # contexts in turn.
        fronts = []
        for k in range(K):
            comp = Signal(COMP_BITS, name=f"comp_{k}")
            have = Signal(name=f"have_{k}")        # the current tile's size is known
            pix_left = Signal(TILE_PIXEL_BITS, name=f"pix_left_{k}")   # pixels after this one
            # Flags kept with the counters, so no comparison is on the handshake path:
            pixel_last = Signal(name=f"pixel_last_{k}")    # comp == channels - 1
            tile_pixel = Signal(name=f"tile_pixel_{k}")    # pix_left == 0
            s0_tile_last = pixel_last & tile_pixel
            a_valid = Signal(name=f"a_valid_{k}")
            a_comp = Signal(COMP_BITS, name=f"a_comp_{k}")
            a_tile_last = Signal(name=f"a_tile_last_{k}")
            b_valid = Signal(name=f"b_valid_{k}")
            c_valid = Signal(name=f"c_valid_{k}")
            c = Signal(params, name=f"c_{k}")
            fire = Signal(name=f"fire_{k}")        # C1 took this context's token a clock ago
            a2_valid = Signal(name=f"a2_valid_{k}")
            b2_valid = Signal(name=f"b2_valid_{k}")
            c_free = ~c_valid | fire
            b2_move = b2_valid & c_free
            b2_free = ~b2_valid | c_free
            b_move = b_valid & b2_free
            b_free = ~b_valid | b2_free
            a2_move = a2_valid & b_free
            a2_free = ~a2_valid | b_free
            a_move = a_valid & a2_free
            a_free = ~a_valid | a2_free
            s0_move = have & a_free
            cm_rd = cm_rds[k]

            m.d.comb += [cm_rd.addr.eq(comp), cm_rd.en.eq(s0_move)]
            with m.If(a_free):
                m.d.sync += a_valid.eq(s0_move)
            with m.If(s0_move):
                m.d.sync += [a_comp.eq(comp), a_tile_last.eq(s0_tile_last), comp.eq(comp + 1),
                             pixel_last.eq(comp == channels - 2)]
                with m.If(pixel_last):
                    m.d.sync += [comp.eq(0), pixel_last.eq(channels == 1),
                                 pix_left.eq(pix_left - 1), tile_pixel.eq(pix_left == 1)]
                with m.If(s0_tile_last):
                    m.d.sync += have.eq(0)
            # The context's next tile size waits here, so no context waits for another to take
            # its own from the walker.
            next_have = Signal(name=f"next_have_{k}")
            next_pix = Signal(TILE_PIXEL_BITS, name=f"next_pix_{k}")
            consume = next_have & (~have | (s0_move & s0_tile_last))
            with m.If(consume):
                m.d.sync += [have.eq(1), pix_left.eq(next_pix), tile_pixel.eq(next_pix == 0),
                             next_have.eq(0)]

            # A: the class map's output (a block RAM's slow output) registered.
            a2_comp = Signal(COMP_BITS, name=f"a2_comp_{k}")
            a2_tile_last = Signal(name=f"a2_tile_last_{k}")
            a2_cls = Signal(cls_bits, name=f"a2_cls_{k}")
            with m.If(a2_free):
                m.d.sync += a2_valid.eq(a_valid)
            with m.If(a_move):
                m.d.sync += [a2_comp.eq(a_comp), a2_tile_last.eq(a_tile_last),
                             a2_cls.eq(cm_rd.data)]

            # A2: the class is known; whether the component carries the flag.
            # The classes met so far in the pixel: the first component of a class has the flag.
            seen = Signal(ncls, name=f"seen_{k}")
            seen_before = Mux(a2_comp == 0, 0, seen)
            b_comp = Signal(COMP_BITS, name=f"b_comp_{k}")
            b_tile_last = Signal(name=f"b_tile_last_{k}")
            b_cls = Signal(cls_bits, name=f"b_cls_{k}")
            b_first = Signal(name=f"b_first_{k}")
            with m.If(b_free):
                m.d.sync += b_valid.eq(a2_valid)
            with m.If(a2_move):
                m.d.sync += [
                    seen.eq(seen_before | (1 << a2_cls)),
                    b_comp.eq(a2_comp),
                    b_tile_last.eq(a2_tile_last),
                    b_cls.eq(a2_cls),
                    b_first.eq(~seen_before.bit_select(a2_cls, 1)),
                ]

            # B: the class's parameters registered.
            b2 = Signal(data.StructLayout({
                "comp": COMP_BITS, "tile_last": 1, "cls": cls_bits, "first": 1, "mode": 2,
                "zflag": 1, "bits": 5, "k": 4, "esc": 5, "esc_len": 5,
                "esc_code": HUFF_MAX_LEN}), name=f"b2_{k}")
            with m.If(b2_free):
                m.d.sync += b2_valid.eq(b_valid)
            with m.If(b_move):
                m.d.sync += [
                    b2.comp.eq(b_comp), b2.tile_last.eq(b_tile_last), b2.cls.eq(b_cls),
                    b2.first.eq(b_first), b2.mode.eq(mode[b_cls]), b2.zflag.eq(zflag[b_cls]),
                    b2.bits.eq(bits[b_cls]), b2.k.eq(rice_k[b_cls]), b2.esc.eq(rice_esc[b_cls]),
                    b2.esc_len.eq(esc_len[b_cls]), b2.esc_code.eq(esc_code[b_cls]),
                ]

            # B2: what the loop needs of them; the Huffman limits are read into the memories'
            # outputs.
            for _, rds in lim_mems:
                m.d.comb += [rds[k].addr.eq(b2.cls), rds[k].en.eq(b2_move)]
            b_hf = b2.first & b2.zflag & (b2.mode != MODE_DROP)
            with m.If(c_free):
                m.d.sync += c_valid.eq(b2_valid)
            with m.If(b2_move):
                m.d.sync += [
                    c.comp.eq(b2.comp),
                    c.tile_last.eq(b2.tile_last),
                    c.cls.eq(b2.cls),
                    c.mode.eq(b2.mode),
                    c.zflag.eq(b2.zflag & (b2.mode != MODE_DROP)),
                    c.has_flag.eq(b_hf),
                    c.bits.eq(b2.bits),
                    c.k.eq(b2.k),
                    c.esc.eq(b2.esc),
                    c.esc_len.eq(b2.esc_len),
                    c.esc_code.eq(b2.esc_code),
                    c.n_alt.eq(b2.bits + b_hf + Mux(b2.mode == MODE_RICE, b2.esc,
                                                    Mux(b2.mode == MODE_HUFFMAN, b2.esc_len,
                                                        0))),
                    c.s_dd.eq(1 + b_hf + Mux(b2.mode == MODE_RICE, b2.k, 0)),
                ]
            # What C0 takes: the registered parameters with the limits the memories hold.
            full = Signal(ctrl, name=f"ctrl_{k}")
            m.d.comb += [full[name].eq(c[name]) for name, _ in params]
            for ln, (_, rds) in enumerate(lim_mems):
                m.d.comb += [full.limit[ln].eq(rds[k].data.limit),
                             full.loff[ln].eq(rds[k].data.off)]
            fronts.append({"next_have": next_have, "next_pix": next_pix, "fire": fire,
                           "full": full, "c_valid": c_valid, "accept": ~next_have | consume,
                           "pixel_last": pixel_last,
                           "resets": [comp, have, next_have, a_valid, a2_valid,
                                      b_valid, b2_valid, c_valid, fire]})

        # The walker's counts wait in registers and go to the contexts in turn.
        counts = held("counts", TILE_PIXEL_BITS, 2, walker.o, None)
        wsel = Signal(range(K))
        m.d.comb += counts.o.ready.eq(Array(fr["accept"] for fr in fronts)[wsel])
        w_take = counts.o.valid & counts.o.ready
        with m.If(w_take):
            m.d.sync += wsel.eq(_next(wsel, K))
        for k, fr in enumerate(fronts):
            with m.If(w_take & (wsel == k)):
                m.d.sync += [fr["next_have"].eq(1), fr["next_pix"].eq(counts.o.payload - 1)]

        # -- the token loop, three clocks per token, the K contexts' tokens in turn ------------
        state = data.StructLayout({
            "q": data.ArrayLayout(WORD_BITS, QUEUE_WORDS),
            "qcount": range(QUEUE_WORDS + 1),
            "off": range(OFF_MAX + 1),
            "win": WINDOW,
            "win_ok": 1,           # win holds the next 34 bits (or all the tile has left)
            "level": range(QUEUE_WORDS * WORD_BITS + 1),   # tile bits from the position on
            "tile_loaded": 1,      # the current tile's first word is in
            "last_loaded": 1,      # ... and its last word too
            "tile_raw": 1,
            "draining": 1,         # skipping a finished tile's unused words up to `last`
            "zero": ncls,          # per class: its flag in this pixel was 0
        })
        after_layout = data.StructLayout({"off": 8, "left": 8, "ok": 1, "over": 1, "spare": 1})

        # C0: the parameters of the context that reaches C1 next.
        c1 = Signal(ctrl)
        c1_valid = Signal()
        m.d.sync += [
            c1.eq(Array(fr["full"].as_value() for fr in fronts)[ph_next]),
            c1_valid.eq(Array(fr["c_valid"] for fr in fronts)[ph_next]),
        ]

        s = Signal(state)              # the state of the context at C1
        pending = [Signal(range(self.out_depth + 8), name=f"pending_{k}") for k in range(K)]
        # Whether the context reaching C1 next has room for one more value, decided a clock
        # early: until it fires, its count can only fall.
        room = Signal()
        m.d.sync += room.eq(Array(p < self.out_depth for p in pending)[ph_next])

        # C1: from the state and the parameters: the decode up to the comparisons, every
        # offset sum, and the queue cut to 16-bit-aligned pieces around each candidate window.
        cc = c1
        coded = ~s.tile_raw
        flag_here = coded & cc.has_flag
        fbit = s.win[0]
        x = Signal(MAX_TOKEN)          # the token proper, after the flag bit if there is one
        m.d.comb += x.eq(Mux(flag_here, s.win[1:], s.win[:MAX_TOKEN]))
        skip = coded & cc.zflag & ~cc.has_flag & s.zero.bit_select(cc.cls, 1)
        x16 = x[:16]
        x17 = Cat(x16, Const(0, 1))
        first_zero = Signal(17)
        m.d.comb += first_zero.eq(~x17 & (x17 + 1))
        rice_esc_hit = (x16 | ~_ones(cc.esc, 16)).all()
        window16 = Cat(*(x[HUFF_MAX_LEN - 1 - j] for j in range(HUFF_MAX_LEN)))
        match = Signal(HUFF_MAX_LEN)
        for ln in range(HUFF_MAX_LEN):
            m.d.comb += match[ln].eq(window16 < cc.limit[ln])
        huff_esc_hit = (cc.esc_len != 0) & ((x16 & _ones(cc.esc_len, 16)) == cc.esc_code)
        keep = (cc.mode == MODE_DROP) | skip                 # 0 bits
        one = flag_here & ~fbit                              # the flag bit 0 alone
        alt = s.tile_raw | (cc.mode == MODE_RAW) | Mux(cc.mode == MODE_RICE, rice_esc_hit,
                                                       huff_esc_hit)   # n_alt bits
        n_alt = Mux(s.tile_raw, Mux(cc.mode == MODE_DROP, 0, cc.bits), cc.n_alt)
        fire1 = Signal()
        m.d.comb += fire1.eq(c1_valid & s.tile_loaded & s.win_ok & room)
        # The context's front learns of the fire a clock later: it has two clocks to put up
        # the next parameters before C0 takes them again.
        for k, fr in enumerate(fronts):
            m.d.sync += fr["fire"].eq(fire1 & (ph == k))

        passed = s.off[6]              # the position passed q0: it leaves at C3's clock edge
        pop = passed & (s.qcount != 0)     # (an overrun may have run past every word)
        off_now = s.off - Mux(passed, WORD_BITS, 0)
        fill = s.level
        # The queue from the 16-bit piece holding the position on (zeros past its end); C2
        # shifts it by the rest of each candidate's offset.
        view = Cat(s.q[0], s.q[1], s.q[2])
        pieces = 1 << (len(s.off) - 4)
        cut_width = 15 + 63 + WINDOW
        padded = Cat(view, Const(0, 16 * pieces + cut_width - len(view)))
        cut = Array(padded[16 * j:16 * j + cut_width] for j in range(pieces))[s.off[4:]]
        low = s.off[:4]
        sh_alt = Mux(s.win_ok, low + n_alt, low)          # not ok: reload the window at `off`

        def after(nbits):
            left = fill - nbits
            return {"off": off_now + nbits, "left": Mux(fill < nbits, 0, left),
                    "ok": left >= WINDOW, "over": fill < nbits,
                    "spare": (fill >= nbits) & (left >= WORD_BITS)}

        base = fill - cc.s_dd

        r1 = Signal(data.StructLayout({
            "s": state, "c": ctrl, "fire": 1, "keep": 1, "one": 1, "alt": 1, "flag_here": 1,
            "x": MAX_TOKEN, "match": HUFF_MAX_LEN, "first_zero": 16, "pop": 1,
            "off_now": 8, "n_alt": 6,
            "cut": cut_width, "sh_dd": 7, "sh_alt": 7, "sh_one": 7,
            "lt": 16, "okv": 16, "spv": 16, "base": signed(10), "offc": 8,
            "e_keep": after_layout, "e_one": after_layout, "e_alt": after_layout,
        }))
        m.d.sync += [
            r1.s.eq(s), r1.c.eq(cc), r1.fire.eq(fire1), r1.keep.eq(keep), r1.one.eq(one),
            r1.alt.eq(alt), r1.flag_here.eq(flag_here), r1.x.eq(x), r1.match.eq(match),
            r1.first_zero.eq(first_zero[:16]), r1.pop.eq(pop), r1.off_now.eq(off_now),
            r1.n_alt.eq(n_alt),
            r1.cut.eq(cut), r1.sh_dd.eq(low + cc.s_dd), r1.sh_alt.eq(sh_alt),
            r1.sh_one.eq(low + WINDOW),
            r1.lt.eq(Cat(*(base < i for i in range(16)))),
            r1.okv.eq(Cat(*(base >= WINDOW + i for i in range(16)))),
            r1.spv.eq(Cat(*(base >= WORD_BITS + i for i in range(16)))),
            r1.base.eq(base), r1.offc.eq(off_now + cc.s_dd),
        ]
        for key, n in (("e_keep", 0), ("e_one", 1), ("e_alt", n_alt)):
            e_ = after(n)
            m.d.sync += [getattr(r1, key)[f].eq(e_[f]) for f in ("off", "left", "ok", "over",
                                                                  "spare")]

        # C2: the length one-hot, the candidate windows shifted into place.
        c2 = r1.c
        forced = Cat(r1.match[:HUFF_MAX_LEN - 1], Const(1, 1))
        lowest = Signal(HUFF_MAX_LEN)
        m.d.comb += lowest.eq(forced & ~Cat(Const(0, 1), forced[:-1]))
        onehot = Signal(16)
        m.d.comb += onehot.eq(Mux(c2.mode == MODE_RICE, r1.first_zero, lowest))
        i_bin = Signal(4)
        m.d.comb += i_bin.eq(_encode(onehot, range(16), 4))
        kind = Signal(2)
        fpos = Signal(6)               # where stage D finds the field, in x
        with m.If(r1.keep | r1.one):
            m.d.comb += kind.eq(KIND_ZERO)
        with m.Elif(r1.alt):
            m.d.comb += kind.eq(KIND_SEXT)
            with m.If(~r1.s.tile_raw & (c2.mode == MODE_RICE)):
                m.d.comb += fpos.eq(c2.esc)
            with m.Elif(~r1.s.tile_raw & (c2.mode == MODE_HUFFMAN)):
                m.d.comb += fpos.eq(c2.esc_len)
        with m.Elif(c2.mode == MODE_RICE):
            m.d.comb += [kind.eq(KIND_RICE), fpos.eq(i_bin + 1)]
        with m.Else():
            m.d.comb += kind.eq(KIND_HUFF)
        r2 = Signal(data.StructLayout({
            "s": state, "c": ctrl, "fire": 1, "keep": 1, "one": 1, "alt": 1, "flag_here": 1,
            "x": MAX_TOKEN, "pop": 1, "off_now": 8, "n_alt": 6,
            "onehot": 16, "i_bin": 4, "kind": 2, "fpos": 6, "hoff": 6,
            "w_dd": WINDOW + 15, "w_alt": WINDOW, "w_one": WINDOW,
            "lt": 16, "okv": 16, "spv": 16, "base": signed(10), "offc": 8,
            "e_keep": after_layout, "e_one": after_layout, "e_alt": after_layout,
            "bad_code": 1, "end_tile": 1,
        }))
        m.d.sync += [
            r2.s.eq(r1.s), r2.c.eq(r1.c), r2.fire.eq(r1.fire), r2.keep.eq(r1.keep),
            r2.one.eq(r1.one), r2.alt.eq(r1.alt), r2.flag_here.eq(r1.flag_here), r2.x.eq(r1.x),
            r2.pop.eq(r1.pop), r2.off_now.eq(r1.off_now), r2.n_alt.eq(r1.n_alt),
            r2.onehot.eq(onehot), r2.i_bin.eq(i_bin), r2.kind.eq(kind), r2.fpos.eq(fpos),
            r2.hoff.eq(_encode(lowest, [c2.loff[j] for j in range(HUFF_MAX_LEN)], 6)),
            r2.w_dd.eq(r1.cut.bit_select(r1.sh_dd, WINDOW + 15)),
            r2.w_alt.eq(r1.cut.bit_select(r1.sh_alt, WINDOW)),
            r2.w_one.eq(Cat(r1.s.win[1:], r1.cut.bit_select(r1.sh_one, 1))),
            r2.lt.eq(r1.lt), r2.okv.eq(r1.okv), r2.spv.eq(r1.spv), r2.base.eq(r1.base),
            r2.offc.eq(r1.offc), r2.e_keep.eq(r1.e_keep), r2.e_one.eq(r1.e_one),
            r2.e_alt.eq(r1.e_alt), r2.end_tile.eq(r1.fire & r1.c.tile_last),
            r2.bad_code.eq((c2.mode == MODE_HUFFMAN) & ~r1.keep & ~r1.one & ~r1.alt
                           & ~r1.match.any()),
        ]

        # C3: the one-hot picks the code word's next window and its ends; the queue takes a
        # word; the context's new state goes back to C1.
        c3 = r2.c
        st = r2.s
        fire = r2.fire
        keep3, one3, alt3 = r2.keep, r2.one, r2.alt
        w_code = Cat(*((r2.onehot & r2.w_dd[j:j + 16]).any() for j in range(WINDOW)))

        def pick(vec):
            return (r2.onehot & vec).any()

        over_code = pick(r2.lt)
        code_end = {
            "off": r2.offc + r2.i_bin,
            "left": Mux(over_code, 0, r2.base - r2.i_bin),
            "ok": pick(r2.okv),
            "over": over_code,
            "spare": pick(r2.spv),
        }
        ends = [(keep3, r2.e_keep), (one3, r2.e_one), (alt3, r2.e_alt)]

        def chosen(key):
            value = code_end[key]
            for cond, end in reversed(ends):
                value = Mux(cond, end[key], value)
            return value

        end_tile = r2.end_tile
        # The context's next word, as its head FIFO showed it a clock ago (only this context's
        # C3 takes from it; a word that arrived since waits for the next turn).
        in_valid = Signal()
        word = Signal(payload_word())
        m.d.sync += [
            in_valid.eq(Array(h.o.valid for h in heads)[ph2]),
            word.eq(Array(h.o.payload.as_value() for h in heads)[ph2]),
        ]
        pop3 = r2.pop
        new_tile = Signal()            # take the next tile's first word
        append = Signal()
        drop = Signal()
        m.d.comb += [
            drop.eq(st.draining),
            new_tile.eq(~st.draining & (~st.tile_loaded | (end_tile & st.last_loaded))),
            append.eq(~st.draining & st.tile_loaded & ~st.last_loaded
                      & (st.qcount - pop3 < QUEUE_WORDS)),
        ]
        in_ready = new_tile | append | drop
        for k, head in enumerate(heads):
            m.d.comb += head.o.ready.eq(in_valid & in_ready & (ph3 == k))
        take = in_valid & in_ready
        load = take & append
        arriving = Mux(load & ~word.empty, WORD_BITS, 0)
        fill3 = st.level
        more = st.last_loaded

        nxt = Signal(state)
        m.d.comb += nxt.eq(st)
        with m.If(fire):
            with m.If(keep3):
                pass
            with m.Elif(one3):
                m.d.comb += nxt.win.eq(r2.w_one)
            with m.Elif(alt3):
                m.d.comb += nxt.win.eq(r2.w_alt)
            with m.Else():
                m.d.comb += nxt.win.eq(w_code)
            m.d.comb += [
                nxt.off.eq(chosen("off")),
                nxt.level.eq(chosen("left") + arriving),
                nxt.win_ok.eq(chosen("ok") | more),
            ]
            with m.If(r2.flag_here):
                m.d.comb += nxt.zero.bit_select(c3.cls, 1).eq(~st.win[0])
        with m.Else():
            m.d.comb += [nxt.off.eq(r2.off_now), nxt.level.eq(fill3 + arriving)]
            with m.If(~st.win_ok):
                m.d.comb += [nxt.win.eq(r2.w_alt), nxt.win_ok.eq((fill3 >= WINDOW) | more)]
        # The queue: q0 leaves when used up, an arriving word goes to the first free slot.
        for j in range(QUEUE_WORDS):
            src = st.q[j + 1] if j + 1 < QUEUE_WORDS else Const(0, WORD_BITS)
            keep_j = Mux(pop3, src, st.q[j])
            m.d.comb += nxt.q[j].eq(Mux(load & (st.qcount - pop3 == j), word.data, keep_j))
        m.d.comb += nxt.qcount.eq(st.qcount - pop3 + load)
        with m.If(load):
            m.d.comb += nxt.last_loaded.eq(word.last)

        # A token's error flags wait a register before they set the sticky `status` bits (the
        # path from the window's decode to them is long; a status bit may be a clock late, the
        # values of the token are three stages behind anyway).
        status = self.status
        flags = Signal(data.StructLayout({"overrun": 1, "code": 1, "leftover": 1}))
        m.d.sync += [
            flags.overrun.eq(fire & st.last_loaded & chosen("over")),
            flags.code.eq(fire & r2.bad_code),
            flags.leftover.eq(end_tile & (~st.last_loaded | chosen("spare"))),
        ]
        for name in ("overrun", "code", "leftover"):
            with m.If(flags[name]):
                m.d.sync += [getattr(status, name).eq(1), status.error.eq(1)]
        with m.If(end_tile):
            m.d.comb += [nxt.level.eq(0), nxt.tile_loaded.eq(0), nxt.last_loaded.eq(0),
                         nxt.win_ok.eq(0), nxt.off.eq(0), nxt.qcount.eq(0)]
            m.d.comb += [nxt.q[j].eq(0) for j in range(QUEUE_WORDS)]
            # A whole word not needed by the code (`flags.leftover`): not loaded yet, or still
            # in the queue. The tile's words after it are skipped up to its `last` (a word taken
            # now may be it).
            m.d.comb += nxt.draining.eq(~st.last_loaded & ~(load & word.last))
        with m.If(take & new_tile):
            first = Mux(word.empty, 0, word.data)
            m.d.comb += [
                nxt.q[0].eq(first),
                nxt.qcount.eq(~word.empty),
                nxt.off.eq(0),
                nxt.win.eq(first[:WINDOW]),
                nxt.win_ok.eq(1),
                nxt.level.eq(Mux(word.empty, 0, WORD_BITS)),
                nxt.tile_loaded.eq(1),
                nxt.last_loaded.eq(word.last),
                nxt.tile_raw.eq(word.raw),
            ]
        with m.If(take & drop & word.last):
            m.d.comb += nxt.draining.eq(0)
        m.d.sync += s.eq(nxt)

        # -- D: the field at fpos; the Huffman symbol read (its index computed in C3 from the
        # registered token: the code word's low bits plus the length's offset) -----------------
        d = Signal(data.StructLayout({
            "ctx": range(K), "comp": COMP_BITS, "tile_last": 1, "kind": 2, "x": MAX_TOKEN,
            "fpos": 6, "bits": 5, "k": 4, "t": 5, "sym": cls_bits + 6,
        }))
        rev16 = Cat(*(r2.x[15 - j] for j in range(16)))    # stream bit 0 most significant
        drop_bits = Signal(5)
        m.d.comb += drop_bits.eq(HUFF_MAX_LEN - 1 - r2.i_bin)
        prefix6 = (rev16 >> drop_bits)[:6]                # low bits of the l-bit code word
        m.d.sync += d_valid.eq(fire)
        with m.If(fire):
            m.d.sync += [
                d.ctx.eq(ph3), d.comp.eq(c3.comp), d.tile_last.eq(c3.tile_last),
                d.kind.eq(r2.kind), d.x.eq(r2.x), d.fpos.eq(r2.fpos),
                d.bits.eq(c3.bits), d.k.eq(c3.k), d.t.eq(r2.i_bin),
                d.sym.eq(Cat((prefix6 + r2.hoff)[:6], c3.cls)),
            ]
        m.d.comb += [sym_rd.addr.eq(d.sym), sym_rd.en.eq(d_valid)]

        # -- E: the field extracted; the symbol (a block RAM's slow output) registered ---------
        e = Signal(data.StructLayout({
            "ctx": range(K), "comp": COMP_BITS, "tile_last": 1, "kind": 2, "field": MAX_BITS,
            "bits": 5, "k": 4, "t": 5,
        }))
        m.d.sync += e_valid.eq(d_valid)
        with m.If(d_valid):
            m.d.sync += [
                e.ctx.eq(d.ctx), e.comp.eq(d.comp), e.tile_last.eq(d.tile_last),
                e.kind.eq(d.kind), e.field.eq((d.x >> d.fpos)[:MAX_BITS]), e.bits.eq(d.bits),
                e.k.eq(d.k), e.t.eq(d.t),
            ]
        f = Signal.like(e)
        f_sym = Signal(6)
        m.d.sync += f_valid.eq(e_valid)
        with m.If(e_valid):
            m.d.sync += [f.eq(e), f_sym.eq(sym_rd.data)]

        # -- F: the value, into its context's output FIFO ------------------------------------
        qwid = self.q_width
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

        # A context's FIFO always has room for F's value: C1 fires a context's token only while
        # fewer than out_depth of its values are in C2, C3, D, E, F and its FIFO together.
        out_value = Signal(framed(qwid))
        m.d.comb += [out_value.data.eq(value[:qwid]), out_value.comp.eq(f.comp),
                     out_value.tile_last.eq(f.tile_last)]
        for k, fo in enumerate(out_fifos):
            m.d.comb += [fo.w_data.eq(out_value), fo.w_en.eq(f_valid & (f.ctx == k))]
            m.d.comb += pending[k].eq(
                (r1.fire & (ph2 == k)) + (r2.fire & (ph3 == k)) + (d_valid & (d.ctx == k))
                + (e_valid & (e.ctx == k)) + (f_valid & (f.ctx == k)) + fo.level)
        with m.If(f_valid & out_of_range):
            m.d.sync += [status.code.eq(1), status.error.eq(1)]

        # The commit starts a new tensor: counters from zero, nothing in flight, status clear
        # (cleared again at the restart, over what the clock between may have set).
        with m.If(commit | restart):
            m.d.sync += status.eq(0)
        with m.If(restart):
            m.d.sync += [
                c1_valid.eq(0), s.eq(0), r1.eq(0), r2.eq(0), flags.eq(0), d_valid.eq(0),
                e_valid.eq(0), f_valid.eq(0), tin.eq(0), cur.eq(0), wsel.eq(0), in_valid.eq(0),
                *(valid.eq(0) for valid in stage_valids),
            ]
            for fr in fronts:
                m.d.sync += [sig.eq(0) for sig in fr["resets"]]
                m.d.sync += fr["pixel_last"].eq(channels == 1)
        return m
