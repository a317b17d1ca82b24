"""Faults against a control run on the same input: clocks, poison messages, duplicates, failover.

Each test here is short (the suite's budget); ``make chaos`` runs the long versions and
writes ``bench/RELIABILITY.md``. Marker: ``faults`` (and ``integration`` where a service is used).
"""
