"""Image commands: images, tag, rmi, inspect, history, import, save, load, prune."""
