"""``python -m transplant``: the same command line as the ``transplant`` script."""

from transplant._entry import main

if __name__ == "__main__":
    main()
