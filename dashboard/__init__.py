"""evalwatch dashboard stage."""
