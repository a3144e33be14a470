"""learned stage."""
