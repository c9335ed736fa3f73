"""Scripts that reprint the paper's tables and figure beside our numbers (`python -m reproduce`)."""
