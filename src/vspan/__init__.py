"""vspan: a virtual switch for Linux built to make traffic in virtual networks visible."""

__version__ = "0.1.0"
