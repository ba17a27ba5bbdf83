"""workers layer of nasfarm."""
