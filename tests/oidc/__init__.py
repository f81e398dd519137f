"""A real OpenID Connect provider for the tests (oidc-provider on Node.js) and its controls."""
