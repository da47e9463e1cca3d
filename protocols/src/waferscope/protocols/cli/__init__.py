"""The umbrella `waferscope` command; each installed part adds its own subcommands."""
