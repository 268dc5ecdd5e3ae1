"""The paper's published Tables 1-3 as CSV data (see README.md here)."""
