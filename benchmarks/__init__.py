"""chatkeep's benchmark suite (issue #7): ``scripts/bench`` runs it; see ``benchmarks/README.md``."""
