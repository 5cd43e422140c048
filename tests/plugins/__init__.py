"""Third-party packages the integration tests install through promptlab's entry points."""
