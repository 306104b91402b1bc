"""pntm: Parallelizable Neural Turing Machines."""

__version__ = "0.1.0"
