"""Models: the built-in families and the user's plugins, loaded, built and checked one way."""
