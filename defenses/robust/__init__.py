"""Byzantine-robust aggregation rules, pre-aggregators and client-side robustness transforms."""
