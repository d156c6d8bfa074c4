"""The I/O shell: the engine, its informers and work queue, member connections, the reconciler and event posting."""
