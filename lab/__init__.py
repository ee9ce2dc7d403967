"""Local multi-cluster lab: N Kubernetes control planes on loopback addresses, with KWOK fake nodes.

Run as ``python -m lab up|down|status``; see lab/README.md.
"""
