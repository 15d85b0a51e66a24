"""mpqopt's own algorithms on the canonical model: Lagrangian bounds, fixing, primal heuristics."""
