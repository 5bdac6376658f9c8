"""``python -m transplant``: the same command line as the ``transplant`` script."""

from transplant.cli import main

if __name__ == "__main__":
    main()
