"""The review console: a small server-rendered web app for reviewers and service-point staff (`python -m console`)."""

from console.app import create_app

__all__ = ["create_app"]
