"""The central authority: the instance CA, the member registry and the global configuration."""
