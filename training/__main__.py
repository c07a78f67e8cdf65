"""``python -m training``: build data sets, train, export to the model store."""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
