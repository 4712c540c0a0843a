"""``python -m unseg`` (and ``torchrun -m unseg train ...``): the ``unseg`` command line."""

from unseg.cli.main import app

if __name__ == "__main__":
    app()
