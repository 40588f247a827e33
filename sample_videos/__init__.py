"""Sample clips for evalwatch: the generator and its script (see README.md)."""
