"""The pure core: profile model and loader, field declarations, tables, the transform, lint, diff,
schema, verify's comparisons.  Takes data, returns data; never execs, reads /proc or writes files
(tests/unit/test_purity.py).
"""
