"""Dataset readers: every kind returns ``FaceSample``."""
