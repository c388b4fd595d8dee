"""Where sweep runs execute beyond this machine's worker processes (Ray)."""
