"""Domain core shared by workflows, activities, workers and the command line."""
