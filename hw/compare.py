"""Compares against constants as gates, not carry chains.

yosys maps `x < c` (and `<=`, `>`, `>=`) for a constant `c` to an adder's carry chain: on the
iCE40 one logic cell per bit, even though the chain's sum is never used. These build the same
compare from gates: a zero test of the bits above the constant's width and a chain of AND/OR
gates over the rest from the least significant bit up, which the LUT mapper packs about three
bits to a LUT. For unsigned `x`; `c` may be any integer (a compare outside `x`'s
range is a constant).
"""

from amaranth.hdl import Const


def le_const(x, c: int):
    """`x <= c`: the bits above `c`'s width as one zero test (a balanced tree), the gate chain
    only over `c`'s own bits (a chain over all of a wide value is one long serial path)."""
    if c < 0:
        return Const(0, 1)
    if c >> len(x):
        return Const(1, 1)
    nb = c.bit_length()
    le = Const(1, 1)
    for i in range(nb):                 # `le`: x's bits below i <= c's bits below i
        le = (~x[i] | le) if (c >> i) & 1 else (~x[i] & le)
    return le & (x[nb:] == 0) if nb < len(x) else le


def lt_const(x, c: int):
    """`x < c`."""
    return le_const(x, c - 1)


def gt_const(x, c: int):
    """`x > c`."""
    return ~le_const(x, c)


def ge_const(x, c: int):
    """`x >= c`."""
    return ~le_const(x, c - 1)
