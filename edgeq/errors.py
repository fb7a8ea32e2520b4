"""User-facing errors: one line that says what is wrong and what to do. The CLI prints the
message and exits with code 2."""


class EdgeqError(Exception):
    pass
