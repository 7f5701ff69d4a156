"""Plain query functions taking ``session`` first; they never commit."""
