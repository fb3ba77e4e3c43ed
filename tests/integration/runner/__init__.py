"""Integration tests of the runner against real runtime clients."""
