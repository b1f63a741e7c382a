"""What engines reach: the sandbox-runc hardening path (shim), the warm daemon, and the glue
between them and the core.
"""
