"""meshward benchmarks: each prints ratios against a baseline measured side by side."""
