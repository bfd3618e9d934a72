"""Benchmark harness: Shoal against vmagent and Prometheus agent mode on one workload.

Run it with ``bash loadtest/run``; see loadtest/README.md.
"""
