"""One module per command of `python -m explorer`; see explorer/cli.py."""
