"""Compact decoder lane: the read path of one lane, sequential, sized for an iCE40UP5K.

A drop-in replacement for hw/decoder_lane.py's `DecoderLane` (same ports, same stream contract,
same status bits, bit-exact output; docs/FORMAT.md is the definition) that trades throughput for
area: one tile at a time, one step of the decode per clock, every table in block RAM.

Stream contract
---------------
- `i`: `container_word()` (hw/bit_unpacker.py): each tile's header word, then its payload words,
  `last` on the final word the DRAM reader delivers for the tile; lane p of P (`tile_first` = p,
  `tile_step` = P) gets the tensor's tiles p, p + P, ...
- `o`: `framed(out_width)` (hw/framing.py): the reconstruction, one channel value per beat in
  channel order, `comp` = channel, `tile_last` on the tile's last value; `out_width` 8 (int8),
  9 (uint8) or 16 (int16). ReLU (global 5) clamps at zero. Payload and valid hold while
  `o.ready` is low.
- `cfg`: the profile's configuration writes, broadcast, always ready; the commit (global 7)
  restarts the lane a clock after its write (hw/config.py `restart_after_commit`).
- `status`: `lane_status()` (hw/decoder_lane.py), sticky since the commit: the header and CRC
  errors of hw/bit_unpacker.py (`unpacker.*`, counted in `bad_tiles`), the code errors of
  hw/vlc_decoder.py (`decoder.overrun`, `.leftover`, `.code`), and `transform`: a configuration
  this build cannot hold (N other than `group`; C zero, not a multiple of N or above
  `max_channels`; a coefficient or offset outside 16 bits signed; a table index beyond the
  build's sizes; a full raw tile above `max_tile_words`). `error` is the OR of all.
  A bad tile still yields exactly its pixel count x C values (garbage, bits past its payload read
  as zero) and the next tile starts clean. With a C that is a `transform` error every tile
  still ends in bounded clocks, all its words taken: a pixel ends with the group that reaches
  C (C above `max_channels` is held as `max_channels`), so N values per pixel for C = 0 and
  N ceil(C / N) otherwise, `tile_last` on the last.

Schedule (one tile at a time)
-----------------------------
1. Geometry: the tile's pixel count (hw/tile_walker.py's walk, done here one tile of the walk
   per two clocks) and raw size, four clocks.
2. Header and payload: the CRC covers the payload, then the header's low 32 bits, and the
   header's high 32 bits are that CRC, so the CRC of the payload followed by the whole header
   is a constant (the residue); it is linear, so the header's part is computed first, from a
   zero state, while the header waits on the input (16 clocks), into one 32-bit target; the
   header is then taken and checked (2 clocks). Each payload word is read where it waits on
   the input, taken with its last nibble: its 16 nibbles go through a 4-bit-per-clock CRC-32
   (selected into a register, taken by the CRC a clock later) while its four 16-bit halves are
   written to the payload buffer (block RAM): 16 clocks per word, no word register. Sixteen
   zero nibbles then advance the payload's CRC past the header's 64 bits, and with the target
   folded in it must equal the residue,
   so the tile's header and CRC status is final before its first value leaves. Words past
   `min(length, raw size, max_tile_words)` are checked, not kept.
3. Values, component by component: class map and class parameters (one block RAM, one entry
   per clock: 4 clocks), the token one bit per clock (zero flag, raw and escape fields, Rice
   unary and remainder, canonical Huffman code bit by bit against first/count of each length,
   then the symbol read), the dequantizer (q x dqmul on the two DSPs, then the rounding shift
   by 4 or 1 bits per clock), into a block RAM of the group's N values; after the
   group's Nth value, each of its N outputs takes N MACs (coefficient x yh as two 16 x 12 DSP
   products per clock, pipelined: N + 2 clocks), the rounding shift by F with the offset in
   its last step, the clamp, and goes to the output register, where it waits for `o.ready`
   while the next output's MACs run. A zero value (dropped class, zero flag 0) skips token and
   dequantizer. The accumulator does each requested operation a clock later, from registers:
   the operation, and the addend (the products' sum, the offset, 1 or 0) selected with the
   request, so the products' sum and the accumulator are separate carry chains.

Throughput: 41.7 clocks per value on a real feature map (int8, N = 8, 64 channels, PCA, 8-bit
auto coder; tests/test_hw_compact_decoder.py prints it). Per value: class parameters 4 clocks,
the token 1 + one per bit + 0 to 2 (symbol read, un-zigzag), the dequantizer 2 + its shift
(6 for dqshift 15) + 1; per output: N + 2 MAC clocks, the shift by F with the offset (6 for
F = 12), a clock for the last operation to land, the clamp 1; and 16 clocks per payload word
(1.4 per value here). A zero value costs 6 clocks. No value leaves before its tile's words are
all in. Latency: a tile's first value leaves about 16 x payload words + 36 + 40 N clocks after
its header arrives. A tile costs a bounded number of clocks whatever its words hold: a token
reads at most 1 + 31 + 16 bits.

Size, iCE40UP5K, 64 channels, 64-word tiles, 16 classes, N = 8, int8 (`python -m hw.build report
--device ice40 --blocks --only "block=compact_decoder"`: hw/synth_top.py's wrapper, which adds
about 175 logic cells of its own, seed 1): 2,260 of the 5,280 logic cells, 1,009 flip-flops, 10
block RAMs (payload buffer; class parameters + class map + offsets + tile_pixels and raw bits per
pixel; Huffman first/count/base (2); Huffman symbols (2); coefficients (2); the group's yh (2)) and
3 DSPs (the two 16 x 12 products, the tile's raw size); 40.0 MHz: above the iCEBreaker's 12 MHz
clock, at the 40 MHz target (38.7 to 43.2 MHz across small edits of the code: yosys reshapes the
LUT chains). Every RAM's read port is an asynchronous read and a register that
yosys folds into the RAM, so that its `no_rw_check` attribute applies: with plain synchronous ports
yosys surrounded the six RAMs with read-before-write and transparency emulation (277 flip-flops and
196 logic cells more). The sequencer's state is one-hot (`fsm_encoding`; yosys drops its
initial value when it re-encodes it, so its start comes from the domain's reset, which the board
top adds on the ECP5).
A configuration write is decoded over two clocks (its checks registered, then acted on); the
accumulator's adder is a carry-select one (two half-width chains side by side); the tile walk,
the Huffman compare, the CRC and the header checks each have their carry chains and selections
split over two clocks. The longest paths, about 23 ns, are the first clock of a configuration
write (the index's range checks, a chain of LUTs that yosys' mapper shares between the compares)
and the sequencer's token decisions into the enables of the registers they load.
"""


from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from hw.bit_unpacker import (
    LEN_BITS,
    RAW_BPP_BITS,
    TILE_NO_BITS,
    container_word,
    unpacker_status,
)
from hw.compare import gt_const, lt_const
from hw.config import (
    CLASS_BITS,
    CLASS_DQMUL,
    CLASS_DQSHIFT,
    CLASS_K_ESC,
    CLASS_MODE,
    CLASS_ZFLAG,
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    GLOBAL_FRAC_BITS,
    GLOBAL_GROUP,
    GLOBAL_IMAGE_PIXELS,
    GLOBAL_RELU,
    GLOBAL_TILE_PIXELS,
    MODE_DROP,
    MODE_RAW,
    MODE_RICE,
    REGION_CLASS,
    REGION_CLASSMAP,
    REGION_COEFF,
    REGION_GLOBAL,
    REGION_HUFF_DEC,
    REGION_HUFF_SYM,
    REGION_OFFSET,
    config_signature,
    index,
    region,
    restart_after_commit,
)
from hw.crc import CRC32_INIT, CRC32_XOROUT, crc32_next, crc32_serial
from hw.decoder_lane import lane_status
from hw.framing import framed
from hw.ram import NO_RW_CHECK, registered_read_port
from hw.tile_walker import IMAGE_PIXEL_BITS, TILE_PIXEL_BITS
from hw.vlc_decoder import decoder_status

