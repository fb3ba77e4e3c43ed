"""The runner's overhead measured against the physical floor of what each step must do.

Every row is a ratio of two things measured side by side in one run, their runs interleaved so
that drift on a shared machine hits both alike, and compared by their medians; a bare absolute
time is never the verdict. `python -m benchmarks` runs the suite (`make bench`, `make
bench-quick`); docs/performance.md explains each row and holds the figures of a full run.
"""
