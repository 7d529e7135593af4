"""OS integrity: MRTD and RTMR0-2 recomputed from a dstack OS image (or its TDX-lite measurement document)."""
