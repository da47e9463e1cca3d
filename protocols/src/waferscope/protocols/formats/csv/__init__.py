"""Die-list CSV files: the reader and its internal metadata parsing.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
