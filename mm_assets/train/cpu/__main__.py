"""`python -m mm_assets.train.cpu <Megatron-LM arguments>`: the CPU trainer (see the package docstring)."""

import sys

from mm_assets.train.cpu.run import main

sys.exit(main())
