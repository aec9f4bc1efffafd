"""Projects built on ``orl_plugin``, importable from the repository root as ``projects.<name>``; a regular package,
so that pytest imports each project under that one name. The package, its tools and its configs never import it."""