_DTYPES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
Y_BITS = 24             # dequantized values (sclamp 24, FORMAT.md)
COEFF_BITS = 16         # coefficients and offsets held in 16 bits: one DSP operand
ACC_BITS = 44           # 8 x (16 x 24-bit products) + offset, with room; N <= 16 fits too
HUFF_LEN = 16
# The CRC state after any message followed by its CRC (32 bits, bit 0 first): a constant
# (0xDEBB20E3), here for the empty message.
CRC32_RESIDUE = crc32_serial(CRC32_INIT, CRC32_INIT ^ CRC32_XOROUT, 32)
ESC_SYMBOL = 63


# States of the sequencer.
(S_WALK, S_GEOM1, S_GEOM2, S_HEAD, S_HCHK, S_HCHK2, S_NIB, S_CRC, S_CHECK, S_LOAD0, S_LOAD1, S_CMAP,
 S_P0, S_P1, S_P2, S_P3, S_TOK, S_FIELD, S_RICE, S_HUF, S_SYM2, S_VALUE, S_DQ1,
 S_DQ2, S_RS, S_SAT, S_TMAC, S_MU, S_WAIT, S_CLAMP, S_TEND, S_WALK2) = range(32)

# Operations on the shared accumulator.
(OP_HOLD, OP_CLEAR, OP_MAC, OP_ADDMU, OP_RND, OP_RNDMU, OP_SHR1, OP_SHR4) = range(8)


