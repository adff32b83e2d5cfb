"""VLC encoder: q values -> coded and raw token per value (twin of golden/vlc_encoder.py).

Stream contract
---------------
- `i`: `framed(q_width)` (hw/framing.py): q already quantized and clamped to its class's `bits`,
  `comp` = component index 0..C-1 (pixels are whole: comp runs 0..C-1), `tile_last` on the last
  value of a tile.
- `o`: `token_pair()`, one per input value, same order: `coded` = the token of docs/FORMAT.md
  ("Variable-length code", zero flag merged into bit 0 of the class's first component's token),
  `raw` = `bits` bits of q for components of non-drop classes (0 bits for drop), and
  `tile_last` passed through. A token is `(value, nbits)` with the first stream bit in bit 0.
- `cfg`: class map (region 2), class parameters mode/zflag/bits/k/esc (region 3), Huffman encoder
  table (region 4) and C (global 0) are taken from the configuration stream.
- `error`: high while the configured C is 0 or larger than `max_channels` (the pixel buffer
  would not hold a pixel; tokens are then meaningless).

Throughput one value per clock sustained. The zero flag of a class sits in its first
component's token but depends on every component of the class in the pixel, so a pixel is written
into one half of a double buffer while the per-class "non-zero" bits are OR-ed, and read out of it
(to make the tokens) while the next pixel fills the other half. The read side does not wait for the
whole pixel: component j is read as soon as components 0..j + D are in the buffer, where D (the
lookahead) is the widest span, last component minus first, of any zero-flagged class that is not
dropped. Latency: D + 9 clocks from taking a pixel's first value to presenting its first token
pair on `o` (C + 8 while the block waits for whole pixels); profiles without zero flags have D = 0,
as do all the bundled ones but conv1's (tests/fixtures/profiles).

D is worked out from the configuration, never taken from it: every class map write (j, class)
updates that class's first component and span, a write to index 0 starting a new map; at the commit
write (global 7) a five-clock max over the spans of the zero-flagged classes gives D. D is used only
when the class map was written in index order 0, 1, ... up to at least C - 1 since its last index-0
write; any other order (or a C past what was written) leaves the block waiting for whole pixels, as
safe as before. The first pixel after a commit that arrives before D is known is read whole; the
lookahead applies from the next pixel on (or at once when no read has begun).

Write side: S0 (class map read; pixel start/end and q != 0 decided here so that S2 only
combines), S1 (the class registered), S2 (buffer write, per-class flags). Read side: R0 (buffer
read), R1 (the entry registered), R1' (class parameters, zigzag, Huffman table read), R2 (raw
bits, Rice quotient and remainder, Huffman entry), R3 (Rice and Huffman tokens with their
escapes, lengths with the flag bit), R4 (the mode's token, zero flag) into the output register.
Every block RAM output is registered within a gate or two. The whole read pipeline advances when the
output register is empty or taken, so `o.ready` fans out to it combinationally; `i.ready`
depends only on registers.

Storage: pixel buffer 2 x max_channels x (q_width + class bits + 2) bits, class map
max_channels x class bits, Huffman table max_classes x 64 x 21 bits, plus registers for the
per-class parameters and escape codes and, for D, a first component and a span per class and the
max tree (about 4 x max_classes x 10 bits of registers in all).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

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
    REGION_HUFF_ENC,
    config_signature,
    index,
    region,
)
from hw.framing import COMP_BITS, framed

MAX_BITS = 16          # largest class `bits` (docs/FORMAT.md, quantizer)
CODED_BITS = 33        # longest coded token: flag + 16-bit ESC code + 16 raw bits
HUFF_SYMBOLS = 64
HUFF_ESC = 63
HUFF_LEN_BITS = 5      # code lengths 0..16
HUFF_CODE_BITS = 16


def token(width: int) -> data.StructLayout:
    """A token: `value` with the first stream bit in bit 0, `nbits` in 0..width."""
    return data.StructLayout({"value": width, "nbits": unsigned(width.bit_length())})


def token_pair() -> data.StructLayout:
    """What the encoder hands the bit packer per value: both payloads' tokens and the tile end."""
    return data.StructLayout({
        "coded": token(CODED_BITS),
        "raw": token(MAX_BITS),
        "tile_last": 1,
    })


