"""Evidence about a finished run: cross-checks of its ledger, replay (``verify``), signatures."""
