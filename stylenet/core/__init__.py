"""The floor every side stands on: the one error type and the version (errors), atomic writes and the cache
(files), the machine and its precision (device), the allocator (hostmemory), images in and out (images)."""
