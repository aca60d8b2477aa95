"""Where it is kept: tables, the event store, blobs, the vector index and migrations."""
