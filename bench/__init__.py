"""Benchmarks: one script per figure, each printing a markdown table and writing JSON into
`bench/results/`. Run them all with `make bench` (`python -m bench.run_all`)."""
