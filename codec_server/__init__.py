"""The codec server: lets authorised ops read encrypted case payloads in the Temporal UI and CLI."""
