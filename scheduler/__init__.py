"""scheduler layer of nasfarm."""
