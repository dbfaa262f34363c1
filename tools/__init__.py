"""Command-line tools of the detloss checkout (run them from the repository root;
the benchmark dispatcher as ``python -m tools.benchmark``)."""
