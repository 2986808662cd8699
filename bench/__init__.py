"""openkb's benchmark: `python -m bench` (or `make bench`) prints the table
quoted in README.md. Ratios are measured within one run, so a noisy shared
machine skews both sides alike; wall times are medians."""
