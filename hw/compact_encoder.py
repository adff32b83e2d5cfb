"""Compact encoder lane: the whole write path as one small sequential machine (iCE40UP5K size).

A drop-in replacement for hw/encoder_lane.py's `EncoderLane` (same ports, same stream contract,
bit-exact with golden/codec.py `encode_tensor`) that trades throughput for area: one shared
18 x 18 multiplier, one shared shifter, bit-serial token and raw packing, a 2-bit-per-clock CRC,
and every table and buffer in block RAM.

Stream contract
---------------
- `i`: one signed value per beat (`in_width` bits: 8 int8, 9 uint8, 16 int16), channel order
  within a pixel, pixels in raster order; lane p of P (`tile_first` = p, `tile_step` = P) takes
  only the pixels of the tensor's tiles p, p + P, ... (hw/tile_walker.py). `ready` is high only
  while the lane takes a pixel's values; it is low while the lane works on the pixel and while
  it sends a tile.
- `o`: `packed_word()` (hw/bit_packer.py): per tile the header word (`first`) and the payload
  words, `last` on the tile's final word, in container order. Payload and valid are held while
  `ready` is low.
- `cfg`: the configuration writes (golden.profile.config_writes), always ready; the commit
  (global 7) restarts the lane a clock after its write (hw/config.py `restart_after_commit`).
  Each write is registered at the lane's input and lands a clock late (still before that
  restart). Writes beyond this build's tables are dropped, never wrapped.
- `error`: the profile is outside this build's limits: N differs from `group`, more than
  `max_channels` channels or `max_classes` classes, or a tile's raw payload overran the
  `max_tile_words` tile buffer (fmcodec/capacity.py says the same before anything is sent).

How a pixel goes through (one step at a time, the lane's input waiting meanwhile):

1. take the pixel's C values (one per clock) and store `d = x - mu` in block RAM (the next
   channel's offset is read while a value is taken);
2. per component k = g*N + i: the N products `T[g][i][j] * d[g*N + j]` on the multiplier
   (pipelined, N + 3 clocks) while the class parameters are fetched, `round_shift(., F)` and the
   24-bit clamp, `y * qmul` as two 12-bit partial products on the same multiplier,
   `round_shift(., qshift)` (both shifts in place in the accumulator, by 8 or by 1 bit per
   clock, the rounding added by the last step) and the `bits` clamp; q and its class parameters
   go back to block RAM, a per-class "some component non-zero" bit collects the zero flags, and
   q's raw bits start to shift out of q into the raw tile buffer (one per clock, beside the next
   component's work);
3. per component: its coded token (zero flag, then raw / Rice / Huffman segments) is shifted one
   bit per clock into the coded tile buffer. The coded buffer stops taking bits at
   `max_tile_words` words: such a tile goes out raw.

A tile ends after `tile_pixels` pixels or at the last pixel of an image (global 8), so the last
tile of each image is short: the lane counts both itself; lane p of P > 1 takes its tiles'
sizes from hw/tile_walker.py instead (which walks over the other lanes' tiles). Then both
payloads are padded to whole words, the lane chooses raw when coded_words >= raw_words, runs the
CRC-32 (zlib) over the chosen payload and the header's low half (2 bits per clock), and sends the
header then the payload words (one per 5 clocks at most).

Resources, iCE40UP5K, `max_channels` 64, `max_tile_words` 64, N = 8, 16 classes (`python -m
hw.build report --device ice40 --blocks --only "block=compact_encoder"`: hw/synth_top.py's
wrapper, which adds about 175 logic cells of its own, seed 1): 1,814 logic cells, 784 FF,
3 SB_MAC16 (the 18 x 18 multiplier), 12 SB_RAM40_4K (coefficients' low 16 bits 2, `misc` 1
with the coefficients' top 2 bits and the Huffman codes' bit 16, offsets / d / q / class map 2,
class parameters with F and the tile's and the image's pixel counts 1, Huffman codes' low 16
bits 4, the two tile buffers 1 each); 44.3 MHz (the coded emitter's segment loads), over the
40 MHz target. (The wrapper's input shift register holds the configuration write's bits a clock
later too, so yosys merges the lane's input registers of `cfg` into it: in a design around the
lane they take about 47 logic cells more.) Registers that would only copy what a
RAM holds are avoided (qmul, qshift, F, the tile's pixels and the image's low 16 bits are read
from `par` when needed): on the iCE40 a flip-flop loaded straight from a RAM, a port or another
register takes a logic cell of its own. hw/tile_walker.py adds about 100 LUT4 to a lane p of
P > 1. Every RAM's read port is an asynchronous read and a register that yosys folds into the
RAM, so that its `no_rw_check` attribute applies: with a plain synchronous port yosys surrounds
each RAM with read-before-write and transparency emulation (about 300 FFs and 250 logic cells
over the seven).

Throughput: about 39 to 50 clocks per value (measured by tests/test_hw_compact_encoder.py: the
N + 3 clocks of products, the two round shifts and the serial token bits dominate), including
per payload word 36 clocks of CRC and 5 to send it. Latency: a tile's header leaves 36 clocks
per payload word after the tile's last value is processed; the lane takes no input until the
tile's last word is taken.
"""

from contextlib import contextmanager

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bit_packer import packed_word
from hw.config import (
    CLASS_BITS,
    CLASS_K_ESC,
    CLASS_MODE,
    CLASS_QMUL,
    CLASS_QSHIFT,
    CLASS_ZFLAG,
    GLOBAL_CHANNELS,
    GLOBAL_CLASSES,
    GLOBAL_FRAC_BITS,
    GLOBAL_GROUP,
    GLOBAL_IMAGE_PIXELS,
    GLOBAL_TILE_PIXELS,
    MODE_DROP,
    MODE_HUFFMAN,
    MODE_RAW,
    MODE_RICE,
    REGION_CLASS,
    REGION_CLASSMAP,
    REGION_COEFF,
    REGION_GLOBAL,
    REGION_HUFF_ENC,
    REGION_OFFSET,
    config_signature,
    index,
    region,
    restart_after_commit,
)
from hw.crc import CRC32_INIT, CRC32_XOROUT, crc32_next
from hw.ram import NO_RW_CHECK, registered_read_port
from hw.tile_walker import IMAGE_PIXEL_BITS, TILE_PIXEL_BITS, TileWalker

