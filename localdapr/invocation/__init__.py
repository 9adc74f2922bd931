"""Service invocation between apps: finding an app's sidecars by app id, and calling them."""
