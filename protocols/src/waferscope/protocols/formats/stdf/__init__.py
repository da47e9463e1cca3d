"""STDF V4 (Standard Test Data Format): reader and writer; records and wafer assembly inside.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
