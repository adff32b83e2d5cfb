"""Bit unpacker: container words in, checked tile payload words out (read-path twin of
hw/bit_packer.py; golden/bit_packer.py and docs/FORMAT.md "Tiles" define the header).

Stream contract
---------------
- `i`: `container_word()`, the words of the tiles in tensor order as the DRAM reader fetches
  them: a tile's header word, then its payload words, with `last` on the final word the reader
  delivers for the tile (on the header itself when it delivers no payload). `last` is the
  reader's framing (it knows the extent of every tile it reads: from the index table, or from the
  header's length field it parsed itself); the unpacker resynchronizes on it, so a truncated or
  overlong tile costs only that tile.
- `o`: `payload_word()`, per tile the payload words for hw/vlc_decoder.py, with `raw` (the tile's
  mode) on every word and `last` on the tile's final one. A tile always yields at least one word:
  one whose payload is empty yields a single word with `empty` set (no bits). At most
  `min(length, raw_words(tile))` payload words are passed on; words beyond that are checked (CRC)
  and dropped.
- `cfg`: tile_pixels (global 3), image_pixels (global 8) and raw bits per pixel (global 7, the
  commit) give every tile's pixel count (the last tile of an image may be short; hw/tile_walker.py)
  and hence its raw size `raw_words = ceil(pixels * raw_bits_per_pixel / 64)`; the commit clears
  the tile counter and `status` a clock after its write (a word taken in the commit's clock is
  dropped, none is taken or given in the clock after). Lane p of P (`tile_first` = p,
  `tile_step` = P) gets only the tensor's tiles p, p + P, ...: the sizes are theirs and the
  expected tile numbers p, p + P, ...
- `status`: sticky error bits since the last commit (each also counts its tile in `bad_tiles`):
  `crc` (CRC-32 of payload + header bits 0..31 differs from header bits 32..63), `mode` (mode 2
  or 3; the tile is then passed on as coded), `length` (length > raw_words, or a raw tile whose
  length is not raw_words), `tile` (tile number differs from the tile counter mod 1024),
  `framing` (the reader's `last` came before or after `length` payload words). `error` is their
  OR. A coded tile's decoding errors (code running past the payload, words left over, invalid
  code) are hw/vlc_decoder.py's status; the lane ORs the two.

Whatever the words hold, a tile costs one clock per input word (a header that follows a tile
without payload words waits up to `tile_step` + 2 clocks for its raw size), so the unpacker never
hangs,
and the decoder downstream always gets exactly one tile per header.

Throughput one word per clock; latency one clock (output register; `i.ready` depends on
`o.ready` combinationally). The CRC is finished in the clock after a tile's last word, in
parallel with the next header, by a 64-bit-parallel CRC-32 (hw/crc.py), and checked in the
clock after that, when `status` shows the tile's errors.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import (
    config_signature,
    is_commit,
    restart_after_commit,
)
from hw.crc import CRC32_INIT, CRC32_XOROUT, crc32_next
from hw.tile_walker import TILE_PIXEL_BITS, TileWalker

WORD_BITS = 64
LEN_BITS = 20           # header bits 0..19: payload length in words
TILE_NO_BITS = 10       # header bits 22..31: tile number mod 1024
MODE_CODED, MODE_RAW = 0, 1
RAW_BPP_BITS = 15       # raw bits per pixel <= 1024 channels * 16 bits
BAD_TILE_BITS = 16
GEOM_STEPS = 3          # clocks from the tile walker's count to the tile's raw size


def container_word() -> data.StructLayout:
    """A word of the container as the DRAM reader delivers it; `last` ends the reader's tile."""
    return data.StructLayout({"data": WORD_BITS, "last": 1})


def payload_word() -> data.StructLayout:
    """A payload word for the VLC decoder: `raw` is the tile's mode, `last` its final word,
    `empty` marks the single word of a tile without payload bits (its data is zero)."""
    return data.StructLayout({"data": WORD_BITS, "last": 1, "raw": 1, "empty": 1})


