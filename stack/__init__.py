"""Running the local stack: the Temporal dev server and the processes around it."""
