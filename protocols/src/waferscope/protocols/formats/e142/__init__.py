"""SEMI E142 XML substrate maps: the reader, the writer, and their internal XML and bin modules.

Modules whose names start with ``_`` are internal to this family; import the reader
and writer modules (or use :func:`waferscope.protocols.formats.get_format`)."""
