"""Self-contained HTML (and PDF) audit reports for runs and matrices."""
