"""Benchmarks: figures measured side by side in one run, written under benchmarks/results/.

May import everything; nothing imports benchmarks.
"""
