"""The ``atlas2d`` command line (Typer): parse → service → print."""
