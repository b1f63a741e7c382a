"""sandbox: a hardened container runtime wrapper in front of runc."""

__version__ = "0.1.0"
