"""Use cases; each owns its transaction (``with sessions.begin() as session``)."""
