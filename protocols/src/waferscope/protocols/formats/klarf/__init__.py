"""KLARF defect files (1.2, 1.8): the reader; lexer, dialects and wafer builder inside.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
