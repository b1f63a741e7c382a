"""Edges that touch the host: probing it once (HostFacts), bundles on disk, the real runc, kernel
state readers, the operator config, the profile cache, doctor.
"""
