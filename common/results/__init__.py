"""Results: claims and their verdicts, the brief's findings, gap tables and figures."""
