"""Workers: the processes that run cases and call the departments."""
