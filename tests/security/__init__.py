"""Attacker tests: one module per attack class, each test named for the attack it tries."""
