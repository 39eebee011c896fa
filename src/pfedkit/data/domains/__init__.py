"""data/domains."""
