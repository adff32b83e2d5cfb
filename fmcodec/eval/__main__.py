"""``python -m fmcodec.eval``: the network-level evaluation (see ``fmcodec.eval.evaluate``)."""

import sys

from fmcodec.eval import main

sys.exit(main())
