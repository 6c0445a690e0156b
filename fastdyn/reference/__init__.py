"""Plain-torch formulations: the "torch" backend, and the references every fast path is tested against."""
