"""evalwatch capture stage."""
