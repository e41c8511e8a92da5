"""One module per command: its Typer signature, help and examples, and the code that calls the library and prints.
`cli.py` registers them; docs/layers.md says how to add one."""
