"""VLC encoder: quantized values -> coded token and raw token per value (twin of golden/vlc_encoder.py).

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

Throughput one value per clock sustained. Latency: one pixel (C values) plus 4 clocks, because
the zero flag of a class sits in its first component's token but depends on every component of
the class in the pixel: a pixel is written into one half of a double buffer while the per-class
"non-zero" bits are OR-ed, and read out of it (to make the tokens) while the next pixel fills the
other half.

The write side is two stages (class map read, buffer write); the read side is four (buffer read,
class parameters and Huffman table read, token assembly, output register). The whole read
pipeline advances when the output register is empty or taken, so `o.ready` fans out to it
combinationally; `i.ready` depends only on registers.

Storage: pixel buffer 2 x max_channels x (q_width + class bits + 2) bits, class map
max_channels x class bits, Huffman table max_classes x 64 x 21 bits, plus registers for the
per-class parameters and escape codes.
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
        })

    def elaborate(self, platform):
        m = Module()
        ncls = self.max_classes
        cls_bits = max(1, (ncls - 1).bit_length())
        comp_bits = max(1, (self.max_channels - 1).bit_length())

        # -- configuration -------------------------------------------------------------------
        cfg = self.cfg
        cfg_region, cfg_index, cfg_data = region(cfg.p.addr), index(cfg.p.addr), cfg.p.data

        channels = Signal(COMP_BITS + 1)
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
                    m.d.comb += [
                        hf_wr.addr.eq(cfg_index),
                        hf_wr.data.code.eq(cfg_data[0:16]),
                        hf_wr.data.len.eq(cfg_data[16:21]),
                        hf_wr.en.eq(cfg_index < ncls * HUFF_SYMBOLS),
                    ]
                    for c in range(ncls):
                        with m.If(cfg_index == c * HUFF_SYMBOLS + HUFF_ESC):
                            m.d.sync += [
                                esc_code[c].eq(cfg_data[0:16]),
                                esc_len[c].eq(cfg_data[16:21]),
                            ]
                with m.Case(REGION_GLOBAL):
                    with m.If(cfg_index == GLOBAL_CHANNELS):
                        m.d.sync += channels.eq(cfg_data)

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

        # -- write side: S0 class map read, S1 buffer write ------------------------------------
        s1_valid = Signal()
        s1 = Signal(framed(self.q_width))
        wb = Signal()                          # bank being filled
        seen = Signal(ncls)                    # classes met so far in the pixel
        nz = Signal(ncls)                      # classes with a non-zero value so far

        s1_go = s1_valid & ~full.bit_select(wb, 1)
        m.d.comb += [
            self.i.ready.eq(~s1_valid | s1_go),
            cm_rd.addr.eq(self.i.p.comp),
            cm_rd.en.eq(self.i.ready),
        ]
        with m.If(self.i.ready):
            m.d.sync += [s1_valid.eq(self.i.valid), s1.eq(self.i.p)]

        cls_w = cm_rd.data
        pixel_start = s1.comp == 0
        seen_before = Mux(pixel_start, 0, seen)
        nz_before = Mux(pixel_start, 0, nz)
        cls_onehot = Signal(ncls)
        m.d.comb += cls_onehot.eq(1 << cls_w)
        nz_after = nz_before | Mux(s1.data != 0, cls_onehot, 0)
        m.d.comb += [
            pb_wr.addr.eq(Cat(s1.comp[:comp_bits], wb)),
            pb_wr.data.q.eq(s1.data),
            pb_wr.data.cls.eq(cls_w),
            pb_wr.data.first.eq(~(seen_before & cls_onehot).any()),
            pb_wr.data.tile_last.eq(s1.tile_last),
            pb_wr.en.eq(s1_go),
        ]
        with m.If(s1_go):
            m.d.sync += [seen.eq(seen_before | cls_onehot), nz.eq(nz_after)]
            with m.If(s1.comp == channels - 1):
                m.d.comb += full_set.eq(Mux(wb, 0b10, 0b01))
                m.d.sync += [nz_bank[wb].eq(nz_after), wb.eq(~wb)]

        # -- read side: R0 buffer read, R1 parameters + Huffman read, R2 token, output ----------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        rb = Signal()                          # bank being read
        rcount = Signal(COMP_BITS)
        r_go = advance & full.bit_select(rb, 1)
        m.d.comb += [
            pb_rd.addr.eq(Cat(rcount[:comp_bits], rb)),
            pb_rd.en.eq(advance),
        ]
        r1_valid = Signal()
        r1_nz = Signal(ncls)
        with m.If(advance):
            m.d.sync += [r1_valid.eq(r_go), r1_nz.eq(nz_bank[rb])]
        with m.If(r_go):
            with m.If(rcount == channels - 1):
                m.d.sync += [rcount.eq(0), rb.eq(~rb)]
                m.d.comb += full_clr.eq(Mux(rb, 0b10, 0b01))
            with m.Else():
                m.d.sync += rcount.eq(rcount + 1)

        # R1: the entry is in pb_rd.data.
        e = pb_rd.data
        c1 = e.cls
        q1 = Signal(signed(MAX_BITS))
        m.d.comb += q1.eq(e.q)
        u1 = Signal(MAX_BITS)                  # zigzag(q): 0,-1,1,-2 -> 0,1,2,3
        m.d.comb += u1.eq(Cat(Const(0, 1), q1[:MAX_BITS - 1]) ^ q1[MAX_BITS - 1].replicate(MAX_BITS))
        bits1 = bits[c1]
        raw1 = Signal(MAX_BITS)
        m.d.comb += raw1.eq(q1 & ~(Const((1 << MAX_BITS) - 1, MAX_BITS) << bits1)[:MAX_BITS])
        k1 = rice_k[c1]
        qq1 = Signal(MAX_BITS)
        m.d.comb += qq1.eq(u1 >> k1)
        m.d.comb += [
            hf_rd.addr.eq(Cat(Mux(u1 < HUFF_ESC, u1[:6], HUFF_ESC), c1)),
            hf_rd.en.eq(advance),
        ]

        r2 = Signal(data.StructLayout({
            "valid": 1,
            "mode": 2,
            "zflag": 1,
            "first": 1,
            "nz": 1,
            "bits": range(MAX_BITS + 1),
            "raw": MAX_BITS,
            "escape": 1,          # rice: qq >= esc
            "qq": 4,
            "low": 15,            # rice: low k bits of u
            "k": 4,
            "esc": 5,
            "huff_sym": 1,        # huffman: u < 63 (the table entry may be the symbol's own)
            "esc_code": HUFF_CODE_BITS,
            "esc_len": HUFF_LEN_BITS,
            "tile_last": 1,
        }))
        with m.If(advance):
            m.d.sync += [
                r2.valid.eq(r1_valid),
                r2.mode.eq(mode[c1]),
                r2.zflag.eq(zflag[c1]),
                r2.first.eq(e.first),
                r2.nz.eq(r1_nz.bit_select(c1, 1)),
                r2.bits.eq(bits1),
                r2.raw.eq(raw1),
                r2.escape.eq(qq1 >= rice_esc[c1]),
                r2.qq.eq(qq1),
                r2.low.eq(u1 & ~(Const((1 << 15) - 1, 15) << k1)[:15]),
                r2.k.eq(k1),
                r2.esc.eq(rice_esc[c1]),
                r2.huff_sym.eq(u1 < HUFF_ESC),
                r2.esc_code.eq(esc_code[c1]),
                r2.esc_len.eq(esc_len[c1]),
                r2.tile_last.eq(e.tile_last),
            ]

        # R2: the Huffman entry is in hf_rd.data; assemble the token without the flag.
        tok = Signal(token(CODED_BITS - 1))
        raw_ext = Signal(CODED_BITS - 1)
        m.d.comb += raw_ext.eq(r2.raw)
        with m.Switch(r2.mode):
            with m.Case(MODE_RAW):
                m.d.comb += [tok.value.eq(r2.raw), tok.nbits.eq(r2.bits)]
            with m.Case(MODE_RICE):
                with m.If(r2.escape):
                    m.d.comb += [
                        tok.value.eq(_ones(r2.esc, CODED_BITS - 1) | (raw_ext << r2.esc)),
                        tok.nbits.eq(r2.esc + r2.bits),
                    ]
                with m.Else():
                    low_ext = Signal(CODED_BITS - 1)
                    m.d.comb += low_ext.eq(r2.low)
                    m.d.comb += [
                        tok.value.eq(_ones(r2.qq, CODED_BITS - 1) | (low_ext << (r2.qq + 1))),
                        tok.nbits.eq(r2.qq + 1 + r2.k),
                    ]
            with m.Case(MODE_HUFFMAN):
                hit = r2.huff_sym & (hf_rd.data.len != 0)
                with m.If(hit):
                    m.d.comb += [tok.value.eq(hf_rd.data.code), tok.nbits.eq(hf_rd.data.len)]
                with m.Else():
                    m.d.comb += [
                        tok.value.eq(r2.esc_code | (raw_ext << r2.esc_len)),
                        tok.nbits.eq(r2.esc_len + r2.bits),
                    ]

        # Zero flag: merged into bit 0 of the class's first token; all-zero classes send only it.
        out = Signal(token_pair())
        m.d.comb += out.tile_last.eq(r2.tile_last)
        with m.If(r2.mode != MODE_DROP):
            m.d.comb += [out.raw.value.eq(r2.raw), out.raw.nbits.eq(r2.bits)]
            with m.If(~r2.zflag):
                m.d.comb += [out.coded.value.eq(tok.value), out.coded.nbits.eq(tok.nbits)]
            with m.Elif(r2.first):
                with m.If(r2.nz):
                    m.d.comb += [
                        out.coded.value.eq(Cat(Const(1, 1), tok.value)),
                        out.coded.nbits.eq(tok.nbits + 1),
                    ]
                with m.Else():
                    m.d.comb += [out.coded.value.eq(0), out.coded.nbits.eq(1)]
            with m.Elif(r2.nz):
                m.d.comb += [out.coded.value.eq(tok.value), out.coded.nbits.eq(tok.nbits)]

        with m.If(advance):
            m.d.sync += [self.o.valid.eq(r2.valid), self.o.p.eq(out)]

        return m
