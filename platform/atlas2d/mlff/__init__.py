"""Force-field adapters and relaxation engines; never import atlas2d.db."""
