"""What each CLI command does, one module per command; `cli.py` only parses arguments and calls these."""
