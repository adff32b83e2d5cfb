"""Network-level evaluation: ResNet-18 on real data, int8 feature maps at every DRAM boundary.

Needs the optional ``torch`` dependency (CPU build); nothing else in fmcodec imports this package.
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m fmcodec.eval`` / ``fmcodec eval``: see ``fmcodec.eval.evaluate``."""
    from .evaluate import main as _main

    return _main(argv)
