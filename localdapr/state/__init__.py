"""State store components (state.in-memory, state.sqlite, state.redis) behind one interface."""
