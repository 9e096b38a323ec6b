"""Activities: every call to a party outside the case, one module per party."""
