"""A built-in model server speaking TF Serving's gRPC and REST APIs (for one machine and tests)."""
