"""dstack_verifier: the verification library of dstack-inspector (no Qt here)."""

__version__ = "0.1.0"
