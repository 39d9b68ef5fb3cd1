"""``python -m botyard.components.predictor``: the predictor process (flags as ``botyard serve``)."""

import sys

from botyard.components.predictor.main import main

sys.exit(main(sys.argv[1:]))
