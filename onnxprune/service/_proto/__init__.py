"""Generated gRPC code of ``proto/onnxprune/v1/pruning.proto``; rebuild with ``make proto``."""
