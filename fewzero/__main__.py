from fewzero.cli import entry

entry()
