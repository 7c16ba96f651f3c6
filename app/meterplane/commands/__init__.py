"""One module per ``meterplane`` subcommand (see ``meterplane.cli``)."""
