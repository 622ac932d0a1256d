"""The Processing provider: one thin adapter module per algorithm (see base.py)."""