class CompactDecoderLane(wiring.Component):
    """Container words in, reconstructed channel values out, sequentially (module docstring).

    Parameters: `dtype` ("int8", "uint8", "int16"), `group` (transform N), `max_channels`,
    `max_tile_words` (payload buffer: the largest tile, raw size, it decodes), `tile_first`,
    `tile_step` (the tiles of lane p of P: p, P), `max_classes`.
    """

    def __init__(self, dtype: str = "int8", group: int = 8, max_channels: int = 64,
                 max_tile_words: int = 64, tile_first: int = 0, tile_step: int = 1,
                 max_classes: int = 16):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
        exact_log2(group)
        if group < 2:
            # With N = 1 a group's yh is written and read back in the same clock; the
            # schedule (and the RAM's read port, no_rw_check) needs a clock between them.
            self._MustUse__used = True      # refused, not built and forgotten: no warning
            raise ValueError(f"the compact decoder needs a transform group N >= 2, got {group}")
        self.dtype = dtype
        self.group = group
        self.max_channels = max_channels
        self.max_tile_words = max_tile_words
        self.tile_first = tile_first
        self.tile_step = tile_step
        self.max_classes = max_classes
        self.lo, self.hi = _DTYPES[dtype]
        out_width = max(self.hi.bit_length(), (-self.lo - 1).bit_length()) + 1
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(container_word())),
            "o": Out(stream.Signature(framed(out_width))),
            "status": Out(lane_status()),
        })

    def elaborate(self, platform):
        m = Module()
        N, L = self.group, exact_log2(self.group)
        ncls = self.max_classes
        cls_bits = max(1, ceil_log2(ncls))
        cfg = self.cfg
        # The sticky bits are flip-flops of their own; `status` is their combination.
        ust = Signal(unpacker_status())
        dst = Signal(decoder_status())
        restart = restart_after_commit(m, cfg)

        # -- configuration ---------------------------------------------------------------------
        # One 16-bit block RAM holds the class parameters (four entries per class, two fields
        # packed per entry with byte write enables), the class map and the offsets: the
        # sequencer reads one entry per clock anyway.
        p_cmap = 4 * ncls
        p_offs = p_cmap + self.max_channels
        # Two more entries hold tile_pixels and the commit's raw bits per pixel: read where the
        # tile walk and the geometry use them, no flip-flops of their own.
        p_tp = p_offs + self.max_channels
        p_bpp = p_tp + 1
        # Read ports: an asynchronous read and a register after it (no reset, like a port's),
        # which yosys merges into the RAM's synchronous read: the same timing as a synchronous
        # port, and the memories' `no_rw_check` then reaches yosys (Amaranth marks a
        # synchronous port's collisions as defined, so yosys would wrap each RAM in
        # read-before-write and transparency emulation: a delayed write port, a register and a
        # bypass multiplexer). No read here needs an entry in the clock it is written: the
        # payload buffer is written only in S_NIB and read from S_LOAD0 on; yh is written a
        # clock after S_SAT, at comp - 1, while that clock's S_TMAC reads yh[0], another
        # entry for N > 1, and later reads come after the write; the tables are written only
        # by configuration writes, which a tile in flight does not expect (its decode would
        # mix the old and the new profile anyway; the commit restarts the lane).
        NO_RW = NO_RW_CHECK

        def read_port(mem, name):
            return registered_read_port(m, mem, name)

        params = Memory(shape=unsigned(16), depth=p_bpp + 1, init=[],
                        attrs=NO_RW)
        hdec = Memory(shape=unsigned(32), depth=ncls * HUFF_LEN, init=[],      # first|count|base
                      attrs=NO_RW)
        hsym = Memory(shape=unsigned(6), depth=ncls * 64, init=[], attrs=NO_RW)
        coeff = Memory(shape=signed(COEFF_BITS), depth=self.max_channels * N, init=[],
                       attrs=NO_RW)
        buf = Memory(shape=unsigned(16), depth=4 * self.max_tile_words, init=[], attrs=NO_RW)
        # The group's N dequantized values; declared 256 deep so that it goes to block RAM
        # (two) rather than to 24 N flip-flops.
        yhm = Memory(shape=signed(Y_BITS), depth=max(256, N), init=[], attrs=NO_RW)
        m.submodules.yhm = yhm
        yh_w, yh_r = yhm.write_port(), read_port(yhm, "yh")
        m.submodules.params = params
        m.submodules.hdec = hdec
        m.submodules.hsym = hsym
        m.submodules.coeff = coeff
        m.submodules.buf = buf
        params_w = params.write_port(granularity=8)
        hdec_w, hsym_w, coeff_w = hdec.write_port(), hsym.write_port(), coeff.write_port()
        params_r, hdec_r = read_port(params, "params"), read_port(hdec, "hdec")
        hsym_r, coeff_r = read_port(hsym, "hsym"), read_port(coeff, "coeff")
        buf_w, buf_r = buf.write_port(), read_port(buf, "buf")

        # C above `max_channels` (a `transform` error) is held as `max_channels`: the channel
        # counters and table indices then stay within the build's sizes.
        channels = Signal(range(self.max_channels + 1))
        frac_bits = Signal(6)
        relu = Signal()
        image_pixels = Signal(IMAGE_PIXEL_BITS)
        n_bad, c_bad = Signal(), Signal()
        range_pending, range_bad = Signal(), Signal()
        bad_write_r = Signal()     # a write of the clock before was out of range

        # The configuration write is decoded in two clocks. The first registers the write (the
        # index bits the tables use, the data) with its decisions, each from the write alone: the
        # region (one-hot, with valid), the index's range per region, the data's checks; the
        # second acts on those registers: the tables' writes (the RAMs' write ports, driven from
        # them), the globals. A write then lands two clocks after it is on `cfg`, a table entry
        # (the write port's clock) a clock after, as before; the commit's restart is still
        # `restart_after_commit`'s (a clock after the commit), by when every write before the
        # commit has landed: the globals the restart reads (image_pixels) are registered in the
        # commit's clock, and the tables are read from the restart's clock on. Neither stage's
        # decoding is a path through the other's (the range checks' compares were some 10 LUT
        # levels in front of the parameter RAM's write enable).
        c_reg, c_idx, c_data = region(cfg.p.addr), index(cfg.p.addr), cfg.p.data
        idx_w = max(ceil_log2(self.max_channels * N), ceil_log2(ncls * 64), ceil_log2(ncls * 8),
                    4)
        q_idx = Signal(idx_w)
        q_data = Signal(len(c_data))
        regions = (REGION_COEFF, REGION_OFFSET, REGION_CLASSMAP, REGION_CLASS, REGION_HUFF_DEC,
                   REGION_HUFF_SYM, REGION_GLOBAL)
        q_sel = {r: Signal(name=f"q_sel{r}") for r in regions}
        idx_bounds = {REGION_CLASS: ncls * 8, REGION_CLASSMAP: self.max_channels,
                      REGION_OFFSET: self.max_channels, REGION_COEFF: self.max_channels * N,
                      REGION_HUFF_DEC: ncls * HUFF_LEN, REGION_HUFF_SYM: ncls * 64}
        q_iok = {r: Signal(name=f"q_iok{r}") for r in idx_bounds}
        q_ghi = Signal()            # the index's bits above the globals' 4 are zero
        q_fits16, q_cls_ok, q_too_many, q_zero, q_ne_n = (Signal(name=n) for n in (
            "q_fits16", "q_cls_ok", "q_too_many", "q_zero", "q_ne_n"))
        top = c_data[15:]
        m.d.sync += [q_idx.eq(c_idx[:idx_w]), q_data.eq(c_data),
                     q_ghi.eq(c_idx[4:] == 0),
                     q_fits16.eq((top == 0) | (top == (1 << len(top)) - 1)),
                     q_cls_ok.eq(lt_const(c_data, ncls)),
                     q_too_many.eq(gt_const(c_data, self.max_channels)),
                     q_zero.eq(c_data == 0),
                     q_ne_n.eq(c_data != N)]
        m.d.sync += [q_sel[r].eq(cfg.valid & (c_reg == r)) for r in regions]
        m.d.sync += [q_iok[r].eq(lt_const(c_idx, b)) for r, b in idx_bounds.items()]

        # -- the second clock: from the registers only
        g_sel = q_sel[REGION_GLOBAL] & q_ghi
        g_idx = q_idx[:4]

        def global_write(i):
            return g_sel & (g_idx == i)

        with m.If(global_write(GLOBAL_CHANNELS)):
            m.d.sync += [channels.eq(Mux(q_too_many, self.max_channels, q_data)),
                         c_bad.eq(q_zero | (q_data[:L] != 0) | q_too_many)]
        with m.If(global_write(GLOBAL_GROUP)):
            m.d.sync += n_bad.eq(q_ne_n)
        with m.If(global_write(GLOBAL_FRAC_BITS)):
            m.d.sync += frac_bits.eq(q_data)
        with m.If(global_write(GLOBAL_RELU)):
            m.d.sync += relu.eq(q_data[0])
        with m.If(global_write(GLOBAL_IMAGE_PIXELS)):
            m.d.sync += image_pixels.eq(q_data)
        q_commit = global_write(GLOBAL_COMMIT)
        with m.If(q_commit):
            m.d.sync += [range_bad.eq(range_pending | bad_write_r),
                         range_pending.eq(0)]

        ok = {REGION_CLASS: q_iok[REGION_CLASS],
              REGION_CLASSMAP: q_iok[REGION_CLASSMAP] & q_cls_ok,
              REGION_OFFSET: q_iok[REGION_OFFSET] & q_fits16,
              REGION_COEFF: q_iok[REGION_COEFF] & q_fits16,
              REGION_HUFF_DEC: q_iok[REGION_HUFF_DEC],
              REGION_HUFF_SYM: q_iok[REGION_HUFF_SYM]}
        # (entry of the class's four, byte enables) per field; qmul and qshift are not needed.
        packing = {CLASS_MODE: (0, 0b01), CLASS_ZFLAG: (0, 0b10), CLASS_K_ESC: (1, 0b11),
                   CLASS_BITS: (2, 0b01), CLASS_DQSHIFT: (2, 0b10), CLASS_DQMUL: (3, 0b11)}
        # The parameter RAM's write is decided in the first clock (address, data, byte
        # enables, from the write's region and field), but for the checks (the index's range,
        # an offset's 16 bits, a class map entry's class: registered in the first clock too),
        # which gate the enables in the second.
        pw_addr, pw_data = Signal.like(params_w.addr), Signal.like(params_w.data)
        pw_en = Signal.like(params_w.en)
        # the write's region: its checks (q_iok, q_fits16, q_cls_ok) gate it in the second clock
        pw_cls, pw_cmap, pw_off, pw_glob = Signal(), Signal(), Signal(), Signal()
        c_field = c_idx[:3]
        c_cls = c_idx[3:3 + cls_bits]
        c_sel = {r: cfg.valid & (c_reg == r) for r in regions}
        c_glob = c_sel[REGION_GLOBAL]          # (the index's bits from 4 on: q_ghi)
        c_high = c_sel[REGION_CLASS] & ((c_field == CLASS_ZFLAG) | (c_field == CLASS_DQSHIFT))
        m.d.sync += [pw_data.eq(Mux(c_high, c_data[:8] << 8, c_data[:16])),
                     pw_en.eq(0), pw_cls.eq(c_sel[REGION_CLASS]),
                     pw_cmap.eq(c_sel[REGION_CLASSMAP]), pw_off.eq(c_sel[REGION_OFFSET]),
                     pw_glob.eq(c_glob)]
        with m.If(c_glob & (c_idx[:4] == GLOBAL_TILE_PIXELS)):
            m.d.sync += [pw_addr.eq(p_tp), pw_en.eq(3)]
        with m.If(c_glob & (c_idx[:4] == GLOBAL_COMMIT)):
            m.d.sync += [pw_addr.eq(p_bpp), pw_en.eq(3)]
        with m.If(c_sel[REGION_CLASS]):
            with m.Switch(c_field):
                for f, (entry, en) in packing.items():
                    with m.Case(f):
                        m.d.sync += [pw_addr.eq(c_cls * 4 + entry), pw_en.eq(en)]
        with m.If(c_sel[REGION_CLASSMAP]):
            m.d.sync += [pw_addr.eq(p_cmap + c_idx[:ceil_log2(self.max_channels)]),
                         pw_en.eq(3)]
        with m.If(c_sel[REGION_OFFSET]):
            m.d.sync += [pw_addr.eq(p_offs + c_idx[:ceil_log2(self.max_channels)]),
                         pw_en.eq(3)]
        pw_bad = ((pw_cls & ~ok[REGION_CLASS]) | (pw_cmap & ~ok[REGION_CLASSMAP])
                  | (pw_off & ~ok[REGION_OFFSET]) | (pw_glob & ~q_ghi))
        m.d.comb += [params_w.addr.eq(pw_addr), params_w.data.eq(pw_data),
                     params_w.en.eq(Mux(pw_bad, 0, pw_en))]
        m.d.comb += [coeff_w.addr.eq(q_idx), coeff_w.data.eq(q_data),
                     coeff_w.en.eq(q_sel[REGION_COEFF] & ok[REGION_COEFF]),
                     hdec_w.addr.eq(q_idx), hdec_w.data.eq(q_data),
                     hdec_w.en.eq(q_sel[REGION_HUFF_DEC] & ok[REGION_HUFF_DEC]),
                     hsym_w.addr.eq(q_idx), hsym_w.data.eq(q_data),
                     hsym_w.en.eq(q_sel[REGION_HUFF_SYM] & ok[REGION_HUFF_SYM])]
        # A write out of range: registered, taken by a commit in the next clock or kept pending.
        m.d.sync += bad_write_r.eq(Cat(q_sel[r] & ~ok[r] for r in ok).any())
        with m.If(bad_write_r & ~q_commit):
            m.d.sync += range_pending.eq(1)

        # -- tile geometry ---------------------------------------------------------------------
        # hw/tile_walker.py's walk, done here in S_WALK, one tile of the walk per clock (the
        # lane's tiles and the others' it skips): `w_rest` is the image's pixels from the next
        # tile's first on (image_pixels - pos in the walker's terms), the tile's count is
        # min(w_rest, tile_pixels), and the image wraps when w_rest <= tile_pixels. One
        # subtractor, no 32-bit comparators (hw/tile_walker.py's cost some 300 logic cells).
        # w_rest starts from image_pixels at the restart: a write of image_pixels after the
        # commit, which a tensor in flight does not expect, counts from the next wrap on.
        w_armed = Signal()          # a commit was seen: the geometry is valid
        w_rest = Signal(IMAGE_PIXEL_BITS)
        w_skips = Signal(range(max(self.tile_first, self.tile_step - 1) + 1))
        # A step of the walk takes two clocks: S_WALK registers the subtraction and the equality
        # (every clock; used in S_WALK2, after S_WALK), S_WALK2 acts on them: the subtractor's
        # carry chain and the selection of w_rest's 32 bits are not one path.
        w_diff = Signal(IMAGE_PIXEL_BITS + 1)
        w_eq = Signal()
        tile_pixels = params_r.data[:TILE_PIXEL_BITS]      # read in the clock before (p_tp)
        m.d.sync += [w_diff.eq(w_rest - tile_pixels),
                     w_eq.eq((w_rest[TILE_PIXEL_BITS:] == 0)
                             & (w_rest[:TILE_PIXEL_BITS] == tile_pixels))]
        # w_rest <= tile_pixels: the borrow, or equal operands (compared beside the subtractor,
        # not after it)
        w_wrap = w_diff[-1] | w_eq

        state = Signal(range(32), attrs={"fsm_encoding": "one-hot"})
        npix = Signal(TILE_PIXEL_BITS)     # the tile's pixels; from S_CHECK on, those left
        product = Signal(TILE_PIXEL_BITS + RAW_BPP_BITS, reset_less=True)
        # The raw size in words, ceil(product / 64), as its low LEN_BITS bits and a flag for
        # the bits above (a size no header length reaches): the header checks then compare
        # LEN_BITS bits.
        raw_words = Signal(LEN_BITS)
        raw_big = Signal()

        # -- tile reception ----------------------------------------------------------------------
        tile_no = Signal(TILE_NO_BITS, init=self.tile_first % (1 << TILE_NO_BITS))
        limit = Signal(range(self.max_tile_words + 1))  # payload words kept in the buffer
        raw = Signal()
        length = Signal(LEN_BITS)
        # The CRC covers the payload, then the header's low 32 bits, and the header's high 32
        # bits are that CRC: the state after the payload and the whole header (the CRC field
        # too, bit 0 first) is then the constant CRC32_RESIDUE. The CRC is linear: that state
        # is T(s) ^ g(header), T(s) the payload's state s advanced by 64 zero bits, g(header)
        # the header's CRC from a zero state. g(header) is computed from the header while it
        # waits on the input, into `target`, the one header value kept: the check is then
        # T(s) ^ target == CRC32_RESIDUE, and neither the header's 64 bits nor a payload word
        # are held in flip-flops.
        crc = Signal(32)
        target = Signal(32)
        e_mode, e_len, e_tile = Signal(), Signal(), Signal()
        e_crc, e_frame = Signal(), Signal()
        h_gt, h_ne, h_over, h_nz = Signal(), Signal(), Signal(), Signal()
        wcount = Signal(LEN_BITS + 1)
        keep = Signal()             # wcount < limit: the word goes into the buffer
        nib = Signal(4)
        wlast = Signal()
        tail = Signal()             # 16 nibbles of zeros: T(s), the CRC's end
        # The nibble is selected into a register and goes into the CRC in the next clock: the
        # selection and the CRC's XOR network are not in one clock. It is selected from the
        # word's half that the buffer is written (a 4-way selection of the 4-way one, not a
        # 16-way one beside it).
        nibble = Signal(4)
        half = self.i.p.data.word_select(nib[2:], 16)
        nv = Signal()               # `nibble` holds one the CRC has not taken yet
        crc_n = Signal(32)
        m.d.comb += crc_n.eq(crc32_next(crc, nibble))

        def next_nibble():
            m.d.sync += [nibble.eq(Mux(tail, 0, half.word_select(nib[:2], 4))), nv.eq(1),
                         nib.eq(nib + 1)]
            with m.If(nv):
                m.d.sync += crc.eq(crc_n)

        # -- decode ------------------------------------------------------------------------------
        pos_max = 64 * self.max_tile_words
        pos = Signal(range(pos_max + 1))
        left = Signal(range(pos_max + 1))      # payload bits from `pos` on
        in_payload = Signal()                   # left != 0, registered: it starts the token loop
        cur = Signal(16)            # the buffer halfword holding `pos`, shifted to it
        comp = Signal(range(self.max_channels))     # C <= max_channels (held so)
        gbase = Signal(range(self.max_channels))
        cls = Signal(cls_bits)
        mode, zflag, bits, k, esc = Signal(2), Signal(), Signal(5), Signal(4), Signal(5)
        dqshift = Signal(6)
        seen, flag = Signal(ncls), Signal(ncls)
        tok_zero, tok_zf = Signal(), Signal()   # the value is zero; its zero flag is read
        cnt = Signal(5)             # bits read of a field; Huffman code length
        h_end = Signal()            # cnt == HUFF_LEN, registered with the count
        nfield = Signal(5)
        rice_rem = Signal()         # the field is a Rice remainder (else a signed value)
        fld = Signal(16)
        ones = Signal(20)
        at_esc = Signal()           # ones == esc, registered: off the sequencer's path
        code = Signal(HUFF_LEN)
        hbase, hdiff = Signal(6), Signal(6)     # the matched code's symbol index, in parts
        hhit = Signal()
        u = Signal(20)
        q = Signal(signed(16))
        rem = Signal(6)             # shift still to do before the final rounding step
        rs_tr = Signal()            # the rounding shift is the transform's (else dequantizer's)
        yzero = Signal()            # the value is zero: no token, no dequantizer
        tcount = Signal(range(N + 2))
        j = Signal(range(N))
        acc = Signal(signed(ACC_BITS))
        acc_op = Signal(range(8))     # the sequencer's request; done a clock later (a_*)
        out = Signal.like(self.o.payload)

        # `ready` from a flag registered a clock ahead (and the state): the handshake, which
        # enables the header's registers, is then not behind the nibble count's decoding.
        rdy = Signal()
        m.d.comb += self.i.ready.eq(rdy & ((state == S_HEAD) | (state == S_NIB)))
        take = self.i.valid & self.i.ready
        hdr = self.i.p.data

        # The bit reader: bit `pos` of the tile's payload, zero at and past its end.
        bit = cur[0] & in_payload
        consume = Signal()
        with m.If(consume):
            with m.If(in_payload):
                m.d.sync += [pos.eq(pos + 1), left.eq(left - 1), in_payload.eq(left != 1),
                             cur.eq(cur >> 1)]
                with m.If(pos[:4] == 15):
                    m.d.sync += cur.eq(buf_r.data)
            with m.Else():
                m.d.sync += [dst.overrun.eq(1), dst.error.eq(1)]
        # The next halfword is always read ahead: it is there when `pos` crosses into it.
        m.d.comb += buf_r.addr.eq(Mux(state == S_LOAD0, 0, (pos >> 4) + 1))

        # Class parameters, read one entry per clock.
        p_addr = Signal(range(params.depth))
        m.d.comb += params_r.addr.eq(p_addr)
        pdata = params_r.data
        # Huffman tables two lengths ahead (below): length 1's entry in S_P3 and in a first
        # S_TOK that reads a zero flag (S_TOK then runs again), length 2's in the S_TOK that
        # leaves; length cnt + 3's in S_HUF.
        tok_next = (state == S_TOK) & ~tok_zf
        m.d.comb += hdec_r.addr.eq(Cat(Mux(state == S_HUF, cnt + 2, tok_next)[:4], cls))
        m.d.comb += hsym_r.addr.eq(Cat((hbase + hdiff)[:6], cls))
        first_l = hdec_r.data[:16]
        count_l = hdec_r.data[16:24]
        base_l = hdec_r.data[24:32]
        # The Huffman step's compare, a match at length l when 0 <= code - first[l] <
        # count[l]: d0 = code << 1 - first[l] is computed a step ahead, from the code with the
        # previous bit in and the entry of the length, into a register with count and base, so
        # that the step has one carry chain (d0 against count) in front of `hhit`. Both
        # outcomes of the bit are compared; the bit only selects.
        # count < 256, so the compares are 8 bits wide: d0 in [0, count) is d0's bits above 7
        # zero and its low 8 bits below count; d0 in [-1, count - 1) is d0 = -1 with count
        # nonzero, or that with count - 1 (count nonzero).
        d0 = Signal(signed(HUFF_LEN + 2))
        count_r, count_m1 = Signal(8), Signal(8)
        count_nz = Signal()
        base_r = Signal(8)

        # (one subtractor for both loads: the code with the bit in for S_HUF, zero for S_TOK)
        code_next = Mux(state == S_HUF, Cat(bit, code[:HUFF_LEN - 1]), 0)
        d0_next = Signal.like(d0)
        m.d.comb += d0_next.eq(Cat(Const(0, 1), code_next[:HUFF_LEN - 1]) - first_l)

        def huff_load():
            m.d.sync += [d0.eq(d0_next),
                         count_r.eq(count_l), count_m1.eq(count_l - 1),
                         count_nz.eq(count_l != 0), base_r.eq(base_l)]

        d0_low = (d0[8:] == 0) & count_nz
        hit0 = d0_low & (d0[:8] < count_r)
        # (d0 < count - 1: below count and not count - 1, an equality beside hit0's compare)
        hit1 = count_nz & ((d0 == -1) | (hit0 & (d0[:8] != count_m1)))

        # The products: a 16-bit signed times a 24-bit signed operand as two 16 x 12 products
        # (two DSPs), registered, then summed into the addend register: a coefficient times yh
        # for the transform's MACs, q times dqmul (zero-extended) for the dequantizer. The tile
        # geometry's product is a third DSP. The product registers are exactly the products'
        # widths (16-bit signed times 12-bit unsigned fits 28 bits signed): yosys folds a
        # register into the DSP only then (a 29-bit p_lo stayed 28 flip-flops of their own).
        dq_sel = state == S_DQ1
        mac_a = Signal(signed(16))
        mac_b = Signal(signed(Y_BITS))
        m.d.comb += [mac_a.eq(Mux(dq_sel, q, coeff_r.data)),
                     mac_b.eq(Mux(dq_sel, pdata, yh_r.data))]     # pdata: the class's dqmul
        p_lo = Signal(signed(COEFF_BITS + 12), reset_less=True)
        p_hi = Signal(signed(COEFF_BITS + 12), reset_less=True)
        m.d.sync += [p_lo.eq(mac_a * mac_b[:12]), p_hi.eq(mac_a * mac_b[12:].as_signed())]
        m.d.comb += coeff_r.addr.eq(Cat(j, (gbase + tcount)[:ceil_log2(self.max_channels)]))
        m.d.comb += yh_r.addr.eq(tcount[:L])

        # The accumulator: every addition of the datapath goes through its one adder. The
        # sequencer's request is registered and done in the next clock, so that the adder's
        # operand and result multiplexers are driven by flip-flops, not by the sequencer's
        # decoding: each operation lands a clock later than requested. The addend is selected
        # with the request, into a register: the sum of the products the request saw (its
        # carry chain and the accumulator's are then in separate clocks), the offset (the
        # parameter read of the clock before), 1 or nothing. The request is registered decoded
        # (clear, enable, halve the sum, shift by 4): each accumulator bit is then the adder's
        # LUT and a 3-way selection of two LUTs, not a decoding of the operation per bit.
        a_clr, a_en, a_half, a_sh4 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [a_clr.eq(acc_op == OP_CLEAR), a_en.eq(acc_op != OP_HOLD),
                     a_half.eq((acc_op == OP_RND) | (acc_op == OP_RNDMU) | (acc_op == OP_SHR1)),
                     a_sh4.eq(acc_op == OP_SHR4)]
        offset = pdata.as_signed()
        addend = Signal(signed(ACC_BITS))
        with m.Switch(acc_op):
            with m.Case(OP_MAC):
                m.d.sync += addend.eq((p_hi << 12) + p_lo)
            with m.Case(OP_ADDMU):
                m.d.sync += addend.eq(offset)
            with m.Case(OP_RND):
                m.d.sync += addend.eq(1)
            with m.Case(OP_RNDMU):
                # (a + 1 + 2 offset) >> 1 = ((a + 1) >> 1) + offset: the transform's last
                # rounding step and its offset in one clock
                m.d.sync += addend.eq(Cat(Const(1, 1), offset).as_signed())
            with m.Default():
                m.d.sync += addend.eq(0)
        # acc + addend as a carry-select adder: the low half's carry chain and the high half's
        # two (carry in 0 and 1) run side by side, the low half's carry out selects; the
        # accumulator's 45-bit chain was the longest path. (The high half with carry in 1 is
        # one chain a bit wider, both operands' extra low bit 1.)
        total = Signal(signed(ACC_BITS + 1))
        K = ACC_BITS // 2
        t_lo = Signal(K + 1)
        t_hi0 = Signal(signed(ACC_BITS - K + 1))
        t_hi1 = Signal(signed(ACC_BITS - K + 2))
        m.d.comb += [t_lo.eq(acc[:K] + addend[:K]),
                     t_hi0.eq(acc[K:].as_signed() + addend[K:].as_signed()),
                     t_hi1.eq(Cat(Const(1, 1), acc[K:]).as_signed()
                              + Cat(Const(1, 1), addend[K:]).as_signed()),
                     total.eq(Cat(t_lo[:K], Mux(t_lo[K], t_hi1[1:], t_hi0)))]
        # MAC, ADDMU: the sum; RND, RNDMU, SHR1: the sum halved (a shift by one is a rounding
        # step with nothing added); SHR4: the only other shift (each one more would be an input
        # of the selection in front of every accumulator bit).
        with m.If(a_clr):
            m.d.sync += acc.eq(0)
        with m.Elif(a_en):
            m.d.sync += acc.eq(Mux(a_sh4, acc >> 4, Mux(a_half, total >> 1, total)))

        def clamp(v, lo, hi, relu=0):
            # Bounds of the form -2^a and 2^b - 1 (or 0): the checks are the sign and the bits
            # above, no comparator carry chains.
            sign = v[-1]
            over = ~sign & (v[hi.bit_length():] != 0)
            under = sign & (relu | (lo == 0) | ~v[(-lo - 1).bit_length():].all())
            return Mux(over, hi, Mux(under, Mux(relu, 0, lo), v))

        # Rounding shift by s (round half up): shift by s - 1 (4 or 1 bits per clock), then
        # (a + 1) >> 1 in one clock; nothing when s = 0.
        def start_shift(amount, transform, after):
            m.d.sync += [rem.eq(amount - 1), rs_tr.eq(transform),
                         state.eq(Mux(amount == 0, after, S_RS))]

        # A zero value needs neither token nor dequantizer: straight to the group's register.
        # (A flag, not an accumulator clear: the accumulator's controls depend on registers
        # only, never on the token's bits.)
        def zero_value():
            m.d.sync += [yzero.eq(1), state.eq(S_SAT)]

        # A field's end and its sign (the last bit read) are registered as it goes: neither is
        # decoded from `nfield` in front of the sequencer. (The sign fills the bits from
        # `nfield` on, decoded in front of `q`, which has the clock to itself.)
        fdone, fsign = Signal(), Signal()

        def start_field(n, rice):
            m.d.sync += [nfield.eq(n), rice_rem.eq(rice), cnt.eq(0),
                         fdone.eq(n == 0), state.eq(S_FIELD)]

        def report(path):
            m.d.sync += [path.eq(1), dst.error.eq(1)]

        # The dequantized value of the clock before's S_SAT, into the group's block RAM: its
        # accumulator operation is done a clock after the request; the next value's
        # operations, and the reads of the group's MACs, come later.
        yh_wr = Signal()
        m.d.sync += yh_wr.eq(state == S_SAT)
        ymax = (1 << (Y_BITS - 1)) - 1
        m.d.comb += [yh_w.addr.eq((comp[:L] - 1)[:L]), yh_w.en.eq(yh_wr),
                     yh_w.data.eq(Mux(yzero, 0, clamp(acc, -ymax - 1, ymax)))]

        # The group ends its pixel; the pixel its tile: registered, since gbase and npix change
        # only in S_CLAMP, at least N + 10 clocks before the next S_CLAMP. (npix counts the
        # tile's pixels down, modulo 2^16 like a count up to it: a count of 0 is 65,536.)
        pix_end, pix_last = Signal(), Signal()
        m.d.sync += [pix_end.eq(~(gbase + N < channels)), pix_last.eq(npix == 1)]

        # The output register: the next value's MACs run while it waits.
        o_valid = Signal()
        m.d.comb += [self.o.valid.eq(o_valid), self.o.payload.eq(out)]
        with m.If(self.o.ready):
            m.d.sync += o_valid.eq(0)

        # The field's bits and sign are zero whenever a field is not being read: a field starts
        # with them clear, and the decisions that start one are not in front of their enables.
        with m.If(state != S_FIELD):
            m.d.sync += [fld.eq(0), fsign.eq(0)]

        verr = Signal()             # S_VALUE's code error, for S_DQ1
        # The class's mask of the bits above `bits` (u's 20), decoded with `bits` in S_P3: S_VALUE
        # then has only the AND and the OR in front of verr.
        vmask = Signal(20)
        m.d.sync += verr.eq(0)
        with m.Switch(state):
            with m.Case(S_WALK):
                # A step taken in the commit's clock is undone by the restart of the next one
                # (after the Switch), which also overrides one taken in its own clock. The
                # parameter RAM gives tile_pixels here and in S_WALK2 (read in the clock before:
                # S_TEND, the restart, S_WALK2, S_WALK), then raw bits per pixel for S_GEOM1.
                m.d.comb += p_addr.eq(p_tp)
                with m.If(w_armed):
                    m.d.sync += state.eq(S_WALK2)
            with m.Case(S_WALK2):
                # (w_diff and w_eq: registered in S_WALK)
                m.d.comb += p_addr.eq(p_tp)
                m.d.sync += [w_rest.eq(Mux(w_wrap, image_pixels, w_diff)), state.eq(S_WALK)]
                with m.If(w_skips != 0):
                    m.d.sync += w_skips.eq(w_skips - 1)
                with m.Else():
                    m.d.comb += p_addr.eq(p_bpp)
                    m.d.sync += [npix.eq(Mux(w_wrap, w_rest, tile_pixels)),
                                 w_skips.eq(self.tile_step - 1), state.eq(S_GEOM1)]
            with m.Case(S_GEOM1):
                # (raw bits per pixel: read in the clock before, p_bpp)
                m.d.sync += [product.eq(npix * pdata[:RAW_BPP_BITS]), state.eq(S_GEOM2)]
            with m.Case(S_GEOM2):
                rw = (product + 63) >> 6
                m.d.sync += [raw_words.eq(rw), raw_big.eq(rw[LEN_BITS:] != 0), crc.eq(0), nib.eq(0),
                             nv.eq(0), tail.eq(0), rdy.eq(0), state.eq(S_HEAD)]

            with m.Case(S_HEAD):
                # The header's 64 bits, a nibble per clock, into g(header) while the header
                # waits on the input; taken with the last one, like a payload word, whose
                # nibble goes into the CRC in S_HCHK. Its checks run in the next clock
                # (S_HCHK), which keeps their comparators off the handshake's path.
                with m.If(self.i.valid):
                    next_nibble()
                    m.d.sync += rdy.eq(nib == 14)   # taken at nib 15
                with m.If(take):
                    m.d.sync += [
                        length.eq(hdr[:LEN_BITS]),
                        raw.eq(hdr[20:22] == MODE_RAW),
                        e_mode.eq(hdr[21]),
                        e_tile.eq(hdr[22:32] != tile_no),
                        wcount.eq(0),
                        wlast.eq(self.i.p.last),
                        state.eq(S_HCHK),
                    ]
            with m.Case(S_HCHK):
                # (the next tile's number here, not with the header's handshake: off its path)
                m.d.sync += tile_no.eq(tile_no + self.tile_step % (1 << TILE_NO_BITS))
                # g(header) with its last nibble; the payload's CRC starts
                m.d.sync += [target.eq(crc_n), crc.eq(CRC32_INIT), nv.eq(0)]
                # The comparisons, registered; S_HCHK2 acts on them. (min(a, b) > M as two
                # comparisons with a constant.)
                m.d.sync += [
                    h_gt.eq(~raw_big & (length > raw_words)),
                    h_ne.eq(raw_big | (length != raw_words)),
                    h_over.eq(gt_const(length, self.max_tile_words)
                              & (raw_big | gt_const(raw_words, self.max_tile_words))),
                    h_nz.eq((length != 0) & (raw_big | (raw_words != 0))),
                    state.eq(S_HCHK2),
                ]
            with m.Case(S_HCHK2):
                m.d.sync += [
                    limit.eq(Mux(h_over, self.max_tile_words, Mux(h_gt, raw_words, length))),
                    keep.eq(h_nz),      # limit != 0
                    e_len.eq(h_gt | (raw & h_ne)),
                    nib.eq(0), rdy.eq(0), state.eq(S_NIB),
                ]
                with m.If(h_over):
                    m.d.sync += range_bad.eq(1)
                with m.If(wlast):
                    m.d.sync += [nib.eq(0), tail.eq(1)]
            with m.Case(S_NIB):
                # A nibble per clock into the CRC (bit 0 first, the stream's order) and the
                # word's halves into the buffer at their first nibble, from the input, where the
                # word waits until its last nibble takes it: no word register. Then 16 zero
                # nibbles (`tail`): T(s).
                running = tail | self.i.valid
                with m.If(running):
                    next_nibble()
                    m.d.sync += rdy.eq(~tail & (nib == 14))   # taken at nib 15
                m.d.comb += [buf_w.addr.eq(Cat(nib[2:], wcount[:ceil_log2(self.max_tile_words)])),
                             buf_w.data.eq(half),
                             buf_w.en.eq(running & ~tail & (nib[:2] == 0) & keep)]
                with m.If(running & (nib == 15)):
                    with m.If(tail):
                        m.d.sync += state.eq(S_CRC)
                    with m.Else():
                        # keep stays exact with the low bits only: it is 1 only while
                        # wcount < limit <= max_tile_words
                        m.d.sync += [wcount.eq(wcount + 1),
                                     keep.eq(keep & ((wcount + 1)[:len(limit)] < limit))]
                        with m.If(self.i.p.last):
                            m.d.sync += [nib.eq(0), tail.eq(1)]
            with m.Case(S_CRC):
                m.d.sync += [crc.eq(crc_n), state.eq(S_CHECK)]      # the last nibble
            with m.Case(S_CHECK):
                # The comparisons are registered; the status takes them in S_LOAD0.
                m.d.sync += [e_crc.eq((crc ^ target) != CRC32_RESIDUE),
                             e_frame.eq(wcount != length)]  # the reader's `last` early or late
                # A truncated tile: only the words that came are read (the rest reads as zero).
                kept = Mux(keep, wcount, limit)
                m.d.sync += [limit.eq(kept), pos.eq(0), left.eq(kept << 6),
                             in_payload.eq(kept != 0), state.eq(S_LOAD0)]
            with m.Case(S_LOAD0):
                m.d.sync += state.eq(S_LOAD1)
                u_st = ust
                for cond, bit_ in ((e_crc, u_st.crc), (e_mode, u_st.mode),
                                   (e_len, u_st.length), (e_tile, u_st.tile),
                                   (e_frame, u_st.framing)):
                    with m.If(cond):
                        m.d.sync += bit_.eq(1)
                with m.If(e_crc | e_mode | e_len | e_tile | e_frame):
                    m.d.sync += u_st.error.eq(1)
                    with m.If(~u_st.bad_tiles.all()):
                        m.d.sync += u_st.bad_tiles.eq(u_st.bad_tiles + 1)
            with m.Case(S_LOAD1):
                m.d.sync += [cur.eq(buf_r.data), comp.eq(0), gbase.eq(0), seen.eq(0),
                             state.eq(S_CMAP)]

            # -- one component: its class and parameters ----------------------------------------
            with m.Case(S_CMAP):
                m.d.comb += p_addr.eq(p_cmap + comp)
                m.d.sync += state.eq(S_P0)
            with m.Case(S_P0):
                m.d.comb += p_addr.eq(pdata[:cls_bits] * 4)
                m.d.sync += [cls.eq(pdata), state.eq(S_P1)]
            with m.Case(S_P1):
                m.d.comb += p_addr.eq(cls * 4 + 1)
                m.d.sync += [mode.eq(pdata[:2]), zflag.eq(pdata[8]), state.eq(S_P2)]
            with m.Case(S_P2):
                m.d.comb += p_addr.eq(cls * 4 + 2)
                m.d.sync += [k.eq(pdata[:4]), esc.eq(pdata[8:13]), state.eq(S_P3)]
            with m.Case(S_P3):
                # (the fourth entry, dqmul, is read later, for S_DQ1: no register holds it)
                m.d.sync += [bits.eq(pdata[:5]), dqshift.eq(pdata[8:14]),
                             vmask.eq((Const((1 << 20) - 1, 20) << pdata[:5])[:20])]
                # The token's zero-flag decisions, registered: the class's bits of `seen` and
                # `flag` are 16-way selections, too deep to sit in front of `consume`.
                drop = mode == MODE_DROP
                zf = ~raw & zflag
                m.d.sync += [state.eq(S_TOK),
                             tok_zero.eq(drop | (zf & seen.bit_select(cls, 1)
                                                 & ~flag.bit_select(cls, 1))),
                             tok_zf.eq(~drop & zf & ~seen.bit_select(cls, 1))]

            # -- the token ------------------------------------------------------------------------
            with m.Case(S_TOK):
                huff_load()
                with m.If(tok_zero):
                    zero_value()
                with m.Elif(tok_zf):
                    # The class's first component in this pixel: its zero flag.
                    m.d.comb += consume.eq(1)
                    m.d.sync += [seen.bit_select(cls, 1).eq(1), flag.bit_select(cls, 1).eq(bit),
                                 tok_zf.eq(0)]
                    with m.If(~bit):
                        zero_value()
                with m.Elif(raw | (mode == MODE_RAW)):
                    start_field(bits, 0)
                with m.Elif(mode == MODE_RICE):
                    m.d.sync += [ones.eq(0), at_esc.eq(esc == 0), state.eq(S_RICE)]
                with m.Else():
                    m.d.sync += [cnt.eq(0), h_end.eq(0), code.eq(0), hhit.eq(0),
                                 state.eq(S_HUF)]
            with m.Case(S_FIELD):
                # LSB first; a Rice remainder pushes the unary count up one bit per bit. (The
                # class's dqmul is read for S_DQ1, here and in S_VALUE, the states before it.)
                m.d.comb += p_addr.eq(cls * 4 + 3)
                with m.If(fdone):
                    with m.If(rice_rem):
                        m.d.sync += [u.eq(ones | fld), state.eq(S_VALUE)]
                    with m.Else():
                        # (fld's bits from the field's width on are zero: only the sign fills)
                        fill = (Const(0xFFFF, 16) << nfield)[:16]
                        m.d.sync += [q.eq(fld | Mux(fsign, fill, 0)),
                                     state.eq(S_DQ1)]
                with m.Else():
                    m.d.comb += consume.eq(1)
                    m.d.sync += [cnt.eq(cnt + 1), fld.eq(fld | (bit << cnt)[:16]), fsign.eq(bit),
                                 fdone.eq(cnt + 1 == nfield)]
                    with m.If(rice_rem):
                        m.d.sync += ones.eq(ones << 1)
            with m.Case(S_RICE):
                with m.If(at_esc):
                    start_field(bits, 0)            # escape: `bits` bits of v
                with m.Else():
                    m.d.comb += consume.eq(1)
                    with m.If(bit):
                        # ones <= esc <= 31 here: five bits compare
                        m.d.sync += [ones.eq(ones[:5] + 1), at_esc.eq((ones[:5] + 1)[:5] == esc)]
                    with m.Else():
                        start_field(k, 1)
            with m.Case(S_HUF):
                # Canonical code, MSB first (the compare: above). The match is registered
                # (`hhit`) and acted on in the next clock, when the symbol is read: the
                # comparison ends at flip-flops, not in the sequencer.
                with m.If(hhit):
                    m.d.sync += [hhit.eq(0), state.eq(S_SYM2)]
                with m.Elif(h_end):
                    report(dst.code)     # no code matched: the value is garbage
                    zero_value()
                with m.Else():
                    m.d.comb += consume.eq(1)
                    code_new = Cat(bit, code[:HUFF_LEN - 1])
                    m.d.sync += [code.eq(code_new), cnt.eq(cnt + 1),
                                 h_end.eq(cnt == HUFF_LEN - 1)]
                    huff_load()
                    # (the symbol's index parts every step, used after the step that matches:
                    # the match decides hhit alone, no register's enable)
                    m.d.sync += [hhit.eq(Mux(bit, hit1, hit0)), hbase.eq(base_r),
                                 hdiff.eq(d0 + bit)]
            with m.Case(S_SYM2):
                # The symbol read selects only the next state: the field's start (ESC) and u
                # (a symbol) are both set, neither used on the other path, so that the RAM's
                # read data decides no register's enable.
                start_field(bits, 0)
                m.d.sync += [u.eq(hsym_r.data),
                             state.eq(Mux(hsym_r.data == ESC_SYMBOL, S_FIELD, S_VALUE))]
            with m.Case(S_VALUE):
                # Un-zigzag; a Rice or Huffman value wider than its class is a code error.
                m.d.comb += p_addr.eq(cls * 4 + 3)     # dqmul, for S_DQ1
                m.d.sync += [q.eq((u >> 1)[:16] ^ u[0].replicate(16)), state.eq(S_DQ1)]
                # (u >> bits != 0 as a mask, vmask: a decoder, not a barrel shifter;
                # registered, reported in S_DQ1)
                m.d.sync += verr.eq((u & vmask) != 0)

            # -- dequantizer: yh = sclamp(round_shift(q * dqmul, dqshift), 24) --------------------
            with m.Case(S_DQ1):
                # q and dqmul go into the multipliers (registered products)
                m.d.comb += acc_op.eq(OP_CLEAR)
                m.d.sync += [yzero.eq(0), state.eq(S_DQ2)]
                with m.If(verr):
                    report(dst.code)
            with m.Case(S_DQ2):
                m.d.comb += acc_op.eq(OP_MAC)
                start_shift(dqshift, 0, S_SAT)
            with m.Case(S_RS):
                m.d.comb += p_addr.eq(p_offs + gbase + j)      # the transform's offset, next
                with m.If(rem == 0):
                    m.d.comb += acc_op.eq(Mux(rs_tr, OP_RNDMU, OP_RND))
                    m.d.sync += state.eq(Mux(rs_tr, S_WAIT, S_SAT))
                with m.Elif(rem[2:] != 0):     # rem >= 4
                    m.d.comb += acc_op.eq(OP_SHR4)
                    m.d.sync += rem.eq(rem - 4)
                with m.Else():
                    m.d.comb += acc_op.eq(OP_SHR1)
                    m.d.sync += rem.eq(rem - 1)
            with m.Case(S_SAT):
                # The value goes into the group's block RAM in the next clock (below), when
                # the accumulator's last operation is done.
                m.d.sync += comp.eq(comp + 1)
                with m.If(comp[:L] == N - 1):
                    m.d.sync += [tcount.eq(0), j.eq(0), state.eq(S_TMAC)]
                with m.Else():
                    # the next component's class map entry is read now
                    m.d.comb += p_addr.eq(p_cmap + comp + 1)
                    m.d.sync += state.eq(S_P0)

            # -- inverse transform of the group, output j: N MACs, pipelined --------------------
            with m.Case(S_TMAC):
                # Clock t reads coefficient t and yh[t]; t + 1 multiplies them; t + 2 sums
                # the two products and requests the accumulation, done in t + 3.
                m.d.comb += p_addr.eq(p_offs + gbase + j)
                m.d.comb += acc_op.eq(Mux(tcount == 0, OP_CLEAR,
                                          Mux(tcount[1:] != 0, OP_MAC, OP_HOLD)))
                m.d.sync += tcount.eq(tcount + 1)
                with m.If(tcount == N + 1):
                    start_shift(frac_bits, 1, S_MU)
            with m.Case(S_MU):
                # F = 0: the offset alone (with F > 0 it comes with the rounding step)
                m.d.comb += [acc_op.eq(OP_ADDMU), p_addr.eq(p_offs + gbase + j)]
                m.d.sync += state.eq(S_WAIT)
            with m.Case(S_WAIT):
                m.d.sync += state.eq(S_CLAMP)   # the last request is being done
                # The pixel's end, for the next pixel: here, not behind S_CLAMP's handshake
                # (comp and seen are next used in S_CMAP and S_P3)
                with m.If((j == N - 1) & pix_end):
                    m.d.sync += [comp.eq(0), seen.eq(0)]
            with m.Case(S_CLAMP):
                # Into the output register once it is free; the next output's MACs start.
                # The pixel ends with the group that reaches C, not only one that meets it: a
                # C of zero or not a multiple of N (a `transform` error) then still ends every
                # pixel after at most ceil(C / N) groups (one for C = 0), never loops.
                with m.If(~o_valid | self.o.ready):
                    m.d.sync += [
                        o_valid.eq(1),
                        out.data.eq(clamp(acc, self.lo, self.hi, relu)),
                        out.comp.eq(gbase + j),
                        out.tile_last.eq(pix_last & (j == N - 1) & pix_end),
                        j.eq(j + 1), tcount.eq(0), state.eq(S_TMAC),
                    ]
                    with m.If(j == N - 1):
                        m.d.sync += [gbase.eq(gbase + N), state.eq(S_CMAP)]
                        with m.If(pix_end):
                            m.d.sync += [npix.eq(npix - 1), gbase.eq(0)]
                            with m.If(pix_last):
                                m.d.sync += state.eq(S_TEND)
            with m.Case(S_TEND):
                m.d.comb += p_addr.eq(p_tp)     # for S_WALK
                # A whole payload word the code did not need: `leftover`.
                # (ceil(pos / 64) < limit: pos + left = 64 limit since S_CHECK, so left >= 64)
                with m.If(left[6:] != 0):
                    report(dst.leftover)
                m.d.sync += state.eq(S_WALK)

        status = self.status
        m.d.comb += [
            status.unpacker.eq(ust),
            status.decoder.eq(dst),
            status.transform.eq(n_bad | c_bad | range_bad),
            status.error.eq(ust.error | dst.error | n_bad | c_bad | range_bad),
        ]

        # The commit starts a new tensor: tile 0, nothing in flight, status clear.
        with m.If(restart):
            m.d.comb += p_addr.eq(p_tp)         # for S_WALK
            m.d.sync += [
                state.eq(S_WALK),
                w_armed.eq(1), w_rest.eq(image_pixels), w_skips.eq(self.tile_first),
                tile_no.eq(self.tile_first % (1 << TILE_NO_BITS)),
                o_valid.eq(0),
                ust.eq(0),
                dst.eq(0),
            ]
        return m
