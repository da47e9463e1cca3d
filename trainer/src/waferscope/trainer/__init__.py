"""waferscope trainer (everything that needs torch)."""
