"""Cache keys: canonical hashing, what code means (bytecode, values, fingerprints), and the key of a stage (pure but for file hashes)."""
