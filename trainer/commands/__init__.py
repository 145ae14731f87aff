"""The trainer's command lines, one module per verb of ``python -m trainer VERB``: each holds its argument
parser (``build_parser``) and ``main(argv) -> int``; the work itself is in the library modules of ``trainer``."""
