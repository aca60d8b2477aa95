"""Model backends behind small interfaces: VLM, image, video and embedder; registry and profiles."""
