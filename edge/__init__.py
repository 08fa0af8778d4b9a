"""A self-hosted image edge node: on-demand image transformation in front of your own storage."""

import os

# Before libvips starts (pyvips' import): its warnings are dropped, in C. GLib wrote each to standard error
# as plain lines, twenty or more per render of a JPEG with extraneous bytes (common from some cameras), unbounded
# and breaking the JSON log; what a warning reports that matters fails the render (a 422).
os.environ.setdefault("VIPS_WARNING", "1")

__version__ = "0.1.0"
