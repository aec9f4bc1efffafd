"""Importing this package registers its components."""
