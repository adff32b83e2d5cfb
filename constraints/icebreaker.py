"""iCEBreaker (iCE40UP5K-SG48): what the amaranth-boards platform does not already say.

Host link: the board's own USB serial port (FT2232H channel B on pins 6/9, `uart` 0 in
amaranth_boards.icebreaker), so one USB cable powers, programs and talks to the board. The second
choice, `pmod`, is a 3.3 V USB-UART adapter on PMOD1A: FPGA transmit on PMOD pin 1 (package
pin 4), FPGA receive on PMOD pin 2 (package pin 2).

Clock: the 12 MHz oscillator (pin 35, constrained by the platform file) clocks the whole design.
12 MHz / 1 Mbaud = 12 clocks per bit exactly; the FT2232H makes 1 Mbaud exactly as well.
"""

from amaranth.build import Attrs
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.resources import UARTResource

NAME = "icebreaker"
DESCRIPTION = "iCEBreaker, iCE40UP5K-SG48, 12 MHz, host link on the on-board FT2232H"
PLATFORM = ICEBreakerPlatform
BITSTREAM = "bin"
# `make program`: the board's usual tool, as amaranth-boards' platform calls it (the variable
# that names another build of it, the command). iceprog writes the board's configuration flash,
# which the FPGA loads at once.
PROGRAMMER = ("ICEPROG", "iceprog")
BAUD = 1_000_000

LINKS = {
    "usb": ("uart", 0),
    "pmod": ("uart", 1),
}
RESOURCES = [
    UARTResource(1, rx="2", tx="1", conn=("pmod", 0),
                 attrs=Attrs(IO_STANDARD="SB_LVCMOS", PULLUP=1)),
]
# The lanes this board carries: the compact ones (hw/compact_encoder.py, hw/compact_decoder.py,
# several clocks per value; the full-rate lanes need about 44,000 logic cells, `make report`).
# With them the codec design (the default) fits the iCE40UP5K with the host link (README, "FPGA
# builds"); `DESIGN=link` builds the host link alone, to bring up the board's serial link.
LANES = "compact"
# Host-link buffers (values, 64-bit words): up to 512 values a TILE request, one raw tile of the
# lanes' largest (8 pixels x 64 channels); two block RAMs fewer than 1024 would take.
VALUE_DEPTH = 512
WORD_DEPTH = 256
# The lanes: layers of up to 64 channels, raw tiles of up to 64 words (8 pixels x 64 channels
# at 8 bits): what fits next to the host link's buffers in 30 block RAMs.
GROUP = 8
MAX_CHANNELS = 64
MAX_TILE_WORDS = 64