def unpacker_status() -> data.StructLayout:
    return data.StructLayout({
        "error": 1,
        "crc": 1,
        "mode": 1,
        "length": 1,
        "tile": 1,
        "framing": 1,
        "bad_tiles": BAD_TILE_BITS,     # tiles with any error since the commit (saturating)
    })


_CAUSES = ("crc", "mode", "length", "tile", "framing")


class BitUnpacker(wiring.Component):
    """Container words in, payload words out, header and CRC checked (see the module docstring).

    Parameters: `tile_first`, `tile_step` (the tiles of lane p of P: p, P).
    """

    def __init__(self, tile_first: int = 0, tile_step: int = 1):
        self.tile_first = int(tile_first)
        self.tile_step = int(tile_step)
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(container_word())),
            "o": Out(stream.Signature(payload_word())),
            "status": Out(unpacker_status()),
        })

    def elaborate(self, platform):
        m = Module()

        # -- configuration ---------------------------------------------------------------------
        cfg = self.cfg
        raw_bpp = Signal(RAW_BPP_BITS)
        with m.If(is_commit(cfg)):
            m.d.sync += raw_bpp.eq(cfg.p.data)
        m.submodules.walker = walker = TileWalker(self.tile_first, self.tile_step)
        m.d.comb += [walker.cfg.valid.eq(cfg.valid), walker.cfg.payload.eq(cfg.payload)]

        # The commit's resets come a clock late (hw/config.py `restart_after_commit`): what is
        # taken in the commit's clock is flushed with the rest, and in the restart's clock no
        # word is taken and none leaves.
        restart = restart_after_commit(m, cfg)

        # -- tile geometry: raw size of the tile whose header comes next -----------------------
        # A three-step pipeline (pixel count from the tile walker, product, words), restarted by
        # each header; it is done long before the next header unless the tile had no payload
        # words, and only then does a header wait for it (`geom_wait`, counting from the clock
        # the walker's count is there).
        npix = Signal(TILE_PIXEL_BITS)
        product = Signal(TILE_PIXEL_BITS + RAW_BPP_BITS)
        max_words = Signal(LEN_BITS + 6)
        geom_wait = Signal(2, init=GEOM_STEPS)
        geom_ok = walker.o.valid & (geom_wait == 0)
        tile_no = Signal(TILE_NO_BITS, init=self.tile_first % (1 << TILE_NO_BITS))
        m.d.sync += [
            npix.eq(walker.o.payload),
            product.eq(npix * raw_bpp),
            max_words.eq((product + 63) >> 6),
        ]
        with m.If(walker.o.valid & (geom_wait != 0)):
            m.d.sync += geom_wait.eq(geom_wait - 1)

        # -- tile state -----------------------------------------------------------------------
        in_tile = Signal()          # a header was taken; payload words (or the drop) follow
        dropping = Signal()         # words past `limit`: checked, not passed on
        count = Signal(LEN_BITS + 1)    # payload words seen in this tile
        limit = Signal(LEN_BITS)        # payload words passed on
        length = Signal(LEN_BITS)
        raw = Signal()
        low = Signal(32)            # header bits 0..31, the CRC's last four bytes
        check = Signal(32)
        crc = Signal(32, init=CRC32_INIT)
        errs = Signal(len(_CAUSES) - 1)    # this tile's errors other than the CRC
        finish = Signal()           # the clock after a tile's last word: close the tile

        hdr = self.i.p.data
        h_len = hdr[0:LEN_BITS]
        h_mode = hdr[LEN_BITS:LEN_BITS + 2]
        h_tile = hdr[22:32]

        o_valid = Signal()
        m.d.comb += self.o.valid.eq(o_valid & ~restart)
        o_free = ~o_valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += o_valid.eq(0)

        take = self.i.valid & self.i.ready
        m.d.sync += finish.eq(0)

        with m.If(~in_tile):
            # Header. Its output (a tile without payload words gives an `empty` word) needs
            # the output register, so it waits for it like a payload word does.
            m.d.comb += self.i.ready.eq(geom_ok & o_free)
            h_raw = h_mode == MODE_RAW
            bad_mode = h_mode[1]
            bad_len = (h_len > max_words) | (h_raw & (h_len != max_words))
            h_limit = Mux(h_len > max_words, max_words, h_len)
            # min(h_len, max_words) is 0 when either is: no comparison on the output path.
            no_payload = (h_len == 0) | (max_words == 0)
            with m.If(take):
                m.d.sync += [
                    length.eq(h_len),
                    limit.eq(h_limit),
                    raw.eq(h_raw),
                    low.eq(hdr[0:32]),
                    check.eq(hdr[32:64]),
                    count.eq(0),
                    errs.eq(Cat(bad_mode, bad_len, h_tile != tile_no)),
                    tile_no.eq(tile_no + self.tile_step % (1 << TILE_NO_BITS)),
                    geom_wait.eq(GEOM_STEPS),
                ]
                m.d.comb += walker.o.ready.eq(1)
                with m.If(self.i.p.last | no_payload):
                    m.d.sync += [
                        o_valid.eq(1),
                        self.o.p.data.eq(0),
                        self.o.p.last.eq(1),
                        self.o.p.raw.eq(h_raw),
                        self.o.p.empty.eq(1),
                    ]
                with m.If(self.i.p.last):
                    m.d.sync += finish.eq(1)
                    with m.If(h_len != 0):
                        m.d.sync += errs[3].eq(1)
                with m.Else():
                    m.d.sync += [in_tile.eq(1), dropping.eq(no_payload)]
        with m.Else():
            # Payload word: into the CRC; passed on up to `limit`, dropped after.
            m.d.comb += self.i.ready.eq(dropping | o_free)
            with m.If(take):
                m.d.sync += [
                    crc.eq(crc32_next(crc, hdr)),
                    count.eq(count + 1),
                ]
                with m.If(~dropping):
                    at_limit = count + 1 == limit
                    m.d.sync += [
                        o_valid.eq(1),
                        self.o.p.data.eq(hdr),
                        self.o.p.last.eq(self.i.p.last | at_limit),
                        self.o.p.raw.eq(raw),
                        self.o.p.empty.eq(0),
                    ]
                    with m.If(at_limit):
                        m.d.sync += dropping.eq(1)
                with m.If(self.i.p.last):
                    m.d.sync += [in_tile.eq(0), finish.eq(1)]
                    with m.If(count + 1 != length):
                        m.d.sync += errs[3].eq(1)

        # -- close the tile: CRC over payload + header bits 0..31, then status -----------------
        # In the clock after the last word the CRC is finished and kept with the tile's check
        # and errors (the next header may overwrite those in that clock); they are compared and
        # counted a clock later (`close`).
        status = self.status
        close = Signal()
        crc_end = Signal(32)
        check_end = Signal(32)
        errs_end = Signal.like(errs)
        m.d.sync += close.eq(finish)
        with m.If(finish):
            m.d.sync += [
                crc.eq(CRC32_INIT),
                crc_end.eq(crc32_next(crc, low) ^ CRC32_XOROUT),
                check_end.eq(check),
                errs_end.eq(errs),
            ]
        with m.If(close):
            bad = Signal(len(_CAUSES))
            m.d.comb += bad.eq(Cat(crc_end != check_end, errs_end))
            for n, name in enumerate(_CAUSES):
                with m.If(bad[n]):
                    m.d.sync += getattr(status, name).eq(1)
            with m.If(bad.any()):
                m.d.sync += status.error.eq(1)
                with m.If(~status.bad_tiles.all()):
                    m.d.sync += status.bad_tiles.eq(status.bad_tiles + 1)

        # The commit starts a new tensor: tile 0 of image 0, nothing in flight, status clear.
        with m.If(restart):
            m.d.comb += self.i.ready.eq(0)
            m.d.sync += [
                tile_no.eq(self.tile_first % (1 << TILE_NO_BITS)),
                geom_wait.eq(GEOM_STEPS),
                in_tile.eq(0),
                dropping.eq(0),
                finish.eq(0),
                close.eq(0),
                crc.eq(CRC32_INIT),
                o_valid.eq(0),
                status.eq(0),
            ]
        return m
