"""The tamper-evident audit log: hash-chained records, the locked appender, verification.
"""