D_BITS = 18         # x - mu: 16-bit x minus a 17-bit offset
HUFF_ESC = 63
CRC_STEP = 2        # CRC bits per clock: 2 keeps the XOR tree at one LUT4 per state bit
CHUNK = 16          # tile buffers are 16 bits wide (one iCE40 RAM in 256 x 16)


def _onehot(n, width):
    return Cat(*(n == i for i in range(width)))


class CompactEncoderLane(wiring.Component):
    """Raw channel values in, container words out, sequentially (see the module docstring).

    Parameters as `EncoderLane`: `in_width`, `group` (transform N, a power of two),
    `max_channels`, `max_tile_words`, `tile_first`/`tile_step`; and `max_classes`.
    """

    def __init__(self, in_width: int = 8, group: int = 8, max_channels: int = 64,
                 max_tile_words: int = 64, tile_first: int = 0, tile_step: int = 1,
                 max_classes: int = 16):
        if group < 2 or group & (group - 1):
            raise ValueError("group must be a power of two >= 2")
        if max_channels % group or max_channels & (max_channels - 1):
            raise ValueError("max_channels must be a power of two and a multiple of group")
        if max_classes & (max_classes - 1) or not 2 <= max_classes <= 16:
            raise ValueError("max_classes must be a power of two, 2..16")
        if not 1 <= in_width <= 16:
            raise ValueError("in_width must be 1..16")
        self.in_width = in_width
        self.group = group
        self.max_channels = max_channels
        self.max_tile_words = max_tile_words
        self.tile_first = tile_first
        self.tile_step = tile_step
        self.max_classes = max_classes
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(signed(in_width))),
            "o": Out(stream.Signature(packed_word())),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        N, MC, MK = self.group, self.max_channels, self.max_classes
        lg_n = N.bit_length() - 1
        kb = (MC - 1).bit_length()                 # component index bits
        cb = max((MK - 1).bit_length(), 1)         # class bits
        cap_bits = self.max_tile_words * 64        # tile buffer size in bits
        cap_chunks = cap_bits // CHUNK
        nb_w = cap_bits.bit_length()               # bit counters: 0..cap_bits

        cfg = self.cfg
        restart = restart_after_commit(m, cfg)
        # A lane that takes every tile counts pixels down to the tile's and the image's end
        # (two counters); lane p of P > 1 needs hw/tile_walker.py's walk over the others' tiles.
        own_walk = self.tile_first == 0 and self.tile_step == 1
        if not own_walk:
            m.submodules.walker = walker = TileWalker(self.tile_first, self.tile_step)
            m.d.comb += [walker.cfg.valid.eq(cfg.valid), walker.cfg.payload.eq(cfg.payload)]

        # Read ports: an asynchronous read and a register after it, which yosys merges into the
        # RAM's synchronous read (the same timing as a synchronous port). This way the
        # memories' `no_rw_check` reaches yosys: no read in this lane needs an entry in the
        # clock it is written, so yosys need not emulate read-before-write and transparency
        # around each RAM (a delayed write port, a register and a bypass multiplexer each:
        # about 300 FFs and 250 logic cells over the seven memories).
        NO_RW = NO_RW_CHECK

        def read_port(mem, name):
            return registered_read_port(m, mem, name)

        # -- memories (all block RAM: one read port, one write port each) ---------------------
        # coefficients T[g][i][j] at (g*N + i)*N + j, their low 16 bits (the top two are in
        # `misc`): 16 bits wide, MC * N deep fill whole RAMs (18 bits would take one more)
        m.submodules.coef = coef = Memory(shape=unsigned(16), depth=MC * N, init=[], attrs=NO_RW)
        # per channel / component, four areas: offsets mu, d = x - mu of the pixel, the pixel's
        # q with its class parameters (so the token pass reads one entry), the class map.
        m.submodules.xq = xq = Memory(shape=unsigned(28), depth=4 * MC, init=[], attrs=NO_RW)
        OFF, DAT, QV, CMAP = range(4)

        def at(area, i):
            # (the area in the top address bits: a concatenation, not an adder)
            return Cat(i[:kb], Const(area, 2))

        # class parameters at class*8 + field; after them, as a class MK, three globals: F, the
        # tile's pixels and the image's pixels' low 16 bits, at their global index mod 8 (2, 3,
        # 0; the last two only a lane that walks its own tiles reads)
        def par_global(index):
            return MK * 8 + (index & 7)
        m.submodules.par = par = Memory(shape=unsigned(16), depth=MK * 8 + 8, init=[],
                                        attrs=NO_RW)
        # Huffman encoder: (1 << length) | code_reversed: the marker bit gives the length, so
        # 17 bits hold a code, and "length 0" (no code) reads as 1.
        # Its low 16 bits here (whole RAMs); bit 16 in `misc`.
        m.submodules.huff = huff = Memory(shape=unsigned(16), depth=MK * 64, init=[], attrs=NO_RW)
        # `misc` (one RAM as 2048 x 2): the Huffman codes' bit 16 at the code's address, the
        # coefficients' bits 16..17 at 1024 + theirs. The two are never read in the same state
        # (coefficients in the MAC, codes in the token pass), so one read port serves both.
        misc_depth = max(MK * 64, 1 << (MC * N - 1).bit_length()) * 2
        m.submodules.misc = misc = Memory(shape=unsigned(2), depth=misc_depth, init=[], attrs=NO_RW)
        misc_hi = misc_depth // 2
        m.submodules.cbuf = cbuf = Memory(shape=unsigned(CHUNK), depth=cap_chunks, init=[],
                                          attrs=NO_RW)
        m.submodules.rbuf = rbuf = Memory(shape=unsigned(CHUNK), depth=cap_chunks, init=[],
                                          attrs=NO_RW)
        coef_r, coef_w = read_port(coef, "coef"), coef.write_port()
        xq_r, xq_w = read_port(xq, "xq"), xq.write_port()
        par_r, par_w = read_port(par, "par"), par.write_port()
        huff_r, huff_w = read_port(huff, "huff"), huff.write_port()
        cbuf_r, cbuf_w = read_port(cbuf, "cbuf"), cbuf.write_port()
        rbuf_r, rbuf_w = read_port(rbuf, "rbuf"), rbuf.write_port()
        misc_r, misc_w = read_port(misc, "misc"), misc.write_port()
        coef_data = Cat(coef_r.data, misc_r.data).as_signed()
        huff_data = Cat(huff_r.data, misc_r.data[0])
        issue = Signal()                            # a product's operands are read
        # the ports' addresses are 0 outside the states that read them; `issue` marks the
        # coefficient reads
        lo_bits = (misc_hi - 1).bit_length()
        m.d.comb += misc_r.addr.eq(Cat((coef_r.addr | huff_r.addr)[:lo_bits], issue))

        # -- configuration -------------------------------------------------------------------
        last_c = Signal(kb + 1)                # C - 1: an equality, not an adder, ends a loop
        image_hi = Signal(IMAGE_PIXEL_BITS - 16)     # image_pixels[16:] (the rest is in `par`)
        # the pixel's position in the image, from 1: counting up and comparing with
        # image_pixels needs no reload multiplexer (its reset value 1 is the register's reset)
        img_pos = Signal(IMAGE_PIXEL_BITS)
        armed = Signal()                       # a commit was seen
        bad_group, bad_channels, bad_classes = Signal(), Signal(), Signal()
        overflow = Signal()
        m.d.comb += self.error.eq(bad_group | bad_channels | bad_classes | overflow)

        # Datapath writes to xq (d, q); configuration writes win (they come between tensors).
        # Only the low D_BITS bits are multiplexed: the bits above are read only from q entries,
        # so every write takes the q entry's (see `q_entry` below).
        dp_xq_en, dp_xq_addr, dp_xq_data = Signal(), Signal(range(4 * MC)), Signal(D_BITS)
        # The write lands a clock late (nothing reads an entry in the clock after writing it):
        # the state decode and the datapath end at these registers instead of running on
        # through the RAM's write port.
        xw_en, xw_addr, xw_data = Signal(), Signal(range(4 * MC)), Signal(D_BITS)
        m.d.sync += [xq_w.en.eq(xw_en), xq_w.addr.eq(xw_addr), xq_w.data[:D_BITS].eq(xw_data)]
        m.d.comb += [xw_en.eq(dp_xq_en), xw_addr.eq(dp_xq_addr), xw_data.eq(dp_xq_data)]
        # The configuration write is registered at the lane's input (a clock of latency): the
        # bus's own logic (a host link, a write gate) then ends at these flip-flops instead of
        # running on through the region and index decode into the RAMs' write ports. A write
        # still lands before the restart after the commit that follows it (the restart comes a
        # clock after the commit's write, and nothing reads the configuration in that clock).
        # Only the index's low bits are kept, with one flag per few high bits (their OR: the
        # tables' bounds and the globals' numbers need no more).
        ib = max((MC * N - 1).bit_length(), (MK * 64 - 1).bit_length(), kb + 2, 4)
        idx_in = index(cfg.p.addr)
        cfg_valid = Signal()
        reg = Signal(4)
        idx_lo = Signal(ib)
        idx_hi = Signal((16 - ib + 3) // 4)
        wdata = Signal(len(cfg.p.data))
        m.d.sync += [cfg_valid.eq(cfg.valid), reg.eq(region(cfg.p.addr)), idx_lo.eq(idx_in[:ib]),
                     idx_hi.eq(Cat(*(idx_in[i:i + 4].any() for i in range(ib, 16, 4)))),
                     wdata.eq(cfg.p.data)]
        idx = Cat(idx_lo, idx_hi.any())

        def above(v, k):
            # v > 2^k: ORs, not a comparator's carry chain
            return v[k + 1:].any() | (v[k] & v[:k].any())

        def below(n):
            # idx < n for a power of two n: its high bits zero (an OR tree; `<` is a carry
            # chain of one logic cell per bit)
            return ~idx[(n - 1).bit_length():].any()
        # Addresses and data go to the write ports whatever the write (a port writes only
        # with its enable; the regions that share a port differ in `reg[2]`): only the
        # enables wait for the decode.
        code = wdata[:16] | _onehot(wdata[16:21], 17)
        m.d.comb += [coef_w.addr.eq(idx), coef_w.data.eq(wdata[:16]),
                     huff_w.addr.eq(idx), huff_w.data.eq(code[:16]),
                     # REGION_CLASS (3) or REGION_GLOBAL (7)
                     par_w.addr.eq(Mux(reg[2], Cat(idx[:3], Const(MK, cb + 1)), idx)),
                     par_w.data.eq(wdata[:16]),
                     # REGION_COEFF (0) or REGION_HUFF_ENC (4)
                     misc_w.addr.eq(Mux(reg[2], idx, Cat(idx[:lo_bits], Const(1, 1)))),
                     misc_w.data.eq(Mux(reg[2], code[16], wdata[16:18]))]
        assert (REGION_CLASS, REGION_GLOBAL, REGION_COEFF, REGION_HUFF_ENC) == (3, 7, 0, 4)
        assert (REGION_OFFSET, REGION_CLASSMAP, OFF, CMAP) == (1, 2, 0, 3)
        with m.If(cfg_valid):
            with m.Switch(reg):
                with m.Case(REGION_COEFF):
                    m.d.comb += [coef_w.en.eq(below(MC * N)), misc_w.en.eq(below(MC * N))]
                with m.Case(REGION_OFFSET, REGION_CLASSMAP):
                    # (the area: OFF for REGION_OFFSET, CMAP for REGION_CLASSMAP)
                    m.d.comb += [xw_en.eq(below(MC)),
                                 xw_addr.eq(Cat(idx[:kb], reg[1].replicate(2))),
                                 xw_data.eq(wdata[:D_BITS])]
                with m.Case(REGION_CLASS):
                    m.d.comb += par_w.en.eq(below(MK * 8))
                with m.Case(REGION_HUFF_ENC):
                    m.d.comb += [huff_w.en.eq(below(MK * 64)), misc_w.en.eq(below(MK * 64))]
                with m.Case(REGION_GLOBAL):
                    with m.Switch(idx):
                        with m.Case(GLOBAL_FRAC_BITS, GLOBAL_TILE_PIXELS, GLOBAL_IMAGE_PIXELS):
                            m.d.comb += par_w.en.eq(1)
                            if own_walk:
                                with m.If(idx[3]):              # GLOBAL_IMAGE_PIXELS
                                    m.d.sync += image_hi.eq(wdata[16:])
                        with m.Case(GLOBAL_CHANNELS):
                            big = above(wdata, kb)
                            # (the decrement beside the range test, not after its multiplexer)
                            m.d.sync += [bad_channels.eq(big | (wdata == 0)),
                                         last_c.eq(Mux(big, MC - 1,
                                                       (wdata[:kb + 1] - 1)[:kb + 1]))]
                        with m.Case(GLOBAL_GROUP):
                            m.d.sync += bad_group.eq(wdata != N)
                        with m.Case(GLOBAL_CLASSES):
                            m.d.sync += bad_classes.eq(above(wdata, cb))

        # -- multiplier pipeline: operands -> product -> accumulate -------------------------
        ma, mb = Signal(signed(18)), Signal(signed(18))
        mp = Signal(signed(36), reset_less=True)
        # sums of N products of 18 x 18 bits (|.| <= N * 2^34) and |y * qmul| < 2^39 fit
        acc = Signal(signed(max(36 + lg_n, 40)))
        v1, v2, v3 = Signal(), Signal(), Signal()   # read data / operands / product valid
        s2, s3 = Signal(), Signal()                 # product is the high half (<< 12)
        qm_hi = Signal()                            # QM1: the operand is y[12:]
        m.d.sync += [v1.eq(issue), v2.eq(v1), v3.eq(v2), s2.eq(qm_hi), s3.eq(s2),
                     mp.eq(ma * mb)]

        # -- round_shift(acc, s) = (acc >> s) + bit s - 1 of acc for s > 0, in place -----------
        # The accumulator shifts by 8 (before its adder) or by 1 (after it) per clock, and the
        # last step adds the last bit it shifts out (the rounding: (acc >> 8) + bit 7, or
        # (acc + bit 0) >> 1), so the shifter costs no register and no adder of its own, and
        # rounding costs no clock. The step's decisions (by 8, by 1, the rounding bit) are
        # registered a clock ahead, from the next values of `rem` and of `acc`: the adder then
        # has one LUT on each side of its 40-bit carry chain, its operands' multiplexers start
        # from flip-flops. (Idle, the adder adds 0: no enable.)
        sh = acc
        rem = Signal(6)                             # shift still to do
        rem_nx = Signal(6)
        sh_load, sh_val = Signal(), Signal(6)       # start_shift in this clock
        sh_done = Signal(init=1)                    # rem == 0
        shift8 = Signal()                           # rem >= 8: acc >> 8 into the adder
        shift1 = Signal()                           # 1 <= rem <= 7: the sum >> 1
        rb = Signal()                               # the last step's rounding bit
        acc_clr = Signal()
        acc_sum = Signal(signed(len(acc)))
        acc_d = Signal(signed(len(acc)))
        # The adder is split (carry select): its low SPLIT bits, and the bits above for both
        # carries into them, the low half's carry out choosing; the 40-bit carry chain would
        # be the lane's longest path.
        SPLIT = 18
        a_op, b_op = Signal(len(acc)), Signal(len(acc))
        m.d.comb += [a_op.eq(Mux(shift8, acc >> 8, acc)),
                     b_op.eq(Mux(v3, Mux(s3, mp << 12, mp), rb))]
        sum_lo = Signal(SPLIT + 1)
        sum_hi0, sum_hi1 = Signal(len(acc) - SPLIT), Signal(len(acc) - SPLIT + 1)
        m.d.comb += [
            sum_lo.eq(a_op[:SPLIT] + b_op[:SPLIT]),
            sum_hi0.eq(a_op[SPLIT:] + b_op[SPLIT:]),
            # (+ 1 as a carry in: a bit below both operands that is 1 in each)
            sum_hi1.eq(Cat(Const(1, 1), a_op[SPLIT:]) + Cat(Const(1, 1), b_op[SPLIT:])),
            acc_sum.eq(Cat(sum_lo[:SPLIT], Mux(sum_lo[SPLIT], sum_hi1[1:], sum_hi0))),
            acc_d.eq(Mux(acc_clr, 0, Mux(shift1, acc_sum >> 1, acc_sum))),
        ]
        m.d.sync += acc.eq(acc_d)
        acc_still = Signal()                        # acc did not change in the clock before
        m.d.sync += acc_still.eq(~(v3 | shift8 | shift1 | acc_clr))
        with m.If(sh_load):
            m.d.comb += rem_nx.eq(sh_val)
        with m.Elif(shift8):                        # rem - 8: no carry chain
            m.d.comb += rem_nx.eq(Cat(rem[:3], rem[3:] - 1))
        with m.Elif(~sh_done):
            m.d.comb += rem_nx.eq(rem - 1)
        with m.Else():
            m.d.comb += rem_nx.eq(rem)
        m.d.sync += [rem.eq(rem_nx), sh_done.eq(rem_nx == 0), shift8.eq(rem_nx[3:].any()),
                     shift1.eq(~rem_nx[3:].any() & rem_nx[:3].any()),
                     rb.eq(Mux(rem_nx == 8, acc_d[7], (rem_nx == 1) & acc_d[0]))]

        def start_shift(s):
            m.d.comb += [sh_load.eq(1), sh_val.eq(s)]

        # -- bit packers: one bit per clock into a 16-bit word, written when full ------------
        # A shift register (no per-bit decode): the 16th bit writes it with the 15 before it.
        # The tile's end pads with zero bits to a whole 64-bit word, so every payload word is
        # in the buffer.
        def packer(name, wport, bit_valid, bit):
            nbits = Signal(nb_w, name=f"{name}_nbits")
            word = Signal(CHUNK - 1, name=f"{name}_word")
            full = Signal(name=f"{name}_full")      # a bit arrived with the buffer full
            with m.If(bit_valid):
                with m.If(nbits == cap_bits):
                    m.d.sync += full.eq(1)
                with m.Else():
                    m.d.sync += [nbits.eq(nbits + 1), word.eq(Cat(word[1:], bit))]
                    with m.If(nbits[:4] == CHUNK - 1):
                        m.d.comb += [wport.en.eq(1), wport.addr.eq(nbits[4:]),
                                     wport.data.eq(Cat(word, bit))]
            return nbits, full

        cbit_valid, cbit = Signal(), Signal()
        rbit_valid, rbit = Signal(), Signal()
        # Coded bits reach their packer a clock late: the emitter's end-of-segment test would
        # otherwise run on into the packer's counter and full test. The tile-end padding
        # (`cpad`, when no bit is in flight) goes straight in.
        cq_valid, cq_bit, cpad = Signal(), Signal(), Signal()
        m.d.sync += [cq_valid.eq(cbit_valid), cq_bit.eq(cbit)]
        cbits, cfull = packer("coded", cbuf_w, cq_valid | cpad, cq_bit & ~cpad)
        rbits, rfull = packer("raw", rbuf_w, rbit_valid, rbit)
        with m.If(rfull):
            m.d.sync += overflow.eq(1)

        # -- lane state ------------------------------------------------------------------------
        px_pos = Signal(TILE_PIXEL_BITS)       # the pixel's position in the tile, from 1
        # The counters' "this is the last pixel" compares are registered (the counters change
        # once per pixel, many clocks before the flags are used): they would otherwise run on
        # into the state machine's next-state logic. A lane that walks its own tiles reads the
        # tile's and the image's pixels from `par` (IN_TAKE, E_HV: the port is free there).
        px_last, img_last = Signal(), Signal()
        if not own_walk:
            px_size = Signal(TILE_PIXEL_BITS)     # the tile's pixels, from the walker
            m.d.sync += px_last.eq(px_pos == px_size)
        c = Signal(kb + 1)             # channel (input) / component (passes) counter
        c1 = Signal(kb + 1)            # c + 1: one adder for every "next entry" address
        m.d.comb += c1.eq(c + 1)
        # c == last_c, registered with c (every assignment of c sets it): the loops' end test
        # then starts the state decode from a register, not from a comparator
        c_last = Signal()

        def set_c0():
            return [c.eq(0), c_last.eq(last_c == 0)]

        def set_c1():
            return [c.eq(c1), c_last.eq(c1 == last_c)]
        cnt = Signal(range(N + 8))
        cls = Signal(cb)
        # mb is loaded every clock (no hold): outside the coefficient products, the par port
        # reads qmul (and qshift just before the second shift), so they need no register
        qmul = par_r.data
        m.d.sync += mb.eq(Mux(v1, xq_r.data[:D_BITS].as_signed(), qmul))
        bits = Signal(5)
        mode = Signal(2)
        zflag = Signal()
        nz = Signal(MK)                # per class: some component non-zero in this pixel
        seen = Signal(MK)              # per class: its flag was sent in this pixel
        # Both set one bit (class `cls`) and are cleared at a pixel's start; written as logic
        # (OR and AND) rather than per-bit enables, so that each bit's next value is one LUT4
        # with its flip-flop instead of a flip-flop apart from its enable decode.
        nz_set, seen_set, flags_clr = Signal(), Signal(), Signal()
        cls_hot = Cat(*(cls == k for k in range(MK)))
        m.d.sync += [nz.eq((nz | (cls_hot & nz_set.replicate(MK))) & ~flags_clr.replicate(MK)),
                     seen.eq((seen | (cls_hot & seen_set.replicate(MK))) &
                             ~flags_clr.replicate(MK))]
        tile_no = Signal(10)

        # token pass
        q = Signal(signed(16))
        # the q entry of the xq memory: q and its class parameters
        q_entry = Cat(q, cls, Const(0, 4 - cb), bits, mode, zflag)
        # (straight from the registers: they still hold the entry's values in the clock the
        # delayed write lands, and need no flip-flops of their own)
        m.d.comb += xq_w.data[D_BITS:].eq(q_entry[D_BITS:])
        u = Signal(17)
        kk = Signal(4)
        esc = Signal(5)
        is_esc = Signal()              # the value goes through the Huffman ESC code
        skip = Signal()
        # Emitters shift a segment out LSB first: `n` bits of `v`, or for Huffman codes (`mk`)
        # the bits below the marker 1 of the stored (1 << length) | code form.
        cv, cn, cmk = Signal(17), Signal(5), Signal()      # coded
        ones = Signal()                # the coded segment is `cn` ones (Rice's unary part)
        rn = Signal(5)                 # raw: q's bits still to send (q shifts them out)
        bv, bn = Signal(17), Signal(5)                      # the coded token's second segment

        # tile end
        mode_raw = Signal()
        pay_words = Signal(range(self.max_tile_words + 1))
        low = Signal(32)
        m.d.comb += low.eq(Cat(pay_words, Const(0, 20 - len(pay_words)), mode_raw, Const(0, 1),
                               tile_no))
        crc = Signal(32)
        nib = Signal(CRC_STEP)
        crc_next = Signal(32)
        m.d.comb += crc_next.eq(crc32_next(crc, nib))
        csn = Signal(4)                # CRC step within the chunk / header
        csn1 = Signal(4)
        m.d.comb += csn1.eq(csn + 1)
        csn_chunk = (CHUNK // CRC_STEP - 1).bit_length()     # its bits that count a chunk's steps
        csn_hdr = (32 // CRC_STEP - 1).bit_length()
        chunk = Signal(range(cap_chunks + 1))
        # the payload's chunks all read (the CRC's end, and the last word's after its reads)
        chunk_end = Signal()
        m.d.comb += chunk_end.eq(chunk == pay_words << 2)
        buf_data = Mux(mode_raw, rbuf_r.data, cbuf_r.data)
        ow = Signal(64)

        m.d.comb += [self.o.payload.data.eq(ow)]
        o_first, o_last = Signal(), Signal()
        m.d.comb += [self.o.payload.first.eq(o_first), self.o.payload.last.eq(o_last)]

        # Raw emitter: runs on its own, one bit per clock, beside the coded one; it shifts q
        # itself (q is stored by then, and the next q waits for the emitter to finish).
        with m.If(rn != 0):
            m.d.comb += [rbit_valid.eq(1), rbit.eq(q[0])]
            m.d.sync += [q.eq(q[1:]), rn.eq(rn - 1)]

        # `cv_end`: cv holds only the marker, kept as a flag beside cv (a 17-bit compare in the
        # emitter's busy test would run on into the state machine)
        c_busy, cv_end = Signal(), Signal()
        # cn != 0 as a flag kept beside cn (every assignment of cn sets it): the busy test is
        # then one LUT from flip-flops
        cn_nz = Signal()
        m.d.comb += c_busy.eq(cn_nz & ~(cmk & cv_end))

        def emit_coded():
            """Shift one coded bit out; true (an Amaranth value) when the segment is empty."""
            with m.If(c_busy):
                m.d.comb += [cbit_valid.eq(1), cbit.eq(cv[0] | ones)]
                m.d.sync += [cv.eq(cv >> 1), cn.eq(cn - 1), cn_nz.eq(cn != 1),
                             cv_end.eq(cv[1] & ~cv[2:].any())]
            return ~c_busy

        def load_coded(v, n, mk=0):
            n = Const(n, 5) if isinstance(n, int) else n
            m.d.sync += [cv.eq(v), cn.eq(n), cn_nz.eq(n != 0), cmk.eq(mk), ones.eq(0)]
            if mk:
                m.d.sync += cv_end.eq(0)        # a loaded Huffman code has length >= 1

        # comb views of the q entry being read (token pass)
        e_q = xq_r.data[:16].as_signed()
        e_cls = xq_r.data[16:16 + cb]
        e_bits = xq_r.data[20:25]
        e_mode = xq_r.data[25:27]
        e_zf = xq_r.data[27]
        e_u = Signal(17)
        m.d.comb += e_u.eq(Cat(0, xq_r.data[:16]) ^ xq_r.data[15].replicate(17))   # zigzag
        # u >= HUFF_ESC (63, all ones: an OR gives the symbol) without a carry chain
        big_u = u[6:].any() | u[:6].all()

        def huff_sym(esc_):
            return Cat(u[:6] | esc_.replicate(6), cls)

        # q = sclamp(acc, bits): acc is in range when its bits from bits - 1 up are all equal;
        # masks instead of comparators. (Mode drop's q is left as it is: it sends no raw bits,
        # sets no "non-zero" bit and its tokens are skipped, as if q were 0.)
        # (registered: `bits` is fetched early in the MAC, long before the clamp needs it)
        # (bits <= 16: a table of the low 4 bits, one LUT4 per mask bit; as 16 compares yosys
        # builds 16 carry chains)
        hi = Signal(16)
        hi_tab = Const(sum(((1 << max(b - 1, 0)) - 1) << (16 * b) for b in range(16)), 256)
        m.d.sync += hi.eq(Mux(bits[4], 0x7FFF, hi_tab.word_select(bits[:4], 16)))
        top = sh[16:]
        # (one test against the sign, not one for each sign: half the reduction trees)
        sgn = sh[-1]
        # The range test's OR tree is cut in two: groups of its terms are registered from acc
        # every clock, and SHQ_WAIT takes q a clock after acc last changed (`acc_still`): a
        # clock per component, instead of the whole tree between acc and q.
        terms = Cat((sh[:16] ^ sgn.replicate(16)) & ~hi, top ^ sgn.replicate(len(top)))
        out_grp = Signal((len(terms) + 3) // 4)
        m.d.sync += out_grp.eq(Cat(*(terms[i:i + 4].any() for i in range(0, len(terms), 4))))
        in_range = ~out_grp.any()
        qv = Signal(signed(16))
        m.d.comb += qv.eq(Mux(in_range, sh[:16], Mux(sgn, ~hi, hi)))
        top24 = sh[23:]
        y_sat = Mux(~top24.any() | top24.all(), sh[:24], Mux(sh[-1], -(1 << 23), (1 << 23) - 1))
        # ma is loaded every clock (no hold): the coefficient, or y's half for the partial
        # product (y[:12] unless QM1 asks for y[12:])
        m.d.sync += ma.eq(Mux(v1, coef_data, Mux(qm_hi, y_sat[12:24].as_signed(),
                                                 Cat(y_sat[:12], Const(0, 6)))))

        @contextmanager
        def state(name):
            # every state leaves for TILE on the restart after a commit
            with m.State(name):
                yield
                with m.If(restart):
                    m.next = "TILE"

        with m.FSM(name="lane") as fsm:
            with state("TILE"):
                if own_walk:
                    with m.If(armed):
                        m.d.comb += flags_clr.eq(1)
                        m.d.sync += [px_pos.eq(1), *set_c0()]
                        m.next = "IN_RD"
                else:
                    m.d.comb += walker.o.ready.eq(1)
                    with m.If(walker.o.valid):
                        m.d.sync += [px_size.eq(walker.o.payload), px_pos.eq(1), *set_c0()]
                        m.d.comb += flags_clr.eq(1)
                        m.next = "IN_RD"

            # 1. the pixel's values: d = x - mu
            with state("IN_RD"):
                if own_walk:
                    m.d.comb += par_r.addr.eq(par_global(GLOBAL_TILE_PIXELS))
                m.d.comb += xq_r.addr.eq(at(OFF, c))
                m.next = "IN_TAKE"
            with state("IN_TAKE"):
                # the read port fetches the next channel's offset (or the first class) as this
                # value is taken: one value per clock
                m.d.comb += [xq_r.addr.eq(at(OFF, c)), self.i.ready.eq(1)]
                if own_walk:
                    m.d.comb += par_r.addr.eq(par_global(GLOBAL_TILE_PIXELS))
                    m.d.sync += px_last.eq(px_pos == par_r.data)
                with m.If(self.i.valid):
                    m.d.comb += [dp_xq_en.eq(1), dp_xq_addr.eq(at(DAT, c)),
                                 dp_xq_data.eq(self.i.payload - xq_r.data[:D_BITS].as_signed())]
                    with m.If(c_last):
                        m.d.comb += xq_r.addr.eq(at(CMAP, Const(0, kb)))
                        m.d.comb += acc_clr.eq(1)
                        m.d.sync += [*set_c0(), cnt.eq(0)]
                        m.next = "MAC"
                    with m.Else():
                        m.d.comb += xq_r.addr.eq(at(OFF, c1))
                        m.d.sync += set_c1()

            # 2. transform and quantize component c (its class was read in the clock before)
            with state("MAC"):
                # product j = cnt for cnt < N
                with m.If(~cnt[lg_n:].any()):
                    m.d.comb += [issue.eq(1), coef_r.addr.eq(Cat(cnt[:lg_n], c[:kb])),
                                 xq_r.addr.eq(at(DAT, Cat(cnt[:lg_n], c[lg_n:kb])))]
                m.d.sync += cnt.eq(cnt + 1)
                # class parameters, one field per clock, while the products run
                # (then F in the clock before the last, and qmul, read on until QM1)
                fetch = [CLASS_BITS, CLASS_MODE, CLASS_ZFLAG]
                mac_last = max(N + 2, len(fetch) + 2)
                cls_now = Mux(cnt == 0, xq_r.data[:cb], cls)
                with m.Switch(cnt):
                    for n, field in enumerate(fetch):
                        with m.Case(n):
                            m.d.comb += par_r.addr.eq(Cat(Const(field, 3), cls_now))
                    with m.Case(mac_last - 1):
                        m.d.comb += par_r.addr.eq(par_global(GLOBAL_FRAC_BITS))
                    with m.Default():
                        m.d.comb += par_r.addr.eq(Cat(Const(CLASS_QMUL, 3), cls))
                with m.Switch(cnt):
                    with m.Case(0):
                        m.d.sync += cls.eq(xq_r.data[:cb])
                    with m.Case(1):
                        m.d.sync += bits.eq(par_r.data[:5])
                    with m.Case(2):
                        m.d.sync += mode.eq(par_r.data[:2])
                    with m.Case(3):
                        m.d.sync += zflag.eq(par_r.data[0])
                # the last product is added in the clock of cnt == N + 2
                with m.If(cnt == mac_last):
                    # the shift starts after this clock's add (the adder goes first); F was
                    # read in the clock before
                    start_shift(par_r.data[:6])             # F <= 16 (validate)
                    m.next = "SHF_WAIT"
            # y * qmul = (y[12:] * qmul << 12) + y[:12] * qmul: both products fit 18 x 18
            with state("SHF_WAIT"):
                m.d.comb += par_r.addr.eq(Cat(Const(CLASS_QMUL, 3), cls))
                with m.If(sh_done):
                    m.d.sync += v2.eq(1)          # (ma takes y[:12] in this clock)
                    m.next = "QM1"
            with state("QM1"):
                # acc still holds y (no product lands before QM2), so y[12:] needs no register
                m.d.comb += par_r.addr.eq(Cat(Const(CLASS_QSHIFT, 3), cls))
                m.d.comb += qm_hi.eq(1)
                m.d.comb += acc_clr.eq(1)
                m.d.sync += v2.eq(1)
                m.next = "QM2"
            with state("QM2"):
                m.d.comb += par_r.addr.eq(Cat(Const(CLASS_QSHIFT, 3), cls))
                m.next = "QM3"
            with state("QM3"):
                start_shift(par_r.data[:6])
                m.next = "SHQ_WAIT"
            with state("SHQ_WAIT"):
                # q is registered here: the clamp and what q feeds would make one long path
                # (once the raw emitter has shifted out the last q; the range test's groups
                # are registered, so q waits a clock after acc's last change)
                with m.If(sh_done & acc_still & (rn == 0)):
                    m.d.sync += q.eq(qv)
                    m.next = "Q_STORE"
            with state("Q_STORE"):
                # (the raw emitter is idle: SHQ_WAIT waited for it)
                m.d.comb += [dp_xq_en.eq(1), dp_xq_addr.eq(at(QV, c)),
                             dp_xq_data.eq(q_entry[:D_BITS])]
                # the raw payload takes q now, in component order like the coded one
                m.d.sync += rn.eq(Mux(mode == MODE_DROP, 0, bits))
                with m.If((q != 0) & (mode != MODE_DROP)):
                    m.d.comb += nz_set.eq(1)
                with m.If(c_last):
                    m.d.comb += xq_r.addr.eq(at(QV, Const(0, kb)))
                    m.d.sync += set_c0()
                    m.next = "E_GET"
                with m.Else():
                    m.d.comb += xq_r.addr.eq(at(CMAP, c1))
                    m.d.comb += acc_clr.eq(1)
                    m.d.sync += [*set_c1(), cnt.eq(0)]
                    m.next = "MAC"

            # 3. the token of component c (its q entry was read in the clock before)
            with state("E_GET"):
                m.d.comb += par_r.addr.eq(Cat(Const(CLASS_K_ESC, 3), e_cls))
                # q goes to `bv`, the segment register, and waits there for its segment (raw,
                # Huffman escape or Rice escape): the coded emitter loads only `bv`, u or a code
                m.d.sync += [bv.eq(e_q), u.eq(e_u), cls.eq(e_cls), bits.eq(e_bits),
                             mode.eq(e_mode), zflag.eq(e_zf)]
                m.next = "E_FLAG"
            with state("E_FLAG"):
                # (the Huffman address comes from registers: from the q entry's read data
                # through the zigzag it would be one long path)
                m.d.comb += huff_r.addr.eq(huff_sym(big_u))
                m.d.sync += [kk.eq(par_r.data[:4]), esc.eq(par_r.data[8:13])]
                first = zflag & ~seen.bit_select(cls, 1)
                load_coded(nz.bit_select(cls, 1), first)
                m.d.comb += seen_set.eq(1)
                m.d.sync += [skip.eq((zflag & ~nz.bit_select(cls, 1)) | (mode == MODE_DROP))]
                if own_walk:
                    m.d.comb += par_r.addr.eq(par_global(GLOBAL_IMAGE_PIXELS))
                m.next = "E_HV"
            with state("E_HV"):
                # the symbol's code is in: it has none (1) or the value is too big for one
                m.d.sync += is_esc.eq(big_u | (huff_data == 1))
                if own_walk:
                    m.d.sync += img_last.eq((img_pos[:16] == par_r.data) &
                                            (img_pos[16:] == image_hi))
                emit_coded()
                m.next = "E_HSEL"
            with state("E_HSEL"):
                # read the code to send (the symbol's again, or ESC's), so that the port's
                # output is the code (no register for it); the address comes from registers
                m.d.comb += huff_r.addr.eq(huff_sym(is_esc))
                emit_coded()
                m.next = "E_FLAGBIT"
            with state("E_FLAGBIT"):
                m.d.comb += huff_r.addr.eq(huff_sym(is_esc))
                empty = emit_coded()
                with m.If(empty):
                    with m.If(skip):
                        m.next = "E_DONE"
                    with m.Else():
                        m.next = "E_A"
                        with m.Switch(mode):
                            with m.Case(MODE_RAW):
                                m.d.sync += bn.eq(bits)         # (cn is 0: E_A loads bv)
                            with m.Case(MODE_RICE):
                                load_coded(u, kk)
                                m.next = "E_RICE"
                            with m.Case(MODE_HUFFMAN):
                                load_coded(huff_data, 17, mk=1)
                                m.d.sync += bn.eq(Mux(is_esc, bits, 0))
            with state("E_RICE"):
                # qq = u >> k: the emitter's register shifts k times without emitting
                with m.If(cn_nz):
                    m.d.sync += [cv.eq(cv >> 1), cn.eq(cn - 1), cn_nz.eq(cn != 1)]
                with m.Else():
                    hit = cv[5:].any() | (cv[:5] >= esc)
                    # qq ones, a zero and k bits of u; or esc ones and q
                    m.d.sync += [cn.eq(Mux(hit, esc, cv[:5])),
                                 cn_nz.eq(Mux(hit, esc.any(), cv[:5].any())),
                                 cmk.eq(0), ones.eq(1), bn.eq(Mux(hit, bits, kk + 1))]
                    with m.If(~hit):
                        m.d.sync += bv.eq(Cat(0, u))       # (on a hit bv keeps q)
                    m.next = "E_A"
            with state("E_A"):
                with m.If(emit_coded()):
                    load_coded(bv, bn)
                    m.next = "E_B"
            with state("E_B"):
                with m.If(emit_coded()):
                    m.next = "E_DONE"
            with state("E_DONE"):
                with m.If(~c_last):
                    m.d.comb += xq_r.addr.eq(at(QV, c1))
                    m.d.sync += set_c1()
                    m.next = "E_GET"
                with m.Else():
                    m.d.comb += flags_clr.eq(1)
                    m.d.sync += [*set_c0(), px_pos.eq(px_pos + 1)]
                    tile_end = px_last
                    if own_walk:
                        m.d.sync += img_pos.eq(Mux(img_last, 1, img_pos + 1))
                        tile_end |= img_last
                    with m.If(tile_end):
                        m.next = "FLUSH"
                    with m.Else():
                        m.next = "IN_RD"

            # 4. tile end: flush the partial words, choose the payload, CRC, send
            with state("FLUSH"):
                # zero bits up to a whole word (the words counted below do not change)
                pad_c, pad_r = cbits[:6] != 0, (rn == 0) & (rbits[:6] != 0)
                with m.If(pad_c):
                    m.d.comb += cpad.eq(1)
                with m.If(pad_r):
                    m.d.comb += [rbit_valid.eq(1), rbit.eq(0)]
                with m.If(~pad_c & ~pad_r & (rn == 0)):
                    m.next = "DECIDE"
            with state("DECIDE"):
                # whole words after the padding (a full coded buffer is whole words too)
                cw, rw = cbits[6:], rbits[6:]
                raw = cfull | (cw >= rw)
                words = Signal(20)
                m.d.comb += words.eq(Mux(raw, rw, cw))
                m.d.sync += [mode_raw.eq(raw), pay_words.eq(words),
                             crc.eq(CRC32_INIT), chunk.eq(0)]
                m.next = "CRC_RD"
            # `nib` is registered: each clock selects the next step's bits (the chunk's are
            # in the read port's output from CRC_RD on: its address moves on to the next chunk
            # two steps before the chunk's end), so the selection and the buffers' multiplexer
            # do not run on into the CRC's XOR tree.
            with state("CRC_RD"):
                m.d.comb += [cbuf_r.addr.eq(chunk), rbuf_r.addr.eq(chunk)]
                m.d.sync += [csn.eq(0), nib.eq(Mux(chunk_end, low[:CRC_STEP],
                                                   buf_data[:CRC_STEP]))]
                with m.If(chunk_end):
                    m.next = "CRC_HDR"
                with m.Else():
                    m.next = "CRC_RUN"
            with state("CRC_RUN"):
                # the read address is held, so the RAM's output holds the chunk: its nibbles
                # are selected in place (no shift register)
                m.d.comb += [cbuf_r.addr.eq(chunk), rbuf_r.addr.eq(chunk)]
                m.d.sync += [crc.eq(crc_next), csn.eq(csn1),
                             nib.eq(buf_data.word_select(csn1[:csn_chunk], CRC_STEP))]
                with m.If(csn == CHUNK // CRC_STEP - 2):
                    m.d.sync += chunk.eq(chunk + 1)
                with m.If(csn == CHUNK // CRC_STEP - 1):
                    m.next = "CRC_RD"
            with state("CRC_HDR"):
                m.d.sync += [crc.eq(crc_next), csn.eq(csn1),
                             nib.eq(low.word_select(csn1[:csn_hdr], CRC_STEP))]
                with m.If(csn == 32 // CRC_STEP - 1):
                    m.next = "HDR"
            with state("HDR"):
                # the header in one parallel load (a 2-input multiplexer on each bit of `ow`:
                # shifting it in as 16-bit chunks needs a 4-way one on its top 16)
                m.d.sync += [ow.eq(Cat(low, crc ^ CRC32_XOROUT)), o_first.eq(1),
                             o_last.eq(pay_words == 0), chunk.eq(0)]
                m.next = "SEND"
            with state("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    with m.If(o_last):
                        m.d.sync += [tile_no.eq(tile_no + self.tile_step), cbits.eq(0),
                                     rbits.eq(0), cfull.eq(0), rfull.eq(0)]
                        m.next = "TILE"
                    with m.Else():
                        m.d.sync += [cnt.eq(0), o_first.eq(0)]
                        m.next = "WORD"
            with state("WORD"):
                # four chunk reads, each landing a clock later in its quarter of `ow`
                with m.If(cnt < 4):
                    m.d.comb += [cbuf_r.addr.eq(chunk), rbuf_r.addr.eq(chunk)]
                    m.d.sync += chunk.eq(chunk + 1)
                with m.If(cnt != 0):
                    m.d.sync += ow.eq(Cat(ow[CHUNK:], buf_data))
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == 4):
                    m.d.sync += o_last.eq(chunk_end)
                    m.next = "SEND"

        with m.If(restart):
            m.d.sync += [armed.eq(1), img_pos.eq(1), tile_no.eq(self.tile_first),
                         cbits.eq(0), rbits.eq(0), cfull.eq(0), rfull.eq(0), overflow.eq(0),
                         rn.eq(0), cn.eq(0), cn_nz.eq(0)]
            m.d.comb += [sh_load.eq(1), sh_val.eq(0)]
        # One-hot state encoding in the FPGA builds (as the decoder lane's sequencer): the
        # next-state logic tests one flip-flop per state instead of decoding five bits. yosys
        # ignores the initial value of a state register it re-encodes, so the domain's reset
        # puts it in its first state (on the ECP5 the board top adds that reset:
        # hw/board_top.py, core_domain_after_gsr).
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m
