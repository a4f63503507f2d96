"""`python -m clewdr_lite` runs the command line."""

from clewdr_lite.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