def _ones(n, width):
    """`(1 << n) - 1` as a `width`-bit value, for 0 <= n <= width."""
    return ~(Const((1 << width) - 1, width) << n)[:width]


class VlcEncoder(wiring.Component):
    """Framed q values in, `token_pair()` out (see the module docstring).

    Parameters: `q_width` (width of q, at most 16), `max_channels` (largest C; sizes the pixel
    buffer and the class map), `max_classes` (classes the class registers and the Huffman table
    hold; profiles have at most 16).
    """

    def __init__(self, q_width: int = MAX_BITS, max_channels: int = 1 << COMP_BITS,
                 max_classes: int = 16):
        if not 1 <= q_width <= MAX_BITS:
            raise ValueError(f"q_width must be in 1..{MAX_BITS}")
        if not 1 <= max_channels <= 1 << COMP_BITS:
            raise ValueError(f"max_channels must be in 1..{1 << COMP_BITS}")
        if not 1 <= max_classes <= 16:
            raise ValueError("max_classes must be in 1..16")
        self.q_width = q_width
        self.max_channels = max_channels
        self.max_classes = max_classes
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(framed(q_width))),
            "o": Out(stream.Signature(token_pair())),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ncls = self.max_classes
        cls_bits = max(1, (ncls - 1).bit_length())
        comp_bits = max(1, (self.max_channels - 1).bit_length())

        # -- configuration -------------------------------------------------------------------
        # Writes are taken one clock late, and those into the per-class registers are decoded in
        # a second clock (class number and field first, then the one register): the decode into
        # 16 classes' registers is then no path behind the lane's configuration broadcast.
        # A write takes effect at most three clocks after it is presented; the class, table and
        # C writes all precede the configuration's last (global) writes.
        cfg = Signal.like(self.cfg.payload)
        cfg_valid = Signal()
        m.d.sync += [cfg.eq(self.cfg.payload), cfg_valid.eq(self.cfg.valid)]
        cfg_region, cfg_index, cfg_data = region(cfg.addr), index(cfg.addr), cfg.data

        channels = Signal(COMP_BITS + 1)
        last_comp = Signal(COMP_BITS + 1)      # C - 1, kept so that no stage subtracts
        mode = Array(Signal(2, name=f"mode{c}") for c in range(ncls))
        zflag = Array(Signal(name=f"zflag{c}") for c in range(ncls))
        bits = Array(Signal(range(MAX_BITS + 1), name=f"bits{c}") for c in range(ncls))
        rice_k = Array(Signal(4, name=f"k{c}") for c in range(ncls))
        rice_esc = Array(Signal(5, name=f"esc{c}") for c in range(ncls))
        esc_code = Array(Signal(HUFF_CODE_BITS, name=f"esc_code{c}") for c in range(ncls))
        esc_len = Array(Signal(HUFF_LEN_BITS, name=f"esc_len{c}") for c in range(ncls))

        m.submodules.classmap = classmap = Memory(
            shape=cls_bits, depth=self.max_channels, init=[])
        cm_wr = classmap.write_port()
        cm_rd = classmap.read_port()

        huff_shape = data.StructLayout({"code": HUFF_CODE_BITS, "len": HUFF_LEN_BITS})
        m.submodules.huffman = huffman = Memory(
            shape=huff_shape, depth=ncls * HUFF_SYMBOLS, init=[])
        hf_wr = huffman.write_port()
        hf_rd = huffman.read_port()

        # The tables are memories: written straight from the registered write.
        is_region = {r: cfg_valid & (cfg_region == r)
                     for r in (REGION_CLASSMAP, REGION_CLASS, REGION_HUFF_ENC, REGION_GLOBAL)}
        m.d.comb += [
            cm_wr.addr.eq(cfg_index),
            cm_wr.data.eq(cfg_data),
            cm_wr.en.eq(is_region[REGION_CLASSMAP] & (cfg_index < self.max_channels)),
            hf_wr.addr.eq(cfg_index),
            hf_wr.data.code.eq(cfg_data[0:16]),
            hf_wr.data.len.eq(cfg_data[16:21]),
            hf_wr.en.eq(is_region[REGION_HUFF_ENC] & (cfg_index < ncls * HUFF_SYMBOLS)),
        ]
        with m.If(is_region[REGION_GLOBAL] & (cfg_index == GLOBAL_CHANNELS)):
            m.d.sync += [channels.eq(cfg_data), last_comp.eq(cfg_data - 1)]

        # The class registers: decoded to (class, field) first.
        dec = Signal(data.StructLayout({
            "param": 1,           # a class parameter write (region 3), class < 16
            "esc": 1,             # a Huffman write of the ESC symbol (region 4), class < 16
            "cls": 4, "field": 3, "data": 21,
        }))
        m.d.sync += [
            dec.param.eq(is_region[REGION_CLASS] & (cfg_index[7:] == 0)),
            dec.esc.eq(is_region[REGION_HUFF_ENC] & (cfg_index[:6] == HUFF_ESC) &
                       (cfg_index[10:] == 0)),
            dec.cls.eq(Mux(cfg_region == REGION_CLASS, cfg_index[3:7], cfg_index[6:10])),
            dec.field.eq(cfg_index[:3]),
            dec.data.eq(cfg_data),
        ]
        for c in range(ncls):
            with m.If(dec.param & (dec.cls == c)):
                with m.Switch(dec.field):
                    with m.Case(CLASS_MODE):
                        m.d.sync += mode[c].eq(dec.data)
                    with m.Case(CLASS_ZFLAG):
                        m.d.sync += zflag[c].eq(dec.data)
                    with m.Case(CLASS_BITS):
                        m.d.sync += bits[c].eq(dec.data)
                    with m.Case(CLASS_K_ESC):
                        m.d.sync += [rice_k[c].eq(dec.data[0:8]), rice_esc[c].eq(dec.data[8:16])]
            with m.If(dec.esc & (dec.cls == c)):
                m.d.sync += [esc_code[c].eq(dec.data[0:16]), esc_len[c].eq(dec.data[16:21])]

        m.d.comb += self.error.eq((channels == 0) | (channels > self.max_channels))

        # -- lookahead D from the class map writes (see the module docstring) ------------------
        # T: the write registered; U: the class's first component (or this one when new) and,
        # one clock later, its span. `ordered`/`expect` check that the map was written 0, 1, ...
        cm_t = Signal(data.StructLayout({"valid": 1, "j": COMP_BITS + 1, "cls": cls_bits}))
        m.d.sync += [
            cm_t.valid.eq(is_region[REGION_CLASSMAP]),
            cm_t.j.eq(Mux(cfg_index < self.max_channels, cfg_index, self.max_channels)),
            cm_t.cls.eq(cfg_data[:cls_bits]),
        ]
        first_of = Array(Signal(COMP_BITS, name=f"first_of{c}") for c in range(ncls))
        span = Array(Signal(COMP_BITS, name=f"span{c}") for c in range(ncls))
        cls_seen = Signal(ncls)
        expect = Signal(COMP_BITS + 1)         # the next index of an in-order class map
        ordered = Signal()
        cm_u = Signal(data.StructLayout({"valid": 1, "j": COMP_BITS, "f": COMP_BITS,
                                         "cls": cls_bits}))
        t_onehot = Signal(ncls)
        m.d.comb += t_onehot.eq(1 << cm_t.cls)
        t_new = (cm_t.j == 0) | ~(cls_seen & t_onehot).any()
        m.d.sync += [
            cm_u.valid.eq(cm_t.valid & (cm_t.j < self.max_channels)),
            cm_u.j.eq(cm_t.j),
            cm_u.f.eq(Mux(t_new, cm_t.j, first_of[cm_t.cls])),
            cm_u.cls.eq(cm_t.cls),
        ]
        with m.If(cm_u.valid):
            m.d.sync += span[cm_u.cls].eq(cm_u.j - cm_u.f)
        with m.If(cm_t.valid):
            with m.If(t_new):
                m.d.sync += first_of[cm_t.cls].eq(cm_t.j)
            with m.If(cm_t.j == 0):
                m.d.sync += [cls_seen.eq(t_onehot), expect.eq(1), ordered.eq(1)]
                m.d.sync += [span[c].eq(0) for c in range(ncls)]
            with m.Elif(cm_t.j == expect):
                m.d.sync += [cls_seen.eq(cls_seen | t_onehot), expect.eq(expect + 1)]
            with m.Else():
                m.d.sync += ordered.eq(0)

        # At the commit: spans of the zero-flagged coded classes, then a tree of maxima.
        commit = Signal()
        m.d.comb += commit.eq(is_region[REGION_GLOBAL] & (cfg_index == GLOBAL_COMMIT))
        levels = [[Signal(COMP_BITS, name=f"dmax0_{c}") for c in range(ncls)]]
        lvl_valid = [Signal(name="dmax_valid0")]
        lvl_ok = Signal()                      # D may be used: an in-order map covering C
        m.d.sync += lvl_valid[0].eq(commit)
        with m.If(commit):
            m.d.sync += lvl_ok.eq(ordered & (expect >= channels) & ~self.error)
        for c in range(ncls):
            m.d.sync += levels[0][c].eq(Mux(zflag[c] & (mode[c] != MODE_DROP), span[c], 0))
        while len(levels[-1]) > 1:
            prev = levels[-1]
            nxt = [Signal(COMP_BITS, name=f"dmax{len(levels)}_{c}")
                   for c in range((len(prev) + 1) // 2)]
            for c, s_ in enumerate(nxt):
                a = prev[2 * c]
                b = prev[2 * c + 1] if 2 * c + 1 < len(prev) else a
                m.d.sync += s_.eq(Mux(a > b, a, b))
            v = Signal(name=f"dmax_valid{len(levels)}")
            m.d.sync += v.eq(lvl_valid[-1])
            levels.append(nxt)
            lvl_valid.append(v)
        lead_d = levels[-1][0]
        lead_done = lvl_valid[-1]              # D is in lead_d this clock
        lead = Signal(COMP_BITS)
        lead_ok = Signal()
        with m.If(commit):
            m.d.sync += lead_ok.eq(0)
        with m.Elif(lead_done):
            m.d.sync += [lead.eq(lead_d), lead_ok.eq(lvl_ok)]

        # -- pixel double buffer ---------------------------------------------------------------
        entry = data.StructLayout({
            "q": signed(self.q_width),
            "cls": cls_bits,
            "first": 1,       # first component of its class in the pixel: carries the zero flag
            "tile_last": 1,
        })
        m.submodules.pixbuf = pixbuf = Memory(shape=entry, depth=2 * self.max_channels, init=[])
        pb_wr = pixbuf.write_port()
        pb_rd = pixbuf.read_port()

        full = Signal(2)                       # bank holds a whole pixel not yet read out
        nz_bank = Array(Signal(ncls, name=f"nz_bank{b}") for b in range(2))
        full_set = Signal(2)
        full_clr = Signal(2)
        m.d.sync += full.eq((full | full_set) & ~full_clr)

        # -- write side: S0 class map read, S1 its output registered, S2 buffer write ---------
        # The three stages move together (`w_adv`), held while the bank to write is still full.
        s1 = Signal(data.StructLayout({
            "valid": 1,
            "v": framed(self.q_width),
            "first": 1,                        # comp = 0: the pixel starts
            "last": 1,                         # comp = C - 1: the pixel ends
            "nonzero": 1,
        }))
        s2 = Signal.like(s1)
        s2_cls = Signal(cls_bits)
        wb = Signal()                          # bank being filled
        seen = Signal(ncls)                    # classes met so far in the pixel
        nz = Signal(ncls)                      # classes with a non-zero value so far

        wcount = Signal(COMP_BITS + 1)          # components of the pixel in bank wb so far
        s2_go = s2.valid & ~full.bit_select(wb, 1)
        w_adv = ~s2.valid | s2_go
        m.d.comb += [
            self.i.ready.eq(w_adv),
            cm_rd.addr.eq(self.i.p.comp),
            cm_rd.en.eq(w_adv),
        ]
        with m.If(w_adv):
            m.d.sync += [
                s1.valid.eq(self.i.valid),
                s1.v.eq(self.i.p),
                s1.first.eq(self.i.p.comp == 0),
                s1.last.eq(self.i.p.comp == last_comp),
                s1.nonzero.eq(self.i.p.data != 0),
                s2.eq(s1),
                s2_cls.eq(cm_rd.data),
            ]

        seen_before = Mux(s2.first, 0, seen)
        nz_before = Mux(s2.first, 0, nz)
        cls_onehot = Signal(ncls)
        m.d.comb += cls_onehot.eq(1 << s2_cls)
        nz_after = nz_before | Mux(s2.nonzero, cls_onehot, 0)
        m.d.comb += [
            pb_wr.addr.eq(Cat(s2.v.comp[:comp_bits], wb)),
            pb_wr.data.q.eq(s2.v.data),
            pb_wr.data.cls.eq(s2_cls),
            pb_wr.data.first.eq(~(seen_before & cls_onehot).any()),
            pb_wr.data.tile_last.eq(s2.v.tile_last),
            pb_wr.en.eq(s2_go),
        ]
        with m.If(s2_go):
            m.d.sync += [seen.eq(seen_before | cls_onehot), nz.eq(nz_after),
                         wcount.eq(Mux(s2.last, 0, s2.v.comp + 1))]
            with m.If(s2.last):
                m.d.comb += full_set.eq(Mux(wb, 0b10, 0b01))
                m.d.sync += [nz_bank[wb].eq(nz_after), wb.eq(~wb)]

        # -- read side: R0 buffer read, R1 parameters + Huffman read, R2..R4 token, output -----
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Component rcount is read when its pixel is whole, or (`early`) when rcount + D, kept
        # in `rlimit`, is below the components written so far: the bank being read and not
        # yet full is then the one being written (the writer is at most one pixel ahead), and
        # the live non-zero bits `nz` hold every class whose last component is in.
        rb = Signal()                          # bank being read
        rcount = Signal(COMP_BITS)
        rlimit = Signal(COMP_BITS + 1)         # rcount + D
        early = Signal()                       # the pixel being read may be read early
        rb_full = full.bit_select(rb, 1)
        r_go = advance & (rb_full | (early & (rlimit < wcount)))
        m.d.comb += [
            pb_rd.addr.eq(Cat(rcount[:comp_bits], rb)),
            pb_rd.en.eq(advance),
        ]
        r1_valid = Signal()
        r1_nz = Signal(ncls)
        with m.If(advance):
            m.d.sync += [r1_valid.eq(r_go), r1_nz.eq(Mux(rb_full, nz_bank[rb], nz))]
        with m.If(r_go):
            with m.If(rcount == last_comp):
                m.d.sync += [rcount.eq(0), rb.eq(~rb), rlimit.eq(lead), early.eq(lead_ok)]
                m.d.comb += full_clr.eq(Mux(rb, 0b10, 0b01))
            with m.Else():
                m.d.sync += [rcount.eq(rcount + 1), rlimit.eq(rlimit + 1)]
        # A new D applies at once when no pixel is being read, else from the next pixel on.
        with m.If(lead_done & (rcount == 0) & ~r_go):
            m.d.sync += [rlimit.eq(lead_d), early.eq(lvl_ok)]
        with m.If(commit):
            m.d.sync += early.eq(0)

        # R1: the entry, registered straight out of the buffer (a block RAM's output is slow to
        # route, and the class selects a parameter set from a 16-way multiplexer next).
        e = Signal(entry)
        e_valid = Signal()
        e_nz = Signal(ncls)
        with m.If(advance):
            m.d.sync += [e.eq(pb_rd.data), e_valid.eq(r1_valid), e_nz.eq(r1_nz)]

        # R1': class parameters, zigzag, Huffman table read.
        c1 = e.cls
        q1 = Signal(signed(MAX_BITS))
        u1 = Signal(MAX_BITS)                  # zigzag(q): 0,-1,1,-2 -> 0,1,2,3
        m.d.comb += [
            q1.eq(e.q),
            u1.eq(Cat(Const(0, 1), q1[:MAX_BITS - 1]) ^ q1[MAX_BITS - 1].replicate(MAX_BITS)),
            hf_rd.addr.eq(Cat(Mux(u1 < HUFF_ESC, u1[:6], HUFF_ESC), c1)),
            hf_rd.en.eq(advance),
        ]
        common = {
            "valid": 1, "mode": 2, "tile_last": 1,
            "flag": 1,            # the token starts with the class's zero flag (first component)
            "keep": 1,            # the token is sent: no zero flag, or the flag is 1
            "bits": range(MAX_BITS + 1),
        }
        r2 = Signal(data.StructLayout({
            **common,
            "q": signed(MAX_BITS), "u": MAX_BITS, "k": 4, "esc": 5,
            "esc_code": HUFF_CODE_BITS, "esc_len": HUFF_LEN_BITS,
        }))
        nz1 = e_nz.bit_select(c1, 1)
        with m.If(advance):
            m.d.sync += [
                r2.valid.eq(e_valid),
                r2.mode.eq(mode[c1]),
                r2.tile_last.eq(e.tile_last),
                r2.flag.eq(zflag[c1] & e.first),
                r2.keep.eq(~zflag[c1] | nz1),
                r2.bits.eq(bits[c1]),
                r2.q.eq(q1),
                r2.u.eq(u1),
                r2.k.eq(rice_k[c1]),
                r2.esc.eq(rice_esc[c1]),
                r2.esc_code.eq(esc_code[c1]),
                r2.esc_len.eq(esc_len[c1]),
            ]

        # R2: the raw bits, the Rice quotient and remainder; the Huffman entry is in hf_rd.data.
        r3 = Signal(data.StructLayout({
            **common,
            "raw": MAX_BITS,
            "qq": 4, "low": 15, "rice_escape": 1, "k": 4, "esc": 5,
            "hit": 1,             # huffman: u < 63 and u has a code of its own
            "code": HUFF_CODE_BITS, "len": HUFF_LEN_BITS,
            "esc_code": HUFF_CODE_BITS, "esc_len": HUFF_LEN_BITS,
        }))
        qq2 = Signal(MAX_BITS)
        m.d.comb += qq2.eq(r2.u >> r2.k)
        with m.If(advance):
            m.d.sync += [
                r3.valid.eq(r2.valid), r3.mode.eq(r2.mode), r3.tile_last.eq(r2.tile_last),
                r3.flag.eq(r2.flag), r3.keep.eq(r2.keep), r3.bits.eq(r2.bits),
                r3.raw.eq(r2.q & ~(Const((1 << MAX_BITS) - 1, MAX_BITS) << r2.bits)[:MAX_BITS]),
                r3.qq.eq(qq2),
                r3.low.eq(r2.u & ~(Const((1 << 15) - 1, 15) << r2.k)[:15]),
                r3.rice_escape.eq(qq2 >= r2.esc),
                r3.k.eq(r2.k), r3.esc.eq(r2.esc),
                r3.hit.eq((r2.u < HUFF_ESC) & (hf_rd.data.len != 0)),
                r3.code.eq(hf_rd.data.code), r3.len.eq(hf_rd.data.len),
                r3.esc_code.eq(r2.esc_code), r3.esc_len.eq(r2.esc_len),
            ]

        # R3: the Rice and the Huffman token (each with its escape), lengths with the flag bit.
        wide = CODED_BITS - 1
        raw3, low3 = Signal(wide), Signal(wide)
        m.d.comb += [raw3.eq(r3.raw), low3.eq(r3.low)]
        r4 = Signal(data.StructLayout({
            **common,
            "raw": MAX_BITS, "raw_n": range(CODED_BITS + 1),
            "rice": wide, "rice_n": range(CODED_BITS + 1),
            "huff": wide, "huff_n": range(CODED_BITS + 1),
        }))
        with m.If(advance):
            m.d.sync += [
                r4.valid.eq(r3.valid), r4.mode.eq(r3.mode), r4.tile_last.eq(r3.tile_last),
                r4.flag.eq(r3.flag), r4.keep.eq(r3.keep), r4.bits.eq(r3.bits),
                r4.raw.eq(r3.raw), r4.raw_n.eq(r3.bits + r3.flag),
            ]
            with m.If(r3.rice_escape):
                m.d.sync += [
                    r4.rice.eq(_ones(r3.esc, wide) | (raw3 << r3.esc)),
                    r4.rice_n.eq(r3.esc + r3.bits + r3.flag),
                ]
            with m.Else():
                m.d.sync += [
                    r4.rice.eq(_ones(r3.qq, wide) | (low3 << (r3.qq + 1))),
                    r4.rice_n.eq(r3.qq + 1 + r3.k + r3.flag),
                ]
            with m.If(r3.hit):
                m.d.sync += [r4.huff.eq(r3.code), r4.huff_n.eq(r3.len + r3.flag)]
            with m.Else():
                m.d.sync += [
                    r4.huff.eq(r3.esc_code | (raw3 << r3.esc_len)),
                    r4.huff_n.eq(r3.esc_len + r3.bits + r3.flag),
                ]

        # R4: the mode's token. The zero flag goes into bit 0 of the class's first token; a class
        # that is all zero in the pixel sends that flag alone and nothing for its other components.
        tok = Signal(wide)
        tok_n = Signal(range(CODED_BITS + 1))
        with m.Switch(r4.mode):
            with m.Case(MODE_RAW):
                m.d.comb += [tok.eq(r4.raw), tok_n.eq(r4.raw_n)]
            with m.Case(MODE_RICE):
                m.d.comb += [tok.eq(r4.rice), tok_n.eq(r4.rice_n)]
            with m.Case(MODE_HUFFMAN):
                m.d.comb += [tok.eq(r4.huff), tok_n.eq(r4.huff_n)]
        out = Signal(token_pair())
        m.d.comb += out.tile_last.eq(r4.tile_last)
        with m.If(r4.mode != MODE_DROP):
            m.d.comb += [out.raw.value.eq(r4.raw), out.raw.nbits.eq(r4.bits)]
            with m.If(r4.keep):
                m.d.comb += [
                    out.coded.value.eq(Mux(r4.flag, Cat(Const(1, 1), tok), tok)),
                    out.coded.nbits.eq(tok_n),
                ]
            with m.Else():
                m.d.comb += [out.coded.value.eq(0), out.coded.nbits.eq(r4.flag)]

        with m.If(advance):
            m.d.sync += [self.o.valid.eq(r4.valid), self.o.p.eq(out)]

        return m
