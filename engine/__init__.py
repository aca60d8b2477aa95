"""What it does: memory projection, the loop, agents, retrieval, recorder, replay, branch, audit."""
