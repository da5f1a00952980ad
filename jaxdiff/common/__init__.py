"""The ground floor: what every layer may use and nothing of jaxdiff's own below it.

Errors (`UserError`: one line, exit status 2), atomic file writing and reading, the command-line
plumbing (`cli.run`), process set-up for the commands (`startup`) and config files on the command
line (`configuration`).
"""
