"""waferscope edge agent (runs next to a tester; onnxruntime only, never torch)."""
