"""Behaviour pins: the ledger head and a canonical hash of the metric rows of every
shipped scenario at its test size. A refactor that changes either changed behaviour."""
