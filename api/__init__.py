"""The front door: the HTTP API through which the platform, the enrollment system and service points hand in cases.

`python -m api` (or `enroll api`) serves it; `api.app.create_app` builds it.
"""
