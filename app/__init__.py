"""HTTP: routes, auth, limits, lifespan, the error envelope, `/metrics`, health, the CLI."""
