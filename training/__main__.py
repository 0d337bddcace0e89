"""`python -m clipping_edge.training ...` is `clipping-edge train ...`: the entry point torchrun launches.

    torchrun --nproc_per_node 4 -m clipping_edge.training --data DATA --method clip-ping --out runs/ddp
"""

import sys

from clipping_edge.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
