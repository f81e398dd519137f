"""The operator's own staff: the login page's staff LOGIN (OpenID Connect single sign-on)
and the support console (issue #9)."""
