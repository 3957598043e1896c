"""Benchmark analysis: results records, delta-m, the leaderboard and the negative-transfer report."""
