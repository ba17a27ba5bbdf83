"""db layer of nasfarm."""
