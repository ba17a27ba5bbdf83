"""``python -m nasfarm``: the same command as the ``nasfarm`` console script."""

from nasfarm.cli import main

if __name__ == "__main__":
    main()
