"""ECPIX-5 with an LFE5UM5G-85F (CABGA554, speed 8): what the amaranth-boards platform does not say.

Host link: the board's USB serial port (FT2232H channel B on R26/R24, `uart` 0 in
amaranth_boards.ecpix5). The second choice, `pmod`, is a 3.3 V USB-UART adapter on PMOD 0:
FPGA transmit on PMOD pin 1, FPGA receive on PMOD pin 2.

Clock: the 100 MHz oscillator (K23) feeds the ECP5 PLL, which clocks the whole design at
CLOCK_HZ (nextpnr derives the 25 MHz constraint from the oscillator's and the PLL's dividers).
25 MHz / 1 Mbaud = 25 clocks per bit exactly, and the 1 Mbaud link, not the lanes, bounds what
the board check moves; the codec itself reaches about 100 MHz on this device (`make report`), and
the board build places for wirelength alone (hw/build.py, BOARD_TIMING_DRIVEN) with that room.
The reset button (AB1) resets the design.
"""

from amaranth.build import Attrs
from amaranth_boards.ecpix5 import ECPIX585Platform
from amaranth_boards.resources import UARTResource

NAME = "ecpix5-85"
DESCRIPTION = "ECPIX-5, LFE5UM5G-85F-8 CABGA554, 100 MHz, host link on the on-board FT2232H"
PLATFORM = ECPIX585Platform
BITSTREAM = "bit"
# `make program`: the board's usual tool, as amaranth-boards' platform calls it (`-c ft2232 -m`:
# into the FPGA's SRAM, not the flash).
PROGRAMMER = ("OPENFPGALOADER", "openFPGALoader")
BAUD = 1_000_000
CLOCK_HZ = 25e6

LINKS = {
    "usb": ("uart", 0),
    "pmod": ("uart", 1),
}
RESOURCES = [
    UARTResource(1, rx="2", tx="1", conn=("pmod", 0),
                 attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
]
VALUE_DEPTH = 4096
WORD_DEPTH = 1024
# The lanes: ResNet-18's widest layer (512 channels), raw tiles of up to 512 words.
GROUP = 8
MAX_CHANNELS = 512
MAX_TILE_WORDS = 512
