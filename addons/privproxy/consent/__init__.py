"""[consent] Member-linkage consent: signed tokens, the signals that override them, one decision per request."""
