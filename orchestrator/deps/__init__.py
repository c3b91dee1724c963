"""Third-party dependencies: order (graph), sources (fetch), built artifacts (cache, registry)."""
