"""ULX3S with an LFE5U-85F (CABGA381, speed 6): what the amaranth-boards platform does not say.

Host link: the board's USB serial port (FT231X on M1/L4, `uart` 0 in amaranth_boards.ulx3s; its
`uart_tx_enable` pin is left alone). The second choice, `pmod`, is a 3.3 V USB-UART adapter on
GPIO header pins GP0 (FPGA transmit, B11) and GN0 (FPGA receive, C11).

Clock: the 25 MHz oscillator (G2, constrained by the platform file) clocks the whole design;
25 MHz / 1 Mbaud = 25 clocks per bit exactly. amaranth_boards' ULX3S platform lists openFPGALoader
as a required tool even for a build; `hw.build` (and the Makefile) set OPENFPGALOADER=true when
it is not installed.
"""

from amaranth.build import Attrs
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import ULX3S_85F_Platform

NAME = "ulx3s-85f"
DESCRIPTION = "ULX3S, LFE5U-85F-6 CABGA381, 25 MHz, host link on the on-board FT231X"
PLATFORM = ULX3S_85F_Platform
BITSTREAM = "bit"
# `make program`: the board's usual tool, as amaranth-boards' platform calls it (`-b ulx3s -m`:
# into the FPGA's SRAM, not the flash).
PROGRAMMER = ("OPENFPGALOADER", "openFPGALoader")
BAUD = 1_000_000

LINKS = {
    "usb": ("uart", 0),
    "pmod": ("uart", 1),
}
RESOURCES = [
    UARTResource(1, rx="C11", tx="B11", attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
]
VALUE_DEPTH = 4096
WORD_DEPTH = 1024
# The lanes: ResNet-18's widest layer (512 channels), raw tiles of up to 512 words.
GROUP = 8
MAX_CHANNELS = 512
MAX_TILE_WORDS = 512
