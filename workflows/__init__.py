"""Workflows: the durable flow of each enrollment case."""
