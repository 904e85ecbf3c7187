"""Subcommands of the `rnaret` command line (see rnaret.cli)."""
